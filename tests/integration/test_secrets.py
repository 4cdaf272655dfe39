# SPDX-License-Identifier: GPL-3.0-or-later
"""The LUKS passphrase never shows: not in any process's argv (or a cryptsetup process's environment) while
luks_open runs under ``ansible-playbook -vvv``, not in that verbose output, not in the module result.

A sampler thread (tests/argv_sampler.py) reads every /proc/*/cmdline (and /proc/PID/environ of cryptsetup
processes) every few ms; it must see cryptsetup at least once, or the sampling proved nothing.
"""
import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from argv_sampler import Sampler  # tests/argv_sampler.py, also the guest-side sampler of molecule/reinstall
from conftest import _env

MIB = 1 << 20


PLAYBOOK = """- hosts: localhost
  gather_facts: false
  tasks:
    - name: Format
      impermanent.nixos.luks_open: "{{ luks_args }}"
"""


@pytest.mark.parametrize("kdf", [
    pytest.param(dict(pbkdf="pbkdf2", pbkdf_force_iterations=1000), id="pbkdf2-cheap"),
    pytest.param(dict(pbkdf_memory=32768, iter_time=500), id="argon2id-default"),
])
def test_passphrase_never_leaks(loopdisk, tmp_path, kdf):
    disk = loopdisk(32 * MIB)
    canary = "s3cret-canary-%s" % secrets.token_hex(8)
    playbook = tmp_path / "luks.yml"
    playbook.write_text(PLAYBOOK)
    luks_args = dict(device=disk.device, passphrase=canary, format=True, state="closed", **kdf)
    # the secret reaches ansible-playbook through a vars file, as a vault or inventory would: -e on the command
    # line would put it in ansible-playbook's own argv, which is the caller's doing, not the module's
    varsfile = tmp_path / "secret.json"
    varsfile.write_text(json.dumps(dict(luks_args=luks_args)))
    varsfile.chmod(0o600)
    argv = ["ansible-playbook", "-vvv", "-i", "localhost,", "-c", "local", str(playbook), "-e", "@%s" % varsfile]
    env = _env()
    env["ANSIBLE_STDOUT_CALLBACK"] = "default"  # the human -vvv output, where an unmasked value would be printed
    sampler = Sampler(canary)
    sampler.start()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    finally:
        sampler.stop.set()
        sampler.join()
    print("%s: %d /proc passes, %d argv read, %d cryptsetup sightings (%d processes), %d hits"
          % (kdf.get("pbkdf", "argon2id"), sampler.samples, sampler.cmdlines, sampler.sightings,
             len(sampler.cryptsetup), len(sampler.hits)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "changed=1" in proc.stdout
    assert subprocess.run(["cryptsetup", "isLuks", disk.device], check=False).returncode == 0
    # the header really holds the canary (so the secret did reach cryptsetup, via stdin)
    test = subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-file=-", disk.device],
                          input=canary, text=True, capture_output=True, check=False)
    assert test.returncode == 0, test.stderr
    if "pbkdf" not in kdf:
        dump = subprocess.run(["cryptsetup", "luksDump", disk.device], capture_output=True, text=True,
                              check=True).stdout
        assert "argon2id" in dump
    assert sampler.sightings > 0, "the sampler never saw cryptsetup run: the argv check proved nothing"
    assert sampler.hits == []
    assert canary not in proc.stdout and canary not in proc.stderr
    # the module's own result (its invocation, printed at -vvv) is masked
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in proc.stdout or "********" in proc.stdout


def test_module_result_is_masked(loopdisk):
    from conftest import run_module
    disk = loopdisk(32 * MIB)
    canary = "s3cret-canary-%s" % secrets.token_hex(8)
    # ansible-core 2.21 puts a module's `invocation` into its result only when asked (ANSIBLE_INJECT_INVOCATION);
    # 2.19 always does. Asked here, so that the masking of the no_log argument in it is checked on every version.
    rc, res = run_module("impermanent.nixos.luks_open", dict(device=disk.device, passphrase=canary, format=True,
                                                             state="closed", pbkdf="pbkdf2",
                                                             pbkdf_force_iterations=1000),
                         extra_env={"ANSIBLE_INJECT_INVOCATION": "1"})
    assert rc == 0 and res["formatted"] is True, res
    text = json.dumps(res)
    assert canary not in text
    assert res["invocation"]["module_args"]["passphrase"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert not any(canary in c for c in res.get("commands", []))


def test_sampler_catches_a_leak():
    """Negative control: the sampler does report a canary that sits in some process's argv."""
    canary = "s3cret-canary-%s" % secrets.token_hex(8)
    sampler = Sampler(canary)
    sampler.start()
    try:
        subprocess.run(["sh", "-c", "sleep 0.3", "leaky", canary], check=True)
    finally:
        sampler.stop.set()
        sampler.join()
    assert sampler.hits and sampler.hits[0][0] == "argv"


def test_sampler_daemon_reports_a_leak_without_the_secret(tmp_path):
    """The script form that molecule/reinstall runs in the guest: the needle comes on stdin, the command returns
    once the daemon samples, SIGTERM ends it, and the report counts the leak without ever holding the needle."""
    canary = "s3cret-canary-%s" % secrets.token_hex(8)
    report, pidfile = tmp_path / "out" / "report.json", tmp_path / "sampler.pid"
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "argv_sampler.py")
    start = subprocess.run([sys.executable, script, "--out", str(report), "--pidfile", str(pidfile),
                            "--interval", "0.01"], input=canary + "\n", text=True, timeout=30, check=False)
    assert start.returncode == 0 and report.exists() and pidfile.exists()
    pid = int(pidfile.read_text())
    subprocess.run(["sh", "-c", "sleep 0.5", "leaky", canary], check=True)
    os.kill(pid, 15)
    for _ in range(100):
        if '"running": false' in report.read_text():
            break
        time.sleep(0.05)
    data = json.loads(report.read_text())
    assert data["running"] is False and data["samples"] > 0 and data["hits"] > 0
    assert {"where": "argv", "program": "sh"}.items() <= data["hit_sources"][0].items()
    assert canary not in report.read_text()
