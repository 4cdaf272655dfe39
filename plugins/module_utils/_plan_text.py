# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The text of an install plan: what install_plan returned for each step, as the lines a person reads before
anything is written (the provision playbook's check mode prints them; the ``install_plan_text`` filter).

Pure: it reads the steps as they were given to install_plan (their options, references included) and the module's
result, and never prints an option's value that the step's module marks secret (it prints no option value at all
but device paths, the root and the flake directory, and what the steps returned).
"""

from __future__ import annotations

import difflib
import json
import shlex

from ansible_collections.impermanent.nixos.plugins.module_utils import _install_plan as iplan

VERBS = {"create": "create", "update": "replace the content of", "attributes": "set the owner and mode of"}


def _resolved(given, planned):
    """Each planned step's options (as given), with references resolved from the results of the steps before it."""
    params_of = dict((item["module"], item.get("params") or {}) for item in given)
    results, resolved = {}, {}
    for entry in planned:
        step = entry["module"]
        try:
            resolved[step] = iplan.resolve_refs(params_of.get(step, {}), results, step)
        except iplan.InstallPlanError:
            resolved[step] = {}
        results[step] = dict(entry.get("result") or {}, changed=entry.get("changed"))
    return resolved


def diff_lines(diff):
    """A step's ``diff`` field as unified diff lines (what ``--diff`` shows for a module's diff)."""
    before, after = diff.get("before") or "", diff.get("after") or ""
    if before == after:
        return []
    return [line.rstrip("\n") for line in difflib.unified_diff(
        _lines(before), _lines(after), fromfile=diff.get("before_header") or "before",
        tofile=diff.get("after_header") or "after")]


def _lines(text):
    """``text`` as lines that keep their newline, split at newlines only (str.splitlines also splits at form
    feeds and other separators, which a file may hold inside a line)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return [line for line in lines if line]


def _commands(entry, indent="  ", suffix=""):
    return ["%swould run: %s%s" % (indent, c, suffix) for c in entry.get("commands") or []]


def _gpt(entry, params):
    r = entry["result"]
    lines = ["Partition table for %s (%s), planned by impermanent.nixos.gpt_partition: GPT, alignment %s bytes, "
             "%s-byte sectors; offsets in bytes, end inclusive:"
             % (params.get("device") or r.get("device"), r.get("device"), r.get("alignment_bytes"),
                r.get("sector_size"))]
    row = "  %(number)s %(name)s %(path)s start=%(start)s end=%(end)s size=%(size)s type=%(type)s"
    lines += [row % p for p in r.get("partitions") or []]
    lines += _commands(entry)
    lines += ["  note: %s" % n for n in r.get("notes") or []]
    return lines


def _luks(entry, params):
    r = entry["result"]
    how = "luksFormat, then open" if r.get("formatted") else "open the existing header"
    return (["LUKS on %s, planned by impermanent.nixos.luks_open (%s as %s; the key goes on stdin):"
             % (params.get("device"), how, r.get("mapper"))] + _commands(entry))


def _filesystems(entry, params):
    return ["File systems, by impermanent.nixos.filesystems (never over an existing file system):"] + _commands(entry)


def _mounts(entry, params):
    lines = ["Mounts under %s, planned by impermanent.nixos.tmpfs_root:" % params.get("root")]
    for step in entry["result"].get("steps") or []:
        if step.get("kind") == "mkdir":
            lines.append("  would create directory %s" % step.get("target"))
        else:
            lines.append("  would run: %s" % " ".join(shlex.quote(a) for a in step.get("argv") or []))
    return lines


def _files(entry, params):
    actions = entry["result"].get("actions") or []
    if not actions:
        return []
    lines = ["Files under %s, planned by impermanent.nixos.persist_files (contents are never shown):"
             % params.get("root")]
    for a in actions:
        kind = "directory" if a.get("kind") == "dir" else a.get("kind")
        verb = VERBS.get(a.get("action"), a.get("action"))
        lines.append("  would %s %s %s (mode %s)" % (verb, kind, a.get("path"), a.get("mode_after")))
    return lines


def _hwconfig(entry, params):
    r = entry["result"]
    path = params.get("path") or r.get("path")
    lines = ["would run: %s  (%s does not exist yet)" % (c, path) for c in entry.get("commands") or []]
    patched = r.get("patched")
    if patched:
        lines.append("impermanent.nixos.hwconfig_patch would edit %s%s:" % (path, (
            ", planned on a stand-in because the file does not exist yet (the edits are the real ones; the rest of "
            "the file, and options the generator writes itself, are not known before it runs)")
            if r.get("stand_in") else ""))
        for fs in (patched.get("root"), patched.get("boot")):
            if fs and fs.get("changed"):
                lines.append('  fileSystems."%s".options: %s -> %s' % (
                    fs.get("mountpoint"), _nix_list(fs.get("options_before")), _nix_list(fs.get("options_after"))))
        for swap in patched.get("swap") or []:
            if swap.get("device_before") != swap.get("device_after") or swap.get("random_encryption") != "present":
                lines.append("  swapDevices: %s -> %s, randomEncryption.enable = true (%s)" % (
                    swap.get("device_before"), swap.get("device_after"), swap.get("random_encryption")))
    return lines


def _nix_list(options):
    return "none" if options is None else json.dumps(options)


def _flake(entry, params):
    r = entry["result"]
    lines = []
    if r.get("starter_written"):
        lines.append("would write the starter %s into %s (their content: the diffs below)"
                     % (" and ".join(r["starter_written"]), params.get("flake")))
    unchecked = r.get("cmd") is not None and not r.get("flake_checked")
    lines.append("The flake and nixos-install, planned by impermanent.nixos.nixos_flake_install%s:" % (
        " (the flake is not there yet, so it was not checked and the files git would stage were not listed)"
        if unchecked else ""))
    return lines + _commands(entry)


RENDER = dict(gpt_partition=_gpt, luks_open=_luks, filesystems=_filesystems, tmpfs_root=_mounts,
              persist_files=_files, hwconfig_patch=_hwconfig, nixos_flake_install=_flake)


def plan_lines(given, result, diff=False):
    """The lines of the plan in ``result`` (what install_plan returned for the steps ``given`` to it), in install
    order: for each step that would change something, what it would do and the commands it would run; with
    ``diff``, each step's diff after its lines. Nothing for a step that is in place; one line when no step would
    change anything."""
    planned = result.get("steps") or []
    params = _resolved(given, planned)
    lines = []
    for entry in planned:
        if not entry.get("changed"):
            continue
        lines += RENDER[entry["module"]](entry, params.get(entry["module"]) or {})
        if diff:
            for d in entry["diff"] if isinstance(entry.get("diff"), list) else [entry.get("diff") or {}]:
                lines += ["  " + line for line in diff_lines(d)]
    if not lines:
        lines.append("Nothing to do: every step is in place.")
    return lines
