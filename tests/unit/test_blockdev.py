# SPDX-License-Identifier: GPL-3.0-or-later
"""Partition naming, sysfs topology, and the lsblk / blkid / /proc/swaps parsers on captured output."""
import json
import os
import stat

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import (
    BlockDeviceError, cmdline_root_path, device_identity, disks_under, identity_mismatches, is_link_path,
    is_read_only, kernel_partitions, parse_blkid_export, parse_lsblk_identity, parse_lsblk_json, parse_proc_swaps,
    partition_name, partition_path, read_topology, system_disks, udev_settle_argv, whole_disk_of,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._mountinfo import parse_mountinfo

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


def test_lsblk_topology_columns_captured():
    node = parse_lsblk_json(fixture("ours-4096.lsblk.json"))[0]
    assert (node["log-sec"], node["phy-sec"], node["min-io"], node["opt-io"], node["alignment"]) == (4096, 4096, 4096, 0, 0)
    assert [c["type"] for c in node["children"]] == ["part", "part", "part"]


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


# -- identity pins ----------------------------------------------------------------------------------------------
def test_lsblk_identity_guest_capture():
    ident = parse_lsblk_identity(fixture("guest-virtio.lsblk-identity.json"))
    assert ident == dict(serial="root", model=None, wwn=None)  # the first disk of the capture: the guest's /dev/vda


def test_lsblk_identity_squeezes_padding():
    text = json.dumps({"blockdevices": [{"path": "/dev/sda", "serial": "  WD-WX11A1 ", "model": "WDC  WD10EZEX-00B ",
                                         "wwn": ""}]})
    assert parse_lsblk_identity(text) == dict(serial="WD-WX11A1", model="WDC WD10EZEX-00B", wwn=None)


FOUND = dict(serial="nixdisk", model=None, wwn="0x5000c500a1b2c3d4", size=6 << 30, path="/dev/vdb", by_id="/dev/vdb")


def test_identity_matches():
    assert identity_mismatches({}, FOUND) == []
    assert identity_mismatches(dict(serial=" nixdisk ", size=6 << 30, wwn="0x5000c500a1b2c3d4", by_id="/l"),
                               FOUND) == []


def test_identity_mismatches_name_each_difference():
    wrong = identity_mismatches(dict(serial="other", model="Samsung", size=1 << 30, by_id="/dev/disk/by-id/x"),
                                dict(FOUND, by_id="/dev/vdc"))
    assert wrong == ["serial is 'nixdisk', not 'other'", "model is None, not 'Samsung'",
                     "size is 6442450944 bytes, not 1073741824", "/dev/disk/by-id/x points to /dev/vdc, not to this disk"]
    assert identity_mismatches(dict(by_id="/dev/disk/by-id/gone"), dict(FOUND, by_id=None)) == [
        "/dev/disk/by-id/gone does not exist (the pinned disk is not attached?)"]


# -- the running system's own disk -------------------------------------------------------------------------------
@pytest.mark.parametrize("cmdline, expected", [
    ("root=LABEL=root rw console=ttyS0", "/dev/disk/by-label/root"),
    ("init=/nix/store/x-nixos/init root=LABEL=nixos-minimal-24.05-x86_64 boot.shell_on_fail",
     "/dev/disk/by-label/nixos-minimal-24.05-x86_64"),
    ("root=LABEL=My\\x20Stick", "/dev/disk/by-label/My\\x20Stick"),
    ("root=UUID=0a1b-2c3d ro", "/dev/disk/by-uuid/0a1b-2c3d"),
    ("root=PARTUUID=ABCDEF01-02", "/dev/disk/by-partuuid/abcdef01-02"),
    ("root=PARTLABEL=nix", "/dev/disk/by-partlabel/nix"),
    ("root=/dev/sda2 root=/dev/vda1", "/dev/vda1"),  # the kernel uses the last one
    ("root=/dev/nfs nfsroot=10.0.0.1:/srv", None),
    ("root=tmpfs", None),
    ("quiet splash", None),
])
def test_cmdline_root_path(cmdline, expected):
    assert cmdline_root_path(cmdline) == expected


def test_cmdline_root_of_the_guest_capture():
    assert cmdline_root_path(fixture("guest.proc-cmdline.txt")) == "/dev/disk/by-label/root"


class FakeStat(object):
    def __init__(self, major, minor):
        self.st_dev = os.makedev(major, minor)


@pytest.fixture
def stacked_sysfs(tmp_path):
    """vda (root, 254:0), vdb with a partition vdb1 (254:17) holding the ISO file of loop0 (7:0), dm-0 (253:0) on
    vdc2 (254:34), and vdd (254:48) that nothing uses."""
    root = tmp_path / "sys"
    cls, dev = root / "class" / "block", root / "dev" / "block"
    cls.mkdir(parents=True)
    dev.mkdir(parents=True)

    def node(name, devno, parent=None):
        d = (root / "devices" / "virtual" / "block" / parent / name) if parent else (
            root / "devices" / "virtual" / "block" / name)
        d.mkdir(parents=True)
        if parent:
            (d / "partition").write_text("1\n")
        os.symlink(str(d), str(cls / name))
        os.symlink(str(d), str(dev / devno))
        return d
    node("vda", "254:0")
    node("vdb", "254:16")
    node("vdb1", "254:17", parent="vdb")
    node("vdc", "254:32")
    node("vdc2", "254:34", parent="vdc")
    node("vdd", "254:48")
    loop = node("loop0", "7:0")
    (loop / "loop").mkdir()
    (loop / "loop" / "backing_file").write_text("/iso/nix-store.squashfs\n")
    dm = node("dm-0", "253:0")
    (dm / "slaves").mkdir()
    (dm / "slaves" / "vdc2").write_text("")
    return str(root)


def fake_stat(path):
    if path == "/iso/nix-store.squashfs":
        return FakeStat(254, 17)
    raise OSError(2, "No such file", path)


def test_disks_under_follows_partitions_loops_and_dm(stacked_sysfs):
    assert disks_under("vda", stacked_sysfs, fake_stat) == {"vda"}
    assert disks_under("vdb1", stacked_sysfs, fake_stat) == {"vdb"}
    assert disks_under("loop0", stacked_sysfs, fake_stat) == {"vdb"}
    assert disks_under("dm-0", stacked_sysfs, fake_stat) == {"vdc"}


LIVE_MOUNTINFO = """\
1 0 0:30 / / rw,relatime - tmpfs tmpfs rw,mode=755
2 1 254:17 / /iso ro,relatime - iso9660 /dev/vdb1 ro
3 1 7:0 / /nix/.ro-store ro,relatime - squashfs /dev/loop0 ro
4 1 253:0 / /nix/.rw-store rw,relatime - ext4 /dev/mapper/persist rw
5 1 254:48 / /mnt/nix rw,relatime - ext4 /dev/vdd rw
"""


def test_system_disks_of_a_live_iso(stacked_sysfs):
    found = system_disks(parse_mountinfo(LIVE_MOUNTINFO), "root=LABEL=nixos-minimal", stacked_sysfs, stat=fake_stat)
    assert sorted(found) == ["vdb", "vdc"]  # / is a tmpfs; the install target under /mnt is not the system's
    assert found["vdb"] == "/iso is mounted from it (/dev/vdb1)"
    assert found["vdc"] == "/nix/.rw-store is mounted from it (/dev/mapper/persist)"


def test_system_disks_of_a_stick_copied_to_ram(stacked_sysfs, tmp_path):
    """copytoram: nothing is mounted from the stick, but root= still names it."""
    devdir = tmp_path / "dev"
    (devdir / "disk" / "by-label").mkdir(parents=True)
    (devdir / "vdb1").write_text("")
    os.symlink("../../vdb1", str(devdir / "disk" / "by-label" / "nixos-minimal"))
    found = system_disks([], "root=LABEL=nixos-minimal copytoram", stacked_sysfs, dev=str(devdir), stat=fake_stat)
    assert found == {"vdb": "the kernel command line's root= names it (%s/disk/by-label/nixos-minimal)" % devdir}


def test_system_disks_of_the_guest_capture(stacked_sysfs):
    found = system_disks(parse_mountinfo(fixture("guest.mountinfo.txt")), "", stacked_sysfs, stat=fake_stat)
    assert found == {"vda": "/ is mounted from it (/dev/vda)"}


class _BlockStat:
    """What os.stat says of a block device node (no real one is needed)."""
    st_mode = stat.S_IFBLK | 0o660
    st_rdev = os.makedev(253, 3)


def test_device_identity_of_a_block_device_is_its_number():
    assert device_identity("/dev/mapper/crypted", stat=lambda path: _BlockStat) == (253, 3)
    assert device_identity("/dev/dm-3", files=False, stat=lambda path: _BlockStat) == (253, 3)


def test_device_identity_of_a_regular_file_is_its_real_path_only_when_files(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"")
    (tmp_path / "link").symlink_to(image)
    assert device_identity(str(tmp_path / "link")) == str(image)
    assert device_identity(str(tmp_path / "link"), files=False) is None


def test_device_identity_of_anything_else_or_nothing_is_none(tmp_path):
    assert device_identity(str(tmp_path)) is None            # a directory
    assert device_identity("/dev/null") is None              # a character device
    assert device_identity(str(tmp_path / "absent")) is None


class _Finder:
    """The one CommandRunner method udev_settle_argv uses: find() a program on the target's PATH (or not)."""

    def __init__(self, found):
        self.found = found

    def find(self, name, required=True):
        return self.found.get(name)


def test_udev_settle_only_where_udevd_runs_and_udevadm_exists(tmp_path):
    """udevd's control socket and udevadm are both needed; without either (a container, this test host) nothing is
    waited for, and no command is listed."""
    control = tmp_path / "control"
    udevadm = _Finder({"udevadm": "/usr/bin/udevadm"})
    assert udev_settle_argv(udevadm, control=str(control)) is None
    control.write_bytes(b"")
    assert udev_settle_argv(udevadm, control=str(control)) == ["/usr/bin/udevadm", "settle"]
    assert udev_settle_argv(_Finder({}), control=str(control)) is None
