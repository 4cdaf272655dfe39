# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The run harness every module of this collection uses: ``main()`` builds its AnsibleModule and calls
:func:`run_module` with a body; the harness does the rest the same way for every module.

The body gets a :class:`ModuleRun` (params, check and diff mode, the :class:`._command.CommandRunner`, the result
fields gathered so far, warnings) and returns the fields of a successful run. The harness

  * returns the ``commands`` list (what ran, or in check mode would run) in every result, success or failure,
    unless the module has none (``commands=False``);
  * turns a :class:`._errors.ModuleError` into ``fail_json``: the fields gathered so far in ``run.result``, the
    ``failed`` fields, then the error's own fields (``msg``; a :class:`._errors.Refused` adds ``refused``, a
    :class:`._command.CommandError` adds ``rc``, ``stdout``, ``stderr`` and ``cmd``, the quoted argv that never
    holds a secret because secrets go on stdin);
  * makes every text it returns valid UTF-8 (:func:`._command.safe_result`);
  * holds the run lock (:mod:`._runlock`) for the whole body of a module that writes: exclusive, or shared in
    check mode; a module that finds another run holding it waits up to its ``lock_timeout`` option, then fails
    (``refused: busy``) before reading anything.

Any other exception is a bug and reaches Ansible as a traceback.
"""

from __future__ import annotations

from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandRunner, safe_result
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError
from ansible_collections.impermanent.nixos.plugins.module_utils import _runlock


class ModuleRun(object):
    """What a module body works with."""

    def __init__(self, module, commands=True, pending=(), pending_roots=(), stand_in=None):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        # install_plan's forecast of what the steps before this one in the same check run would make; empty
        # outside check mode, so that it can never relax a real run
        #: devices an earlier step would create or replace: a body plans them as new instead of reading them
        self.pending = frozenset(pending) if self.check_mode else frozenset()
        #: target roots an earlier step would mount (or a task outside the plan would fill): not there yet as
        #: they will be
        self.pending_roots = frozenset(pending_roots) if self.check_mode else frozenset()
        #: hwconfig_patch: the devices of a root that is not mounted yet, for the stand-in hardware-configuration.nix
        #: its patch is planned on (``boot_device``, ``swap_devices``)
        self.stand_in = stand_in if self.check_mode else None
        self.diff_mode = bool(getattr(module, "_diff", False))
        self.runner = CommandRunner(module)
        #: fields every return of this run carries, success or failure; the body adds to them as it learns
        self.result = {}
        if commands:
            self.result["commands"] = self.runner.commands

    def warn(self, message):
        self.module.warn(message)

    @staticmethod
    def diff(before, after, before_header, after_header=None):
        """A ``diff`` result field (shown by ``--diff``)."""
        return dict(before=before, after=after, before_header=before_header,
                    after_header=before_header if after_header is None else after_header)


def failure(run, error, failed=None):
    """The fields of the failed task for ``error``: the run's result so far, ``failed``, then the error's."""
    fields = dict(run.result)
    fields.update(failed or {})
    fields.update(error.fail_fields())
    return safe_result(fields)


def with_run_lock(spec):
    """A writing module's ``AnsibleModule`` keyword arguments: ``spec`` with the run lock's ``lock_timeout``
    option added (doc fragment ``impermanent.nixos.run_lock``)."""
    spec = dict(spec)
    spec["argument_spec"] = dict(spec["argument_spec"], **_runlock.LOCK_OPTION)
    return spec


def run_module(module, body, commands=True, failed=None):
    """Run ``body(run)`` and end the module: ``exit_json`` with ``run.result`` and what the body returned, or
    ``fail_json`` for a :class:`._errors.ModuleError` (see the module docstring). ``failed``: fields only a failure
    returns. A module whose spec has the run lock's option (:func:`with_run_lock`: a module that writes) runs the
    body holding the run lock. Does not return."""
    run = ModuleRun(module, commands=commands)
    held = None
    try:
        if "lock_timeout" in module.params:
            held = _runlock.acquire(module.check_mode, module.params["lock_timeout"],
                                    holder=getattr(module, "_name", "an impermanent.nixos module"))
            waited = _runlock.waited_warning(held)
            if waited:
                run.warn(waited)
        returned = body(run)
    except ModuleError as e:
        fields = failure(run, e, failed)
    else:
        fields = None
    finally:
        # before the result goes out: a process that outlives the module (Mitogen's) must not keep the lock
        if held is not None:
            held.release()
    if fields is not None:
        module.fail_json(**fields)
    result = dict(run.result)
    result.update(returned or {})
    module.exit_json(**safe_result(result))
