# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Pure parsers for the kernel's mount and swap tables.

``/proc/self/mountinfo`` (see proc(5)) has one line per mount::

    46 27 0:41 / /mnt rw,relatime shared:1 - tmpfs tmpfs rw,size=6170916k,mode=755
    (1)(2) (3) (4) (5)  (6)       (7)   (8) (9)  (10)  (11)

mount id, parent id, major:minor of the file system, the root of the mount inside that file system (not ``/`` for a
bind mount of a subdirectory), the mount point, per-mount options, optional fields ended by ``-``, fs type, source,
super-block options. The kernel writes space, tab, newline and backslash in paths as octal escapes (``\\040``).

:class:`MountTable` answers which mount a path really is on, walking the tree by parent ids the way the kernel does
path lookup, so that a mount hidden under a later one, or several mounts stacked on one mount point, are told apart.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections import namedtuple

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

_OCTAL = re.compile(rb"\\([0-7]{3})")
_SWAPS_BLANKS = re.compile(r"[ \t]+")


def unescape(field):
    """Undo the kernel's octal escapes (``\\040`` -> space) in one mountinfo or swaps field."""
    if "\\" not in field:
        return field
    raw = os.fsencode(field)
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), raw))


class MountInfoError(ModuleError, ValueError):
    """A line of mountinfo that does not have the documented shape."""


_FIELDS = ("mount_id", "parent_id", "major", "minor", "root", "target", "mount_options", "optional", "fstype",
           "source", "super_options")


class Mount(namedtuple("Mount", _FIELDS)):
    """One line of mountinfo."""

    __slots__ = ()

    @property
    def devno(self):
        return (self.major, self.minor)

    def option(self, name):
        """Value of a super-block option (``size`` -> ``'6170916k'``), True for a flag, None when absent."""
        for opt in self.super_options:
            key, sep, value = opt.partition("=")
            if key == name:
                return value if sep else True
        return None

    def options(self):
        """Per-mount then super-block options without repeats, the way findmnt's OPTIONS column shows them."""
        merged = []
        for opt in self.mount_options + self.super_options:
            if opt not in merged:
                merged.append(opt)
        return merged

    def describe_source(self):
        """The source as findmnt prints it: ``/dev/loop0[/persist/etc/nixos]`` for a bind of a subdirectory."""
        if self.root != "/":
            return "%s[%s]" % (self.source, self.root)
        return self.source

    def as_dict(self):
        return dict(target=self.target, source=self.describe_source(), fstype=self.fstype,
                    options=",".join(self.options()), root=self.root,
                    device="%d:%d" % self.devno)

    def __repr__(self):
        return "Mount(%d %d %d:%d %s %s %s %s)" % (self.mount_id, self.parent_id, self.major, self.minor,
                                                   self.root, self.target, self.fstype, self.source)


def parse_mountinfo_line(line):
    fields = line.split(" ")
    try:
        sep = fields.index("-", 6)
    except ValueError:
        raise MountInfoError("mountinfo line without the '-' separator: %r" % line)
    if sep + 3 > len(fields) or len(fields) < 10:
        raise MountInfoError("mountinfo line with too few fields: %r" % line)
    try:
        mount_id, parent_id = int(fields[0]), int(fields[1])
        major, minor = (int(x) for x in fields[2].split(":"))
    except ValueError:
        raise MountInfoError("mountinfo line with bad ids or major:minor: %r" % line)
    super_options = " ".join(fields[sep + 3:])
    return Mount(
        mount_id=mount_id,
        parent_id=parent_id,
        major=major,
        minor=minor,
        root=unescape(fields[3]),
        target=unescape(fields[4]),
        mount_options=fields[5].split(","),
        optional=fields[6:sep],
        fstype=unescape(fields[sep + 1]),
        source=unescape(fields[sep + 2]),
        super_options=[unescape(o) for o in super_options.split(",")] if super_options else [],
    )


def lines(text):
    """The lines of a kernel table. Only ``\\n`` ends one: the kernel escapes it in paths, but writes a carriage
    return, form feed or U+2028 in a path as it is (``str.splitlines`` would break the line there). Read the file
    with ``newline=""`` so Python does not turn a carriage return into ``\\n`` either."""
    return text.split("\n")


def parse_mountinfo(text):
    """All mounts of a mountinfo text, in the kernel's order."""
    return [parse_mountinfo_line(line) for line in lines(text) if line.strip()]


def _components(path):
    """'/a/b/c' -> ['/', '/a', '/a/b', '/a/b/c']"""
    path = posixpath.normpath(path)
    out = ["/"]
    if path == "/":
        return out
    cur = ""
    for part in path.strip("/").split("/"):
        cur += "/" + part
        out.append(cur)
    return out


class MountTable:
    """The mount tree of a mountinfo snapshot, resolved the way path lookup sees it."""

    def __init__(self, mounts):
        self.mounts = list(mounts)
        self._by_id = dict((m.mount_id, m) for m in self.mounts)

    @classmethod
    def from_text(cls, text):
        return cls(parse_mountinfo(text))

    def _children_at(self, parent, target):
        return [m for m in self.mounts if m.target == target and m.parent_id == parent.mount_id
                and m.mount_id != parent.mount_id]

    def _climb(self, mount, target, chain):
        """Follow mounts stacked on ``mount`` at ``target``; append each to chain; return the top one."""
        while True:
            above = self._children_at(mount, target)
            if not above:
                return mount
            mount = above[-1]
            chain.append(mount)

    def _root_mount(self):
        roots = [m for m in self.mounts if m.target == "/" and m.parent_id not in self._by_id]
        if not roots:
            roots = [m for m in self.mounts if m.target == "/"]
        if not roots:
            return None
        return roots[0]

    def stack(self, target):
        """Mounts on exactly ``target`` that path lookup reaches, bottom first; the last one is visible.

        Mounts on ``target`` that hang below a parent no longer visible (a tmpfs mounted later over an ancestor
        directory hides them) are not part of the stack.
        """
        return self._walk(target)[1]

    def visible(self, target):
        """The mount on exactly ``target`` that is visible, or None when ``target`` is not a mount point."""
        chain = self.stack(target)
        return chain[-1] if chain else None

    def containing(self, path):
        """The visible mount whose file system holds ``path`` (the mount point itself or its nearest ancestor)."""
        return self._walk(path)[0]

    def _walk(self, path):
        root = self._root_mount()
        if root is None:
            return None, []
        chain = [root]
        cur = self._climb(root, "/", chain)
        last_chain = chain
        for comp in _components(path)[1:]:
            chain = []
            children = self._children_at(cur, comp)
            if children:
                chain.append(children[-1])
                cur = self._climb(children[-1], comp, chain)
            last_chain = chain
        return cur, last_chain

    def below(self, path):
        """Visible mounts strictly below ``path`` (not ``path`` itself), parents before children."""
        path = posixpath.normpath(path)
        prefix = path.rstrip("/") + "/"
        found = []
        for target in sorted(set(m.target for m in self.mounts if m.target.startswith(prefix))):
            chain = self.stack(target)
            found.extend(chain)
        return found


def parse_swaps(text):
    """``/proc/swaps`` -> list of dicts (filename, type, size_kib, used_kib, priority); the header is skipped."""
    entries = []
    for line in lines(text)[1:]:
        fields = [f for f in _SWAPS_BLANKS.split(line) if f]  # the name may hold other white space, unescaped
        if len(fields) < 5:
            continue
        name = unescape(" ".join(fields[:-4]))
        # an unlinked swap file: d_path() appends " (deleted)", and the kernel escapes its blank as \040
        if name.endswith(" (deleted)"):
            name = name[: -len(" (deleted)")]
        entries.append(dict(filename=name, type=fields[-4], size_kib=int(fields[-3]),
                            used_kib=int(fields[-2]), priority=int(fields[-1])))
    return entries
