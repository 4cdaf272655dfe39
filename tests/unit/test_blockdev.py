# SPDX-License-Identifier: GPL-3.0-or-later
"""Partition naming, sysfs topology, and the lsblk / blkid / /proc/swaps parsers on captured output."""
import json
import os

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import (
    BlockDeviceError, in_use, is_link_path, is_read_only, kernel_partitions, parse_blkid_export, parse_lsblk_json,
    parse_proc_swaps, partition_name, partition_path, read_topology, whole_disk_of,
)

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gpt")


def fixture(name):
    with open(os.path.join(FIX, name)) as f:
        return f.read()


@pytest.mark.parametrize("disk, n, expected", [
    ("vda", 1, "vda1"), ("sda", 12, "sda12"), ("xvda", 2, "xvda2"), ("nvme0n1", 1, "nvme0n1p1"),
    ("nvme10n2", 3, "nvme10n2p3"), ("mmcblk0", 1, "mmcblk0p1"), ("loop0", 3, "loop0p3"), ("md127", 1, "md127p1"),
    ("nbd0", 1, "nbd0p1"),
])
def test_partition_name(disk, n, expected):
    assert partition_name(disk, n) == expected


@pytest.mark.parametrize("n", [0, -1, True, "1", 1.0, None])
def test_partition_name_rejects_bad_numbers(n):
    with pytest.raises(BlockDeviceError):
        partition_name("vda", n)


@pytest.mark.parametrize("disk, n, expected", [
    ("/dev/vda", 1, "/dev/vda1"), ("/dev/sda", 2, "/dev/sda2"), ("/dev/nvme0n1", 1, "/dev/nvme0n1p1"),
    ("/dev/mmcblk0", 2, "/dev/mmcblk0p2"), ("/dev/loop7", 3, "/dev/loop7p3"),
    ("/dev/disk/by-id/virtio-nixdisk", 3, "/dev/disk/by-id/virtio-nixdisk-part3"),
    ("/dev/disk/by-id/nvme-Samsung_SSD_980_S64DNX0R123456", 1, "/dev/disk/by-id/nvme-Samsung_SSD_980_S64DNX0R123456-part1"),
    ("/dev/disk/by-path/pci-0000:00:04.0", 2, "/dev/disk/by-path/pci-0000:00:04.0-part2"),
])
def test_partition_path(disk, n, expected):
    assert partition_path(disk, n) == expected
    assert is_link_path(disk) == disk.startswith("/dev/disk/")


def test_partition_path_validates_number_for_links_too():
    with pytest.raises(BlockDeviceError):
        partition_path("/dev/disk/by-id/virtio-x", 0)


@pytest.fixture
def fake_sysfs(tmp_path):
    """A /sys shaped like the kernel's: class/block/NAME links into devices/, partitions below their disk."""
    root = tmp_path / "sys"
    cls = root / "class" / "block"
    cls.mkdir(parents=True)

    def disk(name, logical, physical, minimum, optimal, offset, size512, parts=(), ro=0):
        d = root / "devices" / "virtual" / "block" / name
        (d / "queue").mkdir(parents=True)
        for key, value in (("logical_block_size", logical), ("physical_block_size", physical),
                           ("minimum_io_size", minimum), ("optimal_io_size", optimal)):
            (d / "queue" / key).write_text("%d\n" % value)
        (d / "alignment_offset").write_text("%d\n" % offset)
        (d / "size").write_text("%d\n" % size512)
        (d / "ro").write_text("%d\n" % ro)
        os.symlink(str(d), str(cls / name))
        for number, (pname, start, size) in enumerate(parts, 1):
            p = d / pname
            p.mkdir()
            (p / "partition").write_text("%d\n" % number)
            (p / "start").write_text("%d\n" % start)
            (p / "size").write_text("%d\n" % size)
            os.symlink(str(p), str(cls / pname))
    disk("vda", 512, 4096, 4096, 786432, 3584, 25165824, [("vda1", 2048, 1048576), ("vda2", 1050624, 2097152)])
    disk("loop3", 4096, 4096, 4096, 0, 0, 8388608, ro=1)
    return str(root)


def test_read_topology(fake_sysfs):
    t = read_topology("vda", fake_sysfs)
    assert t == (512, 4096, 4096, 786432, 3584, 12 << 30)
    t4 = read_topology("loop3", fake_sysfs)
    assert (t4.logical, t4.size, t4.sectors) == (4096, 4 << 30, 1 << 20)  # sysfs size counts 512-byte units


def test_partition_detection(fake_sysfs):
    assert whole_disk_of("vda1", fake_sysfs) == "vda"
    assert whole_disk_of("vda", fake_sysfs) is None
    assert kernel_partitions("vda", fake_sysfs) == {"vda1": (2048, 1048576), "vda2": (1050624, 2097152)}
    assert kernel_partitions("loop3", fake_sysfs) == {}
    assert is_read_only("loop3", fake_sysfs) and not is_read_only("vda", fake_sysfs)


def test_lsblk_in_use_captured():
    nodes = parse_lsblk_json(fixture("inuse-512.lsblk.json"))
    swaps = parse_proc_swaps(fixture("inuse-512.proc-swaps.txt"))
    disk = nodes[0]["name"]
    reasons = in_use(nodes, swaps, realpath=lambda p: p)
    assert reasons == ["/dev/%sp2 is active swap" % disk, "/dev/%sp3 is mounted on %s" % (
        disk, nodes[0]["children"][2]["mountpoint"])]


@pytest.mark.parametrize("case", ["ours-512", "ours-4096", "empty-512", "mbr-512", "other-512"])
def test_lsblk_not_in_use_captured(case):
    nodes = parse_lsblk_json(fixture(case + ".lsblk.json"))
    assert nodes and in_use(nodes, [], realpath=lambda p: p) == []


def test_lsblk_topology_columns_captured():
    node = parse_lsblk_json(fixture("ours-4096.lsblk.json"))[0]
    assert (node["log-sec"], node["phy-sec"], node["min-io"], node["opt-io"], node["alignment"]) == (4096, 4096, 4096, 0, 0)
    assert [c["type"] for c in node["children"]] == ["part", "part", "part"]


def test_swap_only_in_proc_swaps_and_holders():
    """lsblk before 2.37 shows no [SWAP] without udev; a dm-crypt mapping is a child of type crypt."""
    nodes = [{"name": "vda", "path": "/dev/vda", "type": "disk", "mountpoint": None, "children": [
        {"name": "vda2", "path": "/dev/vda2", "type": "part", "mountpoint": None},
        {"name": "vda3", "path": "/dev/vda3", "type": "part", "mountpoint": None, "children": [
            {"name": "crypted", "path": "/dev/mapper/crypted", "type": "crypt", "mountpoint": None}]}]}]
    reasons = in_use(nodes, ["/dev/vda2"], realpath=lambda p: p)
    assert reasons == ["/dev/vda2 is active swap (/proc/swaps)", "/dev/mapper/crypted (crypt) is built on top of it"]


def test_parse_proc_swaps_escapes():
    text = "Filename\tType\tSize\tUsed\tPriority\n/swap\\040file file 1024 0 -2\n"
    assert parse_proc_swaps(text) == ["/swap file"]
    assert parse_proc_swaps(fixture("inuse-512.proc-swaps.txt"))[0].startswith("/dev/loop")


def test_parse_lsblk_garbage():
    with pytest.raises(BlockDeviceError):
        parse_lsblk_json("lsblk: unknown column")
    assert parse_lsblk_json(json.dumps({"blockdevices": []})) == []


def test_parse_blkid_captured():
    whole = parse_blkid_export(fixture("wholefs-512.blkid.txt"))
    assert (whole["TYPE"], whole["USAGE"], whole["LABEL"]) == ("ext4", "filesystem", "whole")
    gpt = parse_blkid_export(fixture("ours-512.blkid.txt"))
    assert gpt["PTTYPE"] == "gpt" and "TYPE" not in gpt
    part = parse_blkid_export(fixture("ours-4096.blkid-p3.txt"))
    assert part["PART_ENTRY_NAME"] == "nix" and part["PART_ENTRY_NUMBER"] == "3"
    assert part["PART_ENTRY_UUID"] == part["PART_ENTRY_UUID"].lower()
    assert parse_blkid_export(fixture("empty-512.blkid.txt")) == {}
