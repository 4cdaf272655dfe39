# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Finding what to persist: the answer of ``rsync -amxx --dry-run --no-links`` computed in-process.

The seed's recipe is ``rsync -amvxx --dry-run --no-links --exclude '/tmp/*' --exclude '/root/*' / /nix/persist/``.
This module reproduces the set of names that command prints, with the stdlib only, and splits it into
what is *missing* on the destination and what is present there but *differs* (rsync would update it).

rsync semantics reproduced (checked against rsync 3.x by tests/integration/test_persist_audit.py):

* ``-xx``: a *directory* whose ``st_dev`` differs from the transfer root's is a mount point; neither it nor
  its contents are listed. Non-directories are not checked (a bind-mounted *file* is listed like any file),
  and a bind mount of the same file system (same ``st_dev``) is crossed.
* ``--no-links``: symbolic links are never listed, but they are part of rsync's file list, so a directory
  holding only symlinks is *not* empty for ``-m``.
* ``-m``: a directory with no non-directory in its subtree (after excludes and mount points) is pruned.
  The transfer root itself is never pruned.
* ``-a`` quick check: a regular file differs when its size or its mtime in whole seconds differs; a device
  when its device number differs; a directory when its mtime (seconds), permission bits, or (as root)
  owner/group differ; anything when its file type differs. Fifos and sockets present on both sides never
  differ. Below a directory missing on the destination, everything is missing (rsync's dry run does not
  look there either).
* excludes: see :class:`ExcludeRule`.

Paths are handled as bytes end to end (names need not be UTF-8); results carry text paths relative to the
transfer root with a leading ``/`` (the path the entry has on the booted system), plus ``path_b64`` (the
exact bytes) for names that are not valid UTF-8.
"""

from __future__ import annotations

import base64
import collections
import fnmatch
import marshal
import os
import re
import stat

from ansible_collections.impermanent.nixos.plugins.module_utils._nixfile import nix_string
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

__all__ = [
    "ExcludeError", "ExcludeRule", "ExcludeSet", "Walker", "WalkResult", "audit", "build_snippet",
    "display_path", "nix_string",
]

NS = 1000000000
PARALLEL_AFTER = 2000  # entries the parent reads itself before it hands subtrees to worker processes
FRONTIER_PER_WORKER = 8  # subtrees per worker (dealt round-robin) for an even share without a work queue

_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9",
    "graph": "\\x21-\\x7e", "lower": "a-z", "print": "\\x20-\\x7e", "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\x0b\\x0c", "upper": "A-Z", "xdigit": "0-9A-Fa-f",
}


class ExcludeError(ModuleError, ValueError):
    """An exclude pattern this implementation does not accept."""


def _class_char(c):
    return "\\" + c if c in "\\]^-[" else re.escape(c)


def _translate_class(pat, i):
    """Translate the bracket expression starting at pat[i] == '['. Returns (regex, next index) or None."""
    n = len(pat)
    j = i + 1
    negate = j < n and pat[j] in "!^"
    if negate:
        j += 1
    parts = []
    first = True
    while j < n:
        c = pat[j]
        if c == "]" and not first:
            body = "".join(parts)
            # like rsync's wildmatch, a bracket expression never matches the path separator
            return ("[^/%s]" % body if negate else "(?!/)[%s]" % body), j + 1
        first = False
        if c == "[" and pat.startswith("[:", j):
            end = pat.find(":]", j + 2)
            if end != -1 and pat[j + 2:end] in _POSIX_CLASSES:
                parts.append(_POSIX_CLASSES[pat[j + 2:end]])
                j = end + 2
                continue
        if c == "\\" and j + 1 < n:
            j += 1
            c = pat[j]
        if j + 2 < n and pat[j + 1] == "-" and pat[j + 2] != "]":
            hi = pat[j + 2]
            if hi == "\\" and j + 3 < n:
                hi = pat[j + 3]
                j += 1
            parts.append("%s-%s" % (_class_char(c), _class_char(hi)))
            j += 3
            continue
        parts.append(_class_char(c))
        j += 1
    return None


def _translate(pat):
    """rsync wildcard text -> Python regex text (no anchors). ``*``/``?``/``[…]`` stop at ``/``; ``**`` does not."""
    wild = any(c in pat for c in "*?[")
    out = []
    i = 0
    n = len(pat)
    while i < n:
        c = pat[i]
        if c == "*":
            j = i
            while j < n and pat[j] == "*":
                j += 1
            out.append(".*" if j - i > 1 else "[^/]*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            cls = _translate_class(pat, i)
            if cls is None:
                out.append(re.escape(c))
                i += 1
            else:
                out.append(cls[0])
                i = cls[1]
        elif c == "\\" and wild and i + 1 < n:
            out.append(re.escape(pat[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _bregex(text):
    return re.compile(text.encode("utf-8", "surrogateescape"), re.DOTALL)


class ExcludeRule:
    """One rsync ``--exclude`` pattern.

    Supported, with rsync's meaning: a leading ``/`` anchors the pattern at the transfer root (otherwise it
    matches the end of the path at a component boundary; without ``/`` or ``**`` only the last component);
    a trailing ``/`` matches directories only; ``*``, ``?`` and ``[…]`` (ranges, ``!``/``^`` negation,
    ``[:class:]``) never match ``/``; ``**`` matches anything; a leading ``**/`` of an unanchored pattern may also match nothing;
    a trailing ``/***`` matches the directory and everything below it; ``\\`` escapes a wildcard character
    when the pattern has one. A ``- `` prefix is accepted and dropped; include rules (``+ ``) and list
    clearing (``!``) are refused.
    """

    def __init__(self, pattern):
        if not isinstance(pattern, str) or not pattern:
            raise ExcludeError("exclude pattern %r is empty; remove it from the exclude list" % (pattern,))
        self.pattern = pattern
        body = pattern
        if body.startswith("- "):
            body = body[2:]
        if body.startswith("+ ") or body == "!":
            raise ExcludeError(
                "exclude pattern %r is an rsync include/clear rule, which persist_audit does not support; "
                "list only patterns to exclude" % pattern)
        self.anchored = body.startswith("/")
        if self.anchored:
            body = body.lstrip("/")
        self.dir_only = False
        contents = False
        if body.endswith("/***"):
            body = body[:-4]
            contents = True
            self.dir_only = True
        elif body.endswith("/") and body.rstrip("/"):
            body = body.rstrip("/")
            self.dir_only = True
        if not body:
            raise ExcludeError("exclude pattern %r matches nothing but the transfer root; remove it" % pattern)
        full_path = self.anchored or "/" in body or "**" in body
        prefix = ""
        core = body
        if core.startswith("**/") and not self.anchored:
            prefix = "(?:.*/)?"
            core = core[3:]
        tail = "(?P<below>/.*)?" if contents else ""
        lead = "^" if self.anchored else "(?:^|/)"
        self.regex = _bregex(lead + prefix + _translate(core) + tail + "$")
        # (a "dir/***" rule also matches below its directory, so it needs the whole path)
        self.basename_only = not full_path and not contents
        # Anchored patterns without ``**`` match at one depth only: component-wise matching lets the walker
        # test them only in the directories where they can match.
        self.components = None
        if self.anchored and "**" not in body:
            self.components = [_bregex("^" + _translate(part) + "$") for part in body.split("/")]
            self.dir_only = self.dir_only or contents

    def matches(self, rel, is_dir):
        """Reference semantics: does the rule exclude ``rel`` (bytes, relative to the root, no leading /)?"""
        m = self.regex.search(rel)
        if m is None:
            return False
        if self.dir_only and not is_dir:
            return "below" in m.groupdict() and m.group("below") is not None
        return True

    def __repr__(self):
        return "ExcludeRule(%r)" % self.pattern


class ExcludeSet:
    """The exclude list, with a per-directory fast path for the walker."""

    def __init__(self, patterns):
        self.rules = [ExcludeRule(p) for p in patterns or []]
        self.patterns = [r.pattern for r in self.rules]
        # below this depth no rule can match (all rules anchored at fixed depths), or None
        self.deepest = None
        if self.rules and all(r.components is not None for r in self.rules):
            self.deepest = max(len(r.components) for r in self.rules) - 1

    def __bool__(self):
        return bool(self.rules)

    def excluded(self, rel, is_dir):
        return any(r.matches(rel, is_dir) for r in self.rules)

    def for_dir(self, dir_rel):
        """A predicate ``f(name, prefix, is_dir)`` for the children of ``dir_rel``, or None when no rule can match."""
        if not self.rules:
            return None
        depth = dir_rel.count(b"/") + 1 if dir_rel else 0
        if self.deepest is not None and depth > self.deepest:
            return None
        parts = dir_rel.split(b"/") if dir_rel else []
        name_rules = []
        path_rules = []
        for r in self.rules:
            comps = r.components
            if comps is not None:
                if len(comps) != depth + 1:
                    continue
                if all(c.match(p) for c, p in zip(comps, parts)):
                    name_rules.append((comps[-1], r.dir_only))
            elif r.basename_only:
                name_rules.append((r.regex, r.dir_only))
            else:
                path_rules.append(r)
        if not name_rules and not path_rules:
            return None

        def check(name, prefix, is_dir):
            for rx, dir_only in name_rules:
                if (is_dir or not dir_only) and rx.search(name):
                    return True
            if path_rules:
                rel = prefix + name
                for r in path_rules:
                    if r.matches(rel, is_dir):
                        return True
            return False

        return check


def display_path(rel):
    """Bytes relative path -> (text path with leading '/', base64 of the bytes or None when valid UTF-8)."""
    try:
        return "/" + rel.decode("utf-8"), None
    except UnicodeDecodeError:
        return "/" + rel.decode("utf-8", "backslashreplace"), base64.b64encode(b"/" + rel).decode("ascii")


_TYPES = {
    stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "chardev", stat.S_IFBLK: "blockdev", stat.S_IFLNK: "symlink",
}


def _record(rel, st, reasons=None):
    path, raw = display_path(rel)
    fmt = stat.S_IFMT(st.st_mode)
    rec = {
        "path": path,
        "type": _TYPES.get(fmt, "unknown"),
        "size": st.st_size if fmt == stat.S_IFREG else 0,
        "mtime": st.st_mtime_ns // NS,
    }
    if raw is not None:
        rec["path_b64"] = raw
    if reasons is not None:
        rec["reasons"] = reasons
    return rec


def _dir_reasons(st, dt, owner):
    reasons = []
    if st.st_mtime_ns // NS != dt.st_mtime_ns // NS:
        reasons.append("mtime")
    if st.st_mode & 0o7777 != dt.st_mode & 0o7777:
        reasons.append("perms")
    if owner:
        if st.st_uid != dt.st_uid:
            reasons.append("owner")
        if st.st_gid != dt.st_gid:
            reasons.append("group")
    return reasons


class _Dir:
    __slots__ = ("rel", "src", "dst", "parent", "pending", "kept", "record", "missing")

    def __init__(self, rel, src, dst, parent, record, missing):
        self.rel = rel
        self.src = src
        self.dst = dst
        self.parent = parent
        self.pending = 0
        self.kept = False
        self.record = record
        self.missing = missing


class WalkResult:
    def __init__(self):
        self.missing = []
        self.differing = []
        self.mount_points = []
        self.errors = []
        self.symlinks = 0
        self.entries = 0
        self.not_walked = []

    def sort(self):
        key = _sort_key
        self.missing.sort(key=key)
        self.differing.sort(key=key)
        self.mount_points.sort()
        return self


def _sort_key(rec):
    return rec["path"]


def auto_workers():
    """Walker processes to start: one per usable CPU, at most 8. (Measured: never slower than one process once
    the tree is past PARALLEL_AFTER entries, even with the CPUs busy with other work; see benchmarks/README.md.)"""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


class Walker:
    """rsync -amxx --dry-run --no-links SRC/ DST/ as data.

    ``skip`` is a set of ``(st_dev, st_ino)`` of directories not to descend into (the other side of the audit
    when it lies inside this tree on the same file system: rsync would copy it into itself).
    ``owner`` compares directory owner and group, as rsync -a does when run as root.
    ``workers``: processes that walk disjoint subtrees side by side (``fork``; rsync itself runs a sender and a
    receiver process); None lets :func:`auto_workers` choose, 1 walks in this process only.
    """

    def __init__(self, src, dst, excludes=None, owner=None, skip=(), workers=None):
        self.src = os.fsencode(src)
        self.dst = os.fsencode(dst)
        self.excludes = excludes if excludes is not None else ExcludeSet([])
        self.owner = (os.geteuid() == 0) if owner is None else owner
        self.skip = frozenset(skip)
        self.workers = max(1, int(workers if workers is not None else auto_workers()))
        self.used_workers = 1

    def run(self):
        res = WalkResult()
        # rsync is given SRC/ and DST/: the trailing slash makes it follow a link at the top of either side
        # (and only there), so the walk starts at the directories they lead to
        src = os.path.realpath(self.src.rstrip(b"/") or b"/")
        dst = os.path.realpath(self.dst.rstrip(b"/") or b"/")
        top = os.stat(src)
        if not stat.S_ISDIR(top.st_mode):
            raise NotADirectoryError(src)
        self.root_dev = top.st_dev
        try:
            dtop = os.stat(dst)
        except FileNotFoundError:
            dtop = None
        if dtop is None:
            root = _Dir(b"", src, None, None, _record(b"", top), True)
        elif not stat.S_ISDIR(dtop.st_mode):
            root = _Dir(b"", src, None, None, _record(b"", top, ["type"]), False)
        else:
            reasons = _dir_reasons(top, dtop, self.owner)
            root = _Dir(b"", src, dst, None, _record(b"", top, reasons) if reasons else None, False)
        if self.workers == 1:
            self._walk([root], res)
        else:
            self._walk_parallel(root, res)
        return res.sort()

    def _walk(self, stack, res):
        """Depth first over the frames in ``stack`` (and everything below them)."""
        scan = self._scan
        finish = self._finish
        while stack:
            d = stack.pop()
            children = scan(d, res)
            if children:
                stack.extend(children)
            else:
                finish(d, res)

    def _walk_parallel(self, root, res):
        """Expand breadth first until there is work for every worker, then fork one walker per share."""
        queue = collections.deque([root])
        want = FRONTIER_PER_WORKER * self.workers
        # small trees are done before this many entries: forking would cost more than it saves
        while queue and (len(queue) < want or res.entries < PARALLEL_AFTER):
            d = queue.popleft()
            children = self._scan(d, res)
            if children:
                queue.extend(children)
            else:
                self._finish(d, res)
        frames = list(queue)
        if len(frames) < 2:
            self._walk(frames, res)
            return
        shares = [frames[i::self.workers] for i in range(self.workers)]
        shares = [s for s in shares if s]
        running = []
        for share in shares:
            running.append((share,) + self._fork(share))
        self.used_workers = len(running)
        for share, pid, fd in running:
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(fd)
            _pid, status = os.waitpid(pid, 0)
            try:
                if status != 0:
                    raise ValueError("worker exited with status %d" % status)
                kept, missing, differing, mounts, errors, not_walked, symlinks, entries = marshal.loads(b"".join(chunks))
            except (ValueError, EOFError, TypeError):
                # a worker that died is not fatal: walk its share here
                sub = WalkResult()
                kept = self._walk_detached(share, sub)
                missing, differing, mounts, errors, not_walked = sub.missing, sub.differing, sub.mount_points, sub.errors, sub.not_walked
                symlinks, entries = sub.symlinks, sub.entries
            res.missing.extend(missing)
            res.differing.extend(differing)
            res.mount_points.extend(mounts)
            res.errors.extend(errors)
            res.not_walked.extend(not_walked)
            res.symlinks += symlinks
            res.entries += entries
            for d, k in zip(share, kept):
                d.kept = k
                self._finish(d, res)

    def _walk_detached(self, share, sub):
        """Walk subtrees as if they had no parent; return whether each one is kept (not pruned by -m)."""
        detached = []
        for d in share:
            frame = _Dir(d.rel, d.src, d.dst, None, None, d.missing)
            detached.append(frame)
            self._walk([frame], sub)
        return [f.kept for f in detached]

    def _fork(self, share):
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid:
            os.close(wfd)
            return pid, rfd
        code = 1
        try:
            os.close(rfd)
            sub = WalkResult()
            kept = self._walk_detached(share, sub)
            data = marshal.dumps((kept, sub.missing, sub.differing, sub.mount_points, sub.errors, sub.not_walked,
                                  sub.symlinks, sub.entries))
            view = memoryview(data)
            while view:
                view = view[os.write(wfd, view):]
            code = 0
        finally:
            os._exit(code)

    def _scan(self, d, res):
        """Read one directory: record its non-directories, return frames for its subdirectories."""
        # Hot loop: directory file descriptors (fstatat on the name, no path walk per entry), locals only.
        fsencode = os.fsencode
        lstat = os.lstat
        missing = res.missing
        differing = res.differing
        root_dev = self.root_dev
        skip = self.skip
        rel = d.rel
        prefix = rel + b"/" if rel else b""
        dst = d.dst
        check = self.excludes.for_dir(rel) if self.excludes else None
        kept = not rel  # rsync never prunes the transfer root
        nsymlinks = nentries = 0
        subdirs = []
        sfd = dfd = -1
        try:
            sfd = os.open(d.src, _O_DIR)
        except OSError as exc:
            res.errors.append("cannot read directory %s: %s" % (display_path(rel)[0], exc.strerror))
        if sfd >= 0 and dst is not None:
            try:
                dfd = os.open(dst, _O_DIR)
            except OSError as exc:
                res.errors.append("cannot read directory %s in the destination: %s"
                                  % (display_path(rel)[0], exc.strerror))
                dst = None
        try:
            entries = list(os.scandir(sfd)) if sfd >= 0 else []
            nentries = len(entries)
            if check is not None:
                entries = [e for e in entries if not _excluded(check, e, prefix)]
            for e in entries:
                name = e.name  # str (surrogateescape) when scanning a file descriptor
                try:
                    if e.is_symlink():
                        kept = True
                        nsymlinks += 1
                        continue
                    st = e.stat()  # not a symlink: the lstat result, without keyword parsing
                except FileNotFoundError:
                    continue  # vanished while we looked (rsync: "file has vanished")
                except OSError as exc:
                    res.errors.append("cannot stat %s: %s" % (display_path(prefix + fsencode(name))[0], exc.strerror))
                    continue
                fmt = st.st_mode & 0o170000
                if fmt == 0o040000:
                    if st.st_dev != root_dev:
                        res.mount_points.append(display_path(prefix + fsencode(name))[0])
                    elif skip and (st.st_dev, st.st_ino) in skip:
                        res.not_walked.append(display_path(prefix + fsencode(name))[0])
                    else:
                        subdirs.append((name, st))
                    continue
                kept = True
                if dfd < 0:
                    missing.append(_record(prefix + fsencode(name), st))
                    continue
                try:
                    dt = lstat(name, dir_fd=dfd)
                except FileNotFoundError:
                    missing.append(_record(prefix + fsencode(name), st))
                    continue
                except OSError as exc:
                    res.errors.append("cannot stat %s in the destination: %s"
                                      % (display_path(prefix + fsencode(name))[0], exc.strerror))
                    continue
                if fmt == 0o100000 and st.st_size == dt.st_size and st.st_mtime == dt.st_mtime \
                        and dt.st_mode & 0o170000 == 0o100000:
                    continue
                reasons = _reasons(fmt, st, dt)
                if reasons:
                    differing.append(_record(prefix + fsencode(name), st, reasons))
            d.kept = kept
            d.pending = len(subdirs)
            children = [self._child(d, prefix, name, st, dfd, res) for name, st in subdirs]
        finally:
            if sfd >= 0:
                os.close(sfd)
            if dfd >= 0:
                os.close(dfd)
        res.symlinks += nsymlinks
        res.entries += nentries
        return children

    def _child(self, d, prefix, name, st, dfd, res):
        bname = os.fsencode(name)
        crel = prefix + bname
        src = (d.src + b"/" if d.src != b"/" else b"/") + bname
        dt = None
        if dfd >= 0:
            try:
                dt = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            except OSError as exc:
                res.errors.append("cannot stat %s in the destination: %s" % (display_path(crel)[0], exc.strerror))
        if dt is None:
            return _Dir(crel, src, None, d, _record(crel, st), True)
        if not stat.S_ISDIR(dt.st_mode):
            return _Dir(crel, src, None, d, _record(crel, st, ["type"]), False)
        reasons = _dir_reasons(st, dt, self.owner)
        dst = (d.dst + b"/" if d.dst != b"/" else b"/") + bname
        return _Dir(crel, src, dst, d, _record(crel, st, reasons) if reasons else None, False)

    @staticmethod
    def _finish(d, res):
        """Post-order end of a directory: emit its record unless -m prunes it, then tell the parent."""
        while True:
            if d.kept and d.record is not None:
                (res.missing if d.missing else res.differing).append(d.record)
            parent = d.parent
            if parent is None:
                return
            if d.kept:
                parent.kept = True
            parent.pending -= 1
            if parent.pending:
                return
            d = parent


_O_DIR = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


def _excluded(check, entry, prefix):
    try:
        return check(os.fsencode(entry.name), prefix, entry.is_dir(follow_symlinks=False))
    except OSError:
        return False  # vanished: the walk finds out and skips it


def _reasons(fmt, st, dt):
    """Why rsync -a would update a non-directory present on both sides ([] when it would not)."""
    if fmt != stat.S_IFMT(dt.st_mode):
        return ["type"]
    reasons = []
    if fmt == stat.S_IFREG:
        if st.st_size != dt.st_size:
            reasons.append("size")
        if st.st_mtime_ns // NS != dt.st_mtime_ns // NS:
            reasons.append("mtime")
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK) and st.st_rdev != dt.st_rdev:
        reasons.append("rdev")
    return reasons


def _inside(inner, outer):
    """(dev, ino) of ``inner`` when it is a directory strictly inside ``outer``, else None."""
    inner_r = os.path.realpath(os.fsencode(inner))
    outer_r = os.path.realpath(os.fsencode(outer))
    if inner_r == outer_r or not inner_r.startswith(outer_r.rstrip(b"/") + b"/"):
        return None
    try:
        st = os.stat(inner_r)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def audit(root, persist, excludes, direction="unpersisted", owner=None, workers=None):
    """Run the walks ``direction`` asks for. Returns a dict of plain data (module return values)."""
    if direction not in ("unpersisted", "orphaned", "both"):
        raise ValueError("direction must be unpersisted, orphaned or both, not %r" % (direction,))
    exset = excludes if isinstance(excludes, ExcludeSet) else ExcludeSet(excludes)
    out = {
        "unpersisted": [], "differing": [], "orphaned": [], "orphaned_differing": [],
        "mount_points": [], "persist_mount_points": [], "errors": [], "not_walked": [],
    }
    stats = {"entries": 0, "symlinks_skipped": 0, "workers": 1}
    if direction in ("unpersisted", "both"):
        skip = _inside(persist, root)
        walker = Walker(root, persist, exset, owner, [skip] if skip else (), workers)
        res = walker.run()
        stats["workers"] = max(stats["workers"], walker.used_workers)
        out["unpersisted"], out["differing"], out["mount_points"] = res.missing, res.differing, res.mount_points
        out["errors"] += res.errors
        out["not_walked"] += res.not_walked
        stats["entries"] += res.entries
        stats["symlinks_skipped"] += res.symlinks
    if direction in ("orphaned", "both"):
        skip = _inside(root, persist)
        walker = Walker(persist, root, exset, owner, [skip] if skip else (), workers)
        res = walker.run()
        stats["workers"] = max(stats["workers"], walker.used_workers)
        out["orphaned"], out["orphaned_differing"] = res.missing, res.differing
        out["persist_mount_points"] = res.mount_points
        out["errors"] += ["persist: " + e for e in res.errors]
        out["not_walked"] += res.not_walked
        stats["entries"] += res.entries
        stats["symlinks_skipped"] += res.symlinks
    out["counts"] = dict((k, len(out[k])) for k in ("unpersisted", "differing", "orphaned", "orphaned_differing"))
    out["total_size"] = dict(
        (k, sum(r["size"] for r in out[k])) for k in ("unpersisted", "differing", "orphaned", "orphaned_differing"))
    out["scanned"] = stats
    return out


# --------------------------------------------------------------------------------------------------------------
# Suggested environment.persistence snippet

# Directories that hold unrelated state side by side: never suggested whole, their children are.
CONTAINERS = frozenset([
    "/", "/etc", "/etc/ssh", "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/usr", "/usr/local", "/var",
    "/var/cache", "/var/db", "/var/lib", "/var/lib/private", "/var/spool",
])

# Files NixOS writes on every activation (or at runtime): persisting them fights the activation script.
GENERATED = {
    "/etc/.clean": "written by the NixOS /etc activation",
    "/etc/.updated": "written by the NixOS /etc activation",
    "/etc/NIXOS": "marker written by NixOS activation",
    "/etc/.pwd.lock": "lock file of the user/group tools",
    "/etc/group": "generated from users.groups on activation",
    "/etc/passwd": "generated from users.users on activation (use users.mutableUsers = false and hashed passwords)",
    "/etc/shadow": "generated from users.users on activation (use users.mutableUsers = false and hashed passwords)",
    "/etc/subgid": "generated from users.users on activation",
    "/etc/subuid": "generated from users.users on activation",
    "/etc/sudoers": "generated from security.sudo on activation",
    "/etc/resolv.conf": "written at runtime by resolvconf/systemd-resolved/NetworkManager",
}

# Well-known state to call out: (glob, why).
WELL_KNOWN = [
    ("/etc/machine-id", "systemd machine id: without it journald loses past boots' logs and the machine looks new "
                        "to DHCP and other services after every reboot"),
    ("/etc/ssh/ssh_host_*_key", "SSH host key: without it clients see a changed host key after every reboot"),
    ("/etc/ssh/ssh_host_*_key.pub", "SSH host public key (pairs with the private key)"),
    ("/var/lib/nixos", "NixOS uid/gid allocation map: keeps user and group ids stable across reboots"),
    ("/var/lib/systemd", "systemd state: persistent timers' last run, random seed, backlight, rfkill, coredumps"),
    ("/var/log", "system logs and the journal"),
    ("/etc/adjtime", "hardware clock drift correction"),
    ("/var/lib/bluetooth", "Bluetooth pairings"),
    ("/etc/NetworkManager/system-connections", "NetworkManager connections (Wi-Fi passwords, VPNs)"),
    ("/var/lib/NetworkManager", "NetworkManager state (leases, seen networks)"),
    ("/var/db/sudo", "sudo lecture state"),
]


def _parents(path):
    """'/a/b/c' -> ['/a', '/a/b'] (top-down, without the path itself)."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:k]) for k in range(1, len(parts))]


_WELL_KNOWN_ROOTS = tuple(sorted(set("/" + p.split("/")[1] for p, _why in WELL_KNOWN)))


def _well_known(path):
    if not path.startswith(_WELL_KNOWN_ROOTS):
        return None
    for pattern, why in WELL_KNOWN:
        if fnmatch.fnmatchcase(path, pattern) or path.startswith(pattern + "/") or pattern.startswith(path + "/"):
            return pattern, why
    return None


def build_snippet(unpersisted, persist_name="/nix/persist"):
    """Group the ``unpersisted`` records into an environment.persistence suggestion.

    Each regular file is covered by its top-most ancestor that is missing from persist as a whole and is not a
    container directory (``/etc``, ``/var/lib``…); without such an ancestor it is listed under ``files``.
    Special files outside a suggested directory, files NixOS generates, names that are not UTF-8 and directories
    with only symlinks, specials or empty directories in them are left out and explained in ``notes``.
    """
    missing_dirs = set(r["path"] for r in unpersisted if r["type"] == "dir" and "path_b64" not in r)
    directories = set()
    files = set()
    notes = []
    covered_dirs = set()
    unwritable = []
    specials = []
    well_known = {}
    for rec in unpersisted:
        path = rec["path"]
        if "path_b64" in rec:
            if not any(path.startswith(p + "/") for p in unwritable):  # its directory is noted already
                notes.append("%s: the name is not valid UTF-8 and cannot be written in a Nix string; "
                             "rename it or persist its parent directory" % path)
                if rec["type"] == "dir":
                    unwritable.append(path)
            continue
        hit = _well_known(path)
        if hit is not None and rec["type"] != "dir":
            well_known.setdefault(hit[0], hit[1])
        if rec["type"] == "dir":
            continue
        if rec["type"] != "file":
            specials.append(rec)
            continue
        parents = _parents(path)
        anchor = None
        for parent in parents:
            if parent in missing_dirs and parent not in CONTAINERS:
                anchor = parent
                break
        covered_dirs.update(parents)
        if anchor is not None:
            directories.add(anchor)
            continue
        if path in GENERATED:
            notes.append("%s: not suggested, %s" % (path, GENERATED[path]))
        else:
            files.add(path)
    # Fifos, sockets and devices are runtime state: they never make a directory worth persisting on their own,
    # but one that is suggested anyway (for its files) keeps them.
    for rec in specials:
        path = rec["path"]
        if not any(parent in directories for parent in _parents(path)):
            covered_dirs.update(_parents(path))
            notes.append("%s: a %s is runtime state, not suggested" % (path, rec["type"]))
    for path in sorted(missing_dirs):
        top = not any(p in missing_dirs for p in _parents(path))
        if top and path not in covered_dirs and path != "/":
            notes.append("%s: holds only symlinks or empty directories, not suggested" % path)
    for path in directories:
        hit = _well_known(path)
        if hit is not None:
            well_known.setdefault(hit[0], hit[1])
    directories = sorted(directories)
    files = sorted(files)
    lines = ["environment.persistence.%s = {" % nix_string(persist_name)]
    for key, items in (("directories", directories), ("files", files)):
        if items:
            lines.append("  %s = [" % key)
            lines.extend("    %s" % nix_string(p) for p in items)
            lines.append("  ];")
        else:
            lines.append("  %s = [ ];" % key)
    lines.append("};")
    return {
        "directories": directories,
        "files": files,
        "well_known": [{"path": p, "why": well_known[p]} for p in sorted(well_known)],
        "notes": notes,
        "text": "\n".join(lines) + "\n",
    }
