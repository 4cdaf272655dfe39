# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure part of install_plan: step order, references to earlier results, the forecast."""
import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.impermanent.nixos.plugins.module_utils._install_plan import (
    STEPS, Forecast, InstallPlanError, check_order, resolve_refs,
)

GPT = dict(partitions=[dict(name="boot", path="/dev/vda1"), dict(name="nix", path="/dev/vda2")], changed=True)


def test_steps_in_install_order_each_once():
    check_order(list(STEPS))
    check_order(["gpt_partition", "filesystems", "nixos_flake_install"])
    with pytest.raises(InstallPlanError, match="listed after filesystems"):
        check_order(["filesystems", "gpt_partition"])
    with pytest.raises(InstallPlanError, match="listed twice"):
        check_order(["tmpfs_root", "tmpfs_root"])
    with pytest.raises(InstallPlanError, match="unknown install step 'mkfs'"):
        check_order(["mkfs"])


def test_references_resolve_to_earlier_results_anywhere_in_the_options():
    results = dict(gpt_partition=GPT, luks_open=dict(mapper="/dev/mapper/crypted"))
    params = dict(filesystems=[dict(device={"ref": "partition:boot"}, fstype="vfat"),
                               dict(device={"ref": "mapper"}, fstype="ext4")], other={"ref": "partition:nix"})
    assert resolve_refs(params, results, "filesystems") == dict(
        filesystems=[dict(device="/dev/vda1", fstype="vfat"), dict(device="/dev/mapper/crypted", fstype="ext4")],
        other="/dev/vda2")


@pytest.mark.parametrize("ref, results, message", [
    ("partition:home", dict(gpt_partition=GPT), "names no partition of the gpt_partition step \\(boot, nix\\)"),
    ("partition:nix", {}, "needs a gpt_partition step before it"),
    ("mapper", dict(gpt_partition=GPT), "needs a luks_open step before it"),
    ("disk", dict(gpt_partition=GPT), "unknown reference 'disk'"),
    (3, dict(gpt_partition=GPT), "must be a string"),
])
def test_a_bad_reference_names_itself_and_the_step(ref, results, message):
    with pytest.raises(InstallPlanError, match="^filesystems: .*" + message):
        resolve_refs(dict(filesystems=[dict(device={"ref": ref})]), results, "filesystems")


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6).filter(lambda k: k != "ref"),
                                                                inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(values)
def test_options_without_references_come_back_unchanged(value):
    """Property: resolving a value that holds no {ref: ...} returns an equal value (nothing else is rewritten)."""
    assert resolve_refs(value, {}, "filesystems") == value


def test_the_forecast_follows_what_earlier_steps_would_create():
    f = Forecast()
    f.after("gpt_partition", {}, dict(GPT, changed=False))
    assert f.devices == set()
    f.after("gpt_partition", {}, GPT)
    assert f.devices == {"/dev/vda1", "/dev/vda2"}
    f.after("luks_open", dict(state="closed"), dict(changed=True, mapper="/dev/mapper/c"))
    assert "/dev/mapper/c" not in f.devices
    f.after("luks_open", {}, dict(changed=True, mapper="/dev/mapper/c"))
    assert "/dev/mapper/c" in f.devices
    layout = dict(root="/mnt", boot_device="/dev/vda1", swap_device="/dev/vda3")
    devices = dict(pending=frozenset(["/dev/vda1", "/dev/vda2", "/dev/mapper/c"]))
    assert f.run_kwargs("hwconfig_patch", dict(root="/mnt"), dict(tmpfs_root=layout)) == devices
    f.after("tmpfs_root", layout, dict(changed=True))
    assert f.run_kwargs("hwconfig_patch", dict(root="/mnt"), dict(tmpfs_root=layout)) == dict(
        devices, stand_in=dict(boot_device="/dev/vda1", swap_devices=["/dev/vda3"]))
    assert f.run_kwargs("hwconfig_patch", dict(root="/other"), dict(tmpfs_root=layout)) == devices
    assert f.run_kwargs("nixos_flake_install", dict(root="/mnt"), {}) == dict(
        devices, pending_roots=frozenset(["/mnt"]))
    assert f.run_kwargs("nixos_flake_install", dict(root="/other"), {}, outside=True) == dict(
        devices, pending_roots=frozenset(["/other"]))
    assert f.run_kwargs("hwconfig_patch", dict(root=None), dict(tmpfs_root=layout)) == devices
    assert f.run_kwargs("luks_open", dict(device="/dev/vda2"), {}) == devices
    with pytest.raises(InstallPlanError, match="only nixos_flake_install"):
        f.run_kwargs("luks_open", dict(device="/dev/vda2"), {}, outside=True)
