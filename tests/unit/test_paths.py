# SPDX-License-Identifier: GPL-3.0-or-later
"""resolve_beneath: paths below a root that never lead out of it (scratch trees, no privileges needed)."""
import os

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._paths import (
    MAX_LINKS, PathError, creatable_dir, resolve_beneath, within)


@pytest.fixture
def tree(tmp_path):
    """ROOT with var/log and a file, and OUT, a directory beside it (the live system)."""
    root = tmp_path / "root"
    (root / "var" / "log").mkdir(parents=True)
    (root / "nix" / "persist").mkdir(parents=True)
    (root / "file").write_text("x")
    (tmp_path / "out" / "log").mkdir(parents=True)
    return str(root), str(tmp_path / "out")


def test_within_compares_components():
    assert within("/mnt", "/mnt") and within("/mnt/a", "/mnt") and within("/x", "/")
    assert not within("/mnt2", "/mnt") and not within("/", "/mnt") and not within("/mn", "/mnt")


def test_plain_paths_resolve_to_themselves(tree):
    root, _out = tree
    r = resolve_beneath(root, root + "/var/log")
    assert r.path == root + "/var/log" and r.links == [] and r.missing is None and r.kind == "dir"
    r = resolve_beneath(root, root)
    assert r.path == root and r.kind == "dir"
    assert resolve_beneath(root, root + "/file").kind == "file"


def test_missing_components_end_the_walk(tree):
    root, _out = tree
    r = resolve_beneath(root, root + "/etc/nixos/x")
    assert r.missing == root + "/etc" and r.kind == "missing" and r.path == root + "/etc/nixos/x"


@pytest.mark.parametrize("target", ["{out}", "../out", "../../{outname}/out", "/", "log/../../../out"])
def test_links_out_of_the_root_are_refused_and_named(tree, target):
    root, out = tree
    os.rename(root + "/var", root + "/var.real")
    target = target.format(out=out, outname=os.path.basename(os.path.dirname(out)))
    os.symlink(target, root + "/var")
    with pytest.raises(PathError) as e:
        resolve_beneath(root, root + "/var/log")
    msg = str(e.value)
    assert "%s/var is a symbolic link to %s" % (root, target) in msg or (root + "/var") in msg, msg
    assert "out" in msg or "outside" in msg


def test_absolute_link_that_comes_back_in_is_still_refused(tree):
    root, out = tree
    os.symlink(root, out + "/back")  # OUT/back -> ROOT: leaving and re-entering is refused at the first link
    os.symlink(out + "/back/var", root + "/v")
    with pytest.raises(PathError, match="v is a symbolic link to .*outside"):
        resolve_beneath(root, root + "/v/log")


def test_links_inside_the_root_are_followed(tree):
    root, _out = tree
    os.symlink("nix/persist", root + "/p")                 # relative
    os.symlink(root + "/var", root + "/nix/v")             # absolute, spelled below the root
    r = resolve_beneath(root, root + "/p/x")
    assert r.path == root + "/nix/persist/x" and r.links == [(root + "/p", "nix/persist")]
    r = resolve_beneath(root, root + "/nix/v/log")
    assert r.path == root + "/var/log" and r.kind == "dir"


def test_root_given_through_a_link_is_trusted_and_links_may_name_either_spelling(tree, tmp_path):
    root, _out = tree
    alias = str(tmp_path / "alias")
    os.symlink(root, alias)
    os.symlink(alias + "/var", root + "/v")  # absolute, through the alias of the root
    r = resolve_beneath(alias, alias + "/v/log")
    assert r.path == root + "/var/log"


def test_links_can_be_refused_altogether(tree):
    root, _out = tree
    os.symlink("var", root + "/v")
    with pytest.raises(PathError, match=r"/v is a symbolic link to var; make it a directory"):
        resolve_beneath(root, root + "/v/log", allow_links=False, link_advice="make it a directory")
    # a link out of the root is reported as that, also where links are refused anyway
    os.symlink("v", root + "/w")
    os.symlink(_out, root + "/var/out")
    with pytest.raises(PathError, match=r"/var/out is a symbolic link to .*, which is outside"):
        resolve_beneath(root, root + "/w/out/x", allow_links=False, link_advice="make it a directory")


def test_loops_are_refused(tree):
    root, _out = tree
    os.symlink("b", root + "/a")
    os.symlink("a", root + "/b")
    with pytest.raises(PathError, match="too many levels of symbolic links"):
        resolve_beneath(root, root + "/a/x")
    os.symlink("self/x", root + "/self")
    with pytest.raises(PathError, match="loop"):
        resolve_beneath(root, root + "/self")


def test_long_chains_inside_the_root_are_followed_up_to_the_kernel_limit(tree):
    root, _out = tree
    prev = "var"
    for i in range(MAX_LINKS):
        os.symlink(prev, "%s/l%d" % (root, i))
        prev = "l%d" % i
    assert resolve_beneath(root, "%s/l%d/log" % (root, MAX_LINKS - 1)).path == root + "/var/log"
    os.symlink(prev, root + "/one-more")
    with pytest.raises(PathError, match="too many"):
        resolve_beneath(root, root + "/one-more/log")


def test_dotdot_out_of_the_root_is_refused(tree):
    root, _out = tree
    os.symlink("../../..", root + "/var/log/up")
    with pytest.raises(PathError, match="through '..'"):
        resolve_beneath(root, root + "/var/log/up/x")
    os.symlink("..", root + "/var/ok")  # stays inside: ROOT/var/ok -> ROOT
    assert resolve_beneath(root, root + "/var/ok/file").path == root + "/file"


def test_a_file_where_a_directory_must_be_is_refused(tree):
    root, _out = tree
    with pytest.raises(PathError, match=r"/file is not a directory \(it is a regular file\)"):
        resolve_beneath(root, root + "/file/sub")


def test_paths_outside_the_root_are_refused(tree):
    root, out = tree
    with pytest.raises(PathError, match="is not below"):
        resolve_beneath(root, out + "/log")
    with pytest.raises(PathError, match="is not below"):
        resolve_beneath(root, root + "2/x")


def test_creatable_dir(tree):
    root, _out = tree
    assert creatable_dir(root + "/var") is None and creatable_dir(root + "/new/deeper") is None
    assert creatable_dir(root + "/file") == root + "/file exists and is not a directory"
    assert "is not a directory" in creatable_dir(root + "/file/sub")
