# SPDX-License-Identifier: GPL-3.0-or-later
"""The provision playbook's planning pass and its one install_plan call, on loop disks of this host.

A real run of impermanent.nixos.provision first includes the roles in their planning pass: they build each step's
options and hand them over, without a module call on the target; one install_plan call with apply then carries
every step out. Here: the planning pass hands over the steps in install order, with references where a value comes
from an earlier step, and writes nothing (install_plan plans them); and a step the one call refuses does not end
the run there: the roles run and the refusing role says why with its hint, and the disk keeps every byte.

Not here: the whole install in one call needs vfat mounts and dm-crypt, which this host lacks; the Molecule
scenarios run it (converge, idempotence, and molecule/default/tests/test_ansible_runner.py: the one call is the
rerun's only module call).
"""
import json
import os
import shutil
import subprocess
import sys

from conftest import _env, PlaybookResult, mountinfo, run_tasks, sha256_of

MIB = 1 << 20
SIZE = 256 * MIB
HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLES = os.path.join(os.path.dirname(HERE), "images", "doubles")
ROLES = ("disk", "layout", "identity", "hwconfig", "flake")
STEP_TASKS = (
    "impermanent.nixos.disk : Partition the disk (ESP, swap, nix) on its optimal alignment",
    "impermanent.nixos.disk : Create the file systems (FAT32 ESP, swap, ext4 for /nix), never over an existing one",
    "impermanent.nixos.layout : Mount the tmpfs root, the ESP, the nix filesystem and the persist bind mounts",
    "impermanent.nixos.identity : Write the host keys, machine id, password hashes and extra files under the "
    "persistent directory",
    "impermanent.nixos.hwconfig : Generate hardware-configuration.nix if it is missing, and patch it for the "
    "impermanent layout",
    "impermanent.nixos.flake : Install NixOS from the flake",
)


def failures(res):
    """The messages of the failed tasks of a PlaybookResult (for assertion messages)."""
    return [(t["task"]["name"], h.get("msg")) for play in res.data.get("plays", []) for t in play.get("tasks", [])
            for h in t["hosts"].values() if h.get("failed")] or res.stderr[-3000:]


def host_vars(disk, tmp_path):
    return dict(disk_device=disk.device, disk_luks=False, disk_esp_size="32MiB", disk_swap_size="32MiB",
                layout_root=str(tmp_path / "root"), flake_hostname="planhost", identity_dir=str(tmp_path / "id"),
                identity_known_hosts_file=str(tmp_path / "known_hosts"))


def test_the_planning_pass_hands_every_step_over_and_writes_nothing(loopdisk, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", DOUBLES + os.pathsep + os.environ["PATH"])  # looked up, never run
    disk = loopdisk(SIZE)
    (tmp_path / "root").mkdir()
    before, mounts = sha256_of(disk.image), mountinfo()
    tasks = [{"name": "Plan " + role, "ansible.builtin.include_role": {"name": "impermanent.nixos." + role,
                                                                         "public": True},
               "vars": {"provision_plan_pass": True}} for role in ROLES]
    steps = " + ".join("%s_install_steps" % role for role in ROLES)
    tasks += [{"name": "Plan", "impermanent.nixos.install_plan": {"steps": "{{ %s }}" % steps}, "register": "plan"},
              {"name": "Show the steps", "ansible.builtin.debug": {"msg": "{{ %s }}" % steps}}]
    res = run_tasks(tmp_path / "plan.json", tasks, host_vars(disk, tmp_path))
    assert res.rc == 0, failures(res)
    steps = res.task("Show the steps")["msg"]
    assert [s["module"] for s in steps] == ["gpt_partition", "filesystems", "tmpfs_root", "persist_files",
                                            "hwconfig_patch", "nixos_flake_install"]
    params = dict((s["module"], s["params"]) for s in steps)
    assert [f["device"] for f in params["filesystems"]["filesystems"]] == [
        {"ref": "partition:boot"}, {"ref": "partition:swap"}, {"ref": "partition:nix"}]
    assert params["tmpfs_root"]["boot_device"] == {"ref": "partition:boot"}
    assert "stand_in" not in params["hwconfig_patch"]  # a forecast of install_plan's, not an option
    # no step module ran: the planning pass skips each of them
    for name in STEP_TASKS:
        assert res.task(name).get("skipped"), (name, res.task(name))
    plan = res.task("Plan")
    assert plan["in_place"] is False and plan["first_change"] == "gpt_partition"
    assert [s["module"] for s in plan["steps"]] == [s["module"] for s in steps]
    assert all(s["changed"] for s in plan["steps"]), plan["steps"]
    assert sha256_of(disk.image) == before and mountinfo() == mounts
    assert os.listdir(str(tmp_path / "root")) == []


def test_a_refusal_in_the_one_call_lets_the_role_refuse_with_its_hint(loopdisk, tmp_path):
    disk = loopdisk(SIZE)
    subprocess.run(["mkfs.ext4", "-q", "-L", "precious", disk.device], check=True)
    before = sha256_of(disk.image)
    extra = dict(host_vars(disk, tmp_path), provision_hosts="localhost", provision_become=False,
                 ansible_python_interpreter=sys.executable)
    env = _env()
    env["PATH"] = DOUBLES + os.pathsep + env["PATH"]
    argv = [shutil.which("ansible-playbook") or "ansible-playbook", "-i", "localhost,", "-c", "local",
            "impermanent.nixos.provision", "-e", json.dumps(extra)]
    res = PlaybookResult(subprocess.run(argv, capture_output=True, text=True, env=env, check=False))
    assert res.rc != 0, res.stdout[-3000:]
    call = res.task("Install in one call (each step keeps what is in place)")
    assert call.get("censored"), call  # no_log: the call's arguments hold the steps' secrets
    assert res.task("impermanent.nixos.disk : Partition the disk (ESP, swap, nix) on its optimal alignment")["failed"]
    hint = res.task("impermanent.nixos.disk : Say which variable, if any, overrides the refusal")["msg"]
    assert "set disk_wipe: true (the role's force=true) for localhost" in hint, hint
    assert sha256_of(disk.image) == before
