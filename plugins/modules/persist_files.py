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
  - impermanent.nixos.run_lock
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module, with_run_lock
from ansible_collections.impermanent.nixos.plugins.module_utils._step_persist_files import MODULE_SPEC, failed_fields, run_step


def main():
    module = AnsibleModule(**with_run_lock(MODULE_SPEC))
    run_module(module, run_step, commands=False, failed=failed_fields(module.params))


if __name__ == "__main__":
    main()
