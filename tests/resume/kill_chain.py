#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kill `impermanent.nixos.provision` and run it again, over and over, in a Molecule guest (molecule/resume).

Run by molecule/resume/side_effect.yml; writes a JSON report that molecule/resume/tests/test_resume.py checks.

From a blank disk, a chain of runs of provision, each starting from the state the previous one was killed in:

- a run with the kill_switch callback (tests/resume/callback_plugins) SIGKILLs ansible-playbook at the first task
  boundary after the previous kill point (mode ``every``), or at the first boundary after a task that changed
  something (mode ``changed``: the boundaries where the guest's state differs from the one before);
- right after the kill that follows partitioning, one run is killed in the middle of luksFormat instead: with a
  slow key derivation (argon2id, 5 s), once cryptsetup has written its header but is still deriving the key slot's
  key, the ansible-playbook process group is SIGKILLed here, then `cryptsetup luksFormat` in the guest. Left
  behind: a LUKS header without any key slot;
- right after the (next) kill that follows LUKS, one run is killed the same way while mke2fs builds /nix's ext4;
- right after the kill that follows hardware-configuration.nix, the controller dies while nixos-install runs, and
  the module goes on (a dropped SSH session): nixos-install is frozen, ansible-playbook's process group is
  SIGKILLed, the next run is started at once, and nixos-install is let go only once a module of that run has the
  run lock open beside the old module. The next run must wait for the old module (the run lock), say so in a
  warning, and then find the system installed: nixos-install is still called once in the whole chain.

The chain ends with a run that finishes (rc 0); what it left is recorded as a fingerprint (table, signatures,
mounts, swap, modes, hardware-configuration.nix, the flake's git files, the installer calls; UUIDs masked). Molecule
then runs converge, idempotence and the step-by-step verify of an uninterrupted install on that state.
Exits non-zero on the first thing that does not hold; the report says what was seen either way.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PLAYBOOK = "impermanent.nixos.provision"
SLOW_KDF = dict(disk_luks_pbkdf="argon2id", disk_luks_pbkdf_force_iterations=0, disk_luks_iter_time=5000,
                disk_luks_pbkdf_memory=65536)
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
UUID_RE = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|"
                     r"\b[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}\b")

# Waits (in the guest) until PATTERN runs and CONDITION holds, freezes it (SIGSTOP: it can neither finish nor write
# any further while the controller is killed), says READY, waits for a line on stdin, then SIGKILLs it and says
# KILLED (ACTION kill) or lets it go on and says RESUMED (ACTION resume). MISSED: it ended between the check and the
# SIGSTOP; TIMEOUT: it never ran. PATTERN is a pgrep -f regex written so that it does not match the watcher's own
# command line ("[c]ryptsetup").
WATCHER = r"""
pattern=$1; condition=$2; action=$3
i=0
while [ $i -lt 6000 ]; do
  if pgrep -f "$pattern" >/dev/null && sh -c "$condition" >/dev/null 2>&1; then
    if pkill -STOP -f "$pattern"; then
      echo READY; read -r _go
      if [ "$action" = resume ]; then pkill -CONT -f "$pattern"; echo RESUMED; exit 0; fi
      pkill -KILL -f "$pattern"; pkill -CONT -f "$pattern"; echo KILLED
    else
      echo MISSED
    fi
    exit 0
  fi
  i=$((i + 1)); sleep 0.02
done
echo TIMEOUT
"""

FINGERPRINT = r"""
disk=$1
set +e
echo "## table"; sfdisk --dump "$disk" | grep -v -e '^label-id' -e '^device'
for p in "$disk"-part*; do echo "## $p"; blkid -p -o export "$p" | grep -E '^(TYPE|LABEL|PART_ENTRY_NAME|VERSION)='; done
echo "## mapper"; blkid -p -o export /dev/mapper/crypted 2>/dev/null | grep -E '^(TYPE|LABEL)='
echo "## mounts"; findmnt -R -n -o TARGET,FSTYPE,OPTIONS /mnt | sed 's/,*size=[0-9]*k//'
echo "## swap"; swapon --show=TYPE,SIZE --noheadings
echo "## modes"; stat -c '%n %a' /mnt /mnt/etc/nixos /mnt/nix/persist/etc/nixos
echo "## hwconfig"; cat /mnt/etc/nixos/hardware-configuration.nix
echo "## git"; git -C /mnt/etc/nixos ls-files --stage 2>&1 | awk '{print $4}'
echo "## installer calls"; grep -c '"tool": "nixos-install"' /var/log/impermanent-doubles.log
echo "## generate calls"; grep -c '"tool": "nixos-generate-config"' /var/log/impermanent-doubles.log
"""

# What the guest looks like when the chain fails: printed with the problem, so a failure in CI explains itself.
GUEST_STATE = r"""
disk=$1
set +e
echo "## lsblk"; lsblk -o NAME,TYPE,FSTYPE,SIZE,MOUNTPOINTS "$(readlink -f "$disk")"
echo "## dmsetup"; dmsetup ls 2>&1
echo "## mounts"; findmnt -R -n -o TARGET,SOURCE,FSTYPE /mnt
echo "## swap"; swapon --show --noheadings
echo "## processes"; pgrep -a -f '[c]ryptsetup|[m]ke2fs|[m]kfs|[m]ount|[p]ython'
echo "## dmesg"; dmesg | tail -n 15
"""

RESET = r"""
disk=$1
set +e
swapoff -a
umount -R /mnt 2>/dev/null
cryptsetup close crypted 2>/dev/null
for p in "$disk"-part*; do [ -e "$p" ] && wipefs -q -a "$p"; done
wipefs -q -a "$disk"
dd if=/dev/zero of="$disk" bs=1M count=64 conv=fsync status=none
partx -d "$(readlink -f "$disk")" 2>/dev/null
udevadm settle
: > /var/log/impermanent-doubles.log
set -e
test -z "$(lsblk -n -o NAME "$disk" | tail -n +2)"
test -z "$(blkid -p "$disk")"
"""


class Guest(object):
    """SSH to the Molecule guest with the connection Molecule's create step wrote."""

    def __init__(self, instance_config, host):
        with open(instance_config) as f:
            instances = yaml.safe_load(f)
        conf = [i for i in instances if i["instance"] == host][0]
        self.argv = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                     "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-i", conf["identity_file"],
                     "-p", str(conf["port"]), "%s@%s" % (conf["user"], conf["address"])]

    def sh(self, script, *args, check=True):
        argv = self.argv + ["sh", "-s", "--"] + [str(a) for a in args]
        proc = subprocess.run(argv, input=script, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise SystemExit("guest script failed (rc=%d): %s%s" % (proc.returncode, proc.stdout, proc.stderr))
        return proc.stdout

    def watch(self, pattern, condition, action="kill"):
        argv = self.argv + ["sh", "-c", _quote(WATCHER), "watcher", _quote(pattern), _quote(condition), action]
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


class Runner(object):
    def __init__(self, args, guest):
        self.args = args
        self.guest = guest
        self.runs = 0
        self.kill_log = os.path.join(args.workdir, "kill-switch.jsonl")
        self.last_log = None

    def start(self, extra_vars=None, after=None, log_name=None):
        self.runs += 1
        env = dict(os.environ)
        env.pop("IMPERMANENT_KILL_AFTER", None)
        if after is not None:
            env["ANSIBLE_CALLBACK_PLUGINS"] = ":".join(
                p for p in (os.path.join(HERE, "callback_plugins"), env.get("ANSIBLE_CALLBACK_PLUGINS")) if p)
            env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(
                p for p in ("kill_switch", env.get("ANSIBLE_CALLBACKS_ENABLED")) if p)
            env["IMPERMANENT_KILL_AFTER"] = str(after)
            env["IMPERMANENT_KILL_MODE"] = self.args.mode
            env["IMPERMANENT_KILL_LOG"] = self.kill_log
        argv = ["ansible-playbook", "-i", self.args.inventory, "--limit", self.args.host, PLAYBOOK]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        self.last_log = os.path.join(self.args.workdir, "%02d-%s.log" % (self.runs, log_name or "run"))
        out = open(self.last_log, "w")
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def run(self, **kw):
        return self.start(**kw).wait()

    def kill_in_the_middle(self, what, pattern, condition, extra_vars=None, log_name=None, action="kill",
                           while_frozen=None):
        """Start a run; when PATTERN runs in the guest (and CONDITION holds) freeze it, kill ansible-playbook's
        process group here, then PATTERN in the guest (ACTION kill), or let it go on (ACTION resume).
        ``while_frozen(record)`` runs once the controller is dead and before PATTERN is killed or let go."""
        watcher = self.guest.watch(pattern, condition, action)
        proc = self.start(extra_vars=extra_vars, log_name=log_name or "mid-" + what)
        line = watcher.stdout.readline().strip()
        record = dict(what=what, watcher=line)
        if line == "READY":
            os.killpg(proc.pid, signal.SIGKILL)
            record["controller_rc"] = proc.wait()
            if while_frozen:
                while_frozen(record)
            watcher.stdin.write("go\n")
            watcher.stdin.flush()
            record["remote"] = watcher.stdout.readline().strip()
        else:
            record["controller_rc"] = proc.wait()
        watcher.wait()
        return record

    def controller_dies(self, what, pattern, after):
        """Start a run; when PATTERN runs in the guest, freeze it and kill ansible-playbook's process group here,
        leaving the module that runs PATTERN behind in the guest. Start the next run (the kill switch after task
        AFTER) at once, let PATTERN go on once a module of that run has the run lock open too (it is waiting for
        the lock), and return the record and the next run's process (None if PATTERN was not caught)."""
        following = []

        def start_the_next_run(record):
            following.append(self.start(after=after, log_name="after-%d-beside-%s" % (after, what)))
            record["next_log"] = self.last_log
            # once it has the lock file open, the next run's module is in its wait loop: it cannot get the lock
            # before the frozen module lets go
            record["next_module_waiting"] = self.guest.sh(SECOND_OPENER, check=False).strip()

        record = self.kill_in_the_middle(what, pattern, "true", log_name="controller-dies-" + what, action="resume",
                                         while_frozen=start_the_next_run)
        record["left_running"] = True
        return record, following[0] if following else None


def explain_failure(guest, args, last_log, problem, lines=25):
    """Print, and keep as failure.txt in the workdir, the problem, the last run's error lines and output, and the
    guest's state: CI shows little of a failed run's output, and Molecule's destroy removes the guest. The first
    lines say the most (tests/run-molecule.sh shows them after its summary)."""
    parts = ["kill_chain: " + problem]
    if last_log:
        with open(last_log, errors="replace") as f:
            output = [ANSI_RE.sub("", line) for line in f.read().splitlines()]
        parts += [line[:400] for line in output if line.startswith(("fatal:", "failed:", "[ERROR]"))][-4:]
        parts.append("## the last %d lines of %s" % (min(lines, len(output)), last_log))
        parts += output[-lines:]
    parts.append("## the guest now")
    parts.append(guest.sh(GUEST_STATE, args.disk, check=False))
    text = "\n".join(parts)
    with open(os.path.join(args.workdir, "failure.txt"), "w") as f:
        f.write(text)
    print(text)


def fingerprint(guest, disk):
    return UUID_RE.sub("<uuid>", guest.sh(FINGERPRINT, disk))


AFTER_PARTITIONING = "impermanent.nixos.disk : Partition the disk (ESP, swap, nix) on its optimal alignment"
AFTER_LUKS = "impermanent.nixos.disk : Format (only without a LUKS header) and open the nix partition"
INSTALL_TASK = "impermanent.nixos.flake : Install NixOS from the flake"
AFTER_HWCONFIG = ("impermanent.nixos.hwconfig : Generate hardware-configuration.nix if it is missing, and patch it "
                  "for the impermanent layout")
# Waits (in the guest, up to 2 minutes) until two processes have the run lock open: the module a dead controller
# left running, and a module of the next run, which then waits for it. Says WAITING, or NOBODY.
SECOND_OPENER = r"""
i=0
while [ $i -lt 600 ]; do
  if [ "$(find /proc/[0-9]*/fd -lname /run/impermanent-nixos.lock 2>/dev/null | wc -l)" -ge 2 ]; then
    echo WAITING; exit 0
  fi
  i=$((i + 1)); sleep 0.2
done
echo NOBODY
"""
WAITED_RE = re.compile(r"waited [0-9.]+ s for another run that held the run lock: "
                       r"(impermanent\.nixos\.)?nixos_flake_install \(pid [0-9]+,")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--instance-config", required=True, help="Molecule's instance_config.yml")
    ap.add_argument("--host", required=True)
    ap.add_argument("--disk", required=True, help="the data disk's /dev/disk/by-id path")
    ap.add_argument("--mode", choices=("changed", "every"), default="changed")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--report", required=True)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    # The workdir may outlive a chain (IMPERMANENT_TEST_LOGS): only this chain's files may be in it.
    for name in os.listdir(args.workdir):
        if name.endswith((".log", ".jsonl", ".json", ".txt")):
            os.remove(os.path.join(args.workdir, name))
    guest = Guest(args.instance_config, args.host)
    runner = Runner(args, guest)
    nix = args.disk + "-part3"
    report = dict(mode=args.mode, mid=[], boundary_kills=[], ok=False)
    t0 = time.time()

    def finish(problem=None):
        report.update(runs=runner.runs, seconds=round(time.time() - t0, 1), problem=problem, ok=problem is None)
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
        # One line for the CI log: the counts the closing notes quote.
        killed = [m["what"] for m in report["mid"] if not m.get("left_running")]
        left = [m["what"] for m in report["mid"] if m.get("left_running")]
        print("kill_chain: %d task-boundary kills (after tasks %s), %d kills in the middle of a command (%s), "
              "%d controller kills with the command left running (%s), %d runs, %.0f s, %s" % (
                  len(report["boundary_kills"]), ", ".join(str(k["index"]) for k in report["boundary_kills"]),
                  len(killed), ", ".join(killed), len(left), ", ".join(left), report["runs"],
                  report["seconds"], "converged" if problem is None else "FAILED: " + problem))
        if problem:
            explain_failure(guest, args, runner.last_log, problem)
            raise SystemExit("kill_chain: %s (report: %s, logs: %s)" % (problem, args.report, args.workdir))

    def mid_kill(what, pattern, condition, probe, extra_vars=None):
        mid = runner.kill_in_the_middle(what, pattern, condition, extra_vars=extra_vars)
        mid["left"] = guest.sh(probe, check=False).strip()
        mid["resumed_from_boundary"] = after
        report["mid"].append(mid)
        if mid.get("remote") != "KILLED" or mid.get("controller_rc") != -signal.SIGKILL:
            finish("%s was not killed in the middle: %s" % (what, mid))

    guest.sh(RESET, args.disk)
    after = 0
    previous = None
    while True:
        if previous == AFTER_PARTITIONING and not report["mid"]:
            mid_kill("luksFormat", "[c]ryptsetup luksFormat", "cryptsetup isLuks %s" % nix,
                     "cryptsetup luksDump %s | sed -n '/^Keyslots:/,/^Tokens:/p'" % nix, extra_vars=SLOW_KDF)
        elif previous == AFTER_LUKS and len(report["mid"]) == 1:
            mid_kill("mkfs.ext4", "[m]ke2fs|[m]kfs.ext4", "true", "blkid -p -o export /dev/mapper/crypted")
        following = None
        if previous == AFTER_HWCONFIG and len(report["mid"]) == 2:
            dies, following = runner.controller_dies("nixos-install", "[n]ixos-install", after)
            report["mid"].append(dies)
            dies.update(resumed_from_boundary=after, task=INSTALL_TASK)
            if following is None or dies.get("remote") != "RESUMED" or dies.get("controller_rc") != -signal.SIGKILL:
                finish("the controller was not killed while nixos-install ran: %s" % dies)
        rc = following.wait() if following else runner.run(after=after, log_name="after-%d" % after)
        if following:
            with open(dies["next_log"], errors="replace") as f:
                dies["next_run_waited"] = bool(WAITED_RE.search(re.sub(r"\s+", " ", ANSI_RE.sub("", f.read()))))
            if rc in (0, -signal.SIGKILL) and not dies["next_run_waited"]:
                finish("the run started beside the nixos-install a dead controller left running did not wait for "
                       "it (no run-lock warning in %s)" % dies["next_log"])
        if rc == 0:
            break
        if rc != -signal.SIGKILL:
            finish("the run resuming from %s failed (rc=%d)" % (
                report["mid"][-1]["what"] if report["mid"] and report["mid"][-1]["resumed_from_boundary"] == after
                else "the kill at task %d" % after, rc))
        with open(runner.kill_log) as f:
            kill = json.loads(f.read().splitlines()[-1])
        if kill["index"] <= after:
            finish("the kill switch did not move on from task %d: %s" % (after, kill))
        report["boundary_kills"].append(kill)
        after, previous = kill["index"], kill["previous"]
        if len(report["boundary_kills"]) > 200:
            finish("more than 200 kills: the chain does not end")
    report["final_fingerprint"] = fingerprint(guest, args.disk)
    finish()


if __name__ == "__main__":
    sys.exit(main())
