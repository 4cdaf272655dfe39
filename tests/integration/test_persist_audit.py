# SPDX-License-Identifier: GPL-3.0-or-later
"""persist_audit against rsync itself: the same trees, the same test, rsync's own answer as the oracle.

The tree has what a real tmpfs root has: regular files (persisted, missing, stale), nested directories, empty
directory chains (pruned by -m), symlinks (skipped by --no-links), a fifo, a unix socket, device nodes, a tmpfs
mounted inside (-xx: neither the mount point nor its content), a bind-mounted file, excludes, and names with
spaces, newlines and bytes that are not UTF-8.
"""
import base64
import os
import shutil
import socket
import stat
import subprocess

import pytest

from conftest import run_module, run_playbook
from rsync_oracle import rsync_dry_run  # tests/rsync_oracle.py
from ansible_collections.impermanent.nixos.plugins.module_utils import _persist

MODULE = "impermanent.nixos.persist_audit"
# the collection the tests import (installed artifact under make, the source farm otherwise)
COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(_persist.__file__))))
AUDIT_PLAYBOOK = os.path.join(COLLECTION, "playbooks", "audit.yml")
DEFAULT_EXCLUDES = ["/tmp/*", "/root/*"]
T0 = 1700000000
# A file on root where persist has a non-empty directory: rsync (without --force) fails to "make way" for it and
# lists nothing; persist_audit reports it as differing by type. The one deliberate difference from rsync's answer.
TYPE_CLASH_FULL = b"type clash full"

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None or os.geteuid() != 0,
                                reason="needs rsync (the oracle) and root (tmpfs and bind mounts, device nodes)")


def _write(path, data=b"x", mtime=T0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (mtime, mtime))


def _mount(argv):
    subprocess.run(argv, check=True)


class Tree:
    """root/ and persist/ side by side under tmp_path (bytes paths), with mounts undone by ``close``."""

    def __init__(self, base):
        self.base = os.fsencode(str(base))
        self.root = os.path.join(self.base, b"root")
        self.persist = os.path.join(self.base, b"persist")
        self.mounts = []
        os.makedirs(self.root)
        os.makedirs(self.persist)

    def r(self, rel):
        return os.path.join(self.root, rel)

    def p(self, rel):
        return os.path.join(self.persist, rel)

    def both(self, rel, data=b"same", mtime=T0):
        _write(self.r(rel), data, mtime)
        _write(self.p(rel), data, mtime)

    def mount(self, argv, target):
        _mount(argv + [target])
        self.mounts.append(target)

    def close(self):
        for target in reversed(self.mounts):
            if subprocess.run(["umount", target], check=False).returncode != 0:
                subprocess.run(["umount", "-l", target], check=False)


def build(tree):
    r, p = tree.r, tree.p
    # persisted and identical
    tree.both(b"etc/nixos-like/configuration.nix", b"{ }")
    tree.both(b"var/lib/app/state.db", b"db" * 100)
    tree.both(b"same perms differ", b"q")
    os.chmod(p(b"same perms differ"), 0o600)          # -a does not transfer a file for perms alone
    # missing from persist
    _write(r(b"etc/machine-id"), b"0123456789abcdef0123456789abcdef\n")
    _write(r(b"etc/ssh/ssh_host_ed25519_key"), b"k")
    _write(r(b"etc/ssh/ssh_host_ed25519_key.pub"), b"k.pub")
    _write(r(b"var/lib/nixos/uid-map"), b"{}")
    _write(r(b"var/lib/systemd/timers/stamp-x"), b"")
    _write(r(b"a/b/c/deep file"), b"deep")
    _write(r(b"etc/passwd"), b"root:x:0:0::/root:/bin/sh\n")
    # stale in persist
    tree.both(b"var/lib/app/size", b"new")
    _write(p(b"var/lib/app/size"), b"older!")
    os.utime(p(b"var/lib/app/size"), (T0, T0))
    tree.both(b"var/lib/app/mtime", b"abc")
    os.utime(p(b"var/lib/app/mtime"), (T0 - 1, T0 - 1))      # one second is a difference
    tree.both(b"var/lib/app/subsecond", b"abc")
    os.utime(p(b"var/lib/app/subsecond"), ns=(T0 * 10**9 + 5, T0 * 10**9 + 500000000))  # same second: equal
    _write(r(b"type clash"), b"file on root")
    os.makedirs(p(b"type clash"))
    _write(r(TYPE_CLASH_FULL), b"file on root")
    os.makedirs(p(TYPE_CLASH_FULL + b"/inside"))
    _write(p(TYPE_CLASH_FULL + b"/inside/x"))
    # directories: attributes of an existing directory, empty chains
    os.makedirs(r(b"srv/www"))
    os.makedirs(p(b"srv/www"))
    _write(r(b"srv/www/index.html"), b"<html/>")
    _write(p(b"srv/www/index.html"), b"<html/>")
    os.chmod(p(b"srv/www"), 0o700)
    os.makedirs(r(b"empty/chain/of/dirs"))
    os.makedirs(r(b"var/lib/app/empty/too"))
    # symlinks are skipped, but keep their directory in rsync's file list
    os.symlink(b"/etc/machine-id", r(b"etc/link-to-id"))
    os.makedirs(r(b"only-links"))
    os.symlink(b"../etc", r(b"only-links/etc"))
    os.makedirs(r(b"links/deeper"))
    os.symlink(b"x", r(b"links/deeper/l"))
    # specials and devices
    os.makedirs(r(b"run-ish"))
    os.mkfifo(r(b"run-ish/fifo"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(r(b"run-ish/sock"))
    sock.close()
    os.mkfifo(r(b"fifo-both"))
    os.mkfifo(p(b"fifo-both"))
    os.utime(p(b"fifo-both"), (T0, T0))            # fifos never differ by mtime
    os.mknod(r(b"devnull-like"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(r(b"dev-both"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(p(b"dev-both"), 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    # excludes: /tmp/* and /root/* (their directories end up empty and are pruned)
    _write(r(b"tmp/scratch"))
    _write(r(b"root/.bash_history"))
    _write(r(b"var/tmp/kept"))
    # odd names
    _write(r(b"names/with space"))
    _write(r(b"names/<b>bold"))
    _write(r(b"names/new\nline"))
    _write(r(b"names/caf\xe9 latin1"))
    os.makedirs(r(b"names/dir \xff\xfe"))
    _write(r(b"names/dir \xff\xfe/inner"))
    _write(p(b"names/with space"), b"x")
    # -xx: a tmpfs mounted inside root: neither the mount point nor its content are listed
    os.makedirs(r(b"mnt/data"))
    tree.mount(["mount", "-t", "tmpfs", "-o", "size=4m", "audit-test"], r(b"mnt/data"))
    _write(r(b"mnt/data/inside"))
    os.makedirs(r(b"mnt/data/sub"))
    # a bind-mounted *file* from that tmpfs: rsync -x checks directories only, so it is listed
    _write(r(b"bound-file"), b"")
    tree.mount(["mount", "--bind", r(b"mnt/data/inside")], r(b"bound-file"))
    # orphans: in persist, not on root
    _write(p(b"old/app/state"), b"gone")
    _write(p(b"var/lib/removed.conf"), b"gone")
    os.makedirs(p(b"old/empty/chain"))
    # the top directories' times differ too (rsync lists ./)
    os.utime(tree.root, (T0, T0))
    os.utime(tree.persist, (T0 - 100, T0 - 100))


@pytest.fixture
def tree(tmp_path):
    t = Tree(tmp_path)
    try:
        build(t)
        yield t
    finally:
        t.close()


def rsync_answer(src, dst, excludes):
    """The set of names (bytes, leading /) rsync -amxx --dry-run --no-links prints for SRC/ -> DST/."""
    names, returncode, stderr = rsync_dry_run(src, dst, excludes)
    # 23: "could not make way for new regular file" (TYPE_CLASH_FULL below), nothing else may fail
    assert returncode in (0, 23), stderr
    assert returncode == 0 or stderr.count(b"could not make way") == 1, stderr
    return names


def paths(records):
    out = set()
    for rec in records:
        out.add(base64.b64decode(rec["path_b64"]) if "path_b64" in rec else rec["path"].encode("utf-8"))
    return out


def by_path(records):
    return dict((rec["path"], rec) for rec in records)


def test_module_answer_is_rsyncs_in_both_directions(tree):
    # enough entries for the module to walk in worker processes (past PARALLEL_AFTER) inside Ansible's execution
    for i in range(2400):
        rel = b"bulk/d%d/f%d" % (i % 200, i)
        _write(tree.r(rel), b"b")
        if i % 100:
            _write(tree.p(rel), b"b")
    os.utime(tree.root, (T0, T0))
    os.utime(tree.persist, (T0 - 100, T0 - 100))
    rc, res = run_module(MODULE, dict(root=os.fsdecode(tree.root), persist=os.fsdecode(tree.persist),
                                      direction="both"))
    assert rc == 0, res
    assert res["changed"] is False
    forward = rsync_answer(tree.root, tree.persist, DEFAULT_EXCLUDES)
    backward = rsync_answer(tree.persist, tree.root, DEFAULT_EXCLUDES)
    assert paths(res["unpersisted"]) | paths(res["differing"]) == forward | {b"/" + TYPE_CLASH_FULL}
    assert b"/" + TYPE_CLASH_FULL not in forward
    assert paths(res["orphaned"]) | paths(res["orphaned_differing"]) == backward
    assert not paths(res["unpersisted"]) & paths(res["differing"])

    # The oracle could be wrong in the same way as the module: pin what the tree was built to show.
    missing = by_path(res["unpersisted"])
    differing = by_path(res["differing"])
    for expected in ("/etc/machine-id", "/a", "/a/b/c/deep file", "/run-ish/fifo", "/run-ish/sock", "/devnull-like",
                     "/only-links", "/links", "/links/deeper", "/names/new\nline", "/bound-file", "/var/tmp/kept"):
        assert expected in missing, expected
    assert missing["/run-ish/fifo"]["type"] == "fifo"
    assert missing["/run-ish/sock"]["type"] == "socket"
    assert missing["/devnull-like"]["type"] == "chardev"
    assert missing["/a/b/c/deep file"] == {"path": "/a/b/c/deep file", "type": "file", "size": 4, "mtime": T0}
    latin = [r for r in res["unpersisted"] if r["path"].startswith("/names/caf")]
    assert len(latin) == 1 and base64.b64decode(latin[0]["path_b64"]) == b"/names/caf\xe9 latin1"
    assert latin[0]["path"] == "/names/caf\\xe9 latin1"
    for absent in ("/mnt", "/mnt/data", "/mnt/data/inside", "/empty", "/var/lib/app/empty", "/tmp", "/tmp/scratch",
                   "/root", "/etc/link-to-id", "/same perms differ", "/fifo-both", "/var/lib/app/subsecond",
                   "/names/with space"):
        assert absent not in missing and absent not in differing, absent
    assert differing["/var/lib/app/size"]["reasons"] == ["size"]
    assert differing["/var/lib/app/mtime"]["reasons"] == ["mtime"]
    assert differing["/type clash"]["reasons"] == ["type"]
    assert differing["/type clash full"]["reasons"] == ["type"]
    assert "perms" in differing["/srv/www"]["reasons"]
    assert differing["/dev-both"]["reasons"] == ["rdev"]
    assert differing["/"]["type"] == "dir"
    assert res["mount_points"] == ["/mnt/data"]
    assert res["scanned"]["workers"] == min(len(os.sched_getaffinity(0)), 8)
    bulk = [r for r in res["unpersisted"] if r["path"].startswith("/bulk/")]
    assert sum(1 for r in bulk if r["type"] == "file") == 24        # every 100th file; all of d0's and d100's
    assert [r["path"] for r in bulk if r["type"] == "dir"] == ["/bulk/d0", "/bulk/d100"]
    assert by_path(res["orphaned"]).keys() >= {"/old", "/old/app", "/old/app/state", "/var/lib/removed.conf"}
    assert "/old/empty" not in by_path(res["orphaned"])
    assert "/type clash full/inside/x" in by_path(res["orphaned"])
    assert by_path(res["orphaned_differing"])["/type clash full"]["reasons"] == ["type"]

    assert res["counts"]["unpersisted"] == len(res["unpersisted"])
    assert res["total_size"]["unpersisted"] == sum(r["size"] for r in res["unpersisted"] if r["type"] == "file")
    assert res["excludes"] == DEFAULT_EXCLUDES
    snippet = res["suggested_snippet"]
    assert snippet.startswith('environment.persistence."%s" = {' % os.fsdecode(tree.persist))
    assert '"/var/lib/nixos"' in snippet and '"/var/lib/systemd"' in snippet and '"/a"' in snippet
    assert '"/etc/machine-id"' in snippet and '"/etc/ssh/ssh_host_ed25519_key"' in snippet
    assert '"/names/new\\nline"' in snippet
    unwritable = [n.split(":")[0] for n in res["notes"] if "not valid UTF-8" in n]
    assert unwritable == ["/names/caf\\xe9 latin1", "/names/dir \\xff\\xfe"]    # not also .../inner
    assert '"/etc/passwd"' not in snippet and '"/run-ish' not in snippet    # generated; only a fifo and a socket
    found = {w["path"] for w in res["well_known"]}
    assert found >= {"/etc/machine-id", "/etc/ssh/ssh_host_*_key", "/var/lib/nixos", "/var/lib/systemd"}


EXCLUDE_CASES = [
    [],
    ["/tmp/*", "/root/*"],
    ["*.pub", "deep*"],
    ["/var/lib/**/stamp-*", "run-ish/"],
    ["/var/***", "names/*line"],
    ["**/c", "/etc/ssh"],
    ["b/c", "[a-e]tc/m?chine-id", "dir \xff\xfe".encode("latin-1").decode("utf-8", "surrogateescape")],
    ["/*/app/", "sock", "fifo"],
]


@pytest.mark.parametrize("excludes", EXCLUDE_CASES, ids=lambda e: " ".join(e) or "none")
@pytest.mark.parametrize("workers", [1, 3])
def test_core_matches_rsync_for_excludes(tree, excludes, workers, monkeypatch):
    monkeypatch.setattr(_persist, "PARALLEL_AFTER", 0)    # the tree is small: make workers=3 really fork
    monkeypatch.setattr(_persist, "FRONTIER_PER_WORKER", 1)
    res = _persist.audit(tree.root, tree.persist, excludes, "both", workers=workers)
    assert res["scanned"]["workers"] == workers
    rsync_excludes = [os.fsencode(p) for p in excludes]
    forward = rsync_answer(tree.root, tree.persist, rsync_excludes) | {b"/" + TYPE_CLASH_FULL}
    assert paths(res["unpersisted"]) | paths(res["differing"]) == forward
    backward = rsync_answer(tree.persist, tree.root, rsync_excludes)
    assert paths(res["orphaned"]) | paths(res["orphaned_differing"]) == backward


def test_missing_persist_lists_everything(tree):
    gone = os.path.join(tree.base, b"nowhere")
    res = _persist.audit(tree.root, gone, DEFAULT_EXCLUDES, "unpersisted", workers=2)
    assert paths(res["unpersisted"]) == rsync_answer(tree.root, gone, DEFAULT_EXCLUDES)
    assert res["differing"] == []


def test_check_mode_same_answer_and_persist_inside_root_is_not_walked(tmp_path):
    root = tmp_path / "sys"
    (root / "nix" / "persist" / "etc").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "machine-id").write_text("id\n")
    (root / "nix" / "persist" / "etc" / "orphan").write_text("o\n")
    args = dict(root=str(root), persist=str(root / "nix" / "persist"), direction="both", exclude=[])
    rc, res = run_module(MODULE, args, check=True)
    assert rc == 0, res
    assert res["changed"] is False
    assert [r["path"] for r in res["unpersisted"]] == ["/etc/machine-id"]
    assert [r["path"] for r in res["orphaned"]] == ["/etc/orphan"]
    assert res["not_walked"] == ["/nix/persist"]
    # persist lies inside root: the snippet names it the way the booted system sees it
    assert res["suggested_snippet"].startswith('environment.persistence."/nix/persist" = {')
    assert res["snippet"] == {"directories": [], "files": ["/etc/machine-id"]}


def test_bad_arguments_fail_with_an_actionable_message():
    result = run_playbook("persist_audit_errors.yml")
    assert result.failed == 0, result.stdout[-3000:]     # each failure is expected and ignored by the play
    for task, message in (("Root is missing", "root '/nonexistent-root' is not a directory"),
                          ("Include rule", "include/clear rule"),
                          ("Orphaned without persist", "nothing can be orphaned"),
                          ("Same directory", "root and persist are the same directory")):
        res = result.task(task)
        assert res.get("failed") is True, res
        assert message in res["msg"], res["msg"]


def test_audit_playbook_writes_the_report(tree, tmp_path):
    reports = tmp_path / "reports"
    result = run_playbook(AUDIT_PLAYBOOK, extra_vars=dict(
        audit_hosts="all",
        audit_become=False,
        persist_audit_root=os.fsdecode(tree.root),
        persist_audit_persist=os.fsdecode(tree.persist),
        persist_audit_direction="both",
        persist_audit_report_dir=str(reports),
        persist_audit_html=True,
    ))
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.failed == 0
    audit = result.task("impermanent.nixos.persist_audit : Audit what is not persisted")
    assert audit["changed"] is False
    assert paths(audit["unpersisted"]) | paths(audit["differing"]) == \
        rsync_answer(tree.root, tree.persist, DEFAULT_EXCLUDES) | {b"/" + TYPE_CLASH_FULL}
    md = (reports / "localhost.md").read_text()
    html = (reports / "localhost.html").read_text()
    assert "# Persistence audit: localhost" in md
    assert "`/etc/machine-id`" in md and "`/old/app/state`" in md
    assert audit["suggested_snippet"] in md
    assert '"/names/new\\nline"' in md                       # odd names are quoted, not spliced into Markdown
    assert "<code>/etc/machine-id</code>" in html
    assert "&lt;b&gt;bold" in html and "<b>bold" not in html
    assert "/var/lib/nixos" in html
