# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Is a block device (or an image file) in use? The one answer every module that writes a device asks for.

A device is in use when anything is built on it or on one of its partitions, however it is named:

  * a holder the kernel lists in ``/sys/class/block/NAME/holders`` (device-mapper: dm-crypt/LUKS, LVM,
    dm-linear...; MD RAID), followed recursively;
  * a loop device whose backing file is the device or one of its partitions (compared by device number, so
    any path to the node counts), or is a file on a file system of it;
  * a mount (``/proc/self/mountinfo``) of the device, a partition or anything stacked on them, whatever path
    the mount names (compared by major:minor, and by the device number of the mount's source);
  * active swap (``/proc/swaps``) on any of them, or a swap file on one of their file systems.

For an image file, a loop device attached to it is in use of the file. The running system's own disks
(:func:`._blockdev.system_disks`) are a separate answer, :meth:`UsageProbe.system_disk`, since callers
report them differently.

The functions take a ``sysfs`` root and a ``stat`` so the tests can give them a directory tree instead of
``/sys``; nothing here runs a command.
"""

from __future__ import annotations

import fcntl
import os
import struct
from stat import S_ISBLK, S_ISREG

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import (
    name_of_devno, parse_proc_swaps, sysfs_dir, system_disks, whole_disk_of,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._mountinfo import parse_mountinfo

#: How deep holders, partitions and loops are followed (a cycle cannot happen in the kernel; a fake tree may).
MAX_DEPTH = 32


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (IOError, OSError):
        return None


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def devno_of(name, sysfs="/sys"):
    """(major, minor) of the block device ``name`` from sysfs ``dev``, None when unknown."""
    text = _read(os.path.join(sysfs_dir(name, sysfs), "dev"))
    try:
        major, minor = text.split(":")
        return (int(major), int(minor))
    except (AttributeError, ValueError):
        return None


def display_name(name, sysfs="/sys"):
    """``/dev/mapper/NAME (/dev/dm-N)`` for a device-mapper device (sysfs ``dm/name``), else ``/dev/NAME``."""
    dm = _read(os.path.join(sysfs_dir(name, sysfs), "dm", "name"))
    return "/dev/mapper/%s (/dev/%s)" % (dm, name) if dm else "/dev/%s" % name


def partitions_of(name, sysfs="/sys"):
    """Kernel names of the partitions of ``name`` (entries of its sysfs directory that have a ``partition``)."""
    base = sysfs_dir(name, sysfs)
    return [e for e in _listdir(base) if os.path.exists(os.path.join(base, e, "partition"))]


def holders_of(name, sysfs="/sys"):
    """Kernel names in ``/sys/class/block/NAME/holders`` (dm, md, bcache... built directly on it)."""
    return _listdir(os.path.join(sysfs_dir(name, sysfs), "holders"))


def _backing_file(name, sysfs):
    text = _read(os.path.join(sysfs_dir(name, sysfs), "loop", "backing_file"))
    if text and text.endswith(" (deleted)"):
        return text[:-len(" (deleted)")]
    return text or None


#: ioctl LOOP_GET_STATUS64 and struct loop_info64 (linux/loop.h): lo_device and lo_inode come first.
LOOP_GET_STATUS64 = 0x4C05
_LOOP_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")


def read_loop_status(path):
    """(st_dev, st_ino) of the backing file of the loop device node ``path``, as the kernel holds it (what
    ``losetup -O BACK-MAJ:MIN,BACK-INO`` shows), or None. Unlike sysfs ``backing_file``, a path, this still
    names the file when its path no longer leads to it (a lazily unmounted file system)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        info = _LOOP_INFO64.unpack(fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size)))
    except (OSError, IOError, struct.error):
        return None
    finally:
        os.close(fd)
    return (info[0], info[1])


def loop_backings(sysfs="/sys", stat=os.stat, status=None):
    """[(loop name, backing file, what the file is)] for every attached loop device. What it is: ``("blk",
    (major, minor))`` for a device node, ``("file", (st_dev, st_ino), (major, minor) of the file system)`` for
    a regular file, None when it cannot be told. ``status(name)``: (st_dev, st_ino) of the backing file as the
    kernel holds it (:func:`read_loop_status` of ``/dev/NAME``), believed over the path when they differ."""
    found = []
    for name in _listdir(os.path.join(sysfs, "class", "block")):
        backing = _backing_file(name, sysfs)
        if not backing:
            continue
        held = status(name) if status else None
        try:
            st = stat(backing)
        except OSError:
            st = None
        if st is not None and (held is None or held == (st.st_dev, st.st_ino)):
            if S_ISBLK(st.st_mode):
                found.append((name, backing, ("blk", (os.major(st.st_rdev), os.minor(st.st_rdev)))))
                continue
            held = (st.st_dev, st.st_ino)
        if held is None:
            found.append((name, backing, None))
        else:
            found.append((name, backing, ("file", held, (os.major(held[0]), os.minor(held[0])))))
    return found


class Stack(object):
    """A device and everything built on it: ``members`` maps each kernel name to how it was reached (None for
    the device itself), ``devnos`` maps (major, minor) to the kernel name."""

    def __init__(self):
        self.members = {}
        self.order = []
        self.devnos = {}

    def add(self, name, how, sysfs):
        if name in self.members:
            return False
        self.members[name] = how
        self.order.append(name)
        devno = devno_of(name, sysfs)
        if devno is not None:
            self.devnos[devno] = name
        return True


def stack_on(names, sysfs="/sys", stat=os.stat, loops=None):
    """The :class:`Stack` of ``names`` (kernel names; for a whole disk its partitions come with it): partitions,
    holders (recursively) and loop devices backed by any member or by a file on a member's file system."""
    loops = loop_backings(sysfs, stat) if loops is None else loops
    stack = Stack()
    queue = []
    for name in names:
        if stack.add(name, None, sysfs):
            queue.append((name, 0))
    while queue:
        name, depth = queue.pop(0)
        if depth >= MAX_DEPTH:
            continue
        found = [(p, ("part", name)) for p in partitions_of(name, sysfs)]
        found += [(h, ("holder", name)) for h in holders_of(name, sysfs)]
        devno = devno_of(name, sysfs)
        for loop, backing, what in loops:
            if what is None or devno is None:
                continue
            if what[0] == "blk" and what[1] == devno:
                found.append((loop, ("loop", name, backing)))
            elif what[0] == "file" and what[2] == devno:
                found.append((loop, ("loopfile", name, backing)))
        for child, how in found:
            if stack.add(child, how, sysfs):
                queue.append((child, depth + 1))
    return stack


def _describe(name, stack, sysfs):
    """``/dev/loop5 (a loop device backed by /dev/loop4)``: a member of the stack and how it got there."""
    how = stack.members.get(name)
    label = display_name(name, sysfs)
    if how is None:
        return label
    if how[0] == "part":
        return label
    if how[0] == "holder":
        return "%s (built on /dev/%s)" % (label, how[1])
    if how[0] == "loop":
        return "%s (a loop device backed by %s)" % (label, how[2])
    return "%s (a loop device backed by %s, a file on /dev/%s)" % (label, how[2], how[1])


def _stat_devno(path, stat):
    """(major, minor) of a block device node, else None."""
    try:
        st = stat(path)
    except (OSError, TypeError, ValueError):
        return None
    if S_ISBLK(st.st_mode):
        return (os.major(st.st_rdev), os.minor(st.st_rdev))
    return None


def stack_users(stack, mounts, swaps, sysfs="/sys", stat=os.stat):
    """Sentences naming what uses the stack: devices built on it, mounts and swap on any member."""
    reasons = []
    for name in stack.order:
        how = stack.members[name]
        if how is not None and how[0] != "part":
            reasons.append("%s is built on it" % _describe(name, stack, sysfs))
    for mount in mounts:
        member = stack.devnos.get((mount.major, mount.minor))
        if member is None and mount.source.startswith("/"):
            member = stack.devnos.get(_stat_devno(mount.source, stat))
        if member is not None:
            reasons.append("%s is mounted on %s" % (_describe(member, stack, sysfs), mount.target))
    for swap in swaps:
        member = stack.devnos.get(_stat_devno(swap, stat))
        if member is not None:
            reasons.append("%s is active swap" % _describe(member, stack, sysfs))
            continue
        try:
            st = stat(swap)
        except OSError:
            continue
        member = stack.devnos.get((os.major(st.st_dev), os.minor(st.st_dev))) if S_ISREG(st.st_mode) else None
        if member is not None:
            reasons.append("the active swap file %s lives on %s" % (swap, _describe(member, stack, sysfs)))
    seen = set()
    return [r for r in reasons if not (r in seen or seen.add(r))]


def file_users(path, mounts, swaps, sysfs="/sys", stat=os.stat, status=None):
    """Sentences naming what uses the regular file ``path`` (an image): loop devices attached to it, and what
    is built on those; active swap on the file itself."""
    try:
        st = stat(path)
    except OSError:
        return []
    key = (st.st_dev, st.st_ino)
    loops = loop_backings(sysfs, stat, status)
    attached = [name for name, _backing, what in loops if what and what[0] == "file" and what[1] == key]
    reasons = ["/dev/%s is a loop device attached to it" % name for name in attached]
    if attached:
        stack = stack_on(attached, sysfs, stat, loops)
        reasons += stack_users(stack, mounts, swaps, sysfs, stat)
    for swap in swaps:
        try:
            sw = stat(swap)
        except OSError:
            continue
        if S_ISREG(sw.st_mode) and (sw.st_dev, sw.st_ino) == key:
            reasons.append("it is active swap")
    return reasons


def device_users(name, mounts, swaps, sysfs="/sys", stat=os.stat, status=None):
    """Sentences naming what uses block device ``name`` (kernel name) or anything on it; empty when unused.

    For a partition, what is built on its whole disk counts too (a loop device or an MD array on the disk
    reads and writes the partition's sectors), but not what uses the other partitions."""
    loops = loop_backings(sysfs, stat, status)
    reasons = stack_users(stack_on([name], sysfs, stat, loops), mounts, swaps, sysfs, stat)
    disk = whole_disk_of(name, sysfs)
    if disk:
        devno = devno_of(disk, sysfs)
        over = holders_of(disk, sysfs) + [loop for loop, _backing, what in loops
                                          if what and what[0] == "blk" and what[1] == devno]
        if over:
            outer = stack_on(over, sysfs, stat, loops)
            reasons += ["%s is built on its whole disk /dev/%s" % (display_name(n, sysfs), disk) for n in over]
            reasons += stack_users(outer, mounts, swaps, sysfs, stat)
    return reasons


class UsageProbe(object):
    """Answers for paths on this machine, reading the live tables (mountinfo, swaps, command line) afresh for
    every question, so an answer is never older than the call."""

    def __init__(self, sysfs="/sys", proc="/proc", dev="/dev", stat=os.stat, realpath=os.path.realpath):
        self.sysfs, self.proc, self.dev = sysfs, proc, dev
        self.stat, self.realpath = stat, realpath

    def loop_status(self, name):
        return read_loop_status(os.path.join(self.dev, name))

    def _text(self, name):
        # newline="": only \n ends a line of a kernel table (see _mountinfo.lines); any bytes in a path are kept
        with open(os.path.join(self.proc, name), errors="surrogateescape", newline="") as f:
            return f.read()

    def mounts(self):
        return parse_mountinfo(self._text(os.path.join("self", "mountinfo")))

    def swaps(self):
        try:
            return parse_proc_swaps(self._text("swaps"))
        except (IOError, OSError):
            return []

    def kernel_name(self, path):
        """Kernel name of the block device at ``path`` (by device number), None for anything else."""
        devno = _stat_devno(path, self.stat)
        return name_of_devno(devno[0], devno[1], self.sysfs) if devno else None

    def users(self, path):
        """Why ``path`` (a block device or an image file) must not be written; empty when nothing uses it.
        Raises IOError/OSError when the mount table cannot be read."""
        mounts, swaps = self.mounts(), self.swaps()
        name = self.kernel_name(path)
        if name is not None:
            return device_users(name, mounts, swaps, self.sysfs, self.stat, self.loop_status)
        return file_users(path, mounts, swaps, self.sysfs, self.stat, self.loop_status)

    def system_disk(self, path):
        """Why the disk holding ``path`` (the device itself, or the disk of a partition) belongs to the running
        system, None when it does not. Raises IOError/OSError when the tables cannot be read."""
        name = self.kernel_name(path)
        if name is None:
            return None
        found = system_disks(self.mounts(), self._text("cmdline"), self.sysfs, self.dev, self.stat, self.realpath)
        disk = whole_disk_of(name, self.sysfs) or name
        return found.get(disk)
