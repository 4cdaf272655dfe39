# SPDX-License-Identifier: GPL-3.0-or-later
"""The run lock on this host: a module that writes waits for another run that holds /run/impermanent-nixos.lock,
refuses once lock_timeout has passed (naming the holder, the disk untouched), goes on as soon as the holder ends,
and finds no stale lock after a holder was killed.

"Another run" is a process that takes the same flock a module takes and writes the same holder line: what a module
left running on the target by a controller that died looks like to the next run.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_module

RUN_LOCK = "/run/impermanent-nixos.lock"
SMALL = [{"name": "esp", "size": "64MiB", "type": "esp"},
         {"name": "swap", "size": "64MiB", "type": "swap"},
         {"name": "nix", "size": "100%", "type": "linux"}]
HOLDER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, b"impermanent.nixos.install_plan (pid %d, since a minute ago)\n" % os.getpid())
print("held", flush=True)
time.sleep(float(sys.argv[2]))
os.ftruncate(fd, 0)
"""


@pytest.fixture
def other_run():
    """Start a process that holds the run lock for SECONDS (the lock is taken when this returns)."""
    procs = []

    def start(seconds):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, RUN_LOCK, str(seconds)], stdout=subprocess.PIPE,
                                text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_module_refuses_after_lock_timeout_naming_the_other_run_and_writes_nothing(loopdisk, other_run):
    disk = loopdisk(256 << 20)
    before = disk.digest()
    holder = other_run(120)
    t0 = time.monotonic()
    rc, res = run_module("impermanent.nixos.gpt_partition",
                         {"device": disk.device, "partitions": SMALL, "lock_timeout": 2})
    waited = time.monotonic() - t0
    assert rc != 0 and res["refused"] == "busy", res
    assert res["lock_holder"] == "impermanent.nixos.install_plan (pid %d, since a minute ago)" % holder.pid
    assert res["msg"].startswith("another run is working on this host: impermanent.nixos.install_plan (pid %d"
                                 % holder.pid)
    assert "this module waited 2 s for it (lock_timeout)" in res["msg"] and RUN_LOCK in res["msg"]
    assert res["commands"] == []
    assert waited >= 2
    assert disk.digest() == before


def test_check_mode_waits_for_a_writer_too(loopdisk, other_run):
    disk = loopdisk(256 << 20)
    other_run(120)
    rc, res = run_module("impermanent.nixos.gpt_partition",
                         {"device": disk.device, "partitions": SMALL, "lock_timeout": 0}, check=True)
    assert rc != 0 and res["refused"] == "busy" and "before it would plan anything" in res["msg"], res


def test_a_module_goes_on_when_the_other_run_ends_within_lock_timeout(loopdisk, other_run):
    disk = loopdisk(256 << 20)
    # held well past ansible's own start-up (a few seconds on a busy host), so that the module has to wait
    holder = other_run(10)
    t0 = time.monotonic()
    rc, res = run_module("impermanent.nixos.gpt_partition", {"device": disk.device, "partitions": SMALL})
    assert rc == 0 and res["changed"] is True, res
    assert time.monotonic() - t0 >= 9.5
    # the user learns that another run was still working on the host
    assert any(w.startswith("waited ") and w.endswith(" s for another run that held the run lock: "
                                                      "impermanent.nixos.install_plan (pid %d, since a minute ago)"
                                                      % holder.pid)
               for w in res.get("warnings", [])), res.get("warnings")
    rc, res = run_module("impermanent.nixos.gpt_partition", {"device": disk.device, "partitions": SMALL})
    assert rc == 0 and res["changed"] is False, res


def test_a_killed_run_leaves_no_lock_behind(loopdisk, other_run):
    disk = loopdisk(256 << 20)
    holder = other_run(120)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    rc, res = run_module("impermanent.nixos.gpt_partition",
                         {"device": disk.device, "partitions": SMALL, "lock_timeout": 0})
    assert rc == 0 and res["changed"] is True, res


def test_a_step_of_install_plan_cannot_be_given_the_lock_option(loopdisk):
    # the one call holds the lock for all its steps; a step's own lock_timeout would mean nothing
    disk = loopdisk(256 << 20)
    rc, res = run_module("impermanent.nixos.install_plan", {"steps": [
        {"module": "gpt_partition", "params": {"device": disk.device, "partitions": SMALL, "lock_timeout": 5}}]})
    assert rc != 0 and "gpt_partition: " in res["msg"] and "lock_timeout" in res["msg"], res
