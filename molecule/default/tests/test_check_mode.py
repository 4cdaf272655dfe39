# SPDX-License-Identifier: GPL-3.0-or-later
"""Check mode on a provisioned disk reports nothing to change.

Molecule's own `check` step runs converge with --check but does not look at the result, so this verify test runs
the scenario's converge playbook again, as `ansible-playbook --check --diff`, against Molecule's inventory and
configuration (the MOLECULE_* and ANSIBLE_CONFIG variables the verifier inherits), after converge and idempotence
have installed the guest. The recap must show changed=0 and failed=0, the playbook's one install_plan call must
have planned every step (none of the roles' own check-mode plans may appear: the roles only worked out their
steps), and its plan says there is nothing to do. It runs on the controller, once per scenario.
"""
import json
import os
import subprocess

import pytest

PLAN_TASKS = ("Show the check-mode plan for the disk (what the steps above would do)",
              "Show the check-mode plan for the mounts",
              "Show the check-mode plan for the identity files",
              "Show the check-mode plan for hardware-configuration.nix",
              "Show the check-mode plan for the flake and nixos-install")
WHOLE_PLAN = "Show the whole install plan (check mode)"
ONE_CALL = "Install in one call (each step keeps what is in place)"


def _molecule_env():
    needed = ("MOLECULE_INVENTORY_FILE", "MOLECULE_SCENARIO_DIRECTORY", "ANSIBLE_CONFIG")
    missing = [name for name in needed if not os.environ.get(name)]
    if missing:
        pytest.fail("run this through Molecule (molecule verify): %s not set" % ", ".join(missing))
    env = dict(os.environ)
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("ANSIBLE_FORCE_COLOR", None)
    return env


def test_check_mode_on_the_provisioned_disk_changes_nothing():
    env = _molecule_env()
    inventory = os.path.dirname(env["MOLECULE_INVENTORY_FILE"])
    playbook = os.path.join(env["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml")
    proc = subprocess.run(["ansible-playbook", "--inventory", inventory, "--check", "--diff", playbook],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    data = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert data["stats"], proc.stdout[-2000:]
    changed, plans, names, whole, calls = [], [], [], [], []
    for play in data["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"].split(" : ", 1)[-1]  # role tasks are named "ROLE : NAME"
            names.append(name)
            for host, result in task["hosts"].items():
                if result.get("changed"):
                    changed.append("%s: %s" % (host, name))
                if name in PLAN_TASKS and not result.get("skipped"):
                    plans.append("%s: %s: %s" % (host, name, result.get("msg")))
                if name == WHOLE_PLAN:
                    whole.append(result.get("msg"))
                if name == ONE_CALL:
                    calls.append(result)
    for host, stats in data["stats"].items():
        assert stats["failures"] == 0 and stats["unreachable"] == 0, (host, stats)
        assert stats["changed"] == 0, (host, stats, changed)
    assert changed == [] and plans == []
    # one plan call per host (no_log: its result is censored), and the roles' module and plan tasks were there to
    # be skipped
    assert len(calls) == len(data["stats"]) and all(not c.get("skipped") for c in calls), calls
    assert "Partition the disk (ESP, swap, nix) on its optimal alignment" in names
    assert "Install NixOS from the flake" in names
    assert set(PLAN_TASKS) <= set(names), sorted(set(PLAN_TASKS) - set(names))
    # provision.yml's one plan at the end says that there is nothing to do, once per host
    assert len(whole) == len(data["stats"]) and all(
        isinstance(msg, str) and msg.startswith("Nothing to do on ") for msg in whole), whole
