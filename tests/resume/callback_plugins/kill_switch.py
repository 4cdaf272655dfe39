# SPDX-License-Identifier: GPL-3.0-or-later
"""Test fixture, not part of the collection: SIGKILL this ansible-playbook process at a task boundary.

Enabled only by tests/resume/kill_chain.py (ANSIBLE_CALLBACKS_ENABLED=kill_switch). At the start of task number
N (counting every task start of the run, skipped ones included) it appends one JSON line to IMPERMANENT_KILL_LOG
and kills its own process with SIGKILL, the way a lost SSH session, an OOM kill or Ctrl-C twice would end it:
no cleanup, no handlers, nothing flushed. Which N:

- IMPERMANENT_KILL_MODE=every: the first task start after IMPERMANENT_KILL_AFTER (every boundary in turn);
- IMPERMANENT_KILL_MODE=changed: the first task start after IMPERMANENT_KILL_AFTER that follows a task which
  reported changed for some host (the boundaries where the target's state differs from the one before).

Without IMPERMANENT_KILL_AFTER it only records, in the same log, every task start and whether the task before it
changed something (a map of the run).
"""
from __future__ import annotations

import json
import os
import signal

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: kill_switch
type: aggregate
short_description: test fixture that SIGKILLs ansible-playbook at a task boundary
description: See the module docstring (tests/resume/callback_plugins/kill_switch.py).
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kill_switch"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        after = os.environ.get("IMPERMANENT_KILL_AFTER")
        self.after = int(after) if after not in (None, "") else None
        self.mode = os.environ.get("IMPERMANENT_KILL_MODE", "changed")
        self.log = os.environ.get("IMPERMANENT_KILL_LOG")
        self.index = 0
        self.previous = None
        self.previous_changed = False

    def _write(self, record):
        if not self.log:
            return
        with open(self.log, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.index += 1
        record = dict(index=self.index, task=task.get_name(), previous=self.previous,
                      previous_changed=self.previous_changed)
        if self.after is None:
            self._write(dict(record, event="start"))
        elif self.index > self.after and (self.mode == "every" or self.previous_changed):
            self._write(dict(record, event="kill"))
            os.kill(os.getpid(), signal.SIGKILL)
        self.previous = task.get_name()
        self.previous_changed = False

    def v2_runner_on_ok(self, result):
        if result._result.get("changed"):
            self.previous_changed = True
