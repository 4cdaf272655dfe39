# SPDX-License-Identifier: GPL-3.0-or-later
"""The filesystems module's pure part: labels, the mkfs argv, and the planner (real blkid captures where the
facts come from blkid, see fixtures/luks/README.md)."""
import os

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils import _mkfs as mkfs
from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import content_signature, parse_blkid_export
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import Refused

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def blkid(path):
    with open(os.path.join(FIXTURES, path)) as f:
        return content_signature(parse_blkid_export(f.read()))


EXT4 = blkid("luks/blkid_ext4.stdout")  # ext4, LABEL=nixos
LUKS = blkid("luks/blkid_luks2.stdout")
SWAP = blkid("flake/host-layout.blkid-swap")  # swap, LABEL=swap
FRESH = blkid("luks/blkid_fresh_partition.stdout")  # a new GPT partition: only its table entry
VFAT = {"TYPE": "vfat", "SEC_TYPE": "msdos", "LABEL": "boot", "USAGE": "filesystem", "VERSION": "FAT32"}
GPT = {"PTTYPE": "gpt", "PTUUID": "8f0b5c5e-3d1a-4c55-9a8b-0a8b2b1f3b11"}


def wanted(*entries):
    return mkfs.parse_wanted([dict(device=d, fstype=t, label=l) for d, t, l in entries])


def plan_of(entries, facts, check_mode=False):
    return mkfs.plan(wanted(*entries), facts, check_mode=check_mode)


# -- argv -----------------------------------------------------------------------------------------------------------
def test_argv_per_type():
    assert mkfs.mkfs_argv("vfat", "/dev/vda1", "boot") == ["mkfs.vfat", "-F", "32", "-n", "boot", "/dev/vda1"]
    assert mkfs.mkfs_argv("swap", "/dev/vda2", "swap") == ["mkswap", "-L", "swap", "/dev/vda2"]
    assert mkfs.mkfs_argv("ext4", "/dev/mapper/crypted", "nixos") == [
        "mkfs.ext4", "-F", "-L", "nixos", "/dev/mapper/crypted"]


def test_argv_without_label_and_with_a_program_path():
    assert mkfs.mkfs_argv("vfat", "/dev/vda1", None, "/usr/sbin/mkfs.vfat") == [
        "/usr/sbin/mkfs.vfat", "-F", "32", "/dev/vda1"]
    assert mkfs.mkfs_argv("swap", "/dev/vda2") == ["mkswap", "/dev/vda2"]
    assert mkfs.mkfs_argv("ext4", "/dev/vda3") == ["mkfs.ext4", "-F", "/dev/vda3"]


def test_a_label_that_looks_like_an_option_stays_the_label_argument():
    argv = mkfs.mkfs_argv("ext4", "/dev/vda3", "-F")
    assert argv[argv.index("-L") + 1] == "-F" and argv[-1] == "/dev/vda3"


# -- labels ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fstype,label", [
    ("vfat", "boot"), ("vfat", "BOOT"), ("vfat", "ABCDEFGHIJK"), ("vfat", "EFI SYSTEM"), ("vfat", "a'b&c"),
    ("ext4", "nixos"), ("ext4", "x" * 16), ("ext4", "\u00e9" * 8), ("ext4", "a/b c"),
    ("swap", "swap"), ("swap", "y" * 16), ("swap", None),
])
def test_labels_accepted(fstype, label):
    mkfs.check_label(fstype, label)


@pytest.mark.parametrize("fstype,label,words", [
    ("vfat", "ABCDEFGHIJKL", ["'ABCDEFGHIJKL'", "12 characters", "at most 11"]),
    ("vfat", "a.b", ["'a.b'", "refuses the characters ."]),
    ("vfat", "x*y?", ["'x*y?'", "* ?"]),
    ("vfat", " boot", ["' boot'", "may not start with a blank"]),
    ("vfat", "b\u00f6\u00f6t", ["ASCII only"]),
    ("ext4", "x" * 17, ["'%s'" % ("x" * 17), "17 bytes", "at most 16 bytes"]),
    ("ext4", "\u00e9" * 9, ["18 bytes", "at most 16 bytes"]),
    ("swap", "s" * 17, ["17 bytes", "a swap label holds at most 16 bytes"]),
    ("ext4", "nix\nos", ["control character"]),
    ("swap", "", ["non-empty"]),
])
def test_labels_refused_naming_value_and_limit(fstype, label, words):
    with pytest.raises(mkfs.MkfsError) as e:
        mkfs.check_label(fstype, label, "/dev/vda1")
    for word in words:
        assert word in str(e.value), (word, str(e.value))
    assert "/dev/vda1" in str(e.value)


def test_bad_label_is_refused_before_any_device_is_read():
    with pytest.raises(mkfs.MkfsError) as e:
        mkfs.parse_wanted([dict(device="/dev/vda1", fstype="vfat", label="boot"),
                           dict(device="/dev/vda3", fstype="ext4", label="a-label-far-too-long")])
    assert "/dev/vda3" in str(e.value) and "at most 16 bytes" in str(e.value)


@pytest.mark.parametrize("entries,words", [
    ([dict(device="/dev/vda1", fstype="btrfs", label="x")], ["fstype='btrfs'", "vfat, swap, ext4"]),
    ([dict(device="vda1", fstype="ext4")], ["device='vda1'", "absolute path"]),
    ([dict(device="/dev/vda1", fstype="ext4", size=3)], ["unknown keys size"]),
    ([dict(device="/dev/vda1", fstype="ext4"), dict(device="/dev/vda1", fstype="swap")], ["listed twice"]),
    (["/dev/vda1"], ["each entry is a dict"]),
])
def test_bad_entries(entries, words):
    with pytest.raises(mkfs.MkfsError) as e:
        mkfs.parse_wanted(entries)
    for word in words:
        assert word in str(e.value)


# -- the plan -------------------------------------------------------------------------------------------------------
INSTALL = [("/dev/vda1", "vfat", "boot"), ("/dev/vda2", "swap", "swap"), ("/dev/mapper/crypted", "ext4", "nixos")]


def facts(**by_device):
    return dict(("/dev/" + k.replace("__", "/"), v) for k, v in by_device.items())


def test_blank_devices_are_all_created_in_order():
    p = plan_of(INSTALL, facts(vda1=mkfs.DeviceFacts(signature=FRESH, identity=(8, 1)),
                               vda2=mkfs.DeviceFacts(identity=(8, 2)),
                               mapper__crypted=mkfs.DeviceFacts(identity=(253, 0))))
    assert FRESH == {}  # a new partition's PART_ENTRY_* lines are not content
    assert p.kinds == ["create", "create", "create"] and p.changed
    assert [s.argv for s in p.steps] == [mkfs.mkfs_argv(t, d, lbl) for d, t, lbl in INSTALL]
    assert p.entries == [dict(device=d, fstype=t, label=lbl, action="create") for d, t, lbl in INSTALL]
    assert p.warnings == []


def test_existing_file_systems_of_the_wanted_type_are_kept():
    p = plan_of(INSTALL, facts(vda1=mkfs.DeviceFacts(signature=VFAT), vda2=mkfs.DeviceFacts(signature=SWAP),
                               mapper__crypted=mkfs.DeviceFacts(signature=EXT4)))
    assert p.kinds == ["keep", "keep", "keep"] and not p.changed
    assert [e["action"] for e in p.entries] == ["keep"] * 3 and p.warnings == []


def test_a_kept_file_system_in_use_stays_kept():
    """A rerun after the install mounted /nix and turned swap on: nothing to write, so nothing is refused."""
    p = plan_of(INSTALL[1:], facts(vda2=mkfs.DeviceFacts(signature=SWAP, users=["/dev/vda2 is active swap"]),
                                   mapper__crypted=mkfs.DeviceFacts(signature=EXT4, users=["mounted on /mnt/nix"])))
    assert p.kinds == ["keep", "keep"]


def test_a_different_label_is_reported_not_changed():
    p = plan_of([("/dev/mapper/crypted", "ext4", "other")], facts(mapper__crypted=mkfs.DeviceFacts(signature=EXT4)))
    assert p.kinds == ["keep"] and not p.changed
    assert p.entries == [dict(device="/dev/mapper/crypted", fstype="ext4", label="nixos", action="keep")]
    assert len(p.warnings) == 1
    assert "labelled 'nixos', not 'other'" in p.warnings[0] and "e2label" in p.warnings[0]


@pytest.mark.parametrize("signature,what", [
    (EXT4, "an ext4 file system (LABEL=nixos"), (LUKS, "a crypto_LUKS encrypted volume"),
    (GPT, "a gpt partition table"), (SWAP, "a swap signature (LABEL=swap"),
])
def test_another_signature_is_refused_naming_device_and_content(signature, what):
    with pytest.raises(mkfs.MkfsRefused) as e:
        plan_of([("/dev/vda1", "vfat", "boot")], facts(vda1=mkfs.DeviceFacts(signature=signature)))
    msg = str(e.value)
    assert msg.startswith("/dev/vda1 holds ") and what in msg, msg
    assert "never writes over an existing file system" in msg and "wipefs -a /dev/vda1" in msg
    assert e.value.result["refused"] == "content" and isinstance(e.value, Refused)


def test_signatures_blkid_cannot_tell_apart_are_refused():
    with pytest.raises(mkfs.MkfsRefused) as e:
        plan_of([("/dev/vda3", "ext4", "nixos")],
                facts(vda3=mkfs.DeviceFacts(signature={}, ambivalent="ambivalent result (probably more "
                                                                     "filesystems on the device)")))
    assert "cannot tell apart (ambivalent result" in str(e.value) and e.value.reason == "content"


def test_ambivalent_is_never_kept_even_when_one_signature_matches():
    with pytest.raises(mkfs.MkfsRefused):
        plan_of([("/dev/vda3", "ext4", None)], facts(vda3=mkfs.DeviceFacts(signature=EXT4, ambivalent="two")))


def test_a_blank_device_in_use_is_refused():
    with pytest.raises(mkfs.MkfsRefused) as e:
        plan_of([("/dev/vda2", "swap", "swap")],
                facts(vda2=mkfs.DeviceFacts(users=["/dev/loop7 (a loop device backed by /dev/vda2) is built on it"])))
    assert e.value.reason == "in_use"
    assert str(e.value).startswith("/dev/vda2 is in use: /dev/loop7") and "(it is blank)" in str(e.value)


def test_a_mounted_device_with_another_type_is_refused_as_in_use():
    with pytest.raises(mkfs.MkfsRefused) as e:
        plan_of([("/dev/vda1", "vfat", "boot")],
                facts(vda1=mkfs.DeviceFacts(signature=EXT4, users=["/dev/vda1 is mounted on /mnt"])))
    assert e.value.reason == "in_use" and "mounted on /mnt" in str(e.value) and "ext4 file system" in str(e.value)


def test_the_running_systems_disk_is_refused():
    with pytest.raises(mkfs.MkfsRefused) as e:
        plan_of([("/dev/sda2", "ext4", "nixos")], facts(sda2=mkfs.DeviceFacts(system="/ is mounted from it")))
    assert e.value.reason == "system_disk" and "/ is mounted from it" in str(e.value)


def test_one_refusal_fails_the_whole_plan_before_anything_runs():
    with pytest.raises(mkfs.MkfsRefused) as e:
        plan_of(INSTALL, facts(vda1=mkfs.DeviceFacts(), vda2=mkfs.DeviceFacts(),
                               mapper__crypted=mkfs.DeviceFacts(signature=LUKS)))
    assert "/dev/mapper/crypted holds" in str(e.value)


def test_two_paths_of_one_device_are_refused():
    with pytest.raises(mkfs.MkfsError) as e:
        plan_of([("/dev/vda1", "vfat", "boot"), ("/dev/disk/by-label/x", "ext4", "nixos")],
                {"/dev/vda1": mkfs.DeviceFacts(identity=(8, 1)),
                 "/dev/disk/by-label/x": mkfs.DeviceFacts(identity=(8, 1))})
    assert "/dev/vda1 and /dev/disk/by-label/x are the same device" in str(e.value)


def test_a_missing_device_fails_a_real_run():
    with pytest.raises(mkfs.MkfsError) as e:
        plan_of(INSTALL[:1], facts(vda1=mkfs.DeviceFacts(exists=False)))
    assert not isinstance(e.value, Refused) and str(e.value).startswith("/dev/vda1 does not exist")


def test_a_missing_device_is_planned_as_create_in_check_mode_with_a_warning():
    p = plan_of(INSTALL, facts(vda1=mkfs.DeviceFacts(exists=False), vda2=mkfs.DeviceFacts(exists=False),
                               mapper__crypted=mkfs.DeviceFacts(signature=EXT4)), check_mode=True)
    assert p.kinds == ["create", "create", "keep"]
    assert len(p.warnings) == 2 and p.warnings[0].startswith("/dev/vda1 does not exist yet")
    assert "earlier step of this check run" in p.warnings[0] and "A real run fails" in p.warnings[0]


def test_check_mode_refuses_what_a_real_run_refuses():
    with pytest.raises(mkfs.MkfsRefused):
        plan_of(INSTALL[:1], facts(vda1=mkfs.DeviceFacts(signature=EXT4)), check_mode=True)
