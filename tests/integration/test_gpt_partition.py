# SPDX-License-Identifier: GPL-3.0-or-later
"""gpt_partition through ansible-playbook/ansible against loop disks (512- and 4096-byte sectors).

This host's kernel has no partition-table parsers (CONFIG_EFI_PARTITION unset): partitions appear only through
BLKPG, i.e. the module's partprobe step. udev does not run here; the by-id links and ``udevadm settle`` are
exercised in the Molecule guests.
"""
import os
import subprocess

import pytest

from conftest import run_module, run_playbook, sha256_of

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import (
    kernel_partitions, read_topology, whole_disk_of,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._gpt import (
    TYPE_GUIDS, parse_parted_machine, parse_sfdisk_json,
)

GIB = 1 << 30
MIB = 1 << 20
LAYOUT = [{"name": "esp", "size": "512MiB", "type": "esp"},
          {"name": "swap", "size": "1GiB", "type": "swap"},
          {"name": "nix", "size": "100%", "type": "linux"}]
# The same shape on 256MiB disks, for the tests that hash every byte of the disk (3-7 s per GiB here).
SMALL = [{"name": "esp", "size": "64MiB", "type": "esp"},
         {"name": "swap", "size": "64MiB", "type": "swap"},
         {"name": "nix", "size": "100%", "type": "linux"}]
OTHER = 'label: gpt\n\nstart=2048, size=196608, type=linux, name="root"\nstart=198656, type=linux, name="home"\n'


def sh(*argv, data=None, check=True):
    return subprocess.run(argv, input=data, capture_output=True, text=True, check=check)


def sfdisk_table(dev):
    proc = sh("sfdisk", "--json", dev, check=False)
    return parse_sfdisk_json(proc.stdout) if proc.returncode == 0 else None


def write_table(dev, script):
    sh("sfdisk", "-q", "--wipe", "always", dev, data=script)
    sh("partprobe", dev)


def kernel_parts(dev):
    name = os.path.basename(dev)
    base = "/sys/class/block/" + name
    return sorted(e for e in os.listdir(base) if os.path.exists(os.path.join(base, e, "partition")))


def gpt_regions(disk):
    """Hash of the primary and backup GPT areas (first and last MiB) of a big sparse disk."""
    return sha256_of(disk.device, 0, MIB), sha256_of(disk.device, disk.size - MIB, MIB)


def partition(disk, layout=None, check=False, diff=False, **extra):
    extra_vars = dict(disk=disk.device, layout=layout or LAYOUT)
    extra_vars.update(extra)
    run = run_playbook("gpt_layout.yml", extra_vars, check=check, diff=diff)
    return run, run.task("Partition")


@pytest.mark.parametrize("sector", [512, 4096])
def test_layout_created_aligned_and_idempotent(loopdisk, sector):
    disk = loopdisk(12 * GIB, sector)
    run, res = partition(disk)
    assert run.rc == 0 and res["changed"], run.stdout[-3000:]
    assert res["device"] == disk.device and res["sector_size"] == sector and res["alignment_bytes"] == MIB

    tbl = sfdisk_table(disk.device)
    mib = MIB // sector
    assert tbl.label == "gpt" and tbl.sector_size == sector
    assert [(e.number, e.name, e.type, e.start, e.size) for e in tbl.partitions[:2]] == [
        (1, "esp", TYPE_GUIDS["esp"], mib, 512 * mib), (2, "swap", TYPE_GUIDS["swap"], 513 * mib, 1024 * mib)]
    nix = tbl.partitions[2]
    assert (nix.name, nix.type, nix.start, nix.start + nix.size - 1) == ("nix", TYPE_GUIDS["linux"], 1537 * mib, tbl.last_lba)
    assert tbl.last_lba == disk.size // sector - (34 if sector == 512 else 6)

    parted = parse_parted_machine(sh("parted", "-s", "-m", disk.device, "unit", "B", "print").stdout)
    assert [(p["name"], p["flags"]) for p in parted["partitions"]] == [
        ("esp", ["boot", "esp"]), ("swap", ["swap"]), ("nix", [])]
    for n in (1, 2, 3):
        assert sh("parted", "-s", disk.device, "align-check", "optimal", str(n), check=False).returncode == 0, n

    base = os.path.basename(disk.device)
    assert kernel_parts(disk.device) == ["%sp%d" % (base, n) for n in (1, 2, 3)]
    # the sysfs readers on the real tree
    assert kernel_partitions(base) == dict(("%sp%d" % (base, e.number), (e.start * sector // 512, e.size * sector // 512))
                                           for e in tbl.partitions)
    assert whole_disk_of(base + "p1") == base and whole_disk_of(base) is None
    assert read_topology(base)[:2] + read_topology(base)[5:] == (sector, sector, disk.size)
    for p, e in zip(res["partitions"], tbl.partitions):
        assert p["path"] == "%sp%d" % (disk.device, e.number)
        assert (p["start"], p["size"], p["end"]) == (e.start * sector, e.size * sector, (e.start + e.size) * sector - 1)
        assert p["aligned"] is True and "by_id_path" not in p
        blkid = sh("blkid", "-p", "-o", "value", "-s", "PART_ENTRY_UUID", p["path"]).stdout.strip()
        assert p["partuuid"] == blkid == e.uuid.lower()
    assert res["commands"][0].endswith("sfdisk --lock --wipe always --wipe-partitions always " + disk.device)
    assert "partprobe " + disk.device in res["commands"][1]
    assert [r["msg"] for r in run.task("Paths")["results"]] == [p["path"] for p in res["partitions"]]

    before = gpt_regions(disk)
    run2, again = partition(disk)
    assert run2.rc == 0 and again["changed"] is False and again["commands"] == []
    assert [p["partuuid"] for p in again["partitions"]] == [p["partuuid"] for p in res["partitions"]]
    assert gpt_regions(disk) == before


def test_align_check_is_a_real_check(loopdisk):
    """Negative control for the test above: parted align-check does fail (rc 1) on a misaligned start."""
    disk = loopdisk(64 * MIB)
    write_table(disk.device, 'label: gpt\n\nstart=2049, size=4096, type=linux\n')
    assert sh("parted", "-s", disk.device, "align-check", "optimal", "1", check=False).returncode == 1


def test_check_mode_on_blank_disk_writes_nothing(loopdisk):
    disk = loopdisk(256 * MIB)
    before = disk.digest()
    run, res = partition(disk, SMALL, check=True, diff=True)
    assert run.rc == 0 and res["changed"] is True
    assert disk.digest() == before
    assert sfdisk_table(disk.device) is None and kernel_parts(disk.device) == []
    assert len(res["commands"]) == 2 and "sfdisk --lock" in res["commands"][0] and "partprobe" in res["commands"][1]
    assert [(p["name"], p["start"], p["size"], p["partuuid"]) for p in res["partitions"]] == [
        ("esp", MIB, 64 * MIB, None), ("swap", 65 * MIB, 64 * MIB, None),
        ("nix", 129 * MIB, 256 * MIB - 129 * MIB - 33 * 512, None)]
    assert 'name="nix"' in res["script"]
    assert res["diff"]["before"] == "(no partition table)\n" and "'nix' linux start=129MiB" in res["diff"]["after"]


def test_different_table_needs_force(loopdisk):
    disk = loopdisk(256 * MIB)
    write_table(disk.device, OTHER)
    before = disk.digest()
    run, res = partition(disk, SMALL)
    assert run.rc != 0 and res["failed"]
    for words in (disk.device, "force=true", "'root'", "'home'", "Nothing was written"):
        assert words in res["msg"], res["msg"]
    assert disk.digest() == before

    run, res = partition(disk, SMALL, check=True, force=True)
    assert run.rc == 0 and res["changed"] and disk.digest() == before

    run, res = partition(disk, SMALL, force=True)
    assert run.rc == 0 and res["changed"], run.stdout[-2000:]
    tbl = sfdisk_table(disk.device)
    assert [e.name for e in tbl.partitions] == ["esp", "swap", "nix"]
    base = os.path.basename(disk.device)
    assert kernel_parts(disk.device) == ["%sp%d" % (base, n) for n in (1, 2, 3)]
    with open("/sys/class/block/%sp1/size" % base) as f:
        assert int(f.read()) == 64 * MIB // 512  # the kernel shows the new p1, not the old 96MiB "root"
    with open("/sys/class/block/%sp2/start" % base) as f:
        assert int(f.read()) == 65 * MIB // 512

    run, res = partition(disk, SMALL)
    assert run.rc == 0 and res["changed"] is False


def test_mbr_needs_force(loopdisk):
    disk = loopdisk(256 * MIB)
    write_table(disk.device, "label: dos\n\nstart=2048, size=204800, type=83\nstart=206848, type=82\n")
    before = disk.digest()
    run, res = partition(disk, [{"name": "nix", "size": "100%"}])
    assert res["failed"] and "dos partition table" in res["msg"] and "force=true" in res["msg"]
    assert disk.digest() == before


@pytest.mark.parametrize("label", ["gpt", "dos"])
def test_empty_table_is_partitioned_without_force(loopdisk, label):
    disk = loopdisk(256 * MIB)
    write_table(disk.device, "label: %s\n" % label)
    assert sfdisk_table(disk.device).partitions == []
    run, res = partition(disk, SMALL)
    assert run.rc == 0 and res["changed"], res.get("msg")
    assert [e.name for e in sfdisk_table(disk.device).partitions] == ["esp", "swap", "nix"]


def test_whole_disk_filesystem_needs_force_and_is_wiped(loopdisk):
    disk = loopdisk(256 * MIB)
    sh("mkfs.ext4", "-q", "-L", "whole", disk.device)
    layout = [{"name": "esp", "size": "64MiB", "type": "esp"}, {"name": "nix", "size": "100%"}]
    before = disk.digest()
    run, res = partition(disk, layout)
    assert res["failed"] and "whole-disk ext4 signature" in res["msg"] and "force=true" in res["msg"], res["msg"]
    assert disk.digest() == before
    run, res = partition(disk, layout, force=True)
    assert run.rc == 0 and res["changed"]
    probe = sh("blkid", "-p", "-o", "export", disk.device).stdout
    assert "PTTYPE=gpt" in probe and "TYPE=ext4" not in probe


def test_in_use_is_refused_even_with_force(loopdisk, tmp_path):
    disk = loopdisk(256 * MIB)
    run, res = partition(disk, SMALL)
    assert run.rc == 0
    swap, nix = res["partitions"][1]["path"], res["partitions"][2]["path"]
    other = [{"name": "data", "size": "100%"}]
    sh("mkswap", "-q", swap)
    sh("swapon", swap)
    try:
        before = disk.digest()
        run, res = partition(disk, other, force=True)
        assert res["failed"] and "%s is active swap" % swap in res["msg"] and "force=true does not" in res["msg"]
        assert disk.digest() == before
    finally:
        sh("swapoff", swap, check=False)
    sh("mkfs.ext4", "-q", nix)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh("mount", nix, str(mnt))
    try:
        before = disk.digest()
        run, res = partition(disk, other, force=True)
        assert res["failed"] and "%s is mounted on %s" % (nix, mnt) in res["msg"], res["msg"]
        assert disk.digest() == before
        # the same layout again is fine while mounted: nothing to write
        run, res = partition(disk, SMALL)
        assert run.rc == 0 and res["changed"] is False
    finally:
        sh("umount", str(mnt), check=False)


BAD = {
    "two 100%": (LAYOUT[:2] + [{"name": "a", "size": "100%"}, {"name": "b", "size": "100%"}], {}, ["a, b", "100%"]),
    "100% not last": ([{"name": "a", "size": "100%"}, {"name": "b", "size": "1GiB"}], {}, ["'a'", "not the last"]),
    "garbled size": ([{"name": "a", "size": "lots"}], {}, ["'lots'", "512MiB"]),
    "zero size": ([{"name": "a", "size": 0}], {}, ["positive"]),
    "SI unit": ([{"name": "a", "size": "8GB"}], {}, ["'8GB'", "8GiB"]),
    "duplicate names": ([{"name": "a", "size": "1GiB"}, {"name": "a", "size": "100%"}], {}, ["'a'", "unique"]),
    "unknown type": ([{"name": "a", "size": "1GiB", "type": "ext4"}], {}, ["'ext4'", "GUID"]),
    "does not fit": ([{"name": "a", "size": "256MiB"}], {}, ["'a'", "does not fit", "256MiB disk"]),
    "alignment 3000": (LAYOUT, {"alignment": 3000}, ["alignment=3000", "power-of-two multiple"]),
    "alignment 3MiB": (LAYOUT, {"alignment": "3MiB"}, ["alignment=3145728", "power-of-two multiple"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_requests_fail_and_write_nothing(loopdisk, case):
    layout, extra, words = BAD[case]
    disk = loopdisk(256 * MIB)
    before = disk.digest()
    run, res = partition(disk, layout, **extra)
    assert run.rc != 0 and res["failed"]
    for word in words:
        assert word in res["msg"], res["msg"]
    assert disk.digest() == before


def test_device_errors(loopdisk, tmp_path):
    rc, res = run_module("impermanent.nixos.gpt_partition", {"device": str(tmp_path / "nope"), "partitions": LAYOUT})
    assert rc != 0 and "does not exist" in res["msg"]
    plain = tmp_path / "file.img"
    plain.write_bytes(b"\0" * 4096)
    rc, res = run_module("impermanent.nixos.gpt_partition", {"device": str(plain), "partitions": LAYOUT})
    assert rc != 0 and "not a block device" in res["msg"]
    disk = loopdisk(256 * MIB)
    run, res = partition(disk, SMALL)
    part = res["partitions"][0]["path"]
    rc, res = run_module("impermanent.nixos.gpt_partition", {"device": part, "partitions": LAYOUT})
    assert rc != 0 and "is a partition of %s" % disk.device in res["msg"], res["msg"]


def test_adhoc_4kn_explicit_alignment_through_a_symlink(loopdisk, tmp_path):
    """`ansible localhost -m impermanent.nixos.gpt_partition`, a symlinked device, 4MiB grain on a 4Kn disk."""
    disk = loopdisk(2 * GIB, 4096)
    link = tmp_path / "disk-link"
    link.symlink_to(disk.device)
    args = {"device": str(link), "alignment": "4MiB", "partitions": LAYOUT}
    rc, res = run_module("impermanent.nixos.gpt_partition", args)
    assert rc == 0 and res["changed"] and res["device"] == disk.device and res["alignment_bytes"] == 4 * MIB
    assert [p["start"] // MIB for p in res["partitions"]] == [4, 516, 1540]
    assert all(p["path"].startswith(disk.device + "p") for p in res["partitions"])
    for n in (1, 2, 3):
        assert sh("parted", "-s", disk.device, "align-check", "optimal", str(n), check=False).returncode == 0
    rc, res = run_module("impermanent.nixos.gpt_partition", args)
    assert rc == 0 and res["changed"] is False
    rc, res = run_module("impermanent.nixos.gpt_partition", dict(args, alignment="optimal"))
    assert rc != 0 and "force=true" in res["msg"]  # 1MiB grain plans other starts: a different table


def test_rest_partition_made_by_sfdisk_counts_as_the_same(loopdisk):
    """sfdisk rounds the end of a last partition down to its grain; the module accepts that as 100%."""
    disk = loopdisk(256 * MIB)
    write_table(disk.device, OTHER)
    tbl = sfdisk_table(disk.device)
    assert tbl.partitions[1].start + tbl.partitions[1].size - 1 < tbl.last_lba
    before = disk.digest()
    run, res = partition(disk, [{"name": "root", "size": "96MiB"}, {"name": "home", "size": "100%"}])
    assert run.rc == 0 and res["changed"] is False
    assert disk.digest() == before


def test_grown_disk_keeps_its_table(loopdisk):
    """A disk grown after provisioning (a resized VM disk) still holds the requested layout: a rerun writes
    nothing and says the disk grew, instead of asking for force (which would lose the data)."""
    disk = loopdisk(2 * GIB)
    run, res = partition(disk)
    assert run.rc == 0 and res["changed"], run.stdout[-3000:]
    with open(disk.image, "r+b") as f:
        f.truncate(3 * GIB)
    sh("losetup", "-c", disk.device)
    disk.size = 3 * GIB
    before = disk.digest()
    run2, again = partition(disk)
    assert run2.rc == 0 and again["changed"] is False and again["commands"] == [], run2.stdout[-3000:]
    grew = [w for w in again.get("warnings", []) if "the disk grew" in w]
    assert len(grew) == 1 and "partition 3 ('nix', 100%) keeps its" in grew[0], again.get("warnings")
    assert any("the disk grew" in n for n in again["notes"])
    assert [p["partuuid"] for p in again["partitions"]] == [p["partuuid"] for p in res["partitions"]]
    assert disk.digest() == before


def test_partition_path_filter():
    run = run_playbook("gpt_filter.yml")
    assert run.rc == 0 and run.failed == 0, run.stdout[-3000:]
    assert run.task("Bad number fails with a message")["msg"] == "All assertions passed"
