#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: persist_files
short_description: Write directories and small files (host keys, machine id, password hashes) below a target root in one call
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
description:
  - Writes the persisted identity of a host that is being installed (its SSH host keys, C(/etc/machine-id), the
    users' password hash files, extra files) below O(root) in a single module call, where
    M(ansible.builtin.copy) and M(ansible.builtin.file) need two or more calls per file.
  - Every path must be below O(root) and is resolved component by component; a symbolic link anywhere below
    O(root) is refused, naming the link, so nothing is ever written outside the new system.
  - A file is written atomically, the way a private key must be written, a temporary file in the same directory,
    created with mode C(0600), owner and mode set before any content goes in, fsync, rename, fsync of the
    directory. An existing file with the same content only gets its owner and mode corrected.
  - Contents are never returned or shown in a diff; the results hold paths, actions and modes only.
  - Make the task C(no_log) when a content is secret. Ansible logs every module's arguments to the
    target's journal and masks a C(no_log) option's value there only where it appears verbatim, which a content
    with a newline (a key, a hash file) does not, since the list is logged as its repr, with the newline escaped.
  - Missing directories above an entry are created with mode C(0755), owned by root. O(root) itself must exist
    (in check mode a missing O(root) is planned as an empty directory, with a warning).
extends_documentation_fragment:
  - impermanent.nixos.attributes
attributes:
  check_mode:
    details: Returns the actions it would take; writes nothing. Fails where the run would (a link below O(root), a
      directory where a file is asked for, an unknown owner).
  diff_mode:
    support: full
    details: The diff lists paths with their modes before and after, never contents.
requirements:
  - nothing beyond the target's Python
seealso:
  - module: ansible.builtin.copy
    description: One file per call, with a stat call before it; this module writes all of a host's identity in one.
options:
  root:
    description:
      - The target root every path must stay below, usually where the new system is mounted.
    type: path
    required: true
  directories:
    description:
      - Directories to create (or whose owner and mode to correct), in order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path below O(root).
        type: path
        required: true
      mode:
        description: Octal mode string.
        type: str
        default: "0755"
      owner:
        description: User name (looked up on the system the module runs on) or number.
        type: str
        default: root
      group:
        description: Group name or number.
        type: str
        default: root
  files:
    description:
      - Files to write (or whose owner and mode to correct), after the directories.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path below O(root).
        type: path
        required: true
      content:
        description: The file's whole content, written as UTF-8. Never logged or returned.
        type: str
        required: true
      mode:
        description: Octal mode string.
        type: str
        default: "0600"
      owner:
        description: User name (looked up on the system the module runs on) or number.
        type: str
        default: root
      group:
        description: Group name or number.
        type: str
        default: root
"""

EXAMPLES = r"""
- name: Write a host's SSH host key and machine id into the persistent directory of the new system
  impermanent.nixos.persist_files:
    root: /mnt
    directories:
      - path: /mnt/nix/persist/etc/ssh
    files:
      - path: /mnt/nix/persist/etc/ssh/ssh_host_ed25519_key
        content: "{{ host_private_key }}\n"
        mode: "0600"
      - path: /mnt/nix/persist/etc/machine-id
        content: "{{ machine_id }}\n"
        mode: "0444"
"""

RETURN = r"""
actions:
  description: What was done (in check mode, would be done), in order; entries already in place are left out.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The entry's path.
      type: str
    kind:
      description: V(dir) or V(file).
      type: str
    action:
      description: V(create), V(update) (new content) or V(attributes) (owner or mode only).
      type: str
    mode_before:
      description: The mode before, or null when the entry did not exist.
      type: str
    mode_after:
      description: The mode after.
      type: str
  sample: [{"path": "/mnt/nix/persist/etc/machine-id", "kind": "file", "action": "create", "mode_before": null,
            "mode_after": "0444"}]
"""

import os
import posixpath

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.impermanent.nixos.plugins.module_utils._files import (
    FilesError, Wanted, apply_action, parse_mode, plan_entry, read_entry, resolve_owner)
from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module
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


def main():
    entry = dict(path=dict(type="path", required=True), owner=dict(type="str", default="root"),
                 group=dict(type="str", default="root"))
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            directories=dict(type="list", elements="dict", default=[],
                             options=dict(entry, mode=dict(type="str", default="0755"))),
            files=dict(type="list", elements="dict", default=[],
                       options=dict(entry, mode=dict(type="str", default="0600"),
                                    content=dict(type="str", required=True, no_log=True))),
        ),
        supports_check_mode=True,
    )
    run_module(module, persist, commands=False)


if __name__ == "__main__":
    main()
