# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The body of the impermanent.nixos.tmpfs_root module: the reader of the mount table and the directories, the
executor that mounts the layout and the body that wires them, kept here so that install_plan can run it too.
"""

from __future__ import annotations

import os
import stat

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import device_identity
from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError
from ansible_collections.impermanent.nixos.plugins.module_utils._layout import (
    PENDING, Facts, MountLayoutError, LayoutPlanner, Spec)
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
        plan = LayoutPlanner(spec, reader.facts(spec, run.pending)).plan()
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


MODULE_SPEC = dict(
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
    ),
    supports_check_mode=True,
    required_if=[("state", "mounted", ["nix_device"])],
)

run_step = mount_layout


def failed_fields(params):
    """The ``failed=`` fields of :func:`._module.run_module`: none for this module."""
    return None
