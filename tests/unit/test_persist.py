# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure parts of persist_audit: rsync exclude semantics, the suggested snippet, names, and the walker's parallel
driver against its serial self. The comparison with rsync itself is tests/integration/test_persist_audit.py."""
import base64
import os
import random

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils import _persist as P

# (pattern, path relative to the transfer root, is_dir, excluded?) — each row was checked against rsync 3.5 with
# `rsync -a --dry-run --exclude PATTERN src/ dst/` on a tree holding just that path, except the rows marked
# "parent": there rsync already excludes the parent directory, and the row states the rule's own meaning.
RSYNC_TRUTH = [
    ("/tmp/*", "tmp", True, False),
    ("/tmp/*", "tmp/a", False, True),
    ("/tmp/*", "tmp/a", True, True),
    ("/tmp/*", "x/tmp/a", False, False),
    ("- /tmp/*", "tmp/a", False, True),
    ("/var/**/cache", "var/cache", True, False),
    ("/var/**/cache", "var/a/cache", True, True),
    ("/var/**/cache", "var/a/b/cache", True, True),
    ("**/x", "x", True, True),
    ("**/x", "a/x", True, True),
    ("**/x", "ax", True, False),
    ("/**/x", "x", True, False),
    ("/**/x", "a/x", True, True),
    ("a/**/x", "a/x", True, False),
    ("a/**/x", "a/b/x", True, True),
    ("a*/b", "q/ab/b", True, True),
    ("a*/b", "qb/b", True, False),
    ("*/b", "q/ab/b", True, True),
    ("*/b", "qb/b", True, True),
    ("/m/**/x*y", "m/xc", True, False),
    ("/m/**/x*y", "m/xc/dy", True, False),
    ("/m/x*y", "m/xc/dy", True, False),
    ("x/", "x", True, True),
    ("x/", "x", False, False),
    ("x/", "a/x", True, True),
    ("x/***", "x", True, True),
    ("x/***", "x", False, False),
    ("x/***", "x/f", False, True),  # parent
    ("/var/***", "var", True, True),
    ("/var/**", "var", True, False),
    ("/var/**", "var/cache", True, True),
    ("var/*", "var/cache", True, True),
    ("var/*", "z/var/cache", True, True),
    ("var/*", "var", True, False),
    ("br\\[a\\]", "br[a]", True, True),
    ("br\\[a\\]", "bra", True, False),
    ("br[a]", "br[a]", True, False),
    ("br[a]", "bra", True, True),
    ("**cache", "var/cache", True, True),
    ("**cache", "var/a/cache", True, True),
    ("**cache", "cachex", True, False),
    ("va?/a", "var/a", True, True),
    ("va?/a", "va/a", True, False),
    ("v*/c*", "var/cache", True, True),
    ("v*/c*", "var/a/cache", True, False),
    ("/var/c*/***", "var/cache", True, True),
    ("/*/b", "qb/b", True, True),
    ("/*/b", "q/ab/b", True, False),
    ("x/x", "n/x/x", True, True),
    ("/n/**/x", "n/x/x", True, True),
    ("/n/**x", "n/x", True, True),
    ("*.pub", "etc/ssh/ssh_host_ed25519_key.pub", False, True),
    ("*.pub", "pub", False, False),
    ("[!a]bc", "xbc", False, True),
    ("[!a]bc", "abc", False, False),
    ("[^a]bc", "abc", False, False),
    ("[[:digit:]]*", "d/1abc", False, True),
    ("[[:digit:]]*", "d/abc", False, False),
    ("[a-c]x", "bx", False, True),
    ("[a-c]x", "dx", False, False),
    ("[]]x", "]x", False, True),
    ("?", "a/b", False, True),  # parent
    ("a?b", "a/b", False, False),
    ("a[/]b", "a/b", False, False),
    ("new*line", "names/new\nline", False, True),
    ("caf\udce9*", b"names/caf\xe9 latin1", False, True),
]


@pytest.mark.parametrize("pattern, path, is_dir, expected", RSYNC_TRUTH)
def test_exclude_rule_has_rsyncs_meaning(pattern, path, is_dir, expected):
    rel = path if isinstance(path, bytes) else path.encode("utf-8")
    assert P.ExcludeRule(pattern).matches(rel, is_dir) is expected


@pytest.mark.parametrize("pattern, path, is_dir, expected", RSYNC_TRUTH)
def test_per_directory_fast_path_agrees_with_the_rule(pattern, path, is_dir, expected):
    rel = path if isinstance(path, bytes) else path.encode("utf-8")
    parent, _, name = rel.rpartition(b"/")
    check = P.ExcludeSet([pattern]).for_dir(parent)
    got = False if check is None else check(name, parent + b"/" if parent else b"", is_dir)
    assert got is expected


def test_fast_path_agrees_on_random_paths():
    rnd = random.Random(7)
    patterns = ["/tmp/*", "/root/*", "*.log", "/var/*/cache/", "cache/***", "**/x", "/a/?/c", "[ab]*/d", "/a/**",
                "b/c", "/e*/"]
    names = [b"a", b"b", b"c", b"d", b"x", b"tmp", b"root", b"var", b"cache", b"y.log", b"ab", b"e1"]
    exset = P.ExcludeSet(patterns)
    for _ in range(3000):
        parts = [rnd.choice(names) for _ in range(rnd.randint(1, 5))]
        rel = b"/".join(parts)
        parent = b"/".join(parts[:-1])
        is_dir = rnd.random() < 0.5
        check = exset.for_dir(parent)
        fast = False if check is None else check(parts[-1], parent + b"/" if parent else b"", is_dir)
        assert fast == exset.excluded(rel, is_dir), (rel, is_dir)


def test_anchored_rules_only_look_at_their_depth():
    exset = P.ExcludeSet(["/tmp/*", "/root/*"])
    assert exset.for_dir(b"") is None
    assert exset.for_dir(b"var") is None
    assert exset.for_dir(b"tmp/sub") is None
    assert exset.for_dir(b"tmp") is not None


@pytest.mark.parametrize("pattern", ["+ /keep", "!", "", "/", "- "])
def test_refused_patterns(pattern):
    with pytest.raises(P.ExcludeError):
        P.ExcludeRule(pattern)


def test_display_path_keeps_the_exact_bytes():
    assert P.display_path(b"etc/machine-id") == ("/etc/machine-id", None)
    assert P.display_path(b"a b/new\nline") == ("/a b/new\nline", None)
    text, raw = P.display_path(b"caf\xe9")
    assert text == "/caf\\xe9"
    assert base64.b64decode(raw) == b"/caf\xe9"


@pytest.mark.parametrize("text, literal", [
    ("/etc/machine-id", '"/etc/machine-id"'),
    ('/a "quoted" \\ name', '"/a \\"quoted\\" \\\\ name"'),
    ("/not/${interpolated}", '"/not/\\${interpolated}"'),
    ("/just $dollar", '"/just $dollar"'),
    ("/new\nline\ttab", '"/new\\nline\\ttab"'),
])
def test_nix_string(text, literal):
    assert P.nix_string(text) == literal


def rec(path, type_="file", size=1):
    out = {"path": path, "type": type_, "size": size if type_ == "file" else 0, "mtime": 0}
    if isinstance(path, bytes):
        out["path"], raw = P.display_path(path.lstrip(b"/"))
        out["path_b64"] = raw
    return out


def test_snippet_collapses_to_the_top_most_wholly_unpersisted_directory_below_containers():
    unpersisted = [
        rec("/var/lib", "dir"), rec("/var/lib/nixos", "dir"), rec("/var/lib/nixos/uid-map"),
        rec("/var/lib/nixos/gid-map"), rec("/var/lib/systemd", "dir"), rec("/var/lib/systemd/timers", "dir"),
        rec("/var/lib/systemd/timers/stamp-fstrim.timer", size=0),
        rec("/srv", "dir"), rec("/srv/app", "dir"), rec("/srv/app/data", "dir"), rec("/srv/app/data/db"),
        rec("/srv/app/run.sock", "socket"),
        rec("/opt", "dir"), rec("/opt/tool", "dir"), rec("/opt/tool/x", "dir"), rec("/opt/tool/x/y"),
        rec("/games", "dir"), rec("/games/save", "dir"), rec("/games/save/1"),
        rec("/etc/machine-id"), rec("/etc/ssh", "dir"), rec("/etc/ssh/ssh_host_ed25519_key"),
        rec("/etc/ssh/ssh_host_ed25519_key.pub"), rec("/etc/passwd"), rec("/etc/NIXOS", size=0),
        rec("/home/alice/.bash_history"),
    ]
    out = P.build_snippet(unpersisted)
    assert out["directories"] == ["/games", "/opt/tool", "/srv/app", "/var/lib/nixos", "/var/lib/systemd"]
    assert out["files"] == ["/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
                            "/home/alice/.bash_history"]
    assert [n.split(":")[0] for n in out["notes"]] == ["/etc/passwd", "/etc/NIXOS"]
    assert [w["path"] for w in out["well_known"]] == ["/etc/machine-id", "/etc/ssh/ssh_host_*_key",
                                                      "/etc/ssh/ssh_host_*_key.pub", "/var/lib/nixos",
                                                      "/var/lib/systemd"]
    assert out["text"] == (
        'environment.persistence."/nix/persist" = {\n'
        '  directories = [\n'
        '    "/games"\n    "/opt/tool"\n    "/srv/app"\n    "/var/lib/nixos"\n    "/var/lib/systemd"\n'
        '  ];\n'
        '  files = [\n'
        '    "/etc/machine-id"\n    "/etc/ssh/ssh_host_ed25519_key"\n    "/etc/ssh/ssh_host_ed25519_key.pub"\n'
        '    "/home/alice/.bash_history"\n'
        '  ];\n'
        '};\n')


def test_snippet_leaves_out_what_should_not_be_persisted():
    unpersisted = [
        rec("/run-ish", "dir"), rec("/run-ish/fifo", "fifo"), rec("/run-ish/sock", "socket"),
        rec("/links", "dir"), rec("/links/deeper", "dir"),
        rec(b"/names/caf\xe9"), rec("/dev-like", "chardev"),
    ]
    out = P.build_snippet(unpersisted, "/persist")
    assert out["directories"] == [] and out["files"] == []
    assert out["text"] == 'environment.persistence."/persist" = {\n  directories = [ ];\n  files = [ ];\n};\n'
    notes = "\n".join(out["notes"])
    assert "/run-ish/fifo: a fifo is runtime state" in notes and "/run-ish/sock: a socket" in notes
    assert "/dev-like: a chardev" in notes
    assert "/names/caf\\xe9: the name is not valid UTF-8" in notes
    assert "/links: holds only symlinks" in notes and "/links/deeper:" not in notes


def test_snippet_escapes_names_for_nix():
    out = P.build_snippet([rec('/odd "name" ${x}\n')])
    assert '    "/odd \\"name\\" \\${x}\\n"\n' in out["text"]


def make_tree(base, rnd, nfiles, missing=0.1):
    src = os.path.join(base, "src")
    dst = os.path.join(base, "dst")
    for i in range(nfiles):
        parts = ["d%d" % rnd.randint(0, 4) for _ in range(rnd.randint(0, 4))] + ["f%d" % i]
        rel = os.path.join(*parts)
        for side in (src, dst):
            if side == dst and rnd.random() < missing:
                continue
            os.makedirs(os.path.join(side, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(side, rel), "w") as f:
                f.write("x" * (i % 7 if side == src else (i % 7) + (1 if rnd.random() < 0.05 else 0)))
            os.utime(os.path.join(side, rel), (1000, 1000))
        if rnd.random() < 0.05:
            os.makedirs(os.path.join(src, os.path.dirname(rel), "empty%d" % i, "chain"), exist_ok=True)
        if rnd.random() < 0.05:
            os.symlink("f0", os.path.join(src, os.path.dirname(rel), "l%d" % i))
    return src, dst


def summary(res):
    return (res.missing, res.differing, res.mount_points, res.errors, res.symlinks, res.entries)


def test_parallel_walk_equals_serial_walk(tmp_path, monkeypatch):
    src, dst = make_tree(str(tmp_path), random.Random(3), 600)
    small = P.Walker(src, dst, workers=4)
    small.run()
    assert small.used_workers == 1          # fewer entries than PARALLEL_AFTER: no worker is worth its fork
    monkeypatch.setattr(P, "PARALLEL_AFTER", 50)
    serial = P.Walker(src, dst, P.ExcludeSet(["d3/d1/"]), workers=1).run()
    for workers in (2, 5):
        walker = P.Walker(src, dst, P.ExcludeSet(["d3/d1/"]), workers=workers)
        parallel = walker.run()
        assert walker.used_workers == workers
        assert summary(parallel) == summary(serial)
    assert serial.missing and serial.differing and serial.symlinks
    assert not any("/empty" in r["path"] for r in serial.missing)


def test_a_worker_that_dies_is_replaced_by_a_serial_walk(tmp_path, monkeypatch):
    src, dst = make_tree(str(tmp_path), random.Random(5), 300)
    serial = P.Walker(src, dst, workers=1).run()
    monkeypatch.setattr(P, "PARALLEL_AFTER", 50)

    forks = []

    def broken_fork(self, share):
        forks.append(len(share))
        rfd, wfd = os.pipe()
        os.write(wfd, b"not marshal data")
        os.close(wfd)
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        return pid, rfd

    monkeypatch.setattr(P.Walker, "_fork", broken_fork)
    assert summary(P.Walker(src, dst, workers=3).run()) == summary(serial)
    assert len(forks) == 3 and all(forks)


def test_audit_changes_nothing(tmp_path):
    src, dst = make_tree(str(tmp_path), random.Random(9), 200)
    before = sorted((p, os.lstat(os.path.join(p, n)).st_mtime_ns) for p, ds, fs in os.walk(str(tmp_path))
                    for n in ds + fs)
    P.audit(src, dst, ["/tmp/*"], "both", workers=2)
    after = sorted((p, os.lstat(os.path.join(p, n)).st_mtime_ns) for p, ds, fs in os.walk(str(tmp_path))
                   for n in ds + fs)
    assert before == after
