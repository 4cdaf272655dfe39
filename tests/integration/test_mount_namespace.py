# SPDX-License-Identifier: GPL-3.0-or-later
"""The session's own mount namespace (conftest's pytest_configure), which the whole-table mount checks rely on.

The modules run in it (they see the mounts the tests make), a mount made in it shows up in ``mountinfo()``, a mount
the host makes meanwhile does not, and nothing mounted here reaches the host. The host's side is PID 1's mount
namespace, entered with ``nsenter``.
"""
import os
import subprocess

import pytest

from conftest import OWN_NAMESPACE, mount_point, mountinfo, run_module, unmount_below


def host_mounts():
    with open("/proc/1/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def on_host(*argv):
    return subprocess.run(["nsenter", "-t", "1", "-m", "--"] + list(argv), capture_output=True, text=True,
                          check=False)


@pytest.fixture
def host_side():
    if os.geteuid() != 0:
        pytest.fail("the integration layer needs root")
    if os.readlink("/proc/1/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
        pytest.fail("the session shares PID 1's mount namespace: conftest did not give it one of its own")
    return on_host


def test_modules_run_in_the_sessions_namespace(host_side):
    rc, res = run_module("ansible.builtin.command", dict(argv=["readlink", "/proc/self/ns/mnt"]))
    assert rc == 0, res
    assert OWN_NAMESPACE and res["stdout"] == OWN_NAMESPACE[0] != os.readlink("/proc/1/ns/mnt")


def test_mounts_here_show_up_here_and_not_on_the_host(host_side, tmp_path):
    target = tmp_path / "a mount"
    target.mkdir()
    before = mountinfo()
    rc, res = run_module("ansible.builtin.command", dict(argv=["mount", "-t", "tmpfs", "-o", "size=1m", "nsprobe",
                                                               str(target)]))
    try:
        assert rc == 0, res
        after = mountinfo()
        assert after != before
        assert [mount_point(line) for line in mountinfo(below=tmp_path)] == [str(target)]
        assert "nsprobe" not in host_mounts()
    finally:
        unmount_below(str(tmp_path))
    assert mountinfo() == before


def test_mounts_on_the_host_do_not_show_up_here(host_side, tmp_path):
    target = str(tmp_path / "host mount")
    os.mkdir(target)
    before = mountinfo()
    proc = host_side("mount", "-t", "tmpfs", "-o", "size=1m", "hostprobe", target)
    assert proc.returncode == 0, proc.stderr
    try:
        assert "hostprobe" in host_mounts()
        assert mountinfo() == before
    finally:
        assert host_side("umount", target).returncode == 0
    assert "hostprobe" not in host_mounts()
