# SPDX-License-Identifier: GPL-3.0-or-later
"""The run lock (module_utils/_runlock.py): one module that writes at a time on a host, plans side by side, the
holder named in the refusal, nothing left behind by a holder that ended. Real flock on a file in the test's own
directory; two holders are two open file descriptions, which conflict as two processes would."""
import os
import subprocess
import sys

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils import _runlock
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "impermanent-nixos.lock")


class FakeTime(object):
    """A clock that only moves when the lock code sleeps; ``on_sleep`` runs after each sleep."""

    def __init__(self, on_sleep=None):
        self.now = 100.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(self)


def test_a_writer_holds_the_lock_and_names_itself_in_the_file(path):
    held = _runlock.acquire(False, 0, "impermanent.nixos.gpt_partition", path=path)
    with open(path) as f:
        line = f.read()
    assert line.startswith("impermanent.nixos.gpt_partition (pid %d, since " % os.getpid())
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert os.get_inheritable(held.fd) is False  # a program the module starts cannot keep it
    held.release()


def test_a_second_writer_is_refused_with_the_holder_and_what_to_do(path):
    first = _runlock.acquire(False, 0, "impermanent.nixos.install_plan", path=path)
    with pytest.raises(_runlock.RunLockBusy) as e:
        _runlock.acquire(False, 0, "impermanent.nixos.tmpfs_root", path=path)
    assert e.value.result["refused"] == "busy"
    assert e.value.result["lock_holder"].startswith("impermanent.nixos.install_plan (pid %d," % os.getpid())
    assert e.value.msg.startswith("another run is working on this host: impermanent.nixos.install_plan (pid ")
    assert path in e.value.msg and "waited 0 s" in e.value.msg and "before it would write" in e.value.msg
    assert "Wait until that run ends" in e.value.msg
    first.release()


def test_a_writer_waits_lock_timeout_seconds_polling_then_fails(path):
    first = _runlock.acquire(False, 0, "impermanent.nixos.install_plan", path=path)
    fake = FakeTime()
    with pytest.raises(_runlock.RunLockBusy) as e:
        _runlock.acquire(False, 5, "impermanent.nixos.filesystems", path=path, clock=fake.clock, sleep=fake.sleep)
    assert fake.sleeps == int(round(5 / _runlock.POLL)) and fake.now - 100.0 >= 5
    assert "waited 5 s" in e.value.msg
    first.release()


def test_a_writer_goes_on_as_soon_as_the_holder_ends_and_says_for_whom_it_waited(path):
    first = _runlock.acquire(False, 0, "impermanent.nixos.nixos_flake_install", path=path)

    def holder_ends_after_three_polls(fake):
        if fake.sleeps == 3:
            first.release()

    fake = FakeTime(holder_ends_after_three_polls)
    second = _runlock.acquire(False, 30, "impermanent.nixos.gpt_partition", path=path,
                              clock=fake.clock, sleep=fake.sleep)
    assert fake.sleeps == 3 and second.waited == round(3 * _runlock.POLL, 1)
    warning = _runlock.waited_warning(second)
    assert warning.startswith("waited 0.6 s for another run that held the run lock: "
                              "impermanent.nixos.nixos_flake_install (pid %d, since " % os.getpid()), warning
    second.release()
    third = _runlock.acquire(False, 30, "x", path=path)
    assert _runlock.waited_warning(third) is None and _runlock.waited_warning(None) is None
    third.release()


def test_plans_run_side_by_side_but_not_beside_a_writer(path):
    open(path, "w").close()
    plan_a = _runlock.acquire(True, 0, "a", path=path)
    plan_b = _runlock.acquire(True, 0, "b", path=path)
    with pytest.raises(_runlock.RunLockBusy) as e:
        _runlock.acquire(False, 0, "writer", path=path)
    # a plan writes nothing, so the writer cannot name it
    assert "one in check mode" in e.value.msg and e.value.result["lock_holder"] == ""
    plan_a.release()
    plan_b.release()
    writer = _runlock.acquire(False, 0, "impermanent.nixos.luks_open", path=path)
    with pytest.raises(_runlock.RunLockBusy) as e:
        _runlock.acquire(True, 0, "plan", path=path)
    assert "impermanent.nixos.luks_open (pid" in e.value.msg and "before it would plan" in e.value.msg
    writer.release()


def test_a_plan_where_no_module_has_written_takes_no_lock_and_writes_nothing(path):
    assert _runlock.acquire(True, 0, "plan", path=path) is None
    assert not os.path.exists(path)


def test_release_empties_the_file_and_the_same_process_can_take_it_again(path):
    # Mitogen runs the next module in the same process: a released lock must not block it
    first = _runlock.acquire(False, 0, "one", path=path)
    first.release()
    first.release()
    assert os.path.getsize(path) == 0
    again = _runlock.acquire(False, 0, "two", path=path)
    assert again.waited == 0
    again.release()


def test_a_killed_holder_leaves_no_lock_and_is_not_named_later(path):
    # a process that holds the lock and is SIGKILLed: the kernel drops the lock, its line stays in the file
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'impermanent.nixos.nixos_flake_install (pid %d, since then)\\n' % os.getpid())\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"), path], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(_runlock.RunLockBusy) as e:
        _runlock.acquire(False, 0, "rerun", path=path)
    assert "impermanent.nixos.nixos_flake_install (pid %d" % holder.pid in e.value.msg
    holder.kill()
    holder.wait()
    # a plan sees the dead writer's line but must not name a process that is gone
    with open(path) as f:
        assert "(pid %d," % holder.pid in f.read()
    with pytest.raises(_runlock.RunLockBusy) as e:
        plan = _runlock.acquire(True, 0, "plan", path=path)
        try:
            _runlock.acquire(False, 0, "writer", path=path)
        finally:
            plan.release()
    assert e.value.result["lock_holder"] == ""
    rerun = _runlock.acquire(False, 0, "rerun", path=path)
    rerun.release()


def test_a_negative_timeout_and_a_lock_file_that_cannot_be_opened_fail_clearly(tmp_path):
    with pytest.raises(ModuleError, match="lock_timeout must be 0 or more seconds, not -1"):
        _runlock.acquire(False, -1, "x", path=str(tmp_path / "l"))
    missing = str(tmp_path / "no-such-dir" / "l")
    with pytest.raises(ModuleError, match="cannot open the run lock .*no-such-dir/l: No such file or directory"):
        _runlock.acquire(False, 0, "x", path=missing)



def test_a_lock_file_that_is_a_symbolic_link_is_not_followed(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "impermanent-nixos.lock"
    link.symlink_to(target)
    with pytest.raises(ModuleError, match="the run lock .*impermanent-nixos.lock is a symbolic link, which this module does not follow; remove it"):
        _runlock.acquire(False, 0, "x", path=str(link))
    assert target.read_text() == "keep me\n"
