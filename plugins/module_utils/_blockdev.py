# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Block devices: kernel partition naming, sysfs topology, and what ``lsblk``/``blkid``/``/proc/swaps`` say.

Parsers take text, sysfs readers take a ``sysfs`` root (``/sys`` on a real system, a directory
tree in the tests). The one function that runs a program, :func:`probe_signature`, is handed the module's
:class:`._command.CommandRunner`; nothing else here runs a command (:func:`udev_settle_argv` only finds one).
"""

from __future__ import annotations

import json
import os
from stat import S_ISBLK, S_ISREG

from ansible_collections.impermanent.nixos.plugins.module_utils._alignment import Topology
from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._mountinfo import parse_swaps
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

#: Exists while udevd runs (a live ISO); absent in containers and on hosts without udev.
UDEV_CONTROL = "/run/udev/control"

#: udev names partitions of a ``by-id``/``by-path`` link ``<link>-part<N>``.
PART_SUFFIX_LINK_DIRS = ("/dev/disk/by-id/", "/dev/disk/by-path/")


class BlockDeviceError(ModuleError, ValueError):
    """A device that is not what the caller needs; the message names it and says what to do."""


def udev_settle_argv(runner, control=UDEV_CONTROL):
    """``[udevadm, "settle"]`` where udevd runs, else None. udev makes the ``/dev/disk/by-*`` links from events it
    handles after a table or file system is written: whoever reads those links next (the partition paths we return,
    nixos-generate-config naming each device by its by-uuid link) waits for its queue to empty first."""
    if not os.path.exists(control):
        return None
    udevadm = runner.find("udevadm", required=False)
    return [udevadm, "settle"] if udevadm else None


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


def parse_proc_swaps(text):
    """Device or file names of active swap areas (``/proc/swaps``, read by :func:`._mountinfo.parse_swaps`)."""
    return [entry["filename"] for entry in parse_swaps(text)]


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


# blkid -p reports a partition's own table entry (PART_ENTRY_*) and DEVNAME for every partition, blank or not:
# only these keys say that something is written *inside* the device.
CONTENT_KEYS = ("TYPE", "PTTYPE", "USAGE", "SEC_TYPE", "VERSION", "LABEL", "UUID", "PTUUID")


def content_signature(probe):
    """The part of a blkid probe that describes the device's content; empty for a blank device or partition."""
    if not (probe.get("TYPE") or probe.get("PTTYPE") or probe.get("USAGE")):
        return {}
    return dict((key, probe[key]) for key in CONTENT_KEYS if key in probe)


def describe_signature(probe):
    """A person's description of what blkid found: 'an ext4 file system (LABEL=nixos)'."""
    if probe.get("PTTYPE") and not probe.get("TYPE"):
        return "a %s partition table" % probe["PTTYPE"]
    kind = probe.get("TYPE", "unknown")
    what = {"filesystem": "file system", "raid": "RAID member", "crypto": "encrypted volume"}.get(
        probe.get("USAGE"), "signature")
    extra = ", ".join("%s=%s" % (k, probe[k]) for k in ("LABEL", "UUID") if probe.get(k))
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return "%s %s %s%s" % (article, kind, what, " (%s)" % extra if extra else "")


#: blkid's exit code for a device where low-level probing finds signatures it cannot tell apart (man blkid)
BLKID_AMBIVALENT = 8


def probe_signature(runner, device):
    """:func:`content_signature` of ``blkid -p -o export DEVICE`` (read-only, not listed in ``commands``): empty
    for a blank device (blkid's rc 2). Any other failure, :data:`BLKID_AMBIVALENT` included, raises
    :class:`._command.CommandError` with blkid's rc."""
    rc, out, err = runner.run([runner.find("blkid"), "-p", "-o", "export", device], check_rc=False, record=False)
    if rc == 2:  # nothing found
        return {}
    if rc != 0:
        raise CommandError("blkid -p %s failed (rc=%s): %s" % (device, rc, err.strip()), rc=rc, stdout=out,
                           stderr=err)
    return content_signature(parse_blkid_export(out))


# -- which disk is this? -------------------------------------------------------------------------------------------
def _clean(value):
    """lsblk pads SERIAL/MODEL with spaces on some buses; an empty value is no value."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text or None


def parse_lsblk_identity(text):
    """serial, model and wwn of the disk in ``lsblk -J -d -o PATH,SERIAL,MODEL,WWN DISK`` (None where lsblk has none)."""
    nodes = parse_lsblk_json(text)
    node = nodes[0] if nodes else {}
    return dict(serial=_clean(node.get("serial")), model=_clean(node.get("model")), wwn=_clean(node.get("wwn")))


def identity_mismatches(expect, found):
    """Sentences saying where the disk differs from the identity the user pinned; empty when it matches.

    ``expect``: the pins, any of serial, model, wwn (strings, compared with runs of blanks squeezed), size (bytes)
    and by_id (a link that must point at this disk); None or missing = not pinned. ``found``: the same keys as read
    from the disk, by_id being what the pinned link resolves to (None when the link does not exist) next to
    ``path``, the disk's own kernel path."""
    out = []
    for key in ("serial", "model", "wwn"):
        want = _clean(expect.get(key))
        if want is not None and want != found.get(key):
            out.append("%s is %r, not %r" % (key, found.get(key), want))
    if expect.get("size") is not None and int(expect["size"]) != found.get("size"):
        out.append("size is %s bytes, not %s" % (found.get("size"), int(expect["size"])))
    link = expect.get("by_id")
    if link:
        if found.get("by_id") is None:
            out.append("%s does not exist (the pinned disk is not attached?)" % link)
        elif found["by_id"] != found.get("path"):
            out.append("%s points to %s, not to this disk" % (link, found["by_id"]))
    return out


#: Mount points that belong to the running (live) system itself: the root, the ISO or USB stick it booted from
#: (NixOS /iso, dracut/archiso/Debian live media) and the Nix store of a live system.
SYSTEM_MOUNT_POINTS = ("/", "/iso", "/nix/.ro-store", "/nix/.rw-store", "/nix/store", "/run/rootfsbase", "/boot",
                       "/boot/efi", "/efi", "/usr", "/run/initramfs/live", "/run/archiso/bootmnt",
                       "/run/live/medium", "/lib/live/mount/medium", "/cdrom")
_ROOT_LINK_DIRS = {"LABEL": "by-label", "UUID": "by-uuid", "PARTUUID": "by-partuuid", "PARTLABEL": "by-partlabel"}


def _udev_escape(value):
    """udev's encoding of a label in /dev/disk/by-label ('/' and blanks as \\xNN). A backslash is kept: a label
    with blanks can only be written on a command line already encoded (LABEL=My\\x20Stick)."""
    return "".join("\\x%02x" % ord(c) if c in "/ \t\"'" else c for c in value)


def cmdline_root_path(cmdline, dev="/dev"):
    """The device path a kernel command line's last ``root=`` names (LABEL=, UUID=, PARTUUID=, PARTLABEL= or a
    path), or None when there is none or it names no block device (root=tmpfs, root=/dev/nfs...)."""
    spec = None
    for word in cmdline.split():
        if word.startswith("root="):
            spec = word[len("root="):]
    if not spec:
        return None
    kind, sep, value = spec.partition("=")
    if sep and kind in _ROOT_LINK_DIRS:
        if kind == "PARTUUID":
            value = value.lower()
        return os.path.join(dev, "disk", _ROOT_LINK_DIRS[kind], _udev_escape(value))
    if spec.startswith("/dev/") and spec != "/dev/nfs":
        return os.path.join(dev, spec[len("/dev/"):])
    return None


def device_identity(path, files=True, stat=os.stat, realpath=os.path.realpath):
    """What ``path`` is, comparable across its names: (major, minor) for a block device, the real path of a
    regular file when ``files`` (a loop device's backing file, a swap file), else None; None when it is missing."""
    try:
        st = stat(path)
    except OSError:
        return None
    if S_ISBLK(st.st_mode):
        return (os.major(st.st_rdev), os.minor(st.st_rdev))
    if files and S_ISREG(st.st_mode):
        return realpath(path)
    return None


def name_of_devno(major, minor, sysfs="/sys"):
    """Kernel name of block device major:minor, None when it is not one (tmpfs, overlay, proc...)."""
    link = os.path.join(sysfs, "dev", "block", "%d:%d" % (major, minor))
    if not os.path.exists(link):
        return None
    return os.path.basename(os.path.realpath(link))


def disks_under(name, sysfs="/sys", stat=os.stat, depth=0):
    """The whole disks a block device ``name`` lives on: itself or its disk for a partition, the disks below a
    dm/md device (``slaves``), and for a loop device the disks holding its backing file."""
    if depth > 16:
        return set()
    base = sysfs_dir(name, sysfs)
    backing = _read(os.path.join(base, "loop", "backing_file"))
    if backing:
        try:
            st = stat(backing)
        except OSError:
            return set()
        below = name_of_devno(os.major(st.st_dev), os.minor(st.st_dev), sysfs)
        return disks_under(below, sysfs, stat, depth + 1) if below else set()
    try:
        slaves = os.listdir(os.path.join(base, "slaves"))
    except OSError:
        slaves = []
    if slaves:
        out = set()
        for slave in slaves:
            out |= disks_under(slave, sysfs, stat, depth + 1)
        return out
    return {whole_disk_of(name, sysfs) or name}


def system_disks(mounts, cmdline, sysfs="/sys", dev="/dev", stat=os.stat, realpath=os.path.realpath):
    """{disk kernel name: why it belongs to the running system} from the mounts (parse_mountinfo()) of the system's
    own mount points and the kernel command line's ``root=`` (a live ISO copied to RAM keeps nothing mounted, but
    its stick is still named there)."""
    found = {}
    for mount in mounts:
        if mount.target not in SYSTEM_MOUNT_POINTS:
            continue
        name = name_of_devno(mount.major, mount.minor, sysfs)
        for disk in sorted(disks_under(name, sysfs, stat)) if name else ():
            found.setdefault(disk, "%s is mounted from it (%s)" % (mount.target, mount.source))
    root = cmdline_root_path(cmdline, dev)
    if root and os.path.exists(root):
        for disk in sorted(disks_under(os.path.basename(realpath(root)), sysfs, stat)):
            found.setdefault(disk, "the kernel command line's root= names it (%s)" % root)
    return found
