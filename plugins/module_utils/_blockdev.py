# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Block devices: kernel partition naming, sysfs topology, and what ``lsblk``/``blkid``/``/proc/swaps`` say.

Parsers take text, sysfs readers take a ``sysfs`` root (``/sys`` on a real system, a directory
tree in the tests); nothing here runs a command.
"""

from __future__ import annotations

import json
import os

from ansible_collections.impermanent.nixos.plugins.module_utils._alignment import Topology

#: udev names partitions of a ``by-id``/``by-path`` link ``<link>-part<N>``.
PART_SUFFIX_LINK_DIRS = ("/dev/disk/by-id/", "/dev/disk/by-path/")


class BlockDeviceError(ValueError):
    """A device that is not what the caller needs; the message names it and says what to do."""


def partition_name(disk_name, number):
    """Kernel name of partition ``number`` of ``disk_name``: vda -> vda1, nvme0n1 -> nvme0n1p1.

    The kernel's rule (block/partitions/core.c): a disk name ending in a digit gets a ``p``
    separator (nvme0n1p1, mmcblk0p1, loop0p1, md0p1, nbd0p1), others none (sda1, vda1, xvda1).
    """
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise BlockDeviceError("partition number must be an integer >= 1, got %r" % (number,))
    disk_name = str(disk_name)
    if not disk_name:
        raise BlockDeviceError("disk name is empty")
    sep = "p" if disk_name[-1].isdigit() else ""
    return "%s%s%d" % (disk_name, sep, number)


def is_link_path(path):
    """True for udev ``by-id``/``by-path`` links, whose partitions are named ``<link>-partN``."""
    return any(str(path).startswith(d) for d in PART_SUFFIX_LINK_DIRS)


def partition_path(disk, number):
    """Path of partition ``number`` of ``disk``.

    ``/dev/vda`` -> ``/dev/vda1``, ``/dev/nvme0n1`` -> ``/dev/nvme0n1p1``,
    ``/dev/disk/by-id/virtio-X`` -> ``/dev/disk/by-id/virtio-X-part1`` (udev's naming).
    """
    disk = str(disk).rstrip("/")
    if is_link_path(disk):
        partition_name("x", number)  # validates number
        return "%s-part%d" % (disk, number)
    head, tail = os.path.split(disk)
    return os.path.join(head, partition_name(tail, number))


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except (IOError, OSError):
        return default


def _read_int(path, default=0):
    text = _read(path)
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def sysfs_dir(name, sysfs="/sys"):
    return os.path.join(sysfs, "class", "block", name)


def whole_disk_of(name, sysfs="/sys"):
    """For a partition ``name`` the kernel name of its disk, else None."""
    base = sysfs_dir(name, sysfs)
    if not os.path.exists(os.path.join(base, "partition")):
        return None
    return os.path.basename(os.path.dirname(os.path.realpath(base)))


def read_topology(name, sysfs="/sys"):
    """Topology of block device ``name`` from sysfs (the same values libblkid gets by ioctl)."""
    base = sysfs_dir(name, sysfs)
    queue = os.path.join(base, "queue")
    logical = _read_int(os.path.join(queue, "logical_block_size"), 512) or 512
    return Topology(
        logical=logical,
        physical=_read_int(os.path.join(queue, "physical_block_size"), logical) or logical,
        minimum_io=_read_int(os.path.join(queue, "minimum_io_size"), 0),
        optimal_io=_read_int(os.path.join(queue, "optimal_io_size"), 0),
        alignment_offset=_read_int(os.path.join(base, "alignment_offset"), 0),
        # sysfs "size" is always in 512-byte units, whatever the logical sector size.
        size=_read_int(os.path.join(base, "size"), 0) * 512,
    )


def is_read_only(name, sysfs="/sys"):
    return _read(os.path.join(sysfs_dir(name, sysfs), "ro")) == "1"


def kernel_partitions(name, sysfs="/sys"):
    """{partition kernel name: (start, size)} in 512-byte units, as the kernel currently sees them."""
    base = sysfs_dir(name, sysfs)
    found = {}
    try:
        entries = os.listdir(base)
    except OSError:
        return found
    for entry in entries:
        part = os.path.join(base, entry)
        if os.path.exists(os.path.join(part, "partition")):
            found[entry] = (_read_int(os.path.join(part, "start"), -1), _read_int(os.path.join(part, "size"), -1))
    return found


def parse_lsblk_json(text):
    """The ``blockdevices`` forest of ``lsblk -J``; each node keeps its keys and ``children``."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BlockDeviceError("cannot parse lsblk JSON output: %s" % e)
    return data.get("blockdevices", []) if isinstance(data, dict) else []


def _walk(nodes, depth=0):
    for node in nodes or []:
        yield node, depth
        yield from _walk(node.get("children"), depth + 1)


def _mountpoints(node):
    points = node.get("mountpoints")
    if points is None:
        points = [node.get("mountpoint")]
    return [p for p in points if p]


def parse_proc_swaps(text):
    """Device or file names of active swap areas (``/proc/swaps``; names escape spaces as ``\\040``)."""
    names = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if fields:
            names.append(fields[0].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
                         .replace("\\134", "\\"))
    return names


def in_use(lsblk_nodes, swaps=(), realpath=os.path.realpath):
    """Why the disk (and its partitions) in ``lsblk_nodes`` must not be repartitioned: a list of
    sentences, empty when nothing uses it. Looks at mount points (``[SWAP]`` included), active swap
    from ``/proc/swaps``, and holders below a partition (dm-crypt, LVM, MD: lsblk lists them as
    children of type other than ``part``)."""
    reasons = []
    swap_set = set(realpath(s) for s in swaps)
    for node, depth in _walk(lsblk_nodes):
        path = node.get("path") or "/dev/" + str(node.get("name"))
        kind = node.get("type")
        for point in _mountpoints(node):
            if point == "[SWAP]":
                reasons.append("%s is active swap" % path)
            else:
                reasons.append("%s is mounted on %s" % (path, point))
        if realpath(path) in swap_set and not any(p == "[SWAP]" for p in _mountpoints(node)):
            reasons.append("%s is active swap (/proc/swaps)" % path)
        if depth > 0 and kind not in ("part",):
            reasons.append("%s (%s) is built on top of it" % (path, kind))
    # a holder with several parents shows up once per parent
    seen = set()
    return [r for r in reasons if not (r in seen or seen.add(r))]


def parse_blkid_export(text):
    """``blkid [-p] -o export`` as a dict of its KEY=value lines (empty for no output; blkid's rc 2). Output for
    several devices comes in blocks separated by a blank line: only the first device's block is read."""
    values = {}
    for line in text.splitlines():
        if not line.strip():
            if values:
                break
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip()
    return values
