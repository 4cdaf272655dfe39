# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The body of the impermanent.nixos.luks_open module: the reader of the device and the mapping, the in-use
check before a luksFormat, the executor that hands the key to cryptsetup on stdin and the body that wires them,
kept here so that install_plan can run it too.
"""

from __future__ import annotations

import os

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import device_identity, probe_signature
from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._inuse import UsageProbe
from ansible_collections.impermanent.nixos.plugins.module_utils import _luks as luks


class LuksReader:
    """Read-only probes of the device and of the mapping."""

    def __init__(self, runner):
        self.runner = runner
        self.cryptsetup = runner.find("cryptsetup")

    def status(self, name):
        rc, out, err = self.runner.run([self.cryptsetup, "status", name], check_rc=False, record=False)
        return luks.parse_status(rc, out, err)

    def is_luks(self, device):
        rc, _out, _err = self.runner.run([self.cryptsetup, "isLuks", device], check_rc=False, record=False)
        return rc == 0

    def dump(self, device):
        _rc, out, _err = self.runner.run([self.cryptsetup, "luksDump", device], record=False,
                                         what="cryptsetup luksDump")
        return luks.parse_luks_dump(out)

    def probe(self, device):
        return probe_signature(self.runner, device)

    def facts(self, device, name, pending=False):
        status = self.status(name)
        if pending:
            # check mode: the device would be (re)created blank by an earlier step; what is there now is irrelevant
            return luks.LuksFacts(status, device_exists=False, pending=True)
        matches = False
        if status["active"] and device is not None:
            want = device_identity(device)
            matches = want is not None and want in (device_identity(status["device"] or ""),
                                                    device_identity(status["loop"] or ""))
        if device is None:
            return luks.LuksFacts(status, status_matches=matches, device_exists=False)
        exists = os.path.exists(device)
        is_luks = exists and self.is_luks(device)
        return luks.LuksFacts(
            status, status_matches=matches, is_luks=is_luks,
            probe=self.probe(device) if exists and not is_luks else {},
            dump=self.dump(device) if is_luks else None, device_exists=exists)


def check_not_in_use(device, probe):
    """Refuse to luksFormat a device that anything uses or that the running system lives on (see _inuse): a blank
    device can still back a loop device, hold a dm mapping or sit on the live system's disk."""
    try:
        users = probe.users(device)
        system = probe.system_disk(device)
    except (IOError, OSError) as e:
        raise luks.LuksRefused("cannot tell whether %s is in use (%s); nothing was formatted." % (device, e))
    if system:
        raise luks.LuksRefused("%s is on the disk the running system lives on: %s. luks_open never formats it; nothing "
                               "was written. Point device at a partition of the disk to install on." % (device, system))
    if users:
        raise luks.LuksRefused("%s is in use: %s. luks_open formats only a device nothing uses; unmount, swapoff, "
                               "detach (losetup -d) and close what is on it first. Nothing was written."
                               % (device, "; ".join(users)))


class LuksExecutor:
    """Runs the planned steps; the key goes on stdin only."""

    def __init__(self, runner, cryptsetup, request, check_mode):
        self.runner = runner
        self.cryptsetup = cryptsetup
        self.request = request
        self.check_mode = check_mode

    def argv(self, kind):
        req = self.request
        if kind == "format":
            return luks.format_argv(self.cryptsetup, req.device, req.options, req.key)
        if kind == "open":
            return luks.open_argv(self.cryptsetup, req.device, req.name, req.key)
        if kind == "verify":
            return luks.test_key_argv(self.cryptsetup, req.device, req.key)
        return luks.close_argv(self.cryptsetup, req.name)

    def run(self, plan):
        for step in plan.steps:
            argv = self.argv(step.kind)
            if step.writes and self.check_mode:
                self.runner.would_run(argv)
                continue
            data = self.request.key.data if step.kind in ("format", "open", "verify") else None
            try:
                self.runner.run(argv, data=data, binary_data=True, record=step.writes,
                                what="cryptsetup %s" % step.kind)
            except CommandError as e:
                raise self._explain(step.kind, e)

    def _explain(self, kind, error):
        if kind in ("open", "verify") and error.rc == luks.RC_WRONG_KEY:
            error.msg = ("%s does not unlock any key slot of %s (cryptsetup rc=2: %s). Nothing was changed; check "
                         "the passphrase or key file." % (self.request.key.describe(),
                                                          self.request.device, error.stderr.strip()))
        elif kind == "close" and error.rc == luks.RC_BUSY:
            error.msg = ("/dev/mapper/%s is in use (mounted, or a swap or LVM on it); unmount it before closing. "
                         "%s" % (self.request.name, error.stderr.strip()))
        return error


def open_or_close(run):
    """The module's body (see _module.run_module)."""
    p = run.params
    result = run.result
    result.update(changed=False, mapper="/dev/mapper/%s" % p["name"], uuid=None, formatted=False, opened=False,
                  luks=None)
    key = luks.Key(passphrase=p["passphrase"], keyfile=p["keyfile"])
    if key.keyfile is not None and not os.path.isfile(key.keyfile):
        raise luks.LuksError("keyfile=%s is not a file on the target." % key.keyfile)
    options = luks.FormatOptions(
        luks_type=p["type"], pbkdf=p["pbkdf"], pbkdf_memory=p["pbkdf_memory"],
        pbkdf_parallel=p["pbkdf_parallel"], iter_time=p["iter_time"],
        pbkdf_force_iterations=p["pbkdf_force_iterations"], label=p["label"])
    request = luks.LuksRequest(p["device"], p["name"], p["state"], p["format"], key, options)
    reader = LuksReader(run.runner)
    facts = reader.facts(p["device"], p["name"], pending=p["device"] in run.pending)
    plan = luks.LuksPlanner(request, facts, check_mode=run.check_mode).plan()
    if plan.formats:
        check_not_in_use(p["device"], UsageProbe())
    LuksExecutor(run.runner, reader.cryptsetup, request, run.check_mode).run(plan)
    for warning in plan.warnings:
        run.warn(warning)
    result.update(changed=plan.changed, formatted=plan.formats)
    if p["state"] == "opened":
        result["opened"] = True
    wrote_header = plan.formats and not run.check_mode
    if p["device"] is not None and (facts.is_luks or wrote_header):
        # the header read before the plan is still the one on disk unless a format wrote a new one
        dump = reader.dump(p["device"]) if wrote_header else facts.dump
        result["uuid"] = dump["uuid"]
        result["luks"] = dump
    return result


MODULE_SPEC = dict(
    argument_spec=dict(
        device=dict(type="path"),
        name=dict(type="str", default="crypted"),
        passphrase=dict(type="str", no_log=True),
        keyfile=dict(type="path", no_log=False),
        format=dict(type="bool", default=False),
        type=dict(type="str", choices=["luks2", "luks1"], default="luks2"),
        pbkdf=dict(type="str", choices=list(luks.PBKDFS)),
        pbkdf_memory=dict(type="int"),
        pbkdf_parallel=dict(type="int"),
        iter_time=dict(type="int"),
        pbkdf_force_iterations=dict(type="int"),
        label=dict(type="str"),
        state=dict(type="str", choices=["opened", "closed"], default="opened"),
    ),
    supports_check_mode=True,
    mutually_exclusive=[("passphrase", "keyfile"), ("iter_time", "pbkdf_force_iterations")],
    required_if=[("state", "opened", ["device"]), ("format", True, ["device"])],
)

run_step = open_or_close


def failed_fields(params):
    """The ``failed=`` fields of :func:`._module.run_module`: none for this module."""
    return None
