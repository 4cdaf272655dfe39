#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: install_plan
short_description: Plan a whole install (or any run of its steps) in one call, and optionally carry it out
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
description:
  - Runs the deciding code of the install step modules (M(impermanent.nixos.gpt_partition),
    M(impermanent.nixos.luks_open), M(impermanent.nixos.filesystems), M(impermanent.nixos.tmpfs_root),
    M(impermanent.nixos.persist_files), M(impermanent.nixos.hwconfig_patch),
    M(impermanent.nixos.nixos_flake_install)) in check mode, in install order, in one process on the target, and
    returns each step's plan - whether it would change anything, the commands it would run, its diff and its
    result - in RV(steps). Without O(apply) it never writes anything, whatever the mode.
  - With O(apply=true) (and not in check mode) it first plans every step as above, then, unless the plan finds
    everything in place, carries the steps out in the same order and in the same one process, each with its
    module's own code and options, exactly as the step modules called one after the other would; each step reads
    what the steps before it really made. RV(steps) then says what each step did. A step the plan finds would be
    refused or fail is refused before anything is written. In check mode O(apply) changes nothing; the steps are
    planned.
  - Each step is planned on what the steps before it would do. The partitions of a table that
    gpt_partition would write and a mapping that luks_open would open are planned as new devices by the steps
    after it, not read as they are now; a root that tmpfs_root would mount makes hwconfig_patch plan on a stand-in
    and nixos_flake_install plan the install of a flake that is not there yet. A blank disk therefore shows the
    whole install.
  - RV(in_place) is true when no step would change anything (or, applied, changed anything); a playbook can then
    skip the step modules. Only a plan without any forecast can say so, so it is exact.
  - A step that would be refused (or, applied, fails) fails this module with that step's message prefixed with its
    name, its result fields (for example C(refused), the interlock's reason, and its C(commands)), C(step), the
    step's name, RV(steps) for the steps before it, and C(applied), whether the failure came after the steps
    began to be carried out (false - nothing was written). An applied step that fails leaves the steps before it
    done and the steps after it not started; a rerun resumes, as each step keeps what is already in place.
extends_documentation_fragment:
  - impermanent.nixos.attributes
  - impermanent.nixos.run_lock
attributes:
  check_mode:
    details: Without O(apply) the module is read-only and runs the same in check mode; in check mode O(apply) is
      ignored.
  diff_mode:
    support: full
    details: Each step's diff is returned in RV(steps[].diff).
options:
  steps:
    description:
      - The install steps to plan, in install order (V(gpt_partition), V(luks_open), V(filesystems),
        V(tmpfs_root), V(persist_files), V(hwconfig_patch), V(nixos_flake_install)), each at most once.
      - >-
        A value C({ref: "partition:NAME"}) anywhere in a step's O(steps[].params) stands for the path of the
        partition named NAME in the gpt_partition step's result, C({ref: mapper}) for the C(/dev/mapper) device
        of the luks_open step.
    type: list
    elements: dict
    required: true
    suboptions:
      module:
        description: The step, named by its module.
        type: str
        required: true
        choices: [gpt_partition, luks_open, filesystems, tmpfs_root, persist_files, hwconfig_patch,
                  nixos_flake_install]
      params:
        description:
          - The step module's options, checked against that module's own options. Options the module marks as
            secret (a LUKS passphrase, file contents) are masked in this module's output as in the step's.
        type: dict
        default: {}
      made_outside:
        description:
          - Plan the step as if its input were not there yet, because a task outside the plan makes it (the git
            checkout of a flake before V(nixos_flake_install)). Only V(nixos_flake_install) takes it.
          - Only plans use it; applied, each step reads what is there.
        type: bool
        default: false
  apply:
    description:
      - Carry the steps out instead of planning them (one module call for the whole install).
      - In check mode the steps are planned, as without it.
    type: bool
    default: false
notes:
  - Secrets given in a step's options are not logged on the target; the task that calls this module should still
    set C(no_log) when they are present, since Ansible shows a task's arguments at high verbosity.
seealso:
  - module: impermanent.nixos.gpt_partition
  - module: impermanent.nixos.nixos_flake_install
"""

EXAMPLES = r"""
- name: Plan the disk of an install (a blank disk shows every command)
  impermanent.nixos.install_plan:
    steps: &install_steps
      - module: gpt_partition
        params:
          device: /dev/vda
          partitions:
            - {name: boot, size: 512MiB, type: esp}
            - {name: nix, size: 100%, type: linux}
      - module: filesystems
        params:
          filesystems:
            - {device: {ref: "partition:boot"}, fstype: vfat, label: boot}
            - {device: {ref: "partition:nix"}, fstype: ext4, label: nixos}
  register: plan

- name: Show what would change
  ansible.builtin.debug:
    msg: "{{ plan.steps | selectattr('changed') | map(attribute='commands') | flatten }}"

- name: Carry the same steps out in one call (a rerun changes nothing)
  impermanent.nixos.install_plan:
    apply: true
    steps: *install_steps
"""

RETURN = r"""
steps:
  description: Each step's plan, in order, up to the step that fails (when one does).
  returned: always
  type: list
  elements: dict
  contains:
    module:
      description: The step.
      type: str
      sample: gpt_partition
    changed:
      description: Whether the step would change anything (applied, whether it changed anything).
      type: bool
    commands:
      description: The commands the step would run (applied, the commands it ran).
      type: list
      elements: str
    forecast:
      description: Whether the plan of this step rests on what an earlier step would do (devices or a root that
        do not exist yet as they will), rather than only on what is there now.
      type: bool
    diff:
      description: The step's diff, with C(--diff).
      type: dict
      returned: when the step returns one
    result:
      description: The rest of the step module's result (for example gpt_partition's C(partitions)).
      type: dict
in_place:
  description: True when no step would change anything (everything is in place); applied, when none changed anything.
  returned: success
  type: bool
first_change:
  description: The first step that would change something (applied, that changed something), or null.
  returned: success
  type: str
  sample: gpt_partition
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.impermanent.nixos.plugins.module_utils import _install_plan as iplan
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError
from ansible_collections.impermanent.nixos.plugins.module_utils._module import ModuleRun, run_module, with_run_lock
from ansible_collections.impermanent.nixos.plugins.module_utils import (
    _step_filesystems, _step_gpt_partition, _step_hwconfig_patch, _step_luks_open, _step_nixos_flake_install,
    _step_persist_files, _step_tmpfs_root,
)

STEP_CODE = dict(
    gpt_partition=_step_gpt_partition, luks_open=_step_luks_open, filesystems=_step_filesystems,
    tmpfs_root=_step_tmpfs_root, persist_files=_step_persist_files, hwconfig_patch=_step_hwconfig_patch,
    nixos_flake_install=_step_nixos_flake_install,
)


class StepModule(object):
    """The AnsibleModule as one step sees it: its own validated params, check mode unless the plan is applied,
    warnings prefixed with the step's name and added to ``warnings``; everything else (run_command, get_bin_path,
    ...) is the real module's."""

    def __init__(self, module, step, params, warnings, check_mode=True):
        self._module = module
        self._step = step
        self._warnings = warnings
        self.params = params
        self.check_mode = check_mode
        self._diff = getattr(module, "_diff", False)

    def warn(self, msg):
        self._warnings.append("%s: %s" % (self._step, msg))

    def __getattr__(self, name):
        return getattr(self._module, name)


def validate(module, step, params):
    """``params`` checked against the step module's own options, with its defaults; its secrets join the values
    this module masks."""
    spec = dict(STEP_CODE[step].MODULE_SPEC)
    spec.pop("supports_check_mode", None)
    result = ArgumentSpecValidator(**spec).validate(params)
    module.no_log_values.update(result._no_log_values)
    if result.error_messages:
        raise iplan.InstallPlanError("%s: %s" % (step, "; ".join(result.error_messages)))
    return result.validated_parameters


def run_steps(module, steps, apply, warnings):
    """Run the steps' code in order: planned (check mode, each on the forecast of the steps before it) or applied.
    Returns the steps' entries (see RETURN) and adds the steps' warnings to ``warnings``; a step's ModuleError is
    raised with its name, its fields and the entries of the steps before it."""
    done = []
    forecast = iplan.Forecast()
    results, earlier = {}, {}
    for item in steps:
        step = item["module"]
        params = validate(module, step, iplan.resolve_refs(item["params"] or {}, results, step))
        # applied, each step reads what the steps before it really made: nothing is forecast
        kwargs = {} if apply else forecast.run_kwargs(step, params, earlier, outside=item.get("made_outside"))
        relies = bool(forecast.devices or forecast.roots or item.get("made_outside"))
        step_run = ModuleRun(StepModule(module, step, params, warnings, check_mode=not apply), **kwargs)
        try:
            returned = STEP_CODE[step].run_step(step_run)
        except ModuleError as e:
            # the failed step's own fields (its commands so far, its failure fields), then the error's
            fields = dict(step_run.result)
            fields.update(STEP_CODE[step].failed_fields(params) or {})
            fields.update(e.result)
            e.msg = "%s: %s" % (step, e.msg)
            # applied: whether this call may have written anything (the steps are planned before they are applied)
            e.result = dict(fields, step=step, steps=done, applied=apply)
            raise
        result = dict(step_run.result)
        result.update(returned or {})
        entry = dict(module=step, changed=bool(result.pop("changed", False)),
                     commands=list(result.pop("commands", []) or []), forecast=relies)
        if "diff" in result:
            entry["diff"] = result.pop("diff")
        entry["result"] = result
        done.append(entry)
        results[step], earlier[step] = dict(result, changed=entry["changed"]), params
        if not apply:
            forecast.after(step, params, results[step])
    return done


def plan_install(run):
    """The module's body (see _module.run_module): plan the steps; with ``apply``, plan them all first (a step that
    would be refused is refused before anything is written) and then carry them out."""
    module = run.module
    apply = run.params["apply"] and not module.check_mode
    steps = run.params["steps"]
    run.result["steps"] = []
    iplan.check_order([s["module"] for s in steps])
    # the warnings of the run whose result is returned (the plan's are dropped when the steps are then applied:
    # the applied steps say again what still holds)
    warnings = []
    try:
        done = run.result["steps"] = run_steps(module, steps, False, warnings)
        if apply and any(s["changed"] for s in done):
            del warnings[:]
            run.result["steps"] = []
            done = run.result["steps"] = run_steps(module, steps, True, warnings)
    finally:
        for message in warnings:
            module.warn(message)
    first = [s["module"] for s in done if s["changed"]]
    # with apply, check mode reports what would change, as the step modules do; a plan alone changes nothing
    return dict(changed=bool(run.params["apply"] and first), in_place=not first,
                first_change=first[0] if first else None)


def main():
    module = AnsibleModule(**with_run_lock(dict(
        argument_spec=dict(
            steps=dict(type="list", elements="dict", required=True, options=dict(
                module=dict(type="str", required=True, choices=list(iplan.STEPS)),
                params=dict(type="dict", default={}),
                made_outside=dict(type="bool", default=False),
            )),
            apply=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
        # the steps' options may hold secrets (a passphrase, file contents): never log the invocation
        no_log=True,
    )))
    if not module.params["apply"]:
        # read-only whatever the mode: every step's code sees check mode, also where it asks the module itself
        module.check_mode = True
    run_module(module, plan_install, commands=False)


if __name__ == "__main__":
    main()
