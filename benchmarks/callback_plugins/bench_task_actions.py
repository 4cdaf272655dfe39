# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors
"""What each task of a run was (its action) and how each of its results ended, for benchmarks/bench_provision.py.

profile_tasks gives a task's name and time but not its action, so it cannot tell a module call on the target from
a set_fact on the controller. This callback writes one JSON document to $BENCH_TASK_ACTIONS at the end of the run:
a list of {"task", "action", "host", "status", "delegated_to"}, one per result (per item for a loop); bench_provision.py joins it
with the profile and counts the module calls.
"""
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: bench_task_actions
type: aggregate
short_description: Record each task result's action and status for bench_provision.py
description:
  - Writes a JSON list of task name, action, host, status (ok, changed, failed, skipped, unreachable) and the host
    a delegated task ran on (else null), one entry per result (per item for a loop), to the file named by the
    BENCH_TASK_ACTIONS environment variable.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_actions"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.rows = []

    def _add(self, result, status):
        # delegate_to: a module of a delegated task runs there (the identity role's controller-side tasks run on
        # localhost), not on the host in the inventory
        delegated = (result._result.get("_ansible_delegated_vars") or {}).get("ansible_delegated_host")
        self.rows.append({"task": result._task.get_name().strip(), "action": result._task.action,
                          "host": result._host.get_name(), "status": status,
                          "delegated_to": delegated or result._task.delegate_to or None})

    def _looped(self, result):
        # a loop's results are recorded item by item; its final aggregate result would count the task once more
        return bool(result._task.loop) and "results" in result._result

    def v2_runner_on_ok(self, result):
        if not self._looped(result):
            self._add(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not self._looped(result):
            self._add(result, "failed")

    def v2_runner_on_skipped(self, result):
        if not self._looped(result):
            self._add(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._add(result, "unreachable")

    def v2_runner_item_on_ok(self, result):
        self._add(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_item_on_failed(self, result):
        self._add(result, "failed")

    def v2_runner_item_on_skipped(self, result):
        self._add(result, "skipped")

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("BENCH_TASK_ACTIONS")
        if path:
            with open(path, "w") as f:
                json.dump(self.rows, f)
