# SPDX-License-Identifier: GPL-3.0-or-later
"""persist_audit's walker against rsync itself on generated trees (Hypothesis, profile in tests/conftest.py).

Each example builds a ``root`` and a ``persist`` directory side by side from a generated list of paths, each path
being on each side absent, a regular file (three sizes, three mtimes of which two fall in one second), a directory,
a fifo or a symbolic link (dangling, to itself, to its directory, to ``..``: loops rsync must not follow). Names hold
newlines, tabs, carriage returns, ``${``, ``#``, backslashes, wildcards and bytes that are not UTF-8. Directory
modes and mtimes differ at random, on both sides, the transfer roots included; some examples add exclude patterns.

The property: ``audit(root, persist, excludes, "both")`` reports, in each direction, exactly the set of paths that
``rsync -amxx --dry-run --no-links --exclude ... SRC/ DST/`` prints (``unpersisted`` + ``differing`` for root ->
persist, ``orphaned`` + ``orphaned_differing`` for persist -> root), with one documented exception: a non-directory
where the other side has a non-empty directory is reported as differing by type, while rsync, which without
``--force`` cannot "make way" for it, fails on it (exit status 23) and names it only in that error, which the
oracle adds to rsync's answer. The generated trees live on one
file system, so ``-xx`` prunes nothing here; mount points are tests/integration/test_persist_audit.py's business.
"""
import base64
import os
import random
import shutil
import tempfile

import pytest
from hypothesis import event, example, given, settings, strategies as st

from rsync_oracle import MAKE_WAY, make_way_failures, rsync_dry_run  # tests/rsync_oracle.py
from ansible_collections.impermanent.nixos.plugins.module_utils import _persist

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="needs rsync, the oracle of these properties")

T0 = 1700000000
SIMPLE = [b"a", b"b", b"tmp", b"x.log", b"cache"]
ODD = [b"new\nline", b"tab\there", b"cr\r", b"${x}", b"#hash", b"back\\#012slash", b"st*r", b"[ab]", b"caf\xe9",
       b"\xff\xfe", b"-dash", b".hidden", b"sp ace ", "\u2028".encode(), b"(deleted)"]
NAMES = st.sampled_from(SIMPLE + ODD)
FILE = st.tuples(st.just("file"), st.sampled_from([b"", b"x", b"xy"]),
                 st.sampled_from([0, 1, 0.5]))  # mtime T0+0, T0+1, T0+0.5 (same second as T0)
LINK = st.tuples(st.just("symlink"), st.sampled_from(["self", ".", "..", "/", "dangling"]))
STATE = st.one_of(st.none(), FILE, st.just(("dir",)), st.just(("fifo",)), LINK)
SAME = ("same",)
EXCLUDES = st.lists(st.builds(lambda form, name: form % os.fsdecode(name), st.sampled_from(
    ["/%s", "%s", "%s/", "/%s/*", "%s/***", "**/%s", "*%s"]), st.sampled_from(SIMPLE)), max_size=2)


@st.composite
def tree_pairs(draw):
    paths = draw(st.lists(st.lists(NAMES, min_size=1, max_size=3).map(tuple), min_size=1, max_size=10, unique=True))
    sides = {}
    for path in paths:
        root = draw(STATE)
        persist = draw(st.one_of(st.just(SAME), STATE))
        sides[path] = (root, root if persist == SAME else persist)
    return sides, draw(st.randoms(use_true_random=False)), draw(EXCLUDES), draw(st.sampled_from([1, 1, 3]))


def build(top, sides, which, rnd):
    """Create one side; a path below a non-directory of that side is left out."""
    os.mkdir(top)
    made = {}
    for path in sorted(sides, key=len):
        state = sides[path][which]
        if state is None or any(made.get(path[:i], ("dir",))[0] != "dir" for i in range(1, len(path))):
            continue
        full = os.path.join(top, *path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        for i in range(1, len(path)):
            made.setdefault(path[:i], ("dir",))
        kind = state[0]
        if os.path.lexists(full):    # made as the parent of a shorter path's sibling: a directory already
            if kind != "dir":
                continue
        elif kind == "file":
            with open(full, "wb") as f:
                f.write(state[1])
            os.utime(full, ns=(0, int((T0 + state[2]) * 10 ** 9)))
        elif kind == "dir":
            os.mkdir(full)
        elif kind == "fifo":
            os.mkfifo(full)
        else:
            target = {"self": path[-1], ".": b".", "..": b"..", "/": b"/", "dangling": b"nowhere/at/all"}[state[1]]
            os.symlink(target, full)
        made[path] = state
    # directories: random permission bits and mtimes, set bottom-up once nothing more is created in them
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count(b"/")):
        os.chmod(dirpath, rnd.choice([0o755, 0o700]))
        os.utime(dirpath, (T0, rnd.choice([T0, T0 - 100])))


def paths(records):
    return {base64.b64decode(rec["path_b64"]) if "path_b64" in rec else rec["path"].encode("utf-8")
            for rec in records}


def oracle(src, dst, excludes):
    """rsync's names, plus the files it could not "make way" for (see the module docstring)."""
    names, returncode, stderr = rsync_dry_run(src, dst, [os.fsencode(p) for p in excludes])
    failures = make_way_failures(stderr)
    errors = [line for line in stderr.split(b"\n") if line and not MAKE_WAY.match(line)
              and not line.startswith(b"rsync error: some files/attrs were not transferred")]
    assert returncode == (23 if failures else 0) and not errors, stderr
    return names | failures


def audit(root, persist, excludes, workers):
    """persist_audit's answer; with workers > 1 the walk forks even on these small trees."""
    saved = _persist.PARALLEL_AFTER, _persist.FRONTIER_PER_WORKER
    _persist.PARALLEL_AFTER, _persist.FRONTIER_PER_WORKER = 0, 1
    try:
        return _persist.audit(root, persist, excludes, "both", workers=workers)
    finally:
        _persist.PARALLEL_AFTER, _persist.FRONTIER_PER_WORKER = saved


@settings(max_examples=max(10, settings.default.max_examples // 4))  # ~0.1 s each: rsync twice, a tree
@given(pair=tree_pairs())
@example(pair=({(b"d",): (("file", b"x", 0), ("dir",)), (b"d", b"in"): (None, ("file", b"x", 0))},
               random.Random(0), [], 1))
def test_audit_reports_what_rsync_would_transfer(pair):
    """audit() == rsync's dry run, in both directions, on any generated pair of trees (see the module docstring),
    walking in this process or in three forked workers."""
    sides, rnd, excludes, workers = pair
    with tempfile.TemporaryDirectory(prefix="persist-props-") as base:
        base = os.fsencode(base)
        root, persist = os.path.join(base, b"root"), os.path.join(base, b"persist")
        build(root, sides, 0, rnd)
        build(persist, sides, 1, rnd)
        res = audit(root, persist, excludes, workers)
        assert not res["errors"] and not res["mount_points"] and not res["not_walked"]
        forward, backward = oracle(root, persist, excludes), oracle(persist, root, excludes)
        event("rsync lists %s paths forward" % ("no" if not forward else "1-5" if len(forward) <= 5 else "6+"))
        event("with excludes" if excludes else "without excludes")
        event("walked by %d processes" % res["scanned"]["workers"])
        if any("type" in rec["reasons"] for rec in res["differing"] + res["orphaned_differing"]):
            event("a path of another type on the other side")
        assert paths(res["unpersisted"]) | paths(res["differing"]) == forward
        assert paths(res["orphaned"]) | paths(res["orphaned_differing"]) == backward
        assert not paths(res["unpersisted"]) & paths(res["differing"])
        assert not paths(res["orphaned"]) & paths(res["orphaned_differing"])
