# SPDX-License-Identifier: GPL-3.0-or-later
"""The session's own mount namespace (conftest's pytest_configure), which the whole-table mount checks rely on.

The modules run in it (they see the mounts the tests make), a mount made in it shows up in ``mountinfo()``, a mount
the host makes meanwhile does not, and nothing mounted here reaches the host. The host's side is the namespace the
session started in, entered with ``nsenter`` through the descriptor conftest keeps of it.
"""
import os
import subprocess

import pytest

from conftest import HOST_NAMESPACE_FD, OWN_NAMESPACE, mount_point, mountinfo, run_module, unmount_below


def on_host(*argv):
    """Run argv in the mount namespace the session started in."""
    fd = HOST_NAMESPACE_FD[0]
    return subprocess.run(["nsenter", "--mount=/proc/self/fd/%d" % fd, "--"] + list(argv), pass_fds=[fd],
                          capture_output=True, text=True, check=False)


def host_mounts():
    proc = on_host("cat", "/proc/self/mountinfo")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def host():
    if os.geteuid() != 0:
        pytest.fail("the integration layer needs root")
    assert OWN_NAMESPACE and HOST_NAMESPACE_FD, "conftest did not give the session a mount namespace of its own"
    started_in = os.readlink("/proc/self/fd/%d" % HOST_NAMESPACE_FD[0])
    assert started_in.startswith("mnt:[") and started_in != os.readlink("/proc/self/ns/mnt") == OWN_NAMESPACE[0]
    return started_in


def test_modules_run_in_the_sessions_namespace(host):
    rc, res = run_module("ansible.builtin.command", dict(argv=["readlink", "/proc/self/ns/mnt"]))
    assert rc == 0, res
    assert res["stdout"] == OWN_NAMESPACE[0] != host


def test_mounts_here_show_up_here_and_not_on_the_host(host, tmp_path):
    target = tmp_path / "a mount"
    target.mkdir()
    before = mountinfo()
    rc, res = run_module("ansible.builtin.command", dict(argv=["mount", "-t", "tmpfs", "-o", "size=1m", "nsprobe",
                                                               str(target)]))
    try:
        assert rc == 0, res
        assert mountinfo() != before
        assert [mount_point(line) for line in mountinfo(below=tmp_path)] == [str(target)]
        assert " nsprobe " in "".join(mountinfo())
        assert " nsprobe " not in host_mounts()
    finally:
        unmount_below(str(tmp_path))
    assert mountinfo() == before


def test_mounts_on_the_host_do_not_show_up_here(host, tmp_path):
    target = str(tmp_path / "host mount")
    os.mkdir(target)
    before = mountinfo()
    proc = on_host("mount", "-t", "tmpfs", "-o", "size=1m", "hostprobe", target)
    assert proc.returncode == 0, proc.stderr
    try:
        assert " hostprobe " in host_mounts()
        assert mountinfo() == before
    finally:
        assert on_host("umount", target).returncode == 0
    assert " hostprobe " not in host_mounts()
