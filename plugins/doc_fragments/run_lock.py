# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The run lock option of every impermanent.nixos module that writes
(extends_documentation_fragment: impermanent.nixos.run_lock; module_utils/_runlock.py)."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  lock_timeout:
    description:
      - How many seconds to wait for another impermanent.nixos module on the same host to end. Then the module
        fails before reading anything; the result's C(refused) is C(busy) and C(lock_holder) names the other run.
      - A module that writes holds the run lock C(/run/impermanent-nixos.lock) for its whole call (a shared lock in
        check mode, so plans run side by side but never read what a writer is half-way through). A controller that
        dies (a dropped SSH session, a kill) leaves its module running on the target; a rerun waits for it instead
        of writing beside it.
      - The kernel drops the lock when the holding process ends, however it ends, so a killed run leaves no stale
        lock. V(0) tries once.
    type: int
    default: 30
"""
