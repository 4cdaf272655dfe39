# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The body of the impermanent.nixos.filesystems module: every device read first (signature, users, the running
system's disk), the plan of :mod:`._mkfs`, then the mkfs commands, and the module's argument spec, kept here so
that install_plan can run it too.
"""

from __future__ import annotations

import os
from stat import S_ISBLK

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import (
    BLKID_AMBIVALENT, device_identity, probe_signature,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._inuse import UsageProbe
from ansible_collections.impermanent.nixos.plugins.module_utils import _mkfs as mkfs


def read_device(runner, usage, device):
    """The :class:`._mkfs.DeviceFacts` of ``device``; read-only."""
    try:
        st = os.stat(device)
    except OSError:
        return mkfs.DeviceFacts(exists=False)
    if not S_ISBLK(st.st_mode):
        raise mkfs.MkfsError("%s is not a block device; name a partition or a device-mapper device." % device)
    signature, ambivalent = {}, None
    try:
        signature = probe_signature(runner, device)
    except CommandError as e:
        if e.rc != BLKID_AMBIVALENT:
            raise
        ambivalent = (e.stderr or e.stdout).strip() or "blkid -p rc=%d" % e.rc
    try:
        users = usage.users(device)
        system = usage.system_disk(device)
    except (IOError, OSError) as e:
        raise mkfs.MkfsRefused("cannot tell whether %s is in use (%s); nothing was written." % (device, e), "in_use")
    return mkfs.DeviceFacts(identity=device_identity(device, files=False), signature=signature,
                            ambivalent=ambivalent, users=users, system=system)


def make_filesystems(run):
    """The module's body (see _module.run_module)."""
    run.result.update(changed=False, filesystems=[])
    wanted = mkfs.parse_wanted(run.params["filesystems"])
    usage = UsageProbe()
    # a device an earlier step of this check run would create or replace is planned as missing, not read
    facts = dict((w.device, mkfs.DeviceFacts(exists=False) if w.device in run.pending
                  else read_device(run.runner, usage, w.device)) for w in wanted)
    steps = mkfs.plan(wanted, facts, check_mode=run.check_mode)
    creates = [(want, step) for want, step in zip(wanted, steps.steps) if step.kind == "create"]
    # looked up only for the types to make: a run that keeps everything needs none of them
    programs = dict((t, run.runner.find(mkfs.PROGRAMS[t])) for t in sorted(set(w.fstype for w, _s in creates)))
    for warning in steps.warnings:
        run.warn(warning)
    for want, _step in creates:
        argv = mkfs.mkfs_argv(want.fstype, want.device, want.label, programs[want.fstype])
        if run.check_mode:
            run.runner.would_run(argv)
        else:
            run.runner.run(argv, what=mkfs.PROGRAMS[want.fstype])
    return dict(changed=bool(creates), filesystems=steps.entries)


MODULE_SPEC = dict(
    argument_spec=dict(
        filesystems=dict(type="list", elements="dict", required=True, options=dict(
            device=dict(type="path", required=True),
            fstype=dict(type="str", required=True, choices=list(mkfs.FSTYPES)),
            label=dict(type="str"),
        )),
    ),
    supports_check_mode=True,
)

run_step = make_filesystems


def failed_fields(params):
    """None: a failure returns the fields the run gathered and the error's own, nothing more."""
    return None
