# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The body of the impermanent.nixos.persist_files module: the entries asked for, checked below the root, and the
body that plans and writes them, kept here so that install_plan can run it too.
"""

from __future__ import annotations

import os
import posixpath

from ansible_collections.impermanent.nixos.plugins.module_utils._files import (
    FilesError, Wanted, apply_action, parse_mode, plan_entry, read_entry, resolve_owner)
from ansible_collections.impermanent.nixos.plugins.module_utils._paths import resolve_beneath

LINK_ADVICE = "persist_files writes below the root only through plain directories; remove the link"
IMPLICIT_DIR = dict(mode="0755", owner="0", group="0")


def wanted_entries(root, directories, files):
    """Every entry in the order it is applied: missing parents first (implicit, 0755 root), then as given
    (directories by depth, so a parent listed after its child is still made first)."""
    root = posixpath.normpath(root)
    entries, seen = [], set()

    def add(kind, spec, content=None):
        path = posixpath.normpath(spec["path"])
        if path == root:
            raise FilesError("%s is the root itself; give paths below it" % path)
        if path in seen:
            raise FilesError("%s is asked for twice; give each path once" % path)
        resolve_beneath(root, path, allow_links=False, link_advice=LINK_ADVICE)
        parent = posixpath.dirname(path)
        if parent != root and parent not in seen and not os.path.lexists(parent):
            add("dir", dict(IMPLICIT_DIR, path=parent))
        seen.add(path)
        uid, gid = resolve_owner(spec["owner"], spec["group"], path)
        entries.append(Wanted(path, kind, parse_mode(spec["mode"], path), uid, gid, content))

    for spec in sorted(directories, key=lambda d: posixpath.normpath(d["path"]).count("/")):
        add("dir", spec)
    for spec in files:
        add("file", spec, spec["content"].encode("utf-8", "surrogateescape"))
    return entries


def persist(run):
    """The module body: plan every entry, then write them (``run``: :class:`._module.ModuleRun`)."""
    p = run.params
    actions = run.result.setdefault("actions", [])
    if not os.path.isabs(p["root"]):
        raise FilesError("root %r must be an absolute path" % p["root"])
    if not os.path.isdir(p["root"]):
        if not run.check_mode:
            raise FilesError("root %s is not a directory; mount the new system there first (the layout role "
                             "does)" % p["root"])
        # check mode before the layout exists: everything would be created below the root the earlier steps make
        run.warn("%s does not exist yet; planned as an empty directory" % p["root"])
    try:
        # every entry is checked and planned before the first write
        planned = [(wanted, plan_entry(wanted, read_entry(wanted.path)))
                   for wanted in wanted_entries(p["root"], p["directories"], p["files"])]
        for wanted, action in planned:
            if action is None:
                continue
            if not run.check_mode:
                apply_action(wanted, action)
            actions.append(action._asdict())
    except OSError as e:
        raise FilesError("%s: %s" % (e.filename or p["root"], e.strerror or e))
    result = dict(changed=bool(actions))
    if run.diff_mode:
        def after(a):
            written = a["action"] in ("create", "update") and a["kind"] == "file"
            return "%s %s%s\n" % (a["path"], a["mode_after"], " (new content)" if written else "")
        result["diff"] = dict(
            before="".join("%s %s\n" % (a["path"], a["mode_before"]) for a in actions if a["mode_before"]),
            after="".join(after(a) for a in actions))
    return result


_ENTRY = dict(path=dict(type="path", required=True), owner=dict(type="str", default="root"),
              group=dict(type="str", default="root"))
MODULE_SPEC = dict(
    argument_spec=dict(
        root=dict(type="path", required=True),
        directories=dict(type="list", elements="dict", default=[],
                         options=dict(_ENTRY, mode=dict(type="str", default="0755"))),
        files=dict(type="list", elements="dict", default=[],
                   options=dict(_ENTRY, mode=dict(type="str", default="0600"),
                                content=dict(type="str", required=True, no_log=True))),
    ),
    supports_check_mode=True,
)

run_step = persist


def failed_fields(params):
    """The ``failed=`` fields of :func:`._module.run_module`: none for this module."""
    return None
