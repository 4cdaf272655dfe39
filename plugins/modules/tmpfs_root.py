#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tmpfs_root
short_description: Mount a tmpfs root with boot, nix and bind-mounted persisted paths for an impermanent install
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
description:
  - Builds the mount layout an impermanent NixOS is installed into, from a live system
    (steps 6 and 7 of the install).
    A tmpfs on O(root) with O(size) and O(mode); the directories C(boot), C(nix) and each O(persist) path on it;
    O(boot_device) on C(ROOT/boot) with O(boot_options); O(nix_device) on C(ROOT/nix); C(ROOT/PERSIST_DIR/PATH)
    for each persisted path, bind-mounted onto C(ROOT/PATH); optionally O(swap_device) swapped on.
  - Reads C(/proc/self/mountinfo) and follows the mount tree the way path lookup does, so a second run changes
    nothing and never stacks a second mount; a mount hidden under a later one is not taken for a mounted one.
  - Every mount that is already there is checked against what was asked for (device major:minor for
    block devices; for bind mounts also the directory inside the file system). A wrong mount is an error, it is
    never accepted or replaced silently.
  - A tmpfs already on O(root) with another size is remounted with the new size. The kernel ignores C(mode=) on
    a tmpfs remount, so a different mode of the root directory is set with C(chmod) instead.
    Modes of other existing directories are never changed (an installer may C(chmod 777 ROOT/etc/nixos)
    while it writes the configuration).
  - With O(state=unmounted) it tears the layout down in reverse order (swap, binds, boot, nix, tmpfs), and does
    nothing when nothing is mounted. It refuses when O(root) has mounts below it that are not part of the layout.
extends_documentation_fragment:
  - impermanent.nixos.attributes
attributes:
  check_mode:
    details: Returns the steps and the commands it would run; mounts and creates nothing. With O(pending_devices) it
      plans for devices that an earlier step would create.
  diff_mode:
    support: none
requirements:
  - util-linux (C(mount), C(umount), C(swapon), C(swapoff), C(blkid)) on the target
options:
  root:
    description:
      - Where the new system's C(/) is mounted. Not V(/).
      - It must not exist, be an empty directory, or be a tmpfs this module mounted there (see the notes for how
        that is told); anything else (a directory with files, V(/dev/shm), V(/run), a regular file) is refused.
    type: path
    default: /mnt
  size:
    description:
      - The tmpfs C(size=) option. A percentage of RAM (V(25%)) or an amount with an optional
        V(k), V(m), V(g), V(t) suffix (V(2G), V(512m)), as C(mount -t tmpfs) takes it.
    type: str
    default: 25%
  mode:
    description:
      - Permissions of the tmpfs root directory, an octal string such as V(755) or V(0755).
      - Not V(1777), the kernel's default, which C(/proc/self/mountinfo) does not show (the module could not tell
        its own tmpfs from one like C(/dev/shm) on the next run).
    type: str
    default: '755'
  boot_device:
    description:
      - The EFI system partition, mounted on C(ROOT/boot). A device path, or V(LABEL=...), V(UUID=...),
        V(PARTUUID=...), V(PARTLABEL=...).
      - Left out, nothing is mounted on C(ROOT/boot) (the directory is still created).
    type: str
  boot_options:
    description:
      - Mount options for O(boot_device). They are used when mounting; an existing mount of the right device is
        accepted with the options it has.
    type: list
    elements: str
    default: [umask=0077]
  nix_device:
    description:
      - The file system mounted on C(ROOT/nix), which also holds O(persist_dir). A device path (V(/dev/mapper/crypted)
        for LUKS), or V(LABEL=...), V(UUID=...), V(PARTUUID=...), V(PARTLABEL=...).
      - Required when O(state=mounted).
    type: str
  persist_dir:
    description:
      - Where persisted paths live in the installed system; must be V(/nix) or below it.
    type: str
    default: /nix/persist
  persist:
    description:
      - Absolute paths of the installed system that survive reboots. Each becomes C(ROOT/PERSIST_DIR/PATH),
        bind-mounted onto C(ROOT/PATH). Not inside C(/nix) or C(/boot), no path inside another.
    type: list
    elements: str
    default: [/etc/nixos, /var/log]
  swap_device:
    description:
      - A swap device (or swap file) to C(swapon) when O(state=mounted) and to C(swapoff) when
        O(state=unmounted). Whether it is active is read from C(/proc/swaps), comparing device numbers, so
        symlinks and V(LABEL=...) forms match the kernel's name for the device.
    type: str
  state:
    description:
      - V(mounted) builds the layout, V(unmounted) tears it down.
    type: str
    choices: [mounted, unmounted]
    default: mounted
  pending_devices:
    description:
      - Check mode only; ignored otherwise. Devices among O(boot_device), O(nix_device) and O(swap_device) that do
        not exist yet, or will be replaced, because an earlier task of the same check-mode run would create them
        (partitions P(impermanent.nixos.gpt_partition#module) would write, the C(/dev/mapper/NAME) that
        P(impermanent.nixos.luks_open#module) would open).
      - They are not looked up; their mounts (and the swapon) are planned as new, and an existing mount on their
        mount points is an error (it cannot be a device that does not exist yet). Without this, check mode fails
        on a device that does not exist, as a real run would.
    type: list
    elements: str
    default: []
notes:
  - "A tmpfs on O(root) counts as one this module mounted when C(/proc/self/mountinfo) shows what
    C(mount -t tmpfs -o size=SIZE,mode=MODE tmpfs ROOT) leaves: source C(tmpfs), none of the per-mount flags
    C(ro), C(nosuid), C(nodev), C(noexec), no file system options but C(size=), C(mode=) (which must be shown)
    and C(inode64); and when nothing else is in the way: no other file system mounted below it apart from the
    layout's own mount points, and no overlay using a directory on it (like a live ISO's C(/nix/.rw-store)).
    Otherwise it is refused and nothing is changed: no remount, no C(chmod)."
  - Every path it creates, mounts on or unmounts below O(root) (C(boot), C(nix), each persisted path and its
    directory below O(persist_dir)) must consist of real directories below O(root). A symbolic link on the way is
    refused and named (in check mode too), whether it leads out of O(root) (C(ROOT/var) linked to the live
    system's C(/var) would mount over the live C(/var/log)) or stays inside (a mount made through it would land
    elsewhere and every later run would stack another one). The directories on O(nix_device) are checked again
    right after it is mounted, before anything is created or bind-mounted there.
  - A path that exists but is not a directory (O(root) itself, C(ROOT/boot), ...) is refused, in check mode too.
  - Device numbers are compared, not names, so V(/dev/mapper/crypted), V(/dev/dm-0) and V(LABEL=nixos) all match
    the same mount. A V(LABEL=...) style spec that matches several devices is an error.
  - Mounts that an earlier, unrelated tmpfs on O(root) had hidden become visible again after O(state=unmounted)
    removes it; a second run with O(state=unmounted) removes them if they are on the layout's mount points.
seealso:
  - module: ansible.posix.mount
    description: Mounts one file system and edits fstab; tmpfs_root builds the whole install layout (tmpfs root,
      ESP, nix, bind mounts, swap) from mountinfo and writes no fstab.
  - module: impermanent.nixos.luks_open
"""

EXAMPLES = r"""
- name: Mount the impermanent layout for nixos-install
  impermanent.nixos.tmpfs_root:
    root: /mnt
    boot_device: /dev/disk/by-partlabel/boot
    nix_device: /dev/mapper/crypted
    swap_device: /dev/disk/by-partlabel/swap
    persist:
      - /etc/nixos
      - /var/log
      - /var/lib/nixos

- name: Tear it down again
  impermanent.nixos.tmpfs_root:
    root: /mnt
    swap_device: /dev/disk/by-partlabel/swap
    state: unmounted
"""

RETURN = r"""
mounts:
  description:
    - The mounts of the layout after the run (in check mode, what they would be), parents first.
    - Each has C(target), C(source) (shown like findmnt does, V(/dev/loop0[/persist/etc/nixos]) for a bind mount),
      C(fstype), C(options) (per-mount then file system options), C(root) (the directory of the file system that
      is mounted) and C(device) (major:minor).
    - In check mode, when something would change, only C(target) and C(source) of the planned mounts (and
      C(fstype) of the tmpfs).
  returned: always
  type: list
  elements: dict
  sample:
    - {target: /mnt, source: tmpfs, fstype: tmpfs, options: "rw,relatime,size=6170916k,mode=755"}
    - {target: /mnt/nix, source: /dev/vda3, fstype: ext4, options: "rw,relatime"}
    - {target: /mnt/etc/nixos, source: "/dev/vda3[/persist/etc/nixos]", fstype: ext4, options: "rw,relatime"}
created_dirs:
  description:
    - Directories created (in check mode, that would be created; those on a file system that is not mounted yet
      are listed although they may exist on it already).
  returned: always
  type: list
  elements: str
  sample: [/mnt/boot, /mnt/nix, /mnt/etc/nixos, /mnt/var/log, /mnt/nix/persist/etc/nixos]
commands:
  description: The commands run (in check mode, that would run), in order.
  returned: always
  type: list
  elements: str
  sample: ["mount -t tmpfs -o size=25%,mode=755 tmpfs /mnt", "mount /dev/vda3 /mnt/nix"]
steps:
  description: What was (or would be) done and why, one entry per step.
  returned: always
  type: list
  elements: dict
  sample: [{kind: mount, target: /mnt, why: tmpfs as the new /, argv: [mount, -t, tmpfs, -o, "size=25%,mode=755",
            tmpfs, /mnt]}]
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import device_identity
from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError
from ansible_collections.impermanent.nixos.plugins.module_utils._layout import (
    PENDING, Facts, MountLayoutError, LayoutPlanner, Spec)
from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module
from ansible_collections.impermanent.nixos.plugins.module_utils._mountinfo import MountTable, parse_swaps
from ansible_collections.impermanent.nixos.plugins.module_utils._paths import (
    PathError, creatable_dir, resolve_beneath)

MOUNTINFO = "/proc/self/mountinfo"
SWAPS = "/proc/swaps"
MEMINFO = "/proc/meminfo"
_TAGS = ("LABEL=", "UUID=", "PARTUUID=", "PARTLABEL=")
LINK_ADVICE = ("the layout's mount points and persisted directories must be real directories (a mount made through "
               "a link lands somewhere else, and every later run would stack another one); replace the link with "
               "a directory")
UNCHANGED = "Nothing was changed."
STOPPED = "Stopped before this step; the commands that ran before it are in commands."


def check_layout_path(spec, path, outcome=UNCHANGED):
    """Refuse ``path`` (below ROOT) unless every component is a real directory below ROOT or does not exist."""
    try:
        found = resolve_beneath(spec.root, path, allow_links=False, link_advice=LINK_ADVICE)
    except PathError as e:
        raise MountLayoutError("%s. %s" % (e, outcome))
    if found.kind not in ("dir", "missing"):
        raise MountLayoutError("%s exists and is not a directory, but the layout needs a directory there; move it away. "
                               "%s" % (path, outcome))


def _read(path):
    with open(path, "r", errors="surrogateescape", newline="") as f:  # see _mountinfo.lines
        return f.read()


class SystemReader:
    """Reads the facts the planner needs: mount table, swaps, memory, device numbers, directories."""

    def __init__(self, runner):
        self.runner = runner

    def resolve(self, spec_value):
        """A device spec -> its path on the target (LABEL=... etc. through blkid), or None."""
        if spec_value.startswith(_TAGS):
            rc, out, _err = self.runner.run([self.runner.find("blkid"), "-c", "/dev/null", "-o", "device",
                                             "-t", spec_value], check_rc=False, record=False)
            found = out.split() if rc == 0 else []
            if len(found) > 1:
                raise MountLayoutError("%s matches more than one device (%s); name the device by its path instead." %
                                       (spec_value, ", ".join(found)))
            return found[0] if found else None
        return spec_value if os.path.exists(spec_value) else None

    def identity(self, spec_value, allow_file=False):
        """(major, minor) of a block device, or the real path of a regular file when allow_file."""
        path = self.resolve(spec_value)
        return None if path is None else device_identity(path, files=allow_file)

    def swaps(self):
        active = set()
        for entry in parse_swaps(_read(SWAPS)):
            ident = device_identity(entry["filename"])
            if ident is not None:
                active.add(ident)
        return active

    @staticmethod
    def memtotal_kib():
        for line in _read(MEMINFO).splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
        raise CommandError("MemTotal is missing from %s" % MEMINFO)

    def facts(self, spec, pending=()):
        """``pending``: device specs an earlier step of this check-mode run would create; not probed."""
        table = MountTable.from_text(_read(MOUNTINFO))
        devno = {}
        for value, allow_file in ((spec.boot_device, False), (spec.nix_device, False), (spec.swap_device, True)):
            if not value:
                continue
            ident = PENDING if value in pending else self.identity(value, allow_file=allow_file)
            if ident is not None:
                devno[value] = ident
        source_devno = {}
        for mount in table.mounts:
            if mount.source.startswith("/dev/") and mount.devno[0] == 0:
                ident = self.identity(mount.source)
                if ident is not None:
                    source_devno[mount.source] = ident
        paths = [spec.root] + spec.mount_points() + [spec.persist_source(p) for p in spec.persist]
        why = creatable_dir(spec.root)
        if why:
            raise MountLayoutError("root: %s. The root must not exist, be an empty directory, or be a tmpfs this module "
                                   "mounted; nothing was changed." % why)
        mounted = table.visible(spec.root) is not None
        if mounted:
            # on a fresh tmpfs nothing exists below ROOT yet; on ours, every path must stay on real directories
            # (a teardown reads only the mount points)
            for path in paths[1:] if spec.state == "mounted" else spec.mount_points():
                check_layout_path(spec, path)
        dirs = set(p for p in paths if os.path.isdir(p))
        modes = {}
        root_entries = []
        if os.path.isdir(spec.root):
            modes[spec.root] = stat.S_IMODE(os.stat(spec.root).st_mode)
            if not mounted:
                root_entries = os.listdir(spec.root)
        return Facts(table, devno=devno, swaps=self.swaps() if spec.swap_device else (),
                     memtotal_kib=self.memtotal_kib(), page_size=os.sysconf("SC_PAGE_SIZE"), dirs=dirs,
                     modes=modes, source_devno=source_devno, root_entries=root_entries)

    @staticmethod
    def layout_mounts(spec):
        """The layout's mounts as they are now, parents first."""
        table = MountTable.from_text(_read(MOUNTINFO))
        found = list(table.stack(spec.root))
        for mount in table.below(spec.root):
            found.append(mount)
        return [m.as_dict() for m in found]


class LayoutExecutor:
    """Runs a plan's steps in order through the CommandRunner; mkdir steps only when the directory is missing.

    Right before each mkdir, mount and bind it checks the paths again (:func:`check_layout_path`): what lies on
    a file system the run has only just mounted (the persisted directories on nix) is seen only then.
    """

    def __init__(self, runner, check_mode, spec):
        self.runner = runner
        self.check_mode = check_mode
        self.spec = spec
        self.created_dirs = []

    def guard(self, step):
        if self.check_mode or step.kind not in ("mkdir", "mount", "bind", "umount") or step.target == self.spec.root:
            return
        check_layout_path(self.spec, step.target, STOPPED)
        if step.kind == "bind":
            check_layout_path(self.spec, step.argv[-2], STOPPED)

    def run(self, plan):
        for step in plan.steps:
            self.guard(step)
            if step.kind == "mkdir":
                if self.check_mode:
                    self.created_dirs.append(step.target)
                elif not os.path.isdir(step.target):
                    os.makedirs(step.target, mode=0o755)
                    self.created_dirs.append(step.target)
            elif self.check_mode:
                self.runner.would_run(step.argv)
            else:
                self.runner.run(step.argv, what="%s %s" % (step.argv[0], step.target))


def mount_layout(run):
    """The module's body (see _module.run_module)."""
    p = run.params
    try:
        # Resolve links only in an absolute root: a relative one must reach Spec's check as it is, not be resolved
        # against the working directory (where a tmpfs would then be mounted).
        root = os.path.realpath(p["root"]) if os.path.isabs(p["root"]) else p["root"]
        spec = Spec(root=root, size=p["size"], mode=p["mode"], boot_device=p["boot_device"],
                    boot_options=p["boot_options"], nix_device=p["nix_device"], persist_dir=p["persist_dir"],
                    persist=p["persist"], swap_device=p["swap_device"], state=p["state"])
        reader = SystemReader(run.runner)
        pending = set(p["pending_devices"]) if run.check_mode else set()
        plan = LayoutPlanner(spec, reader.facts(spec, pending)).plan()
        executor = LayoutExecutor(run.runner, run.check_mode, spec)
        executor.run(plan)
    except OSError as e:
        raise ModuleError("%s: %s" % (getattr(e, "filename", "") or "tmpfs_root", e.strerror or e))

    for warning in plan.warnings:
        run.warn(warning)
    if run.check_mode:
        mounts = [dict(m) for m in plan.expected] if plan.steps else reader.layout_mounts(spec)
        changed = plan.changed
    else:
        mounts = reader.layout_mounts(spec)
        changed = bool(run.runner.commands or executor.created_dirs)
    return dict(changed=changed, mounts=mounts, created_dirs=executor.created_dirs,
                steps=[s.as_dict() for s in plan.steps])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", default="/mnt"),
            size=dict(type="str", default="25%"),
            mode=dict(type="str", default="755"),
            boot_device=dict(type="str"),
            boot_options=dict(type="list", elements="str", default=["umask=0077"]),
            nix_device=dict(type="str"),
            persist_dir=dict(type="str", default="/nix/persist"),
            persist=dict(type="list", elements="str", default=["/etc/nixos", "/var/log"]),
            swap_device=dict(type="str"),
            state=dict(type="str", choices=["mounted", "unmounted"], default="mounted"),
            pending_devices=dict(type="list", elements="str", default=[]),
        ),
        required_if=[("state", "mounted", ["nix_device"])],
        supports_check_mode=True,
    )
    run_module(module, mount_layout)


if __name__ == "__main__":
    main()
