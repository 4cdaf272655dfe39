# SPDX-License-Identifier: GPL-3.0-or-later
"""impermanent.nixos.provision through ansible-runner, the library AWX and Ansible Automation Platform run jobs with.

After converge and idempotence have installed the guest, this builds an ansible-runner private data directory the
way AWX does for a job and runs the provision playbook from it once more, on the controller, once per scenario:

- `project/site.yml` imports `impermanent.nixos.provision` (an AWX project holds playbook files; the collection
  comes from the execution environment, here ANSIBLE_COLLECTIONS_PATH), next to a `project/ansible.cfg`;
- `inventory/` is a copy of Molecule's inventory (hosts, connection, group_vars, host_vars), except the LUKS
  passphrase, which is taken out of host_vars and given as an Ansible Vault encrypted value in `env/extravars`;
- the vault password is answered at the `--ask-vault-pass` prompt through ansible-runner's `passwords`, as AWX does
  for a vault credential, with `suppress_env_files` (AWX's default) so that ansible-runner writes no `env/passwords`.

The run must succeed with changed=0 and no failure for every host; on an installed guest the playbook's one module
call is its install plan, which must show up as a `runner_on_ok` event by FQCN while no install step module runs; the artifacts must hold the events, stdout and command, and no file of the private
data directory (artifacts included) may contain the passphrase, a user's password or the vault password.
"""
import json
import os
import secrets
import shutil
import sys

import pytest
import yaml

PLAYBOOK = "impermanent.nixos.provision"
PLAN = "impermanent.nixos.install_plan"
STEP_MODULES = ("impermanent.nixos.gpt_partition", "impermanent.nixos.luks_open", "impermanent.nixos.filesystems",
                "impermanent.nixos.tmpfs_root", "impermanent.nixos.persist_files", "impermanent.nixos.hwconfig_patch",
                "impermanent.nixos.nixos_flake_install")
MODULES = (PLAN,) + STEP_MODULES
# What AWX answers for a vault credential without a vault id (ansible-playbook --ask-vault-pass prompts this)
VAULT_PROMPT = r"Vault password:\s*?$"
ANSIBLE_CFG = """\
[defaults]
# as molecule.yml: the guests' host keys are not checked (the inventory's disk_allow_unverified_host opt-out)
host_key_checking = False
interpreter_python = auto_silent
forks = 50

[ssh_connection]
pipelining = True
"""


def vault_encrypt(value, password):
    """`value` as an inline `!vault |` YAML scalar, encrypted the way `ansible-vault encrypt_string` does (in process:
    the value is never on a command line)."""
    from ansible.parsing.vault import VaultLib, VaultSecret
    text = VaultLib([("default", VaultSecret(password.encode()))]).encrypt(value.encode()).decode()
    return "!vault |\n" + "".join("  %s\n" % line for line in text.splitlines())


def build_private_data_dir(root, inventory_file, playbook, vaulted, vault_password, envvars):
    """An ansible-runner private data dir in `root`: `project/site.yml` importing `playbook`, `inventory/` copied from
    the directory of `inventory_file` with the variables named in `vaulted` (name -> value) taken out of host_vars and
    group_vars, and those variables vault-encrypted in `env/extravars`. Returns the keyword arguments for
    ansible_runner.run()."""
    os.makedirs(os.path.join(root, "project"))
    with open(os.path.join(root, "project", "site.yml"), "w") as f:
        f.write("---\n- name: Run %s\n  ansible.builtin.import_playbook: %s\n" % (playbook, playbook))
    with open(os.path.join(root, "project", "ansible.cfg"), "w") as f:
        f.write(ANSIBLE_CFG)
    inventory = os.path.join(root, "inventory")
    shutil.copytree(os.path.dirname(inventory_file), inventory)
    removed = set()
    for sub in ("host_vars", "group_vars"):
        folder = os.path.join(inventory, sub)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            path = os.path.join(folder, name)
            with open(path) as f:
                data = yaml.safe_load(f) or {}
            if any(var in data for var in vaulted):
                removed.update(var for var in vaulted if data.pop(var, None) is not None)
                with open(path, "w") as f:
                    yaml.safe_dump(data, f, default_flow_style=False, sort_keys=False)
    assert removed == set(vaulted), "not found in the inventory's host_vars/group_vars: %s" % sorted(
        set(vaulted) - removed)
    os.makedirs(os.path.join(root, "env"))
    with open(os.path.join(root, "env", "extravars"), "w") as f:
        f.write("---\n" + "".join("%s: %s" % (var, vault_encrypt(value, vault_password))
                                  for var, value in sorted(vaulted.items())))
    # ansible-runner starts `ansible-playbook` from PATH (its `binary` option would switch it to raw mode): the one
    # of the Python running the tests first
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = dict(envvars, ANSIBLE_CONFIG=os.path.join(root, "project", "ansible.cfg"), PATH=path)
    return dict(private_data_dir=root, playbook="site.yml", cmdline="--ask-vault-pass",
                passwords={VAULT_PROMPT: vault_password}, suppress_env_files=True, envvars=env, quiet=True,
                timeout=3600)


def run_and_collect(kwargs):
    """ansible_runner.run(**kwargs); returns (runner, artifact dir, its job events in order)."""
    try:
        import ansible_runner
    except ImportError:
        pytest.fail("ansible-runner is not installed in the test venv: pip install -r requirements.txt (make venv)")
    runner = ansible_runner.run(**kwargs)
    artifacts = runner.config.artifact_dir
    folder = os.path.join(artifacts, "job_events")
    events = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.endswith(".json") and "-partial" not in name:
            with open(os.path.join(folder, name)) as f:
                events.append(json.load(f))
    events.sort(key=lambda e: e["counter"])
    return runner, artifacts, events


def files_holding(root, named_secrets):
    """Every (file, secret name) where a file under `root` contains one of the secrets (name -> value)."""
    found = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                data = f.read()
            found.extend((path, label) for label, value in named_secrets.items()
                         if value.encode() in data)
    return found


def check_artifacts(artifacts, events):
    for name in ("stdout", "command", "status", "rc"):
        path = os.path.join(artifacts, name)
        assert os.path.isfile(path) and os.path.getsize(path) > 0, "artifact %s is missing or empty" % path
    assert events, "no job events in %s/job_events" % artifacts


def module_tasks(events, host):
    """FQCN -> [changed, ...] of the runner_on_ok events of the collection's modules for `host`."""
    seen = {}
    for e in events:
        data = e.get("event_data", {})
        if e["event"] == "runner_on_ok" and data.get("host") == host and data.get("task_action") in MODULES:
            seen.setdefault(data["task_action"], []).append(bool(data.get("res", {}).get("changed")))
    return seen


def _molecule_env():
    needed = ("MOLECULE_INVENTORY_FILE", "MOLECULE_EPHEMERAL_DIRECTORY", "ANSIBLE_COLLECTIONS_PATH")
    missing = [name for name in needed if not os.environ.get(name)]
    if missing:
        pytest.fail("run this through Molecule (molecule verify): %s not set" % ", ".join(missing))
    return {name: os.environ[name] for name in needed}


def run_job(tmp_path, wrong_vault_password=False):
    """Build the private data dir from Molecule's inventory and run the provision playbook through ansible-runner,
    answering the vault prompt with the vault password (or another one). Checks that the artifacts exist and that no
    file holds a secret, then returns (hosts, runner, artifacts, events, the end of stdout)."""
    env = _molecule_env()
    inventory_file = env["MOLECULE_INVENTORY_FILE"]
    with open(inventory_file) as f:
        hosts = sorted(yaml.safe_load(f)["all"]["hosts"])
    host_vars = {}
    for host in hosts:
        with open(os.path.join(os.path.dirname(inventory_file), "host_vars", host)) as f:
            host_vars[host] = yaml.safe_load(f)
    luks = {h: v["disk_luks_passphrase"] for h, v in host_vars.items() if v.get("disk_luks")}
    assert len(set(luks.values())) == 1, "one LUKS passphrase expected for the scenario's hosts: %s" % sorted(luks)
    passphrase = next(iter(luks.values()))
    vault_password = secrets.token_urlsafe(24)
    named_secrets = {"the LUKS passphrase": passphrase, "the vault password": vault_password}
    for host, v in host_vars.items():
        for i, user in enumerate(v.get("flake_users", [])):
            if user.get("password"):
                named_secrets["%s flake_users[%d].password" % (host, i)] = user["password"]

    root = str(tmp_path / "job")
    kwargs = build_private_data_dir(root, inventory_file, PLAYBOOK, {"disk_luks_passphrase": passphrase},
                                    vault_password, env)
    if wrong_vault_password:
        kwargs["passwords"] = {VAULT_PROMPT: secrets.token_urlsafe(24)}
    runner, artifacts, events = run_and_collect(kwargs)

    check_artifacts(artifacts, events)
    # the inventory copy keeps the users' passwords (host_vars, as in molecule.yml); nothing else may hold a secret
    leaks = files_holding(root, {k: v for k, v in named_secrets.items() if k in ("the LUKS passphrase",
                                                                                    "the vault password")})
    leaks = sorted(set(leaks + files_holding(artifacts, named_secrets)))
    assert leaks == [], "secrets in files of the private data dir or artifacts (file, secret): %s" % leaks
    assert not os.path.exists(os.path.join(root, "env", "passwords")), "ansible-runner wrote env/passwords"
    with open(os.path.join(artifacts, "stdout"), errors="replace") as f:
        tail = f.read()[-4000:]  # shown only now that the grep found no secret in it
    return hosts, runner, artifacts, events, tail


def stats_of(events):
    stats = [e["event_data"] for e in events if e["event"] == "playbook_on_stats"]
    assert len(stats) <= 1, "expected one playbook_on_stats event, found %d" % len(stats)
    return stats[0] if stats else None


def test_provision_through_ansible_runner_changes_nothing(tmp_path):
    hosts, runner, _artifacts, events, tail = run_job(tmp_path)
    assert runner.status == "successful" and runner.rc == 0, \
        "ansible-runner status %r, rc %r:\n%s" % (runner.status, runner.rc, tail)
    stats = stats_of(events)
    assert stats, "no playbook_on_stats event:\n%s" % tail
    for host in hosts:
        assert stats.get("ok", {}).get(host, 0) > 0, "%s ran no task: %s" % (host, stats)
        for key in ("changed", "failures", "dark"):
            assert stats.get(key, {}).get(host, 0) == 0, "%s: %s=%s in the stats, expected 0: %s" % (
                host, key, stats[key][host], stats)
        seen = module_tasks(events, host)
        # the plan finds every step in place, so it is the run's only module call and no step module runs
        assert list(seen) == [PLAN], "%s: expected the install plan alone, saw %s" % (host, sorted(seen))
        # a no_log task's result is censored (no "changed" key): the stats above count its change
        assert seen[PLAN] == [False], "%s: the install plan ran %d times or reported a change: %s" % (
            host, len(seen[PLAN]), seen[PLAN])


def test_a_wrong_vault_password_stops_the_job_before_any_module(tmp_path):
    """What an AWX job with the wrong vault credential does: it fails where the passphrase is first used (the disk
    role's input check), before any of the collection's modules runs, and changes nothing."""
    hosts, runner, _artifacts, events, tail = run_job(tmp_path, wrong_vault_password=True)
    assert runner.status == "failed" and runner.rc != 0, \
        "expected a failed job, got status %r, rc %r:\n%s" % (runner.status, runner.rc, tail)
    assert "Decryption failed" in tail, "the job did not fail on the vaulted passphrase:\n%s" % tail
    stats = stats_of(events)
    for host in hosts:
        assert not module_tasks(events, host), "%s: a module ran with an undecryptable passphrase: %s" % (
            host, module_tasks(events, host))
        assert stats is None or stats.get("changed", {}).get(host, 0) == 0, "%s changed: %s" % (host, stats)
