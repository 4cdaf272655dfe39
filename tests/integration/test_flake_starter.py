# SPDX-License-Identifier: GPL-3.0-or-later
"""The starter flake of impermanent.nixos.flake, and the Python bootstrap play of playbooks/provision.yml.

The flake role runs on localhost as provision.yml runs it (tests/integration/playbooks/flake_starter_render.yml):
flake_root is a scratch directory holding etc/nixos/hardware-configuration.nix, and the nixos-install TEST DOUBLE
(tests/images/doubles/nixos-install) is first on PATH. The rendered flake.nix and configuration.nix are checked with
the real Nix tools: ``nix-instantiate --parse``, then an evaluation with stub arguments (configuration.nix as a
module function; flake.nix's ``outputs`` with placeholder inputs whose ``nixpkgs.lib.nixosSystem = args: args``)
whose JSON is compared in full with what the variables asked for. There is no nixpkgs here: that the configuration
builds as NixOS (the impermanence and home-manager options exist, the NixOS assertions pass) is not proven here.
"""
import json
import os
import shutil
import subprocess
import tempfile

import pytest
import yaml

from conftest import PlaybookResult, _env, run_playbook

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DOUBLES = os.path.join(REPO, "tests", "images", "doubles")
ROLE = os.path.join(REPO, "roles", "flake")
NIX = shutil.which("nix-instantiate")
needs_nix = pytest.mark.skipif(NIX is None, reason="nix-instantiate (Debian nix-bin) is needed to check the flake")

with open(os.path.join(ROLE, "defaults", "main.yml"), encoding="utf-8") as _f:
    DEFAULTS = yaml.safe_load(_f)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq1aN0tARealKeyButWellFormed0000000000000 admin@controller"
HOSTILE_KEY = 'ssh-ed25519 AAAA "; evil = ${builtins.readFile /etc/shadow}; x = "\\" $HOME \'\'${x} $${y} \\${z} end$'
HOSTILE_USER = 'eve"; users.users.root.hashedPassword = ""; z = "${y}\\'
HARDWARE_NIX = """{ config, lib, pkgs, modulesPath, ... }:
{
  fileSystems."/" = { device = "none"; fsType = "tmpfs"; options = [ "defaults" "size=25%" "mode=755" ]; };
}
"""


class Target(object):
    """A scratch ROOT (parents mode 755: nixos-install refuses a root others cannot enter) with ROOT/etc/nixos
    holding the hardware-configuration.nix that the hwconfig role would have left there."""

    def __init__(self, base):
        self.root = os.path.join(base, "root")
        self.flake = os.path.join(self.root, "etc", "nixos")
        self.log = os.path.join(base, "doubles.log")
        os.makedirs(self.flake)
        with open(os.path.join(self.flake, "hardware-configuration.nix"), "w") as f:
            f.write(HARDWARE_NIX)

    def path(self, name):
        return os.path.join(self.flake, name)

    def read(self, name):
        with open(self.path(name)) as f:
            return f.read()

    def tracked(self):
        return subprocess.run(["git", "-C", self.flake, "-c", "safe.directory=*", "ls-files"], capture_output=True,
                              text=True, check=True).stdout.split()

    def installs(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [c for c in map(json.loads, f) if c["tool"] == "nixos-install"]


@pytest.fixture
def target(monkeypatch):
    base = tempfile.mkdtemp(prefix="impermanent-starter-", dir="/tmp")
    os.chmod(base, 0o755)
    t = Target(base)
    monkeypatch.setenv("PATH", DOUBLES + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("IMPERMANENT_DOUBLES_LOG", t.log)
    monkeypatch.delenv("NIX_CONFIG", raising=False)
    yield t
    shutil.rmtree(base, ignore_errors=True)


def run_role(t, **extra):
    extra.setdefault("flake_hostname", "testhost")
    extra["flake_root"] = t.root
    result = run_playbook("flake_starter_render.yml", extra_vars=extra)
    assert result.rc == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return result


def nix(*args):
    proc = subprocess.run([NIX] + list(args), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def eval_json(expr):
    return json.loads(nix("--eval", "--strict", "--json", "-E", expr))


def eval_configuration(path):
    """configuration.nix called as a module with stub arguments; the whole result as JSON."""
    return eval_json("import %s { config = { }; lib = { mkDefault = x: x; mkForce = x: x; }; pkgs = { }; }"
                     % json.dumps(path))


def eval_flake(path):
    """flake.nix's description, inputs, and each nixosConfiguration as nixosSystem would receive it, with
    placeholder inputs (the modules of home-manager and impermanence are marker strings; paths become "./NAME")."""
    return eval_json("""
      let
        flake = import %s;
        inputs = {
          self = out;
          nixpkgs = { lib.nixosSystem = args: args; };
          home-manager = { nixosModules.home-manager = "HOME-MANAGER-MODULE"; };
          impermanence = { nixosModules.impermanence = "IMPERMANENCE-MODULE"; };
        };
        out = flake.outputs inputs;
        show = m: if builtins.isPath m then "./" + baseNameOf (toString m) else m;
      in {
        inherit (flake) description inputs;
        outputs = builtins.attrNames out;
        arguments = builtins.attrNames (builtins.functionArgs flake.outputs);
        nixosConfigurations = builtins.mapAttrs (name: c: {
          args = builtins.attrNames c;
          modules = map show c.modules;
          specialArgsInputs = c.specialArgs.inputs == inputs;
        }) out.nixosConfigurations;
      }""" % json.dumps(path))


def users_of(config):
    return config.get("users", {}).get("users", {})


def test_argument_specs_mirror_the_defaults():
    with open(os.path.join(ROLE, "meta", "argument_specs.yml"), encoding="utf-8") as f:
        options = yaml.safe_load(f)["argument_specs"]["main"]["options"]
    assert set(options) - {"flake_hostname"} == set(DEFAULTS)
    for name, default in DEFAULTS.items():
        assert options[name].get("default") == default, name
    assert DEFAULTS["flake_persist_files"] == [
        "/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
        "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub"]
    for directory in ("/etc/nixos", "/var/log", "/var/lib/nixos", "/var/lib/systemd"):
        assert directory in DEFAULTS["flake_persist_directories"]


@needs_nix
def test_starter_with_defaults_evaluates_and_installs(target):
    result = run_role(target)
    installed = result.task("impermanent.nixos.flake : Install NixOS from the flake")
    # one call wrote the starter (rendered on the controller), ran git init and installed
    assert installed["changed"] and installed["starter_written"] == ["flake.nix", "configuration.nix"], installed
    assert installed["commands"][0].endswith("init --quiet"), installed["commands"]
    for name in ("flake.nix", "configuration.nix"):
        nix("--parse", target.path(name))
        assert target.read(name).endswith("}\n") and not target.read(name).endswith("\n\n")  # as templated
        assert os.stat(target.path(name)).st_mode & 0o777 == 0o644

    config = eval_configuration(target.path("configuration.nix"))
    assert config == {
        "networking": {"hostName": "testhost"},
        "boot": {"loader": {"systemd-boot": {"enable": True}, "efi": {"canTouchEfiVariables": True}}},
        "nix": {"settings": {"experimental-features": ["nix-command", "flakes"]}},
        "environment": {"persistence": {"/nix/persist": {
            "hideMounts": True,
            "directories": ["/etc/nixos", "/var/log", "/var/lib/nixos", "/var/lib/systemd", "/var/lib/bluetooth"],
            "files": ["/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
                      "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub"],
        }}},
        # no users declared: users stay mutable (NixOS refuses mutableUsers = false with nobody able to log in)
        "services": {"openssh": {"enable": True, "settings": {"PermitRootLogin": "no",
                                                              "PasswordAuthentication": False}}},
        "home-manager": {"useGlobalPkgs": True, "useUserPackages": True},
        "system": {"stateVersion": "25.05"},
    }

    flake = eval_flake(target.path("flake.nix"))
    assert flake == {
        "description": "NixOS configuration of testhost",
        "inputs": {
            "nixpkgs": {"url": "github:NixOS/nixpkgs/nixos-25.05"},
            "home-manager": {"url": "github:nix-community/home-manager/release-25.05",
                             "inputs": {"nixpkgs": {"follows": "nixpkgs"}}},
            "impermanence": {"url": "github:nix-community/impermanence"},
        },
        "outputs": ["nixosConfigurations"],
        "arguments": ["home-manager", "impermanence", "nixpkgs", "self"],
        "nixosConfigurations": {"testhost": {
            "args": ["modules", "specialArgs"],
            "modules": ["./hardware-configuration.nix", "./configuration.nix", "HOME-MANAGER-MODULE",
                        "IMPERMANENCE-MODULE"],
            "specialArgsInputs": True,
        }},
    }
    # what the Molecule verify (molecule/default/tests/test_install.py) greps for
    assert 'nixosConfigurations."testhost"' in target.read("flake.nix")
    assert 'networking.hostName = "testhost";' in target.read("configuration.nix")

    # the role staged the files and the nixos-install double accepted the flake
    assert set(target.tracked()) == {"flake.nix", "configuration.nix", "hardware-configuration.nix"}
    calls = target.installs()
    assert len(calls) == 1 and calls[0]["rc"] == 0, calls
    assert calls[0]["host"] == "testhost" and calls[0]["flake"] == target.flake
    assert os.path.islink(os.path.join(target.root, "nix/var/nix/profiles/system"))
    assert os.stat(target.flake).st_mode & 0o777 == 0o755

    again = run_role(target)
    assert again.changed == 0, again.stdout[-3000:]
    assert len(target.installs()) == 1


@needs_nix
def test_users_persist_and_hostile_values_stay_literal(target):
    users = [
        {"name": "alice", "groups": ["wheel", "networkmanager"], "authorized_keys": [KEY, HOSTILE_KEY]},
        {"name": HOSTILE_USER, "groups": ["video"]},
        {"name": "bob", "authorized_keys": [KEY]},  # groups default to wheel
    ]
    run_role(target, flake_hostname="box-1", flake_users=users, flake_persist_dir="/persist",
             flake_persist_directories=["/var/lib/nixos", '/srv/"quoted" ${dir}\\x'],
             flake_persist_files=["/etc/machine-id", "/etc/with\nnewline"],
             flake_state_version='24.11"; boot.isContainer = true; "',
             flake_nixpkgs_url='github:NixOS/nixpkgs/nixos-25.05"; evil = "${x}',
             flake_impermanence_url="git+https://example.org/imp?ref=main&x=$y")
    for name in ("flake.nix", "configuration.nix"):
        nix("--parse", target.path(name))
    config = eval_configuration(target.path("configuration.nix"))
    assert config["users"]["mutableUsers"] is False
    assert users_of(config) == {
        "alice": {"isNormalUser": True, "extraGroups": ["wheel", "networkmanager"],
                  "hashedPasswordFile": "/persist/passwords/alice",
                  "openssh": {"authorizedKeys": {"keys": [KEY, HOSTILE_KEY]}}},
        HOSTILE_USER: {"isNormalUser": True, "extraGroups": ["video"],
                       "hashedPasswordFile": "/persist/passwords/" + HOSTILE_USER,
                       "openssh": {"authorizedKeys": {"keys": []}}},
        "bob": {"isNormalUser": True, "extraGroups": ["wheel"], "hashedPasswordFile": "/persist/passwords/bob",
                "openssh": {"authorizedKeys": {"keys": [KEY]}}},
    }
    assert config["environment"]["persistence"] == {"/persist": {
        "hideMounts": True,
        "directories": ["/var/lib/nixos", '/srv/"quoted" ${dir}\\x'],
        "files": ["/etc/machine-id", "/etc/with\nnewline"],
    }}
    assert config["system"] == {"stateVersion": '24.11"; boot.isContainer = true; "'}
    assert "boot" in config and "isContainer" not in config["boot"]
    assert sorted(config) == ["boot", "environment", "home-manager", "networking", "nix", "services", "system",
                              "users"]

    flake = eval_flake(target.path("flake.nix"))
    assert flake["inputs"]["nixpkgs"] == {"url": 'github:NixOS/nixpkgs/nixos-25.05"; evil = "${x}'}
    assert flake["inputs"]["impermanence"] == {"url": "git+https://example.org/imp?ref=main&x=$y"}
    assert list(flake["nixosConfigurations"]) == ["box-1"]
    assert flake["nixosConfigurations"]["box-1"]["modules"][2:] == ["HOME-MANAGER-MODULE", "IMPERMANENCE-MODULE"]
    # the persist path reaches the comments without its line breaks, so no comment can end early
    assert "/mnt/persist/passwords/USER" in target.read("configuration.nix")
    assert [c["rc"] for c in target.installs()] == [0]


@needs_nix
def test_starter_uses_the_identity_roles_files(target):
    """With the fact the identity role sets, sshd reads the host keys from the persisted paths, /etc/machine-id
    links to the persisted file (no impermanence bind mount: impermanence #229), and the impermanence list keeps
    everything else."""
    persisted = {"persist_dir": "/nix/persist", "host_key_types": ["ed25519", "rsa"],
                 "machine_id": "/nix/persist/etc/machine-id",
                 "replaces": ["/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
                              "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub"]}
    run_role(target, identity_persisted=persisted,
             flake_persist_files=["/etc/machine-id", "/etc/adjtime", "/etc/ssh/ssh_host_rsa_key"])
    nix("--parse", target.path("configuration.nix"))
    config = eval_configuration(target.path("configuration.nix"))
    assert config["environment"]["persistence"]["/nix/persist"]["files"] == ["/etc/adjtime"]
    assert config["environment"]["etc"] == {"machine-id": {"source": "/nix/persist/etc/machine-id"}}
    assert config["services"]["openssh"]["hostKeys"] == [
        {"type": "ed25519", "path": "/nix/persist/etc/ssh/ssh_host_ed25519_key"},
        {"type": "rsa", "path": "/nix/persist/etc/ssh/ssh_host_rsa_key", "bits": 4096}]
    assert config["services"]["openssh"]["enable"] is True
    assert "generated on the first boot" not in target.read("configuration.nix")


@needs_nix
def test_starter_is_not_rendered_over_the_users_edits(target):
    run_role(target)
    with open(target.path("configuration.nix"), "a") as f:
        f.write("# my edit\n")
    again = run_role(target, flake_users=[{"name": "alice", "authorized_keys": [KEY]}])
    assert again.changed == 0
    assert target.read("configuration.nix").endswith("# my edit\n")
    assert "alice" not in target.read("configuration.nix")
    run_role(target, flake_users=[{"name": "alice", "authorized_keys": [KEY]}], flake_starter_overwrite=True)
    assert "# my edit" not in target.read("configuration.nix")
    assert list(users_of(eval_configuration(target.path("configuration.nix")))) == ["alice"]


def test_a_user_without_a_name_is_refused(target):
    result = run_playbook("flake_starter_render.yml", extra_vars={
        "flake_hostname": "testhost", "flake_root": target.root, "flake_users": [{"groups": ["wheel"]}]})
    assert result.rc != 0
    assert "name" in result.stdout and "flake_users" in result.stdout, result.stdout[-3000:]
    assert not os.path.exists(target.path("flake.nix"))


def test_nix_string_filter_errors():
    """Values that cannot be a Nix string are refused, with the value named."""
    argv = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", "ansible.builtin.debug", "-a",
            "msg={{ [1, 2] | impermanent.nixos.nix_string }}"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), check=False)
    assert proc.returncode != 0
    assert "nix_string: expected a string" in proc.stdout + proc.stderr


# --- the Python bootstrap play of playbooks/provision.yml -------------------------------------------------------

def bootstrap_playbook(tmp_path):
    """The first play of provision.yml, alone (the next play would partition the disk)."""
    with open(os.path.join(REPO, "playbooks", "provision.yml"), encoding="utf-8") as f:
        plays = yaml.safe_load(f)
    assert plays[0]["name"] == "Make Python available on the live system"
    assert plays[0]["hosts"] == plays[1]["hosts"] and plays[0]["gather_facts"] is False
    # a second play that reports the interpreter the bootstrap chose
    report = {"name": "Report the interpreter", "hosts": plays[0]["hosts"], "gather_facts": False,
              "tasks": [{"name": "Show the interpreter", "ansible.builtin.command": "{{ ansible_python_interpreter }}"
                         " -c 'import sys; print(sys.executable)'", "changed_when": False}]}
    path = tmp_path / "bootstrap.yml"
    path.write_text(yaml.safe_dump([plays[0], report], sort_keys=False))
    return str(path)


def run_bootstrap(path, check=False, env_path=None, unset_interpreter=True):
    argv = ["ansible-playbook", "-i", "localhost,", "-c", "local", path, "-e", "provision_hosts=localhost"]
    if check:
        argv.append("--check")
    env = _env()
    if unset_interpreter:
        env.pop("ANSIBLE_PYTHON_INTERPRETER", None)
    if env_path is not None:
        env["PATH"] = env_path
    argv[0] = shutil.which("ansible-playbook")
    return PlaybookResult(subprocess.run(argv, capture_output=True, text=True, env=env, check=False))


@pytest.mark.parametrize("check", [False, True])
def test_bootstrap_with_python_present_changes_nothing(tmp_path, check):
    python = shutil.which("python3")
    result = run_bootstrap(bootstrap_playbook(tmp_path), check=check)
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.changed == 0
    probe = result.task("Look for Python 3 and for a NixOS live system")
    assert "python3=%s" % python in probe["stdout_lines"]
    assert result.task("Install python3 from the live system's nixpkgs into the user's profile")["skipped"] is True
    chosen = result.task("Use the Python that was found or installed for the next play")
    assert chosen["ansible_facts"] == {"ansible_python_interpreter": python}
    if not check:
        assert result.task("Show the interpreter")["stdout"] == python


def test_bootstrap_keeps_a_configured_interpreter(tmp_path):
    result = run_playbook(bootstrap_playbook(tmp_path), extra_vars={
        "provision_hosts": "localhost", "ansible_python_interpreter": shutil.which("python3")})
    assert result.rc == 0 and result.changed == 0, result.stdout[-3000:]
    assert result.task("Look for Python 3 and for a NixOS live system")["skipped"] is True


@pytest.mark.skipif(os.path.exists("/etc/NIXOS"), reason="this host is NixOS: the install branch would run")
def test_bootstrap_without_python_off_nixos_fails_clearly(tmp_path, monkeypatch):
    """No python3 anywhere the probe looks and no /etc/NIXOS: a clear failure instead of a module crash."""
    if os.path.exists("/run/current-system/sw/bin/python3"):
        pytest.skip("/run/current-system/sw/bin/python3 exists on this host")
    monkeypatch.setenv("HOME", str(tmp_path))
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_bootstrap(bootstrap_playbook(tmp_path), env_path=str(empty))
    assert result.rc != 0
    failed = result.task("Stop where Python is missing and cannot be installed")
    assert failed["failed"] is True and "not a NixOS live system" in failed["msg"]
    assert "Install python3 from the live system's nixpkgs into the user's profile" not in result.stdout


FAKE_NIX_ENV = """#!/bin/sh
# Stand-in for nix-env in this test only: records its arguments and links a python3 into a profile, as
# `nix-env -f NIXPKGS -iA python3` links ~/.nix-profile/bin/python3 into the store.
echo "$*" >> "$HOME/nix-env.calls"
mkdir -p "$HOME/store/python3/bin" "$HOME/.nix-profile/bin"
ln -sf %(python)s "$HOME/store/python3/bin/python3"
ln -sf "$HOME/store/python3/bin/python3" "$HOME/.nix-profile/bin/python3"
"""


@pytest.mark.skipif(os.path.exists("/etc/NIXOS"), reason="this host is NixOS")
def test_bootstrap_install_branch_with_a_stand_in_nix_env(tmp_path, monkeypatch):
    """The install branch, which only a stock NixOS ISO reaches: /etc/NIXOS is simulated by overriding the probe's
    fact with an extra variable (extra vars outrank set_fact), nix-env is a stand-in script, and nix-instantiate
    fails so that the channel fallback is used. The next play must then run modules with the installed Python."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("mkdir", "ln", "readlink", "chmod", "rm", "cat", "mv", "cp", "sleep"):  # what Ansible runs
        os.symlink(shutil.which(tool), str(bindir / tool))
    (bindir / "nix-env").write_text(FAKE_NIX_ENV % {"python": shutil.which("python3")})
    (bindir / "nix-instantiate").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("nix-env", "nix-instantiate"):
        os.chmod(str(bindir / tool), 0o755)
    playbook = bootstrap_playbook(tmp_path)

    def run():
        env = _env()
        env.pop("ANSIBLE_PYTHON_INTERPRETER", None)
        env["PATH"] = str(bindir)
        argv = [shutil.which("ansible-playbook"), "-i", "localhost,", "-c", "local", playbook,
                "-e", json.dumps({"provision_hosts": "localhost", "provision_python_nixos": True})]
        return PlaybookResult(subprocess.run(argv, capture_output=True, text=True, env=env, check=False))

    result = run()
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.changed == 1
    installed = result.task("Install python3 from the live system's nixpkgs into the user's profile")
    assert installed["changed"] is True
    assert (home / "nix-env.calls").read_text() == "-f /nix/var/nix/profiles/per-user/root/channels/nixos -iA python3\n"
    real = os.path.realpath(str(home / ".nix-profile" / "bin" / "python3"))
    assert result.task("Use the Python that was found or installed for the next play")["ansible_facts"] == {
        "ansible_python_interpreter": real}
    assert result.task("Show the interpreter")["stdout"] == real

    again = run()  # the profile's python3 is found: nothing installed, no change
    assert again.rc == 0 and again.changed == 0, again.stdout[-3000:]
    assert "python3=%s/.nix-profile/bin/python3" % home in again.task(
        "Look for Python 3 and for a NixOS live system")["stdout_lines"]
    assert again.task("Install python3 from the live system's nixpkgs into the user's profile")["skipped"] is True
    assert len((home / "nix-env.calls").read_text().splitlines()) == 1
