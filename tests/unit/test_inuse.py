# SPDX-License-Identifier: GPL-3.0-or-later
"""The in-use detector on fake sysfs trees: holders (dm, md) followed recursively, loop devices backed by a disk, a
partition or a file on one of them, mounts by any path, active swap, image files, the running system's disk."""
import os
import stat

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._inuse import (
    UsageProbe, device_users, file_users, loop_backings, read_loop_status, stack_on,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._mountinfo import parse_mountinfo


class St(object):
    """What os.stat says: a block node (rdev) or a regular file (dev, ino)."""

    def __init__(self, rdev=None, dev=(0, 1), ino=1):
        self.st_mode = (stat.S_IFBLK if rdev else stat.S_IFREG) | 0o600
        self.st_rdev = os.makedev(*rdev) if rdev else 0
        self.st_dev = os.makedev(*dev)
        self.st_ino = ino


class Tree(object):
    """A fake /sys (class/block, dev/block) plus the stat answers for the paths the tests name."""

    def __init__(self, root):
        self.root = root
        self.cls = root / "class" / "block"
        self.devs = root / "dev" / "block"
        self.cls.mkdir(parents=True)
        self.devs.mkdir(parents=True)
        self.stats = {}

    def node(self, name, devno, parent=None, dm=None):
        base = self.root / "devices" / "virtual" / "block"
        d = (base / parent / name) if parent else (base / name)
        d.mkdir(parents=True)
        (d / "dev").write_text("%d:%d\n" % devno)
        (d / "holders").mkdir()
        if parent:
            (d / "partition").write_text("1\n")
        if dm:
            (d / "dm").mkdir()
            (d / "dm" / "name").write_text(dm + "\n")
        os.symlink(str(d), str(self.cls / name))
        os.symlink(str(d), str(self.devs / ("%d:%d" % devno)))
        self.stats["/dev/" + name] = St(rdev=devno)
        return d

    def hold(self, below, above):
        (self.cls / below / "holders" / above).write_text("")

    def loop(self, name, devno, backing, backing_stat=None):
        d = self.node(name, devno)
        (d / "loop").mkdir()
        (d / "loop" / "backing_file").write_text(backing + "\n")
        if backing_stat is not None:
            self.stats[backing] = backing_stat
        return d

    def stat(self, path):
        if path in self.stats:
            return self.stats[path]
        raise OSError(2, "No such file or directory", path)

    @property
    def sysfs(self):
        return str(self.root)


@pytest.fixture
def tree(tmp_path):
    """vda (254:0) with vda1..vda3, vdb (254:16) that nothing uses."""
    t = Tree(tmp_path / "sys")
    t.node("vda", (254, 0))
    for n in (1, 2, 3):
        t.node("vda%d" % n, (254, n), parent="vda")
    t.node("vdb", (254, 16))
    return t


def mi(*lines):
    return parse_mountinfo("".join("%d 1 %s\n" % (i + 10, line) for i, line in enumerate(lines)))


ROOT = "0:30 / / rw - tmpfs tmpfs rw"


def users(t, name="vda", mounts=(), swaps=()):
    return device_users(name, list(mounts), list(swaps), t.sysfs, t.stat)


def test_nothing_uses_it(tree):
    assert users(tree, mounts=mi(ROOT)) == []
    assert users(tree, "vdb") == []


def test_a_partition_mounted_under_any_name(tree):
    """mountinfo's source is whatever path mount was given; major:minor is what counts."""
    mounts = mi(ROOT, "254:2 / /mnt/data rw - ext4 /dev/disk/by-label/data rw")
    assert users(tree, mounts=mounts) == ["/dev/vda2 is mounted on /mnt/data"]
    assert users(tree, "vdb", mounts=mounts) == []


def test_a_mount_with_an_anonymous_devno_is_matched_by_its_source(tree):
    """btrfs reports an anonymous 0:N in mountinfo; its source node is the partition."""
    tree.stats["/dev/disk/by-uuid/b"] = St(rdev=(254, 3))
    mounts = mi(ROOT, "0:45 / /mnt/b rw - btrfs /dev/disk/by-uuid/b rw")
    assert users(tree, mounts=mounts) == ["/dev/vda3 is mounted on /mnt/b"]


def test_loop_backed_by_the_disk_and_mounted_read_only(tree):
    """The issue's case: a loop device on the whole disk, mounted ro; lsblk lists nothing below the disk."""
    tree.loop("loop4", (7, 4), "/dev/vda", St(rdev=(254, 0)))
    mounts = mi(ROOT, "7:4 / /mnt/ro ro - ext4 /dev/loop4 ro")
    assert users(tree, mounts=mounts) == [
        "/dev/loop4 (a loop device backed by /dev/vda) is built on it",
        "/dev/loop4 (a loop device backed by /dev/vda) is mounted on /mnt/ro"]


def test_loop_backed_by_a_partition_through_another_node_name(tree):
    """The backing file is compared by device number: /dev/disk/by-partlabel/x is vda1."""
    tree.loop("loop0", (7, 0), "/dev/disk/by-partlabel/x", St(rdev=(254, 1)))
    assert users(tree) == ["/dev/loop0 (a loop device backed by /dev/disk/by-partlabel/x) is built on it"]
    assert users(tree, "vdb") == []


def test_loop_on_a_file_of_a_partition_file_system_lazily_unmounted(tree):
    """umount -l leaves no mount, but the loop device still keeps vda2's file system busy."""
    tree.loop("loop1", (7, 1), "/old/disk.img", St(dev=(254, 2), ino=77))
    assert users(tree) == ["/dev/loop1 (a loop device backed by /old/disk.img, a file on /dev/vda2) is built on it"]


def test_dm_holders_are_followed_recursively(tree):
    """LUKS on vda3, LVM on the LUKS mapping, the logical volume mounted: every layer is named."""
    tree.node("dm-0", (253, 0), dm="crypted")
    tree.node("dm-1", (253, 1), dm="vg-nix")
    tree.hold("vda3", "dm-0")
    tree.hold("dm-0", "dm-1")
    mounts = mi(ROOT, "253:1 / /mnt/nix rw - ext4 /dev/mapper/vg-nix rw")
    assert users(tree, mounts=mounts) == [
        "/dev/mapper/crypted (/dev/dm-0) (built on /dev/vda3) is built on it",
        "/dev/mapper/vg-nix (/dev/dm-1) (built on /dev/dm-0) is built on it",
        "/dev/mapper/vg-nix (/dev/dm-1) (built on /dev/dm-0) is mounted on /mnt/nix"]


def test_an_open_luks_mapping_alone_is_use(tree):
    tree.node("dm-0", (253, 0), dm="crypted")
    tree.hold("vda3", "dm-0")
    assert users(tree) == ["/dev/mapper/crypted (/dev/dm-0) (built on /dev/vda3) is built on it"]
    assert users(tree, "vda3") == users(tree)
    assert users(tree, "vda2") == []


def test_md_holder_of_the_whole_disk_and_a_loop_on_the_array(tree):
    tree.node("md0", (9, 0))
    tree.hold("vdb", "md0")
    tree.loop("loop2", (7, 2), "/dev/md0", St(rdev=(9, 0)))
    mounts = mi(ROOT, "7:2 / /srv rw - xfs /dev/loop2 rw")
    assert users(tree, "vdb", mounts=mounts) == [
        "/dev/md0 (built on /dev/vdb) is built on it",
        "/dev/loop2 (a loop device backed by /dev/md0) is built on it",
        "/dev/loop2 (a loop device backed by /dev/md0) is mounted on /srv"]


def test_active_swap_by_any_path_and_a_swap_file_on_a_partition(tree):
    tree.stats["/dev/disk/by-partuuid/s"] = St(rdev=(254, 2))
    assert users(tree, swaps=["/dev/disk/by-partuuid/s"]) == ["/dev/vda2 is active swap"]
    tree.stats["/swapfile"] = St(dev=(254, 3), ino=12)
    assert users(tree, swaps=["/swapfile"]) == ["the active swap file /swapfile lives on /dev/vda3"]
    assert users(tree, "vdb", swaps=["/dev/disk/by-partuuid/s", "/swapfile"]) == []


def test_a_holder_cycle_in_a_broken_tree_ends(tree):
    tree.node("dm-0", (253, 0))
    tree.node("dm-1", (253, 1))
    tree.hold("vda1", "dm-0")
    tree.hold("dm-0", "dm-1")
    tree.hold("dm-1", "dm-0")
    assert len(stack_on(["vda"], tree.sysfs, tree.stat).order) == 6


def test_loops_whose_backing_file_is_gone_are_listed_but_match_nothing(tree):
    tree.loop("loop3", (7, 3), "/gone.img (deleted)")
    assert loop_backings(tree.sysfs, tree.stat) == [("loop3", "/gone.img", None)]
    assert users(tree) == []


def test_an_image_file_attached_to_a_loop_device(tree):
    tree.stats["/var/img/disk.img"] = St(dev=(0, 40), ino=5)
    assert file_users("/var/img/disk.img", [], [], tree.sysfs, tree.stat) == []
    tree.loop("loop5", (7, 5), "/var/img/disk.img", St(dev=(0, 40), ino=5))
    mounts = mi(ROOT, "7:5 / /mnt/img rw - ext4 /dev/loop5 rw")
    assert file_users("/var/img/disk.img", mounts, [], tree.sysfs, tree.stat) == [
        "/dev/loop5 is a loop device attached to it", "/dev/loop5 is mounted on /mnt/img"]
    tree.stats["/var/img/other.img"] = St(dev=(0, 40), ino=6)
    assert file_users("/var/img/other.img", mounts, ["/var/img/other.img"], tree.sysfs, tree.stat) == [
        "it is active swap"]


def test_usage_probe_reads_proc_and_names_the_system_disk(tree, tmp_path):
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text("1 0 0:30 / / rw - tmpfs tmpfs rw\n"
                                             "2 1 254:1 / /iso ro - iso9660 /dev/vda1 ro\n")
    (proc / "swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n/dev/vda2 partition 1024 0 -2\n")
    (proc / "cmdline").write_text("root=LABEL=nixos-minimal\n")
    probe = UsageProbe(sysfs=tree.sysfs, proc=str(proc), dev=str(tmp_path / "dev"), stat=tree.stat)
    assert probe.users("/dev/vda") == ["/dev/vda1 is mounted on /iso", "/dev/vda2 is active swap"]
    assert probe.users("/dev/vdb") == []
    assert probe.system_disk("/dev/vda3") == "/iso is mounted from it (/dev/vda1)"
    assert probe.system_disk("/dev/vdb") is None
    assert probe.users("/nonexistent") == [] and probe.system_disk("/nonexistent") is None


def test_a_partition_is_used_by_what_is_built_on_its_whole_disk_not_by_its_siblings(tree):
    """A loop device or an array on the whole disk covers every partition; a mounted sibling does not."""
    mounts = mi(ROOT, "254:1 / /boot rw - vfat /dev/vda1 rw")
    assert users(tree, "vda3", mounts=mounts) == []
    tree.loop("loop6", (7, 6), "/dev/vda", St(rdev=(254, 0)))
    mounts = mi(ROOT, "254:1 / /boot rw - vfat /dev/vda1 rw", "7:6 / /mnt/whole ro - ext4 /dev/loop6 ro")
    assert users(tree, "vda3", mounts=mounts) == [
        "/dev/loop6 is built on its whole disk /dev/vda", "/dev/loop6 is mounted on /mnt/whole"]


def test_the_kernel_s_device_numbers_of_a_backing_file_beat_its_path(tree):
    """After umount -l the backing file's path leads nowhere (or to another file): LOOP_GET_STATUS64's
    lo_device/lo_inode still say where the file is."""
    tree.loop("loop1", (7, 1), "/lazy/inner.img")
    assert users(tree) == []
    held = {"loop1": (os.makedev(254, 3), 12)}
    assert device_users("vda", [], [], tree.sysfs, tree.stat, held.get) == [
        "/dev/loop1 (a loop device backed by /lazy/inner.img, a file on /dev/vda3) is built on it"]
    tree.stats["/lazy/inner.img"] = St(dev=(0, 99), ino=1)  # the path now names another file
    assert device_users("vda", [], [], tree.sysfs, tree.stat, held.get) != []


def test_read_loop_status_of_what_is_no_loop_device(tmp_path):
    assert read_loop_status(str(tmp_path / "missing")) is None
    (tmp_path / "plain").write_text("x")
    assert read_loop_status(str(tmp_path / "plain")) is None
