# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Small files (keys, a machine id, password hashes) written below a target root in one pass: the plan and the write.

:func:`plan_entries` compares what is asked for with what :func:`read_entry` found and says, per entry, what must
happen (``create``, ``update``, ``attributes`` or nothing). :func:`write_file` writes a file the way a key must be
written: a temporary file in the same directory, created with mode 0600, owner and mode set before the content goes
in, fsync, rename over the old one, fsync of the directory. A file's content is never returned or shown: the
plan holds digests only.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import tempfile
from collections import namedtuple

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

Wanted = namedtuple("Wanted", ["path", "kind", "mode", "uid", "gid", "content"])
Wanted.__doc__ = """One entry asked for: ``kind`` ``dir`` or ``file``; ``content`` bytes (files) or None."""

Found = namedtuple("Found", ["kind", "mode", "uid", "gid", "digest"])
Found.__doc__ = """What is at the path now: ``kind`` ``missing``, ``dir``, ``file`` or ``other``; ``digest`` of a file."""

Action = namedtuple("Action", ["path", "kind", "action", "mode_before", "mode_after"])


class FilesError(ModuleError, ValueError):
    """An entry that cannot be written as asked; the message names it and what to do."""


def parse_mode(value, path):
    """An octal mode string (``0600``, ``600``) as an int; only permission bits and the sticky bit."""
    text = str(value).strip()
    if not text or any(c not in "01234567" for c in text) or len(text) > 4:
        raise FilesError("mode %r of %s is not an octal mode such as 0600 or 0755" % (value, path))
    mode = int(text, 8)
    if mode & 0o6000:
        raise FilesError("mode %r of %s sets setuid or setgid; persist_files writes no such file" % (value, path))
    return mode


def resolve_owner(owner, group, path, getpwnam=pwd.getpwnam, getgrnam=grp.getgrnam):
    """Numeric ids for an owner and a group given by name (looked up on the machine the module runs on) or number."""
    def lookup(value, getter, attr, what):
        text = str(value)
        if text.isdigit():
            return int(text)
        try:
            return getattr(getter(text), attr)
        except KeyError:
            raise FilesError("%s %r of %s does not exist on this system; give a number or an existing name"
                             % (what, text, path))
    return lookup(owner, getpwnam, "pw_uid", "owner"), lookup(group, getgrnam, "gr_gid", "group")


def digest(data):
    return hashlib.sha256(data).hexdigest()


def read_entry(path, lstat=os.lstat, opener=open):
    """What is at ``path`` now (links are not followed: a link is ``other``)."""
    try:
        st = lstat(path)
    except FileNotFoundError:
        return Found("missing", None, None, None, None)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return Found("dir", mode, st.st_uid, st.st_gid, None)
    if stat.S_ISREG(st.st_mode):
        with opener(path, "rb") as f:
            return Found("file", mode, st.st_uid, st.st_gid, digest(f.read()))
    return Found("other", mode, st.st_uid, st.st_gid, None)


def plan_entry(wanted, found):
    """The action for one entry: None when it is in place; raises FilesError when something else stands there."""
    if found.kind == "missing":
        action = "create"
    elif found.kind != wanted.kind:
        raise FilesError("%s is a %s, not a %s; persist_files never replaces one with the other: remove it or "
                         "choose another path" % (wanted.path, "link or special file" if found.kind == "other"
                                                  else {"dir": "directory", "file": "file"}[found.kind],
                                                  {"dir": "directory", "file": "file"}[wanted.kind]))
    elif wanted.kind == "file" and found.digest != digest(wanted.content):
        action = "update"
    elif (found.mode, found.uid, found.gid) != (wanted.mode, wanted.uid, wanted.gid):
        action = "attributes"
    else:
        return None
    return Action(wanted.path, wanted.kind, action, None if found.mode is None else "%04o" % found.mode,
                  "%04o" % wanted.mode)


def write_file(wanted):
    """Write a file atomically with its owner and mode set before any content is in it."""
    directory = os.path.dirname(wanted.path)
    fd, tmp = tempfile.mkstemp(prefix=".persist_files.", dir=directory)
    try:
        os.fchown(fd, wanted.uid, wanted.gid)
        os.fchmod(fd, wanted.mode)
        with os.fdopen(fd, "wb") as f:
            fd = None
            f.write(wanted.content)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, wanted.path)
        tmp = None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None:
            os.unlink(tmp)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def apply_action(wanted, action):
    """Carry out one planned action (the directories above it exist: entries are applied in order)."""
    if wanted.kind == "dir":
        if action.action == "create":
            os.mkdir(wanted.path, 0o700)
        os.chown(wanted.path, wanted.uid, wanted.gid)
        os.chmod(wanted.path, wanted.mode)
    elif action.action == "attributes":
        os.chown(wanted.path, wanted.uid, wanted.gid)
        os.chmod(wanted.path, wanted.mode)
    else:
        write_file(wanted)
