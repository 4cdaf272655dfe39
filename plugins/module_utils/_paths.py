# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Paths below a target root that stay below it.

The modules create, mount and write below a root (``/mnt``) from the live system. The kernel follows every
symbolic link on the way, and an absolute link target means the *live* system's ``/``: ``/mnt/var -> /var`` makes
``/mnt/var/log`` the live system's ``/var/log``. :func:`resolve_beneath` walks a path one component at a time,
the way the kernel does, and refuses (naming the component) as soon as a link, a ``..`` or a chain of links would
lead out of the root, or a component that is not a directory stands where a directory must be.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections import namedtuple

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

# The kernel gives up after 40 links in one lookup (ELOOP); so does the walk.
MAX_LINKS = 40


class PathError(ModuleError, ValueError):
    """A path that must not be used below the root; the message names the component and what to do."""


Resolved = namedtuple("Resolved", ["path", "links", "missing", "kind"])
Resolved.__doc__ = """The result of :func:`resolve_beneath`.

``path``: the real path (every link followed, at or below the root's real path); ``links``: ``(link, target)``
pairs followed on the way, as real paths; ``missing``: the first component that does not exist (a real path), or
None; ``kind``: ``dir``, ``file``, ``other`` (device, fifo, socket) or ``missing`` for the last component.
"""


def within(path, base):
    """Is the normalized absolute ``path`` ``base`` or below it (compared by components, not by text)?"""
    path, base = posixpath.normpath(path), posixpath.normpath(base)
    return path == base or base == "/" or path.startswith(base + "/")


def _kind(mode):
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _parts(path):
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve_beneath(root, path, allow_links=True, link_advice=None, lstat=os.lstat, readlink=os.readlink):
    """Resolve ``path`` (``root`` itself or below it) component by component without leaving ``root``.

    ``root`` is trusted as given (its own links are followed with realpath); everything below it is checked.
    A relative link target is followed from the link's directory, an absolute one from ``/`` of the machine
    the module runs on (as the kernel does). Raises :class:`PathError` when

    * a link's target, or a ``..``, leads out of ``root`` (also when a later link would lead back in),
    * links loop (more than :data:`MAX_LINKS`),
    * an existing component that is not a directory has more components after it,
    * ``allow_links`` is false and any component below ``root`` is a link, even one that stays inside it
      (``link_advice`` says why that is refused; a link out of the root is reported as such first).

    Components that do not exist end the checks: what follows them does not exist either and would be created
    as plain directories. Returns a :class:`Resolved`.
    """
    root = posixpath.normpath(root)
    path = posixpath.normpath(path)
    if not root.startswith("/") or not path.startswith("/"):
        raise PathError("%r and %r must be absolute paths" % (root, path))
    if not within(path, root):
        raise PathError("%s is not below %s: every path the module creates, mounts or writes must be" % (path, root))
    real_root = os.path.realpath(root)
    rel = path[len(root):] if root != "/" else path
    # each pending component carries the link it came from (None: from ``path`` itself), for the message
    pending = [(name, None) for name in reversed(_parts(rel))]
    cur = real_root
    links = []
    missing = None
    kind = "dir"
    while pending:
        name, via = pending.pop()
        if name == "..":
            if cur == real_root:
                if via is None:
                    raise PathError("%s: '..' climbs out of %s" % (path, root))
                raise PathError("%s is a symbolic link to %s, which leads out of %s (through '..'); remove the "
                                "link (or make it point below %s)" % (via[0], via[1], root, root))
            cur = posixpath.dirname(cur)
            continue
        nxt = posixpath.join(cur, name)
        if missing is not None:
            cur = nxt
            continue
        try:
            st = lstat(nxt)
        except FileNotFoundError:
            missing, cur, kind = nxt, nxt, "missing"
            continue
        if stat.S_ISLNK(st.st_mode):
            target = readlink(nxt)
            if len(links) >= MAX_LINKS:
                raise PathError("%s: too many levels of symbolic links below %s (a loop; the last one followed "
                                "is %s -> %s)" % (path, root, nxt, target))
            links.append((nxt, target))
            parts = _parts(target)
            if target.startswith("/"):
                # absolute: the machine's own /; only a target spelled below the root stays inside it
                for base in (real_root, root):
                    prefix = _parts(base)
                    if parts[:len(prefix)] == prefix:
                        parts = parts[len(prefix):]
                        cur = real_root
                        break
                else:
                    raise PathError("%s is a symbolic link to %s, which is outside %s; remove the link (or make "
                                    "it point below %s)" % (nxt, target, root, root))
            pending.extend((part, (nxt, target)) for part in reversed(parts))
            kind = "dir"
            continue
        kind = _kind(st.st_mode)
        if kind != "dir" and pending:
            raise PathError("%s is not a directory (it is a %s), so %s cannot be below it" %
                            (nxt, "regular file" if kind == "file" else "special file", path))
        cur = nxt
    if links and not allow_links:
        # followed to the end all the same, so that a link out of the root is reported as that
        raise PathError("%s is a symbolic link to %s%s" % (links[0][0], links[0][1],
                                                           "; " + link_advice if link_advice else ""))
    return Resolved(cur, links, missing, kind)


def first_existing(path, lexists=os.path.lexists):
    """The nearest of ``path`` and its ancestors that exists (``/`` at the latest)."""
    path = posixpath.normpath(path)
    while not lexists(path) and path != "/":
        path = posixpath.dirname(path)
    return path


def creatable_dir(path, isdir=os.path.isdir, lexists=os.path.lexists):
    """None when ``path`` is a directory or could be created as one with ``mkdir -p``, else why not."""
    if isdir(path):
        return None
    if lexists(path):
        return "%s exists and is not a directory" % path
    anchor = first_existing(path, lexists)
    if not isdir(anchor):
        return "%s cannot be created: %s is not a directory" % (path, anchor)
    return None
