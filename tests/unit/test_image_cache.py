# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/images/prune-guest-images.sh on a cache directory built here (no image is built)."""
import os
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "images", "prune-guest-images.sh")


def image(root, key, built_at, complete=True):
    path = root / ("guest-" + key)
    path.mkdir()
    (path / "base.qcow2").write_bytes(b"qcow")
    if complete:
        (path / ".complete").touch()
        os.utime(path / ".complete", (built_at, built_at))
    return path


def prune(root, *keep):
    return subprocess.run(["bash", SCRIPT, str(root), *keep], capture_output=True, text=True, check=False)


def test_keeps_the_newest_two_complete_images_by_build_time(tmp_path):
    oldest = image(tmp_path, "a", 1000)
    newest = image(tmp_path, "b", 4000)
    middle = image(tmp_path, "c", 3000)
    older = image(tmp_path, "d", 2000)
    unfinished = image(tmp_path, "e", 0, complete=False)
    other = tmp_path / "vms"
    other.mkdir()
    proc = prune(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([newest.name, middle.name, unfinished.name, "vms"])
    assert "removing %s" % oldest in proc.stderr and "removing %s" % older in proc.stderr


def test_keep_one_and_nothing_to_prune(tmp_path):
    image(tmp_path, "a", 1000)
    image(tmp_path, "b", 2000)
    assert prune(tmp_path, "1").returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["guest-b"]
    proc = prune(tmp_path, "1")
    assert proc.returncode == 0 and proc.stderr == ""
    assert [p.name for p in tmp_path.iterdir()] == ["guest-b"]


@pytest.mark.parametrize("keep", ["0", "-1", "two"])
def test_a_bad_keep_count_is_refused_and_removes_nothing(tmp_path, keep):
    image(tmp_path, "a", 1000)
    image(tmp_path, "b", 2000)
    proc = prune(tmp_path, keep)
    assert proc.returncode == 2 and "KEEP must be a whole number >= 1" in proc.stderr
    assert len(list(tmp_path.iterdir())) == 2
