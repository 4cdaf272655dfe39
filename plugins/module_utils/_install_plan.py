# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The pure part of the install_plan module: which steps an install has and in which order, how a step's
options name a result of an earlier step (``{"ref": ...}``), and what a step that would change something makes
pending for the steps after it (the forecast of one check-mode run).

The install steps, in the order a provision carries them out: :data:`STEPS`. An install plan lists some of them,
each at most once and in that order; each step's options are the options of the module of that name.

A reference stands for a value only known once an earlier step has planned or run: ``{"ref": "partition:NAME"}``
is the path of the partition named NAME in the gpt_partition step's result, ``{"ref": "mapper"}`` the
``/dev/mapper`` device of the luks_open step.
"""

from __future__ import annotations

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

STEPS = ("gpt_partition", "luks_open", "filesystems", "tmpfs_root", "persist_files", "hwconfig_patch",
         "nixos_flake_install")
REF = "ref"


class InstallPlanError(ModuleError, ValueError):
    """An install plan that cannot be planned as given (an unknown or repeated step, a bad reference)."""


def check_order(names):
    """Raise :class:`InstallPlanError` unless ``names`` are known steps, each once, in install order."""
    seen = []
    for name in names:
        if name not in STEPS:
            raise InstallPlanError("unknown install step %r; the steps are %s." % (name, ", ".join(STEPS)))
        if name in seen:
            raise InstallPlanError("the install step %s is listed twice; list each step once." % name)
        if seen and STEPS.index(name) < STEPS.index(seen[-1]):
            raise InstallPlanError("the install step %s is listed after %s; list the steps in the order %s."
                                   % (name, seen[-1], ", ".join(STEPS)))
        seen.append(name)


def is_ref(value):
    return isinstance(value, dict) and list(value) == [REF]


def resolve_ref(ref, results, step):
    """The value ``ref`` stands for, from ``results`` ({step: its result so far}); ``step`` names the step whose
    option holds it (for the message)."""
    if not isinstance(ref, str):
        raise InstallPlanError("%s: a reference must be a string such as 'partition:nix' or 'mapper', not %r."
                               % (step, ref))
    if ref.startswith("partition:"):
        name = ref.split(":", 1)[1]
        if "gpt_partition" not in results:
            raise InstallPlanError("%s: the reference %r needs a gpt_partition step before it." % (step, ref))
        paths = [p["path"] for p in results["gpt_partition"].get("partitions") or [] if p.get("name") == name]
        if len(paths) != 1:
            raise InstallPlanError("%s: the reference %r names no partition of the gpt_partition step (%s)."
                                   % (step, ref, ", ".join(sorted(p.get("name") or "" for p in
                                                                  results["gpt_partition"].get("partitions") or []))))
        return paths[0]
    if ref == "mapper":
        if "luks_open" not in results:
            raise InstallPlanError("%s: the reference 'mapper' needs a luks_open step before it." % step)
        return results["luks_open"]["mapper"]
    raise InstallPlanError("%s: unknown reference %r; use 'partition:NAME' or 'mapper'." % (step, ref))


def resolve_refs(value, results, step):
    """``value`` with every reference replaced by what it stands for (see the module docstring)."""
    if is_ref(value):
        return resolve_ref(value[REF], results, step)
    if isinstance(value, dict):
        return dict((k, resolve_refs(v, results, step)) for k, v in value.items())
    if isinstance(value, list):
        return [resolve_refs(v, results, step) for v in value]
    return value


class Forecast(object):
    """What the steps planned so far in this check-mode run would create, and which later steps therefore cannot
    read yet: ``devices`` (partitions of a table that would be written, a mapping that would be opened) and
    ``roots`` (a target root whose tmpfs and mounts would be made). The steps get it through their ModuleRun, never
    through a module option: a real run cannot be told that something is pending."""

    def __init__(self):
        self.devices = set()
        self.roots = set()

    def after(self, step, params, result):
        """Record what ``step`` (planned with ``params``, returning ``result``) would create."""
        if not result.get("changed"):
            return
        if step == "gpt_partition":
            self.devices.update(p["path"] for p in result.get("partitions") or [])
        elif step == "luks_open" and params.get("state", "opened") == "opened" and result.get("mapper"):
            self.devices.add(result["mapper"])
        elif step == "tmpfs_root" and params.get("state", "mounted") == "mounted":
            self.roots.add(params.get("root"))

    def run_kwargs(self, step, params, earlier, outside=False):
        """The forecast ``step`` (with ``params``) plans on, as keyword arguments of its
        :class:`._module.ModuleRun`: the pending devices, and for a root that is pending the stand-in devices of
        hwconfig_patch or the pending root of nixos_flake_install. ``earlier``: {step: params} of the steps planned
        before it (with their defaults); ``outside``: a task outside the plan makes the step's input (the git
        checkout of a flake), so it is pending too."""
        if outside and step != "nixos_flake_install":
            raise InstallPlanError("%s: only nixos_flake_install can have its input made outside the plan "
                                   "(made_outside: true); remove it from this step." % step)
        kwargs = dict(pending=frozenset(self.devices))
        if step == "hwconfig_patch" and self._root_pending(params):
            layout = earlier.get("tmpfs_root") or {}
            kwargs["stand_in"] = dict(boot_device=layout.get("boot_device") or "",
                                      swap_devices=[layout["swap_device"]] if layout.get("swap_device") else [])
        elif step == "nixos_flake_install" and (outside or self._root_pending(params)):
            kwargs["pending_roots"] = frozenset([params.get("root")])
        return kwargs

    def _root_pending(self, params):
        return params.get("root") is not None and params.get("root") in self.roots
