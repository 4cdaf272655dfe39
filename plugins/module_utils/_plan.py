# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The plan a module's planner returns and its executor runs: an ordered list of :class:`Step` and the warnings
found on the way. Pure data: deciding the steps (``*Planner``) and running them (``*Executor``) live elsewhere.

Used by tmpfs_root (:class:`._layout.MountPlan`: mkdir, mount, bind, swapon... and the mounts expected after
it), luks_open (:class:`._luks.LuksPlan`: format, open, close and the read-only verify) and filesystems
(:class:`._mkfs.MkfsPlan`: create or keep, one step per device, and the entries the module returns).
"""

from __future__ import annotations


class Step(object):
    """One thing to do: ``kind`` (the module's vocabulary), ``why`` (shown to the user), ``target`` (the path or
    device it acts on), ``argv`` (the command, when the module runs one as it is). ``writes``: whether it changes
    something (a read-only step, such as a key check, does not make the run changed)."""

    def __init__(self, kind, target=None, argv=None, why="", conditional=False, writes=True):
        self.kind = kind
        self.target = target
        self.argv = argv
        self.why = why
        self.conditional = conditional  # do it only if still needed when its turn comes (e.g. mkdir when missing)
        self.writes = writes

    def as_dict(self):
        d = dict(kind=self.kind, target=self.target, why=self.why)
        if self.argv:
            d["argv"] = list(self.argv)
        return d

    def __repr__(self):
        return "%s(%s %s %s)" % (type(self).__name__, self.kind, self.target, self.argv)


class Plan(object):
    """The steps in order, and warnings for the user. ``add`` builds a ``step_type`` from its arguments."""

    step_type = Step

    def __init__(self):
        self.steps = []
        self.warnings = []

    def add(self, *args, **kwargs):
        step = self.step_type(*args, **kwargs)
        self.steps.append(step)
        return step

    @property
    def kinds(self):
        return [s.kind for s in self.steps]

    @property
    def changed(self):
        """Whether running the plan changes anything: one step that writes."""
        return any(s.writes for s in self.steps)
