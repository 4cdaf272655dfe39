#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors
"""Finding what to persist on an impermanent NixOS system (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: persist_audit
short_description: Find what lives on a tmpfs root but is not persisted (and what persist holds that root does not)
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
description:
  - Answers the question of the install guide's step "finding what to persist", which runs
    C(rsync -amvxx --dry-run --no-links --exclude '/tmp/*' --exclude '/root/*' / /nix/persist/),
    without rsync and without changing anything.
  - The set of paths it reports (RV(unpersisted) plus RV(differing)) is the set of names that rsync command prints,
    computed with the same rules. It stays on the file system of O(root) and leaves mount points out entirely
    (C(-xx)); bind mounts made by the impermanence module are therefore not reported. Symbolic links are never
    reported (C(--no-links)), but like in rsync a directory holding only symlinks is not pruned as empty (C(-m)).
    Directories with nothing but empty directories below them are pruned.
  - A regular file present on both sides is reported in RV(differing) when its size or its modification time in
    whole seconds differ (rsync's quick check); a directory when its mtime, permissions or (run as root) owner or
    group differ; a device when its device number differs; anything when its file type differs. Fifos and sockets
    are reported only when missing or of another type, like rsync C(-a) does.
  - Two deliberate differences from rsync. When O(persist) lies inside O(root) on the same file system (or the
    reverse), the walk does not descend into it (rsync would copy it into itself); the path is returned in
    RV(not_walked). A non-directory where the other side has a non-empty directory is reported in RV(differing)
    (type); rsync without C(--force) fails to replace it ("could not make way") and lists nothing.
  - O(root) and O(persist) may be symbolic links to directories. Like rsync, which is given C(SRC/) and C(DST/),
    the module follows a link at the top of either side (and only there; links below it are never followed).
  - With O(direction=orphaned) the same comparison runs from O(persist) to O(root) (C(rsync ... /nix/persist/ /)),
    listing what persist holds that the running system does not have.
  - On a large tree (past a few thousand entries), walks disjoint subtrees in parallel worker processes, one per
    usable CPU (at most 8), the way rsync runs a sender and a receiver process side by side. See
    C(benchmarks/README.md) for its speed next to C(rsync --dry-run).
  - Also returns a suggested C(environment.persistence) snippet for the impermanence NixOS module, grouped into
    directories and files, with well-known state (machine id, SSH host keys, C(/var/lib/nixos)…) called out.
options:
  root:
    description:
      - The running system's root (the rsync source). Paths in the results are relative to it, written with a
        leading C(/).
    type: path
    default: /
  persist:
    description:
      - The persistent tree (the rsync destination).
      - When it lies below O(root), the snippet names it by its path relative to O(root) (so auditing C(/mnt) with
        persist C(/mnt/nix/persist) suggests C(environment.persistence."/nix/persist")).
    type: path
    default: /nix/persist
  exclude:
    description:
      - rsync C(--exclude) patterns, matched against paths relative to the root of each walk.
      - A leading C(/) anchors the pattern at that root, otherwise it matches the end of the path at a component
        boundary (only the last component when the pattern has no C(/) and no C(**)). A trailing C(/) matches
        directories only; C(*), C(?) and C([...]) never match C(/); C(**) matches anything; a trailing C(/***)
        matches a directory and everything in it. A C(- ) prefix is accepted; include rules (C(+ )) are refused.
      - An excluded directory is not descended into.
    type: list
    elements: str
    default: ['/tmp/*', '/root/*']
  direction:
    description:
      - V(unpersisted) walks O(root) and compares with O(persist); V(orphaned) walks O(persist) and compares with
        O(root); V(both) does both.
    type: str
    choices: [unpersisted, orphaned, both]
    default: unpersisted
extends_documentation_fragment:
  - impermanent.nixos.attributes
attributes:
  check_mode:
    details: The module never changes anything; check mode runs the same read-only audit.
  diff_mode:
    support: none
notes:
  - Read-only, C(changed) is always V(false). Run it as root (C(become)) to read every directory; unreadable
    directories are reported in RV(errors) and the walk goes on.
  - Names that are not valid UTF-8 are returned with C(\\xNN) escapes in C(path) and their exact bytes in
    C(path_b64).
seealso:
  - name: impermanence NixOS module
    description: The module whose C(environment.persistence) option the snippet fills in.
    link: https://github.com/nix-community/impermanence
"""

EXAMPLES = r"""
- name: What lives on / but is not persisted?
  impermanent.nixos.persist_audit:
  become: true
  register: audit

- name: Show the suggestion
  ansible.builtin.debug:
    msg: "{{ audit.suggested_snippet }}"

- name: Both directions, with more excludes
  impermanent.nixos.persist_audit:
    direction: both
    exclude:
      - /tmp/*
      - /root/*
      - /var/cache/
      - "*.pid"
  become: true
  register: audit

- name: Audit an installed system mounted below /mnt from the live ISO
  impermanent.nixos.persist_audit:
    root: /mnt
    persist: /mnt/nix/persist
  become: true
"""

RETURN = r"""
root:
  description: The normalized O(root).
  returned: always
  type: str
  sample: /
persist:
  description: The normalized O(persist).
  returned: always
  type: str
  sample: /nix/persist
direction:
  description: The O(direction) audited.
  returned: always
  type: str
  sample: unpersisted
unpersisted:
  description:
    - Entries on O(root) that are missing from O(persist) (not pruned by C(-m), not excluded, not behind a mount
      point, not symlinks), sorted by path. Empty unless O(direction) is V(unpersisted) or V(both).
    - Each entry has C(path) (relative to O(root), leading C(/)), C(type) (V(file), V(dir), V(fifo), V(socket),
      V(chardev), V(blockdev)), C(size) (bytes, 0 for non-files), C(mtime) (seconds since the epoch) and, for a name
      that is not UTF-8, C(path_b64).
  returned: always
  type: list
  elements: dict
  sample:
    - {path: /etc/machine-id, type: file, size: 33, mtime: 1795000000}
    - {path: /var/lib/nixos, type: dir, size: 0, mtime: 1795000000}
differing:
  description:
    - Entries present on both sides that rsync would nevertheless update, with C(reasons) (V(size), V(mtime),
      V(type), V(perms), V(owner), V(group), V(rdev)). Together with RV(unpersisted) this is exactly what the rsync
      command lists; that includes C(/) itself (rsync's C(./)) when the two top directories' mtime or modes
      differ, which is the rule rather than the exception.
  returned: always
  type: list
  elements: dict
  sample:
    - {path: /var/lib/app/db, type: file, size: 4096, mtime: 1795000000, reasons: [size, mtime]}
orphaned:
  description:
    - Entries in O(persist) missing from O(root) (same shape as RV(unpersisted)), paths relative to O(persist).
      Empty unless O(direction) is V(orphaned) or V(both).
  returned: always
  type: list
  elements: dict
orphaned_differing:
  description: Like RV(differing), for the walk from O(persist) to O(root).
  returned: always
  type: list
  elements: dict
counts:
  description: Number of entries in each list.
  returned: always
  type: dict
  sample: {unpersisted: 12, differing: 3, orphaned: 0, orphaned_differing: 0}
total_size:
  description: Sum of the regular files' sizes in each list, in bytes.
  returned: always
  type: dict
  sample: {unpersisted: 40960, differing: 4096, orphaned: 0, orphaned_differing: 0}
excludes:
  description: The exclude patterns used.
  returned: always
  type: list
  elements: str
  sample: ['/tmp/*', '/root/*']
mount_points:
  description: Directories below O(root) left out because another file system is mounted there (C(-xx)).
  returned: always
  type: list
  elements: str
  sample: [/boot, /etc/nixos, /nix, /proc, /var/log]
persist_mount_points:
  description: Directories below O(persist) left out because another file system is mounted there.
  returned: always
  type: list
  elements: str
not_walked:
  description: Directories not walked because they are the other side of the audit.
  returned: always
  type: list
  elements: str
errors:
  description: Directories or files that could not be read; the walk went on without them.
  returned: always
  type: list
  elements: str
scanned:
  description: Walk statistics, C(entries) (directory entries examined), C(symlinks_skipped), C(workers) (processes
    that walked).
  returned: always
  type: dict
  sample: {entries: 5120, symlinks_skipped: 830, workers: 2}
suggested_snippet:
  description:
    - A Nix snippet for the impermanence module listing the unpersisted state. Each entry is covered by its
      top-most ancestor directory that is wholly missing from persist, except that container directories
      (C(/etc), C(/var), C(/var/lib), C(/home)…) are never suggested whole; other regular files are listed under
      C(files). Special files and files NixOS regenerates on activation are left out (see RV(notes)).
    - Empty when O(direction=orphaned).
  returned: always
  type: str
  sample: |
    environment.persistence."/nix/persist" = {
      directories = [
        "/var/lib/nixos"
      ];
      files = [
        "/etc/machine-id"
      ];
    };
snippet:
  description: The snippet's content as data, C(directories) and C(files).
  returned: always
  type: dict
  sample: {directories: [/var/lib/nixos], files: [/etc/machine-id]}
well_known:
  description: Well-known state found among the unpersisted entries, each with C(path) and C(why).
  returned: always
  type: list
  elements: dict
  sample:
    - {path: /etc/machine-id, why: "systemd machine id: ..."}
notes:
  description: Entries left out of the snippet and why.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError
from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module
from ansible_collections.impermanent.nixos.plugins.module_utils._paths import within
from ansible_collections.impermanent.nixos.plugins.module_utils._persist import (
    ExcludeSet,
    audit,
    build_snippet,
)


class PersistAudit:
    """Walks both trees and answers "what would rsync list?". Nothing to plan or execute: the module is read-only."""

    def __init__(self, root, persist, exclude, direction, workers=None):
        self.workers = workers  # None: one walker process per usable CPU (tests and benchmarks pin it)
        self.root = os.path.normpath(root)
        self.persist = os.path.normpath(persist)
        self.excludes = ExcludeSet(exclude)
        self.direction = direction

    def check(self):
        """A message a person can act on, or None when the two trees can be compared."""
        if not os.path.isdir(self.root):
            return "root %r is not a directory; set root to the system's root (default /)" % self.root
        if os.path.realpath(self.root) == os.path.realpath(self.persist):
            return "root and persist are the same directory (%r); set persist to the persistent tree" % self.root
        if self.direction in ("orphaned", "both") and not os.path.isdir(self.persist):
            return ("persist %r is not a directory, so nothing can be orphaned in it; set persist to the persistent "
                    "tree (default /nix/persist) or use direction=unpersisted" % self.persist)
        return None

    def persistence_name(self):
        """The persist path as the booted system sees it (relative to root when persist lies inside root).

        Compared as real paths, so that a root or persist given through a link is placed like rsync sees it.
        """
        real = (os.path.realpath(self.root), os.path.realpath(self.persist))
        for root, persist in ((self.root, self.persist), real):
            if root != "/" and within(persist, root):
                return persist[len(root):] or "/"
        return self.persist

    def run(self):
        result = audit(self.root, self.persist, self.excludes, self.direction, workers=self.workers)
        if self.direction == "orphaned":
            snippet = {"directories": [], "files": [], "well_known": [], "notes": [], "text": ""}
        else:
            snippet = build_snippet(result["unpersisted"], self.persistence_name())
        result.update(
            excludes=self.excludes.patterns,
            suggested_snippet=snippet["text"],
            snippet={"directories": snippet["directories"], "files": snippet["files"]},
            well_known=snippet["well_known"],
            notes=snippet["notes"],
        )
        return result


def audit_trees(run):
    """The module's body (see _module.run_module)."""
    p = run.params
    auditor = PersistAudit(p["root"], p["persist"], p["exclude"], p["direction"])
    problem = auditor.check()
    if problem:
        raise ModuleError(problem)
    try:
        result = auditor.run()
    except OSError as exc:
        raise ModuleError("cannot audit %s against %s: %s; check that both paths exist and are readable "
                          "(become: true)" % (auditor.root, auditor.persist, exc))
    return dict(result, changed=False, root=auditor.root, persist=auditor.persist, direction=auditor.direction)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", default="/"),
            persist=dict(type="path", default="/nix/persist"),
            exclude=dict(type="list", elements="str", default=["/tmp/*", "/root/*"]),
            direction=dict(type="str", default="unpersisted", choices=["unpersisted", "orphaned", "both"]),
        ),
        supports_check_mode=True,
    )
    # a failure has the fields of a failed command, though the module runs none
    # reads only: no run lock option, so no run lock (it audits an installed system, or a target no module writes)
    run_module(module, audit_trees, commands=False, failed=dict(rc=None, stdout="", stderr=""))


if __name__ == "__main__":
    main()
