#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: install_plan
short_description: Plan a whole install (or any run of its steps) in one read-only call
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
description:
  - Runs the deciding code of the install step modules (M(impermanent.nixos.gpt_partition),
    M(impermanent.nixos.luks_open), M(impermanent.nixos.filesystems), M(impermanent.nixos.tmpfs_root),
    M(impermanent.nixos.persist_files), M(impermanent.nixos.hwconfig_patch),
    M(impermanent.nixos.nixos_flake_install)) in check mode, in install order, in one process on the target, and
    returns each step's plan - whether it would change anything, the commands it would run, its diff and its
    result - in RV(steps). It never writes anything, whatever the mode.
  - Each step is planned on what the steps before it would do. The partitions of a table that
    gpt_partition would write and a mapping that luks_open would open are planned as new devices by the steps
    after it, not read as they are now; a root that tmpfs_root would mount makes hwconfig_patch plan on a stand-in
    and nixos_flake_install plan the install of a flake that is not there yet. A blank disk therefore shows the
    whole install.
  - RV(in_place) is true when no step would change anything; a playbook can then skip the step modules. Only a
    plan without any forecast can say so, so it is exact.
  - A step that would be refused fails this module with that step's message prefixed with its name, its result
    fields (for example C(refused), the interlock's reason) and C(step), the step's name.
extends_documentation_fragment:
  - impermanent.nixos.attributes
attributes:
  check_mode:
    details: The module is read-only; it runs the same in check mode.
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
    steps:
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
      description: Whether the step would change anything.
      type: bool
    commands:
      description: The commands the step would run.
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
  description: True when no step would change anything (everything is in place).
  returned: success
  type: bool
first_change:
  description: The first step that would change something, or null.
  returned: success
  type: str
  sample: gpt_partition
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.impermanent.nixos.plugins.module_utils import _install_plan as iplan
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError
from ansible_collections.impermanent.nixos.plugins.module_utils._module import ModuleRun, run_module
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
    """The AnsibleModule as one step sees it: its own validated params, always check mode, warnings prefixed with
    the step's name; everything else (run_command, get_bin_path, ...) is the real module's."""

    def __init__(self, module, step, params):
        self._module = module
        self._step = step
        self.params = params
        self.check_mode = True
        self._diff = getattr(module, "_diff", False)

    def warn(self, msg):
        self._module.warn("%s: %s" % (self._step, msg))

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


def plan_install(run):
    """The module's body (see _module.run_module)."""
    module = run.module
    steps = run.params["steps"]
    planned = run.result["steps"] = []
    iplan.check_order([s["module"] for s in steps])
    forecast = iplan.Forecast()
    results, earlier = {}, {}
    for item in steps:
        step = item["module"]
        params = validate(module, step, iplan.resolve_refs(item["params"] or {}, results, step))
        extra = forecast.options(step, params, earlier)
        if extra:
            params = validate(module, step, dict(params, **extra))
        relies = bool(forecast.devices or forecast.roots)
        step_run = ModuleRun(StepModule(module, step, params), pending=forecast.devices)
        try:
            returned = STEP_CODE[step].run_step(step_run)
        except ModuleError as e:
            e.msg = "%s: %s" % (step, e.msg)
            e.result = dict(e.result, step=step)
            raise
        result = dict(step_run.result)
        result.update(returned or {})
        entry = dict(module=step, changed=bool(result.pop("changed", False)),
                     commands=list(result.pop("commands", []) or []), forecast=relies)
        if "diff" in result:
            entry["diff"] = result.pop("diff")
        entry["result"] = result
        planned.append(entry)
        results[step], earlier[step] = dict(result, changed=entry["changed"]), params
        forecast.after(step, params, results[step])
    first = [s["module"] for s in planned if s["changed"]]
    return dict(changed=False, in_place=not first, first_change=first[0] if first else None)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            steps=dict(type="list", elements="dict", required=True, options=dict(
                module=dict(type="str", required=True, choices=list(iplan.STEPS)),
                params=dict(type="dict", default={}),
            )),
        ),
        supports_check_mode=True,
        # the steps' options may hold secrets (a passphrase, file contents): never log the invocation
        no_log=True,
    )
    # read-only whatever the mode: every step's code sees check mode, also where it asks the module itself
    module.check_mode = True
    run_module(module, plan_install, commands=False)


if __name__ == "__main__":
    main()
