#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The provision playbook next to the seed's commands typed by hand, on the same guest and disk, in one run.

One UEFI libvirt guest is booted with the Molecule harness (molecule/shared/create.yml and prepare.yml, the cached
image of tests/images/build-guest-image.sh, the test doubles of nixos-generate-config/nixos-install on its PATH),
with a blank 6 GiB virtio data disk and 1536 MiB of memory, like molecule/default. Then, REPEAT times in rotating
order, each from a blank disk (the reset between runs is not timed):

  * seed:       benchmarks/seed-install.sh (docs/design.md steps 3-10 as one shell script) over ONE ssh call;
  * provision:  ansible-playbook impermanent.nixos.provision (the built artifact in .build/collections, by FQCN)
                with the molecule/default host vars (LUKS with test-only pbkdf2 1000 iterations, 1GiB swap) and
                pipelining on, ControlPersist on (Ansible's default ssh_args);
  * rerun:      the same playbook again right after "provision" (changed=0 is checked): the idempotent rerun;
  * variants:   provision with one setting changed: pipelining off, no ControlPersist (a new ssh connection per
                task), become off (the playbook's default is become: true, i.e. sudo even as root), and mitogen
                (strategy mitogen_linear of the `mitogen` package, the opt-in accelerator; first run and rerun);
  * probes:     `ssh true`, a playbook of one raw task and three ping modules (Ansible's fixed costs), and a
                playbook of one ping module, plain and (with the mitogen variant) under Mitogen: the cost of any
                playbook that runs a module. The FLOORS line adds it to the seed's commands (the seed script's
                wall less `ssh true`): a playbook that runs those commands in module calls cannot be faster.

Every ansible-playbook run gets a fresh ControlPath directory (it pays one ssh handshake, as the seed's one ssh
call does) and the ansible.posix.profile_tasks callback; the per-task medians of the provision runs and the
seed script's per-step medians are printed, with wall-clock medians (and minimums) and ratios of medians.
After each first run the result is described (partitions, mounts, swap, evaluated hardware-configuration.nix,
system profile) and the seed's and the playbook's results are compared. The guest is always destroyed at the end.
The module calls of a run (tasks whose action runs a module on the target, one per loop item; not raw, not the
controller-side set_fact/assert/...) are counted from the profile joined with callback_plugins/bench_task_actions.py.

Usage: bench_provision.py [--repeat 3] [--variants pipelining-off,no-controlpersist,become-off,mitogen]
                          [--keep-logs DIR]
Needs libvirtd, the guest image (built on first use, ~2 min) and `make build` (the Makefile's bench target does
both). Run as root, like the Molecule tests.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

from _machine import cpu_model, mem_gib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.join(os.environ.get("VENV") or os.path.join(REPO, ".venv"), "bin")
SEED_SCRIPT = os.path.join(HERE, "seed-install.sh")
CALLBACK_PLUGINS = os.path.join(HERE, "callback_plugins")

GUEST = "impermanent-bench-provision"
SSH_PORT = 22417
DISK_SERIAL = "nixdisk-bench"
DISK = "/dev/disk/by-id/virtio-" + DISK_SERIAL
FLAKE_HOST = "bench"
SWAP_SIZE = "1GiB"
PBKDF_ITERATIONS = 1000
# TEST-ONLY secret for a throwaway guest disk (as molecule/default). The seed script reads it from stdin.
PASSPHRASE = "bench-test-passphrase"
HOST_VARS = {
    "disk_device": DISK,
    "disk_swap_size": SWAP_SIZE,
    "disk_luks": True,
    "disk_luks_passphrase": PASSPHRASE,
    "disk_luks_pbkdf": "pbkdf2",
    "disk_luks_pbkdf_force_iterations": PBKDF_ITERATIONS,
    "layout_tmpfs_size": "25%",
    "flake_hostname": FLAKE_HOST,
    "flake_source": "starter",
}

# name -> (description, extra environment, extra ansible-playbook arguments, also time the rerun)
VARIANTS = {
    "pipelining-off": ("provision, pipelining off", {"ANSIBLE_PIPELINING": "False"}, [], False),
    "no-controlpersist": ("provision, no ControlPersist",
                          {"ANSIBLE_SSH_ARGS": "-C -o ControlMaster=no"}, [], False),
    "become-off": ("provision, become off", {}, ["-e", "provision_become=false"], False),
    "no-compression": ("provision, ssh -C off",
                       {"ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s"}, [], False),
    # ANSIBLE_STRATEGY_PLUGINS (inside the installed mitogen package) is added at run time; pipelining stays on
    # (Mitogen does not use it: it keeps one Python per target and sends it the modules)
    "mitogen": ("provision.yml mitogen", {"ANSIBLE_STRATEGY": "mitogen_linear"}, [], True),
}
DEFAULT_VARIANTS = "pipelining-off,no-controlpersist,become-off,mitogen"
# The plain playbook and the seed script, by their labels in the results
SEED = "seed script (one ssh call)"
PROVISION = "provision.yml"
MITOGEN = VARIANTS["mitogen"][0]
# The bars the report judges: wall-clock ratios of medians to the seed script, and module calls on the target
RATIO_GOALS = ((PROVISION, 3.0), (PROVISION + " rerun", 1.0), (MITOGEN, 1.3), (MITOGEN + " rerun", 0.7))
CALL_GOALS = (("module calls first run", 8), ("module calls rerun", 2))
# Actions that never run a module on the target (the action plugin does its work on the controller), and the
# target calls that are no module (raw: a command over ssh; script: a transferred script).
CONTROLLER_ACTIONS = frozenset((
    "add_host", "assert", "debug", "fail", "group_by", "import_role", "import_tasks", "include_role",
    "include_tasks", "include_vars", "meta", "pause", "set_fact", "set_stats", "validate_argument_spec"))
NOT_MODULES = frozenset(("raw", "script"))

# Back to a blank disk: swap off, unmount, close LUKS, wipe every partition's and the table's signatures, zero the
# starts, re-read the (now empty) table. Fails unless the disk is left without partitions or signatures.
RESET = r"""
set -eu
disk=$1
dev=$(readlink -f "$disk")
swapoff -a
if mountpoint -q /mnt; then umount -R /mnt; fi
if [ -e /dev/mapper/crypted ]; then cryptsetup close crypted; fi
for part in $(lsblk -lnpo NAME,TYPE "$dev" | awk '$2 == "part" { print $1 }'); do
  wipefs -qa "$part"
  dd if=/dev/zero of="$part" bs=1M count=1 conv=fsync status=none
done
wipefs -qa "$dev"
dd if=/dev/zero of="$dev" bs=1M count=2 conv=fsync status=none
blockdev --rereadpt "$dev" 2>/dev/null
udevadm settle
test "$(lsblk -lnpo NAME "$dev" | wc -l)" = 1
test -z "$(blkid -p "$dev" 2>/dev/null || true)"
"""

# What an install left behind, as one JSON document (compared between the seed script and the playbook).
DESCRIBE = r"""
set -eu
dev=$(readlink -f "$1")
lines() { python3 -c 'import json, sys; print(json.dumps(sorted(l.split() for l in sys.stdin.read().splitlines())))'; }
hw=$(nix-instantiate --eval --strict --json -E '
  let hw = import /mnt/etc/nixos/hardware-configuration.nix {
        config = { hardware.enableRedistributableFirmware = false; };
        lib = { mkDefault = x: x; }; pkgs = { }; modulesPath = "/m"; };
  in { inherit (hw) fileSystems swapDevices; luks = hw.boot.initrd.luks.devices; }' 2>/dev/null)
cat <<EOF
{"lsblk": $(lsblk -J -b -o NAME,TYPE,SIZE,FSTYPE,LABEL,PARTLABEL,PARTTYPE "$dev"),
 "mounts": $(findmnt -J -R /mnt -o TARGET,FSTYPE),
 "swaps": $(swapon --show=TYPE,SIZE --bytes --noheadings | lines),
 "profile": $(test -L /mnt/nix/var/nix/profiles/system && echo true || echo false),
 "flake_dir_mode": "$(stat -c %a /mnt/etc/nixos)",
 "git_tracked": $(git -c safe.directory='*' -C /mnt/etc/nixos ls-files | lines),
 "hardware_configuration": ${hw:-null}}
EOF
"""

PROBE_PLAYBOOK = """\
- name: Ansible's fixed costs against the guest
  hosts: all
  gather_facts: false
  tasks:
    - name: One raw command (ssh round trip, no Python)
      ansible.builtin.raw: "true"
      changed_when: false
    - name: Ping module 1
      ansible.builtin.ping:
    - name: Ping module 2
      ansible.builtin.ping:
    - name: Ping module 3
      ansible.builtin.ping:
"""

# The cheapest playbook that runs a module on the target: what any playbook pays before its module does any work
# (ansible-playbook's start, the ssh connection, Python on the target, one module's round trip; with Mitogen, its
# interpreter's start too). With the seed script's commands it makes the floor the report prints.
ONE_MODULE_PLAYBOOK = """\
- name: The cost of one module call
  hosts: all
  gather_facts: false
  tasks:
    - name: One ping module
      ansible.builtin.ping:
"""
SSH_TRUE = "probe: ssh true"
ONE_MODULE = "probe: playbook of 1 ping"
ONE_MODULE_MITOGEN = "probe: playbook of 1 ping, mitogen"

RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
PROFILE_LINE = re.compile(r"^(.+?) -{2,} (\d+\.\d+)s$", re.M)
SEED_STEP = re.compile(r"^seed-step (.+?)\s+(\d+\.\d+) s$", re.M)


class BenchError(Exception):
    pass


def log(msg):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), msg), flush=True)


def loadavg():
    return os.getloadavg()[0]


def mitogen_strategy_plugins():
    """The strategy plugin directory inside the mitogen package installed in the venv, or None."""
    proc = subprocess.run([os.path.join(BIN, "python"), "-c",
                           "import ansible_mitogen, os; print(os.path.join(os.path.dirname(ansible_mitogen.__file__),"
                           " 'plugins', 'strategy'))"], capture_output=True, text=True, check=False)
    path = proc.stdout.strip()
    return path if proc.returncode == 0 and os.path.isdir(path) else None


def module_calls(actions, delegated=False):
    """Module calls on the target among a run's task results: not skipped, action not controller-side nor raw,
    task not delegated. ``delegated=True``: the module calls of delegated tasks instead (the identity role's run on
    the controller, where a call costs a fraction of one in the guest)."""
    n = 0
    for row in actions:
        if bool(row.get("delegated_to")) != delegated:
            continue
        action = row["action"]
        for prefix in ("ansible.builtin.", "ansible.legacy."):
            if action.startswith(prefix):
                action = action[len(prefix):]
        if row["status"] in ("ok", "changed", "failed") and action not in CONTROLLER_ACTIONS | NOT_MODULES:
            n += 1
    return n


def other_domains():
    proc = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--name"], capture_output=True, text=True,
                          check=False)
    return sorted(n for n in proc.stdout.split() if n and n != GUEST)


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.collections = os.environ.get("IMPERMANENT_COLLECTIONS_PATH") or os.path.join(REPO, ".build",
                                                                                          "collections")
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.work = os.path.abspath(args.keep_logs or os.path.join(REPO, ".build", "bench-provision", stamp))
        os.makedirs(self.work, exist_ok=True)
        self.cfg = os.path.join(self.work, "ansible.cfg")
        with open(self.cfg, "w") as f:
            f.write("# bench_provision.py: Ansible's defaults; each run sets what it measures in its environment\n")
        self.vars_file = os.path.join(self.work, "harness-vars.json")
        self.instance_config = os.path.join(self.work, "instance_config.yml")
        with open(self.vars_file, "w") as f:
            json.dump({"molecule_yml": {"platforms": [{
                "name": GUEST, "groups": ["nixos_live"], "ssh_port": SSH_PORT, "memory_mib": 1536, "vcpus": 2,
                "disks": [{"serial": DISK_SERIAL, "size_gib": 6, "bus": "virtio"}]}]},
                "molecule_instance_config": self.instance_config}, f)
        self.inventory = os.path.join(self.work, "inventory.yml")
        self.identity = None
        self.counter = 0
        self.results = {}   # label -> list of run records
        self.ref_label = None
        self.ref_collections = None
        self.describes = {}
        self.mitogen_plugins = None

    # -- environment and commands -----------------------------------------------------------------------------
    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANSIBLE_", "PROFILE_TASKS_", "MOLECULE_"))}
        env.update({
            "PATH": BIN + os.pathsep + env.get("PATH", ""),
            "ANSIBLE_CONFIG": self.cfg,
            "ANSIBLE_COLLECTIONS_PATH": self.collections,
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
        })
        env.update(extra or {})
        return env

    def run_logged(self, name, argv, env, timeout=3600, input_text=None):
        self.counter += 1
        path = os.path.join(self.work, "%03d-%s.log" % (self.counter, name))
        load0 = loadavg()
        t0 = time.monotonic()
        proc = subprocess.run(argv, env=env, cwd=self.work, input=input_text, capture_output=True, text=True,
                              timeout=timeout, check=False)
        wall = time.monotonic() - t0
        with open(path, "w") as f:
            f.write("$ %s\n# rc=%d wall=%.2fs load=%.2f->%.2f\n" % (" ".join(shlex.quote(a) for a in argv),
                                                                    proc.returncode, wall, load0, loadavg()))
            f.write(proc.stdout)
            f.write("\n--- stderr ---\n")
            f.write(proc.stderr)
        return {"wall": wall, "rc": proc.returncode, "out": proc.stdout, "err": proc.stderr, "log": path,
                "load": (load0 + loadavg()) / 2}

    def check(self, rec, what):
        if rec["rc"] != 0:
            tail = (rec["out"] + rec["err"]).strip().splitlines()[-25:]
            raise BenchError("%s failed (rc %d), log %s:\n  %s" % (what, rec["rc"], rec["log"], "\n  ".join(tail)))
        return rec

    def ssh_argv(self, control="-o ControlMaster=no"):
        return (["ssh", "-C"] + control.split() +
                ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
                 "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-i", self.identity, "-p", str(SSH_PORT),
                 "root@127.0.0.1"])

    def ssh(self, name, script, *args, input_text=None):
        command = "bash -c %s %s" % (shlex.quote(script), " ".join(shlex.quote(a) for a in (name,) + args))
        return self.run_logged(name, self.ssh_argv() + [command], self.env(), input_text=input_text)

    def playbook(self, name, playbook, extra_env=None, extra_args=()):
        control_dir = tempfile.mkdtemp(prefix="ibcp-", dir="/tmp")  # short: a socket path has ~100 bytes
        actions_file = os.path.join(self.work, "%03d-%s.actions.json" % (self.counter + 1, name))
        env = self.env({"ANSIBLE_PIPELINING": "True",
                        "ANSIBLE_CALLBACK_PLUGINS": CALLBACK_PLUGINS,
                        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks,bench_task_actions",
                        "BENCH_TASK_ACTIONS": actions_file,
                        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
                        "ANSIBLE_SSH_CONTROL_PATH_DIR": control_dir})
        env.update(extra_env or {})
        try:
            rec = self.run_logged(name, [os.path.join(BIN, "ansible-playbook"), "-i", self.inventory, playbook]
                                  + list(extra_args), env)
        finally:
            for sock in os.listdir(control_dir):   # end the ControlPersist master now, not 60 s later
                subprocess.run(["ssh", "-o", "ControlPath=" + os.path.join(control_dir, sock), "-O", "exit", "x"],
                               capture_output=True, check=False)
            shutil.rmtree(control_dir, ignore_errors=True)
        recap = RECAP.findall(rec["out"])
        rec["recap"] = {h: dict(ok=int(o), changed=int(c), unreachable=int(u), failed=int(f))
                        for h, o, c, u, f in recap}
        summary = rec["out"].split("TASKS RECAP", 1)[-1]
        rec["profile"] = [(t.strip(), float(s)) for t, s in PROFILE_LINE.findall(summary)]
        try:
            with open(actions_file) as f:
                actions = json.load(f)
        except (OSError, ValueError):
            actions = None   # the run died before its end
        # module calls of the tasks in the profile (the callback's record gives each task's action and results)
        profiled = {t for t, _ in rec["profile"]}
        profiled_actions = None if actions is None else [a for a in actions if a["task"] in profiled]
        rec["module_calls"] = None if actions is None else module_calls(profiled_actions)
        rec["controller_module_calls"] = None if actions is None else module_calls(profiled_actions, delegated=True)
        return rec

    # -- the guest ----------------------------------------------------------------------------------------------
    def harness(self, which):
        return self.run_logged("harness-" + which,
                               [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,",
                                os.path.join(REPO, "molecule", "shared", which + ".yml"), "-e", "@" + self.vars_file],
                               self.env({"ANSIBLE_PIPELINING": "True"}))

    def create(self):
        subprocess.run(["bash", os.path.join(REPO, "scripts", "setup-host.sh")], check=True, stdout=subprocess.DEVNULL)
        log("booting %s (molecule/shared/create.yml; TCG unless KVM works)" % GUEST)
        rec = self.check(self.harness("create"), "create")
        log("guest up after %.0f s" % rec["wall"])
        with open(self.instance_config) as f:
            inst = yaml.safe_load(f)[0]
        self.identity = inst["identity_file"]
        # A throwaway guest with a new host key each boot, reached with StrictHostKeyChecking=no (as in Molecule):
        # opt out of the refusal to send secrets to an unverified host; the identity role's controller-side files
        # (host keys, known_hosts line) stay in this run's directory.
        host = dict(HOST_VARS, disk_allow_unverified_host=True, identity_dir=os.path.join(self.work, "identity"),
                    identity_known_hosts_file=os.path.join(self.work, "known_hosts"),
                    ansible_host=inst["address"], ansible_port=inst["port"], ansible_user=inst["user"],
                    ansible_ssh_private_key_file=self.identity,
                    ansible_ssh_common_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                            "-o IdentitiesOnly=yes")
        with open(self.inventory, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            yaml.safe_dump({"all": {"children": {"nixos_live": {"hosts": {GUEST: host}}}}}, f)
        rec = self.check(self.playbook("harness-prepare", os.path.join(REPO, "molecule", "shared", "prepare.yml")),
                         "prepare")
        log("prepared (test doubles installed) in %.0f s" % rec["wall"])

    def build_ref(self, ref):
        """Build and install the collection as it was at git REF (the "before" of a change to the roles)."""
        sha = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", ref], capture_output=True, text=True,
                             check=True).stdout.strip()
        src, out = os.path.join(self.work, "ref-src"), os.path.join(self.work, "ref-build")
        self.ref_collections = os.path.join(self.work, "ref-collections")
        os.makedirs(src, exist_ok=True)
        archive = subprocess.run(["git", "-C", REPO, "archive", sha], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
        for argv in (["build", "--force", "--output-path", out, src],
                     ["install", "--force", "--no-deps", "-p", self.ref_collections]):
            if argv[0] == "install":
                argv.append(os.path.join(out, [f for f in os.listdir(out) if f.endswith(".tar.gz")][0]))
            subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection"] + argv, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env())
        self.ref_label = "provision.yml @%s" % sha
        log("built the collection at %s (%s) for the before/after comparison" % (ref, sha))

    def destroy(self):
        log("destroying %s" % GUEST)
        rec = self.harness("destroy")
        if rec["rc"] != 0:
            log("destroy failed (rc %d), see %s; remove it with: virsh -c qemu:///system destroy %s; "
                "virsh -c qemu:///system undefine --nvram %s" % (rec["rc"], rec["log"], GUEST, GUEST))

    # -- measurements -------------------------------------------------------------------------------------------
    def record(self, label, rec):
        self.results.setdefault(label, []).append(rec)
        log("%-34s %7.1f s  (load %.1f)%s" % (label, rec["wall"], rec["load"],
                                              "  changed=%d" % rec["changed"] if "changed" in rec else ""))

    def reset(self):
        self.check(self.ssh("reset", RESET, DISK), "disk reset")

    def describe(self, label):
        rec = self.check(self.ssh("describe", DESCRIBE, DISK), "describe after " + label)
        self.describes.setdefault(label, json.loads(rec["out"]))

    def run_seed(self):
        self.reset()
        with open(SEED_SCRIPT) as f:
            script = f.read()
        rec = self.check(self.ssh("seed-install", script, DISK, FLAKE_HOST, SWAP_SIZE, str(PBKDF_ITERATIONS),
                                  input_text=PASSPHRASE + "\n"), "seed-install.sh")
        rec["steps"] = [(s.strip(), float(t)) for s, t in SEED_STEP.findall(rec["err"])]
        self.record(SEED, rec)
        self.describe("seed")

    def run_provision(self, label, extra_env=None, extra_args=(), rerun=False, describe=None):
        self.reset()
        rec = self.check(self.playbook("provision", "impermanent.nixos.provision", extra_env, extra_args), label)
        rec["changed"] = sum(r["changed"] for r in rec["recap"].values())
        self.record(label, rec)
        if describe:
            self.describe(describe)
        if rerun:
            again = self.check(self.playbook("provision-rerun", "impermanent.nixos.provision", extra_env,
                                             extra_args), label + " rerun")
            again["changed"] = sum(r["changed"] for r in again["recap"].values())
            self.record(label + " rerun", again)

    def run_probes(self):
        rec = self.check(self.run_logged("ssh-true", self.ssh_argv() + ["true"], self.env()), "ssh true")
        self.record(SSH_TRUE, rec)
        python = ["-e", "ansible_python_interpreter=/usr/bin/python3"]
        rec = self.check(self.playbook("probe", self.write_playbook("probe.yml", PROBE_PLAYBOOK), extra_args=python),
                         "probe playbook")
        self.record("probe: playbook raw + 3 ping", rec)
        path = self.write_playbook("one-module.yml", ONE_MODULE_PLAYBOOK)
        self.record(ONE_MODULE, self.check(self.playbook("one-module", path, extra_args=python), "one-module"))
        if self.mitogen_plugins:
            self.record(ONE_MODULE_MITOGEN, self.check(
                self.playbook("one-module-mitogen", path, self.mitogen_env(), python), "one-module under Mitogen"))

    def write_playbook(self, name, text):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def mitogen_env(self):
        """The mitogen variant's environment with the strategy plugins of the installed mitogen package."""
        return dict(VARIANTS["mitogen"][1], ANSIBLE_STRATEGY_PLUGINS=self.mitogen_plugins)

    def floors(self):
        """Lower bounds of the provision runs, as ratios to the seed script: a playbook that does the seed's
        commands (the seed script's wall less its one ssh connection) inside module calls also pays at least one
        module call's playbook; a rerun pays that playbook alone. [(label, floor ratio)], empty without probes."""
        seed, ssh = self.med(SEED), self.med(SSH_TRUE)
        out = []
        for label, probe in ((PROVISION, ONE_MODULE), (MITOGEN, ONE_MODULE_MITOGEN)):
            if label in self.results and probe in self.results:
                out.append((label, (self.med(probe) + seed - ssh) / seed))
                out.append((label + " rerun", self.med(probe) / seed))
        return out

    def items(self):
        items = [("seed", self.run_seed),
                 ("provision", lambda: self.run_provision(PROVISION, rerun=True, describe="provision"))]
        if self.ref_label:
            items.append(("ref", lambda: self.run_provision(
                self.ref_label, {"ANSIBLE_COLLECTIONS_PATH": self.ref_collections}, rerun=True)))
        for name in [v for v in self.args.variants.split(",") if v]:
            desc, env, extra, rerun = VARIANTS[name]
            if name == "mitogen":
                env = self.mitogen_env()
            items.append((name, lambda d=desc, e=env, x=extra, r=rerun: self.run_provision(d, e, x, rerun=r)))
        items.append(("probes", self.run_probes))
        return items

    def measure(self):
        items = self.items()
        for r in range(self.args.repeat):
            k = r % len(items)
            order = items[k:] + items[:k]
            if r % 2:
                order.reverse()
            log("round %d/%d: %s" % (r + 1, self.args.repeat, ", ".join(n for n, _ in order)))
            for _, fn in order:
                fn()

    # -- report -------------------------------------------------------------------------------------------------
    def labels(self):
        fixed = [SEED, PROVISION, PROVISION + " rerun"]
        if self.ref_label:
            fixed += [self.ref_label, self.ref_label + " rerun"]
        for desc, _, _, rerun in VARIANTS.values():
            fixed += [desc, desc + " rerun"] if rerun else [desc]
        return [x for x in fixed if x in self.results] + [x for x in self.results if x not in fixed]

    def module_calls(self, label, key="module_calls"):
        """The median number of module calls of the label's runs ("n/a" when not recorded); ``key``
        ``controller_module_calls`` for those of delegated tasks."""
        counts = [r[key] for r in self.results.get(label, []) if r.get(key) is not None]
        if not counts:
            return "n/a"
        m = statistics.median(counts)
        return "%d" % m if m == int(m) else "%.1f" % m

    def med(self, label):
        recs = self.results.get(label)
        return statistics.median(r["wall"] for r in recs) if recs else float("nan")

    def report(self, machine, complete=True):
        out = []
        p = out.append
        p("")
        if not complete:
            p("!! INCOMPLETE: the run stopped early; what follows is what was measured before that")
        p("== bench_provision: impermanent.nixos.provision vs the seed's commands (docs/design.md 3-10), "
          "same guest+disk")
        p("host: %s" % machine)
        p("guest: %s, 2 vCPUs, 1536 MiB, 6 GiB virtio disk %s; LUKS2 pbkdf2 1000 "
          "iterations (test only), swap %s" % (GUEST, DISK, SWAP_SIZE))
        p("wall seconds over %d runs each (alternating order); load = host 1-min load average during the runs"
          % max(len(v) for v in self.results.values()))
        seed = self.med(SEED)
        prov = self.med(PROVISION)
        p("%-36s %8s %8s %6s %9s %9s" % ("run", "median", "min", "load", "x seed", "x prov"))
        for label in self.labels():
            recs = self.results[label]
            walls = [r["wall"] for r in recs]
            m = statistics.median(walls)
            extra = ""
            if "changed" in recs[0]:
                extra = "  changed=%s" % ",".join(str(r["changed"]) for r in recs)
            p("%-36s %8.1f %8.1f %6.1f %9.2f %9.2f%s" % (label, m, min(walls),
                                                         statistics.median(r["load"] for r in recs),
                                                         m / seed, m / prov, extra))
        rerun = self.med(PROVISION + " rerun")
        p("")
        for label in (PROVISION, PROVISION + " rerun", MITOGEN, MITOGEN + " rerun"):
            if label in self.results or not label.startswith(MITOGEN):
                p("RATIO %s / seed script = %.2f" % (label, self.med(label) / seed))
        first_calls, rerun_calls = self.module_calls(PROVISION), self.module_calls(PROVISION + " rerun")
        goals = ["%s <= %.1f: %s" % (label, goal, verdict(self.med(label) / seed, goal))
                 for label, goal in RATIO_GOALS if label in self.results]
        goals += ["%s <= %d: %s" % (what, goal, verdict(float(calls) if calls != "n/a" else float("nan"), goal))
                  for (what, goal), calls in zip(CALL_GOALS, (first_calls, rerun_calls))]
        p("GOALS (x seed script) " + "; ".join(goals))
        p("MODULE CALLS first run = %s, rerun = %s" % (first_calls, rerun_calls))
        p("  (delegated to the controller, not counted above: first run = %s, rerun = %s)"
          % (self.module_calls(PROVISION, "controller_module_calls"),
             self.module_calls(PROVISION + " rerun", "controller_module_calls")))
        if MITOGEN in self.results:
            p("  (under Mitogen: first run = %s, rerun = %s)"
              % (self.module_calls(MITOGEN), self.module_calls(MITOGEN + " rerun")))
        floors = self.floors()
        if floors:
            goal = dict(RATIO_GOALS)
            p("FLOORS (x seed script; first run: 1-ping playbook + seed script - ssh true; rerun: 1-ping playbook) "
              + "; ".join("%s >= %.2f%s" % (label, floor, " (above its goal %.1f)" % goal[label]
                                             if floor > goal[label] else "")
                          for label, floor in floors))
        for label in [desc for desc, _, _, _ in VARIANTS.values() if desc in self.results]:
            p("RATIO %-34s / provision.yml = %.2f" % (label, self.med(label) / prov))
        # The host's load drifts within a run (other guests start and stop): the ratio of the two runs of the same
        # round is less exposed to that than the ratio of medians.
        for label in (PROVISION, PROVISION + " rerun", MITOGEN, MITOGEN + " rerun"):
            pairs = [r["wall"] / s["wall"] for r, s in zip(self.results.get(label, []), self.results.get(SEED, []))]
            if pairs:
                p("  per round %-29s / seed: %s (median %.2f)" % (label, " ".join("%.2f" % x for x in pairs),
                                                                  statistics.median(pairs)))
        if self.ref_label:
            p("RATIO provision.yml / %s = %.2f, rerun: %.2f  (this tree against the collection at that ref)"
              % (self.ref_label, prov / self.med(self.ref_label), rerun / self.med(self.ref_label + " rerun")))
        for label in (PROVISION + " rerun", MITOGEN + " rerun"):
            bad = [r["changed"] for r in self.results.get(label, []) if r["changed"] != 0]
            if bad:
                p("WARNING: %s was not idempotent (changed=%s)" % (label, bad))

        def table(label, key, top):
            if label not in self.results:
                return
            per = {}
            for rec in self.results[label]:
                for name, secs in rec[key]:
                    per.setdefault(name, []).append(secs)
            rows = sorted(((statistics.median(v), n) for n, v in per.items()), reverse=True)
            total = sum(m for m, _ in rows)
            p("-- %s: %d %s, sum of medians %.1f s, wall median %.1f s" % (
                label, len(rows), "steps" if key == "steps" else "tasks", total, self.med(label)))
            for m, n in rows[:top]:
                p("  %6.2f s  %s" % (m, n))
            if len(rows) > top:
                p("  %6.2f s  (%d more)" % (sum(m for m, _ in rows[top:]), len(rows) - top))

        p("")
        p("Where the time goes (medians per task, profile_tasks; per step for the seed script):")
        table(SEED, "steps", 20)
        table(PROVISION, "profile", 14)
        table(PROVISION + " rerun", "profile", 10)
        table(MITOGEN, "profile", 10)
        table(MITOGEN + " rerun", "profile", 10)
        table("probe: playbook raw + 3 ping", "profile", 5)
        table(ONE_MODULE_MITOGEN, "profile", 1)
        p("")
        p("Same result? (seed script vs playbook, UUIDs masked)")
        for line in compare(self.describes.get("seed"), self.describes.get("provision")):
            p("  " + line)
        p("logs: %s" % self.work)
        text = "\n".join(out)
        print(text)
        with open(os.path.join(self.work, "report.txt"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(self.work, "results.json"), "w") as f:
            json.dump({"machine": machine, "complete": complete, "describes": self.describes,
                       "results": {k: [{kk: vv for kk, vv in r.items() if kk not in ("out", "err")} for r in v]
                                   for k, v in self.results.items()}}, f, indent=1)


def verdict(ratio, goal):
    return "n/a" if ratio != ratio else ("met" if ratio <= goal else "NOT met")


UUIDISH = re.compile(r"(by-uuid|by-partuuid)/[0-9A-Fa-f-]+")


def flatten(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, "%s.%s" % (prefix, k) if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from flatten(v, "%s[%d]" % (prefix, i))
    else:
        yield prefix, UUIDISH.sub(r"\1/…", json.dumps(obj))


def compare(a, b):
    if a is None or b is None:
        return ["not described"]
    fa, fb = dict(flatten(a)), dict(flatten(b))
    diffs = ["%s: seed %s, playbook %s" % (k, fa.get(k, "-"), fb.get(k, "-"))
             for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
    return ["identical (partitions, mounts, swap, hardware-configuration.nix, profile, git files)"] if not diffs \
        else ["differences:"] + diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (default 3)")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS,
                    help="comma-separated settings to compare, of: %s (default %s; '' for none)"
                    % (", ".join(VARIANTS), DEFAULT_VARIANTS))
    ap.add_argument("--compare-ref", metavar="GIT_REF",
                    help="also run provision.yml and its rerun from the collection built at this git ref "
                         "(before/after of a change to the roles, in the same run)")
    ap.add_argument("--report", metavar="DIR", help="only print the report of an earlier run from DIR/results.json")
    ap.add_argument("--keep-logs", metavar="DIR", help="where logs go (default .build/bench-provision/TIMESTAMP)")
    args = ap.parse_args()
    for name in [v for v in args.variants.split(",") if v]:
        if name not in VARIANTS:
            ap.error("unknown variant %s (known: %s)" % (name, ", ".join(VARIANTS)))
    if args.report:
        args.keep_logs = args.report
        bench = Bench(args)
        with open(os.path.join(bench.work, "results.json")) as f:
            data = json.load(f)
        bench.results, bench.describes = data["results"], data["describes"]
        bench.ref_label = next((k for k in bench.results if k.startswith("provision.yml @")
                                and not k.endswith(" rerun")), None)
        bench.report(data["machine"], complete=data.get("complete", True))
        return 0
    if os.geteuid() != 0:
        ap.error("run as root (libvirt guests under qemu:///system, like the Molecule tests)")
    mitogen_plugins = None
    if "mitogen" in args.variants.split(","):
        mitogen_plugins = mitogen_strategy_plugins()
        if not mitogen_plugins:
            ap.error("the mitogen variant needs the mitogen package in %s (pip install -r requirements.txt), "
                     "or leave it out of --variants" % os.path.dirname(BIN))

    def stop(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    bench = Bench(args)
    bench.mitogen_plugins = mitogen_plugins
    others = other_domains()
    machine = "%s, nproc %d, %.0f GiB RAM, Python %s; other libvirt guests running at start: %s; load %s" % (
        cpu_model(), os.cpu_count(), mem_gib(), platform.python_version(), ", ".join(others) or "none",
        " ".join("%.2f" % x for x in os.getloadavg()))
    log(machine)
    ok = False
    try:
        if args.compare_ref:
            bench.build_ref(args.compare_ref)
        bench.create()
        xml = subprocess.run(["virsh", "-c", "qemu:///system", "dumpxml", GUEST], capture_output=True, text=True,
                             check=False).stdout
        kind = re.search(r"<domain type='(\w+)'", xml)
        machine += "; guest domain type %s" % {"qemu": "qemu (TCG, no KVM)", "kvm": "kvm"}.get(
            kind.group(1) if kind else "?", "?")
        bench.measure()
        others_end = other_domains()
        machine += "; at the end: %s; load %s" % (", ".join(others_end) or "none",
                                                  " ".join("%.2f" % x for x in os.getloadavg()))
        ok = True
    except BenchError as e:
        log("ERROR: %s" % e)
    except KeyboardInterrupt as e:
        log("interrupted (%s)" % (e or "Ctrl-C"))
    finally:
        # Destroy even when interrupted; a second Ctrl-C during destroy is ignored so that it completes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.destroy()
    if bench.results:
        bench.report(machine, complete=ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
