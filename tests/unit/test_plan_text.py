# SPDX-License-Identifier: GPL-3.0-or-later
"""The text of an install plan (module_utils/_plan_text), from install_plan results shaped as the module returns
them (the integration test test_provision_check.py reads the same text from a real check run)."""
import json

from hypothesis import given, settings, strategies as st

from ansible_collections.impermanent.nixos.plugins.module_utils._plan_text import diff_lines, plan_lines

SECRET = "unit-passphrase-3c1d"
GIVEN = [
    dict(module="gpt_partition", params=dict(device="/dev/disk/by-id/virtio-x", partitions=[])),
    dict(module="luks_open", params=dict(device={"ref": "partition:nix"}, name="crypted", passphrase=SECRET)),
    dict(module="filesystems", params=dict(filesystems=[])),
    dict(module="tmpfs_root", params=dict(root="/mnt", nix_device={"ref": "mapper"})),
]
PARTS = [dict(number=1, name="boot", path="/dev/vda1", start=1048576, end=537919487, size=536870912, type="esp"),
         dict(number=2, name="nix", path="/dev/vda2", start=537919488, end=6441402367, size=5903482880,
              type="luks")]


def result(changed=(True, True, True, True), diff=None):
    entries = [
        dict(module="gpt_partition", changed=changed[0], commands=["sfdisk --lock /dev/vda"], forecast=False,
             result=dict(device="/dev/vda", alignment_bytes=1048576, sector_size=512, partitions=PARTS, notes=[])),
        dict(module="luks_open", changed=changed[1], commands=["cryptsetup luksFormat --key-file=- /dev/vda2"],
             forecast=True, result=dict(mapper="/dev/mapper/crypted", formatted=True)),
        dict(module="filesystems", changed=changed[2], commands=["mkfs.ext4 -F -L nixos /dev/mapper/crypted"],
             forecast=True, result=dict(filesystems=[])),
        dict(module="tmpfs_root", changed=changed[3], commands=[], forecast=True, result=dict(steps=[
            dict(kind="mkdir", target="/mnt"), dict(kind="mount", argv=["mount", "-t", "tmpfs", "tmpfs", "/mnt"])])),
    ]
    if diff:
        entries[0]["diff"] = diff
    return dict(steps=entries, in_place=not any(changed))


def test_each_changed_step_in_install_order_with_references_resolved_and_no_secret():
    lines = plan_lines(GIVEN, result())
    text = "\n".join(lines)
    assert lines[0].startswith("Partition table for /dev/disk/by-id/virtio-x (/dev/vda), planned by")
    assert "  1 boot /dev/vda1 start=1048576 end=537919487 size=536870912 type=esp" in lines
    # the LUKS line names the partition the reference stands for, and the mapper
    assert ("LUKS on /dev/vda2, planned by impermanent.nixos.luks_open (luksFormat, then open as "
            "/dev/mapper/crypted; the key goes on stdin):") in lines
    order = [text.index(m) for m in ("Partition table", "LUKS on", "File systems, by", "Mounts under /mnt")]
    assert order == sorted(order)
    assert "  would create directory /mnt" in lines and "  would run: mount -t tmpfs tmpfs /mnt" in lines
    assert SECRET not in text


def test_a_step_in_place_shows_nothing_and_all_in_place_says_so():
    lines = plan_lines(GIVEN, result(changed=(False, True, True, True)))
    assert not any(line.startswith("Partition table") for line in lines)
    assert plan_lines(GIVEN, result(changed=(False,) * 4)) == ["Nothing to do: every step is in place."]


def test_diffs_only_when_asked():
    diff = dict(before="label: gpt\n", after="label: gpt\nstart=2048\n", before_header="t (before)",
                after_header="t (after)")
    assert "  +start=2048" in plan_lines(GIVEN, result(diff=diff), diff=True)
    assert not any("+start" in line for line in plan_lines(GIVEN, result(diff=diff)))


@settings(max_examples=100, derandomize=True)
@given(st.text(max_size=200), st.text(max_size=200))
def test_diff_lines_round_trip(before, after):
    """Property: the unified diff of two texts is empty exactly when they are equal, and every line it adds or
    removes is a line (split at newlines only) of the after or before text."""
    lines = diff_lines(dict(before=before, after=after))
    assert (lines == []) == (before == after)
    added = [line[1:] for line in lines[2:] if line.startswith("+")]
    removed = [line[1:] for line in lines[2:] if line.startswith("-")]
    assert all(a in after.split("\n") for a in added), (added, json.dumps(after))
    assert all(r in before.split("\n") for r in removed), (removed, json.dumps(before))
