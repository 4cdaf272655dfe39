# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The tmpfs-root mount layout: a pure planner (design steps 6-7).

Given what is mounted now (a :class:`~._mountinfo.MountTable`), the active swaps and the device numbers of the
devices the user named, :func:`plan` answers "which steps must run so that ROOT is a tmpfs with boot, nix and the
persisted paths bind-mounted from ``ROOT/nix/persist``?" — or, for ``state=unmounted``, which steps tear it down.
Nothing here touches the system; the module gathers :class:`Facts` and runs the :class:`MountPlan`'s steps.
"""

from __future__ import annotations

import posixpath
import re

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError
from ansible_collections.impermanent.nixos.plugins.module_utils._plan import Plan


class MountLayoutError(ModuleError):
    """The mount layout cannot be reached without destroying something; the message says what to do."""


_SIZE = re.compile(r"^(\d+)([kmgtpe%]?)$", re.IGNORECASE | re.ASCII)  # memparse reads ASCII digits only
_SUFFIX = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_MODE = re.compile(r"^[0-7]{3,4}$")
TMPFS_DEFAULT_PERCENT = 50
TMPFS_DEFAULT_MODE = 0o1777
# The "device number" of a device that an earlier step of a check-mode run would create: equal to no real one.
PENDING = ("pending", "pending")


def parse_tmpfs_size(size):
    """A tmpfs ``size=`` as the kernel reads it (shmem's option parser: a percentage of RAM, or memparse):
    ``('percent', 25)`` or ``('bytes', n)``.

    Suffixes k/m/g/t/p/e in either case are powers of 1024, so ``2G`` is 2 GiB here. This is not the partition
    size grammar (:func:`._gpt.parse_partition_size`, what sfdisk and parted both read), which refuses ``2G``."""
    m = _SIZE.match(str(size).strip())
    if not m:
        raise MountLayoutError("size=%r is not a tmpfs size: use a percentage of RAM like '25%%' or an amount like "
                               "'2G' or '512m'." % (size,))
    number, suffix = int(m.group(1)), m.group(2).lower()
    if suffix == "%":
        if number < 1:
            raise MountLayoutError("size=%r: a percentage must be at least 1%%." % (size,))
        return ("percent", number)
    return ("bytes", number << _SUFFIX[suffix])


def size_kib(size, memtotal_kib, page_size=4096):
    """How the kernel will show ``size=`` in mountinfo, in KiB (rounded up to whole pages, like shmem does)."""
    kind, value = parse_tmpfs_size(size)
    if kind == "percent":
        nbytes = memtotal_kib * 1024 * value // 100
    else:
        nbytes = value
    pages = -(-nbytes // page_size)
    return pages * page_size // 1024


def mounted_size_kib(mount, memtotal_kib, page_size=4096):
    """The size of a mounted tmpfs in KiB from its options; the kernel omits ``size=`` when it is the default."""
    shown = mount.option("size")
    if shown is None or shown is True:
        return size_kib("%d%%" % TMPFS_DEFAULT_PERCENT, memtotal_kib, page_size)
    m = re.match(r"^(\d+)k$", shown)
    if not m:
        return None
    return int(m.group(1))


def parse_mode(mode):
    text = str(mode).strip()
    if not _MODE.match(text):
        raise MountLayoutError("mode=%r is not an octal mode: use a string like '755' or '0755'." % (mode,))
    value = int(text, 8)
    if value == TMPFS_DEFAULT_MODE:
        raise MountLayoutError(
            "mode=%r is the kernel's default for a tmpfs, which mountinfo does not show, so a later run could not "
            "tell this module's tmpfs from one like /dev/shm; use 755 (a root that anyone may write to is not "
            "what an installed system wants either)." % (mode,))
    return value


# What tmpfs_root mounts on ROOT: `mount -t tmpfs -o size=SIZE,mode=MODE tmpfs ROOT`. mountinfo then shows the
# source "tmpfs", no per-mount flags beyond rw/relatime and no super-block options beyond these (the kernel adds
# inode64 on some versions; it omits size= when it is the default 50% and mode= when it is 1777).
OUR_TMPFS_SOURCE = "tmpfs"
OUR_TMPFS_OPTIONS = frozenset(["rw", "size", "mode", "inode64", "inode32"])
_FOREIGN_FLAGS = ("ro", "nosuid", "nodev", "noexec")
_OVERLAY_DIRS = ("lowerdir", "upperdir", "workdir")


def not_our_tmpfs(mount, table, layout_targets):
    """Why the tmpfs ``mount`` (the visible mount on ROOT) was not mounted there by this module, or None.

    It is taken for this module's when its source, flags and options are what the module mounts, ``mode=`` is
    shown (the module never mounts the default 1777, which is what /dev/shm and friends have), no other mount
    uses a directory on it (an overlay's lowerdir/upperdir/workdir, like a live ISO's /nix/.rw-store) and nothing
    is mounted below it but ``layout_targets`` (nothing else in the way).
    """
    if mount.source != OUR_TMPFS_SOURCE:
        return "its source is %r, the module mounts %r" % (mount.source, OUR_TMPFS_SOURCE)
    flags = [f for f in mount.mount_options if f in _FOREIGN_FLAGS]
    if flags:
        return "it is mounted %s, which the module never does" % ",".join(flags)
    extra = [o for o in mount.super_options if o.partition("=")[0] not in OUR_TMPFS_OPTIONS]
    if extra:
        return "it has options the module never sets (%s)" % ",".join(extra)
    if mount.option("mode") is None:
        return "its mode is the kernel's default 1777 (like /dev/shm); the module always mounts it with mode="
    prefix = mount.target.rstrip("/") + "/"
    for other in table.mounts:
        for opt in other.super_options:
            key, _sep, value = opt.partition("=")
            if key in _OVERLAY_DIRS and any(d == mount.target or d.startswith(prefix) for d in value.split(":")):
                return "the %s mount on %s uses a directory on it (%s)" % (other.fstype, other.target, opt)
    foreign = sorted(set(m.target for m in table.below(mount.target) if m.target not in layout_targets))
    if foreign:
        return "other file systems are mounted below it (%s)" % ", ".join(foreign)
    return None


def normalize_persist(paths, persist_dir):
    """Validate the persisted paths: absolute, not /, not inside /nix or /boot, no repeats and no nesting."""
    out = []
    for raw in paths:
        p = posixpath.normpath(str(raw))
        if not p.startswith("/") or p == "/" or ".." in p.split("/"):
            raise MountLayoutError("persist path %r must be an absolute directory below / (like /etc/nixos)." % (raw,))
        for reserved in ("/nix", "/boot"):
            if p == reserved or p.startswith(reserved + "/"):
                raise MountLayoutError("persist path %r lies on %s, which is mounted from its own device already; "
                                       "list only paths that would otherwise live on the tmpfs." % (raw, reserved))
        if p in out:
            raise MountLayoutError("persist path %r is listed twice." % (raw,))
        out.append(p)
    for p in out:
        for q in out:
            if p != q and p.startswith(q + "/"):
                raise MountLayoutError("persist path %r lies inside %r, which is persisted already; drop %r." % (p, q, p))
    pd = posixpath.normpath(str(persist_dir))
    if not (pd == "/nix" or pd.startswith("/nix/")) or ".." in pd.split("/"):
        raise MountLayoutError("persist_dir=%r must be /nix or a directory below it, so that it lives on nix_device." %
                               (persist_dir,))
    return out, pd


class Spec:
    """What the user asked for, validated. Paths are as the target system will see them (ROOT-relative)."""

    def __init__(self, root, size="25%", mode="755", boot_device=None, boot_options=None, nix_device=None,
                 persist_dir="/nix/persist", persist=None, swap_device=None, state="mounted"):
        root = posixpath.normpath(str(root))
        if not root.startswith("/") or root == "/":
            raise MountLayoutError("root=%r must be an absolute directory other than / (like /mnt)." % (root,))
        self.root = root
        self.size = str(size)
        parse_tmpfs_size(self.size)
        self.mode = parse_mode(mode)
        self.boot_device = boot_device
        self.boot_options = list(boot_options if boot_options is not None else ["umask=0077"])
        self.nix_device = nix_device
        self.persist, self.persist_dir = normalize_persist(
            persist if persist is not None else ["/etc/nixos", "/var/log"], persist_dir)
        self.swap_device = swap_device
        self.state = state
        if state == "mounted" and not nix_device:
            raise MountLayoutError("nix_device is required with state=mounted: the persisted paths live on it.")

    def at(self, path):
        """ROOT-prefixed path of a target-system path: at('/etc/nixos') -> '/mnt/etc/nixos'."""
        return posixpath.join(self.root, path.lstrip("/")) if path != "/" else self.root

    def persist_source(self, path):
        return self.at(posixpath.join(self.persist_dir, path.lstrip("/")))

    def mount_points(self):
        """The layout's mount points below ROOT: /boot, /nix and each persisted path (ROOT-prefixed)."""
        return [self.at("/boot"), self.at("/nix")] + [self.at(p) for p in self.persist]


class Facts:
    """What the module read from the system, handed to the planner.

    ``devno`` maps a device spec (as the user wrote it) to ``(major, minor)`` of the block device it resolves to;
    ``swaps`` holds ``(major, minor)`` (block devices) or real paths (swap files) of the active swaps;
    ``dirs`` is the set of directories that exist now; ``modes`` maps a path to its permission bits;
    ``root_entries`` the names in ROOT when it is a directory but not a mount point (a few are enough).
    A device spec that maps to :data:`PENDING` does not exist yet (check mode: an earlier step would create it);
    it is planned as a fresh mount and can match no existing mount.
    """

    def __init__(self, table, devno=None, swaps=(), memtotal_kib=0, page_size=4096, dirs=(), modes=None,
                 source_devno=None, root_entries=()):
        self.table = table
        self.devno = dict(devno or {})
        self.swaps = set(swaps)
        self.memtotal_kib = memtotal_kib
        self.page_size = page_size
        self.dirs = set(dirs)
        self.modes = dict(modes or {})
        self.source_devno = dict(source_devno or {})
        self.root_entries = list(root_entries)


class MountPlan(Plan):
    """The mount layout's steps (kinds mount, remount, chmod, mkdir, bind, swapon, swapoff, umount; every one
    writes) and ``expected``: the mounts the layout consists of, dicts target/source/fstype."""

    def __init__(self):
        super(MountPlan, self).__init__()
        self.expected = []


def _same_device(mount, want, facts):
    """Does an existing mount come from the device whose (major, minor) is ``want``?"""
    if mount.devno == want:
        return True
    # file systems with anonymous device numbers (btrfs subvolumes): compare the mount's source device
    return facts.source_devno.get(mount.source) == want


def _describe(mount):
    return "%s (%s, device %d:%d)" % (mount.describe_source(), mount.fstype, mount.major, mount.minor)


def _describe_devno(devno):
    if devno == PENDING:
        return "not created yet (an earlier step of this check-mode run would create it)"
    return "device %d:%d" % devno


class LayoutPlanner:
    """Decides the steps for ``state=mounted`` or ``state=unmounted`` from a :class:`Spec` and :class:`Facts`."""

    def __init__(self, spec, facts):
        self.spec = spec
        self.facts = facts
        self.table = facts.table

    def plan(self):
        if self.spec.state == "unmounted":
            return self.plan_unmounted()
        return self.plan_mounted()

    # -- mounted ---------------------------------------------------------------------------------------------
    def _devno(self, spec_value, what):
        devno = self.facts.devno.get(spec_value)
        if devno is None:
            raise MountLayoutError("%s=%r does not resolve to a block device on the target." % (what, spec_value))
        return devno

    def plan_mounted(self):
        spec, table, plan = self.spec, self.table, MountPlan()
        root_mount = table.visible(spec.root)
        fresh_root = root_mount is None
        tmpfs_opts = "size=%s,mode=%s" % (spec.size, format(spec.mode, "o").zfill(3))
        if fresh_root:
            busy = table.below(spec.root)
            if busy:
                raise MountLayoutError(
                    "%s is not a mount point but has mounts below it (%s); mounting a tmpfs over them would hide "
                    "them. Unmount them first (umount -R), then run again." %
                    (spec.root, ", ".join(m.target for m in busy)))
            if self.facts.root_entries:
                shown = sorted(self.facts.root_entries)
                raise MountLayoutError(
                    "%s is not empty (%s%s): a tmpfs mounted over it would hide what is there. The root must not "
                    "exist, be an empty directory, or be a tmpfs this module mounted; choose another root (like "
                    "/mnt) or empty it." % (spec.root, ", ".join(shown[:5]), ", ..." if len(shown) > 5 else ""))
            if spec.root not in self.facts.dirs:
                plan.add("mkdir", spec.root, why="the tmpfs mount point")
            plan.add("mount", spec.root, ["mount", "-t", "tmpfs", "-o", tmpfs_opts, "tmpfs", spec.root],
                     why="tmpfs as the new /")
        else:
            self._check_root(root_mount, plan)
        plan.expected.append(dict(target=spec.root, source="tmpfs", fstype="tmpfs"))

        # directories on the tmpfs: a fresh tmpfs is empty
        for sub in ["/boot", "/nix"] + spec.persist:
            self._mkdir(plan, spec.at(sub), on_fresh=fresh_root)

        nix_devno = self._devno(spec.nix_device, "nix_device")
        if spec.boot_device:
            boot_devno = self._devno(spec.boot_device, "boot_device")
            argv = ["mount"]
            if spec.boot_options:
                argv += ["-o", ",".join(spec.boot_options)]
            self._block_mount(plan, spec.at("/boot"), spec.boot_device, boot_devno, argv, fresh_root, "boot_device")

        nix_target = spec.at("/nix")
        nix_mount = None if fresh_root else table.visible(nix_target)
        fresh_nix = nix_mount is None
        self._block_mount(plan, nix_target, spec.nix_device, nix_devno, ["mount"], fresh_root, "nix_device")

        nix_root = "/" if fresh_nix else nix_mount.root
        for p in spec.persist:
            self._mkdir(plan, spec.persist_source(p), on_fresh=fresh_nix, conditional=fresh_nix)
        for p in spec.persist:
            self._bind(plan, p, nix_devno, nix_root, fresh_root)

        if spec.swap_device:
            swap_id = self.facts.devno.get(spec.swap_device)
            if swap_id is None:
                raise MountLayoutError("swap_device=%r does not resolve to a block device or swap file on the target." %
                                       (spec.swap_device,))
            if swap_id not in self.facts.swaps:
                plan.add("swapon", spec.swap_device, ["swapon", spec.swap_device], why="swap for nixos-install")
        return plan

    def _check_root(self, mount, plan):
        spec = self.spec
        if mount.fstype != "tmpfs":
            raise MountLayoutError(
                "%s is already a mount point of %s, not a tmpfs. Unmount it (umount -R %s) or choose another root." %
                (spec.root, _describe(mount), spec.root))
        why = not_our_tmpfs(mount, self.table, set(spec.mount_points()))
        if why:
            raise MountLayoutError(
                "%s is a tmpfs that this module did not mount: %s. The root must not exist, be an empty directory, "
                "or be a tmpfs this module mounted there; nothing was changed. Choose another root (like /mnt)." %
                (spec.root, why))
        stack = self.table.stack(spec.root)
        if len(stack) > 1:
            plan.warnings.append("%d mounts are stacked on %s; the top one is used." % (len(stack), spec.root))
        have = mounted_size_kib(mount, self.facts.memtotal_kib, self.facts.page_size)
        want = size_kib(spec.size, self.facts.memtotal_kib, self.facts.page_size)
        if have != want:
            plan.add("remount", spec.root, ["mount", "-o", "remount,size=%s" % spec.size, spec.root],
                     why="tmpfs size is %sk, want %s (%dk)" % (have, spec.size, want))
        # The kernel ignores mode= on a tmpfs remount: the mode that counts is the root directory's.
        have_mode = self.facts.modes.get(spec.root)
        if have_mode is not None and have_mode != spec.mode:
            plan.add("chmod", spec.root, ["chmod", format(spec.mode, "o").zfill(3), spec.root],
                     why="tmpfs root directory mode is %s, want %s" % (format(have_mode, "o"),
                                                                       format(spec.mode, "o")))

    def _mkdir(self, plan, path, on_fresh, conditional=False):
        if on_fresh or path not in self.facts.dirs:
            plan.add("mkdir", path, why="mount point or persisted directory", conditional=conditional)

    def _block_mount(self, plan, target, device, devno, argv, fresh_root, what):
        mount = None if fresh_root else self.table.visible(target)
        if mount is None:
            plan.add("mount", target, argv + [device, target], why="%s on %s" % (what, target))
        else:
            if not _same_device(mount, devno, self.facts):
                raise MountLayoutError(
                    "%s is already mounted from %s, but %s=%s is %s. Unmount %s first (or fix %s)." %
                    (target, _describe(mount), what, device, _describe_devno(devno), target, what))
            if mount.root != "/":
                raise MountLayoutError("%s is a bind mount of %s, not the whole file system of %s=%s. Unmount it first." %
                                       (target, _describe(mount), what, device))
            self._warn_stacked(plan, target)
        self.plan_expected(plan, target, device)

    def plan_expected(self, plan, target, source):
        plan.expected.append(dict(target=target, source=source))

    def _warn_stacked(self, plan, target):
        stack = self.table.stack(target)
        if len(stack) > 1:
            plan.warnings.append("%d mounts are stacked on %s; the visible (top) one is right and is used." %
                                 (len(stack), target))

    def _bind(self, plan, path, nix_devno, nix_root, fresh_root):
        spec = self.spec
        target, source = spec.at(path), spec.persist_source(path)
        rel = posixpath.relpath(posixpath.join(spec.persist_dir, path.lstrip("/")), "/nix")
        want_root = posixpath.normpath(posixpath.join(nix_root, rel))
        mount = None if fresh_root else self.table.visible(target)
        if mount is None:
            plan.add("bind", target, ["mount", "--bind", source, target], why="persist %s" % path)
        else:
            if not _same_device(mount, nix_devno, self.facts) or mount.root != want_root:
                raise MountLayoutError(
                    "%s is already mounted from %s, but it should be a bind mount of %s (%s[%s]). Unmount %s first." %
                    (target, _describe(mount), source, spec.nix_device, want_root, target))
            self._warn_stacked(plan, target)
        self.plan_expected(plan, target, "%s[%s]" % (spec.nix_device, want_root))

    # -- unmounted -------------------------------------------------------------------------------------------
    def plan_unmounted(self):
        spec, table, plan = self.spec, self.table, MountPlan()
        if spec.swap_device:
            swap_id = self.facts.devno.get(spec.swap_device)
            if swap_id is not None and swap_id in self.facts.swaps:
                plan.add("swapoff", spec.swap_device, ["swapoff", spec.swap_device], why="swap used by the install")
        root_mount = table.visible(spec.root)
        if root_mount is not None and root_mount.fstype != "tmpfs":
            raise MountLayoutError("%s is a mount of %s, not a tmpfs; refusing to unmount it." %
                                   (spec.root, _describe(root_mount)))
        ours = [spec.at(p) for p in reversed(spec.persist)] + [spec.at("/boot"), spec.at("/nix")]
        known = set(ours)
        foreign = [m.target for m in table.below(spec.root) if m.target not in known]
        if foreign:
            raise MountLayoutError("%s has mounts below it that this layout did not make (%s); unmount them first." %
                                   (spec.root, ", ".join(sorted(set(foreign)))))
        for target in ours:
            for _mount in table.stack(target):
                plan.add("umount", target, ["umount", target], why="tear down")
        for _mount in table.stack(spec.root):
            plan.add("umount", spec.root, ["umount", spec.root], why="tear down the tmpfs")
        return plan
