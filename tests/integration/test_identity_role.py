# SPDX-License-Identifier: GPL-3.0-or-later
"""impermanent.nixos.identity on localhost against a temporary root: the persisted host keys, machine id,
password hashes and extra files with their owners and modes, the controller's known_hosts line and age recipient,
a rerun that changes nothing and keeps the key bytes; no private key, password or hash in any process's argv, in
-vvv output, in results or in the journal (where this host has one); and the refusal to send secrets (the LUKS passphrase, the host keys) over a connection
that does not check the host key.

The Molecule scenario `default` runs the same role inside a guest, over SSH, as part of the provision playbook.
"""
import json
import os
import re
import shutil
import stat
import subprocess

import pytest

from argv_sampler import Sampler  # tests/argv_sampler.py
import system_crypt  # tests/system_crypt.py
from conftest import _env
from ansible_collections.impermanent.nixos.plugins.module_utils import _identity as ident

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROLE_PLAYBOOK = """- hosts: all
  gather_facts: false
  roles:
    - role: impermanent.nixos.identity
"""


def test_argument_specs_mirror_the_defaults():
    import yaml
    role = os.path.join(REPO, "roles", "identity")
    with open(os.path.join(role, "defaults", "main.yml"), encoding="utf-8") as f:
        defaults = yaml.safe_load(f)
    with open(os.path.join(role, "meta", "argument_specs.yml"), encoding="utf-8") as f:
        options = yaml.safe_load(f)["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults)
    for name, default in defaults.items():
        assert options[name].get("default") == default, name


def _verify(password, hashed):
    if hashed.startswith("$6$"):
        return ident.sha512_crypt_verify(password, hashed)
    return system_crypt.crypt(password, hashed) == hashed  # the system's crypt(3) for yescrypt and the rest


def _run(tmp_path, variables, verbose=False, extra_env=None, inventory="h1,", connection="local"):
    playbook = tmp_path / "identity.yml"
    playbook.write_text(ROLE_PLAYBOOK)
    # secrets reach ansible-playbook through a vars file, as from a vault: never on its command line
    varsfile = tmp_path / "vars.json"
    varsfile.write_text(json.dumps(variables))
    varsfile.chmod(0o600)
    argv = ["ansible-playbook", "-i", inventory, str(playbook), "-e", "@%s" % varsfile]
    if connection:
        argv[3:3] = ["-c", connection]
    env = _env()
    if verbose:
        argv.insert(1, "-vvv")
        env["ANSIBLE_STDOUT_CALLBACK"] = "default"
    env.update(extra_env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def _recap(stdout):
    if "{" in stdout:
        try:
            data = json.loads(stdout[stdout.index("{"):])
            return data["stats"]["h1"]
        except (ValueError, KeyError):
            pass
    m = re.search(r"h1\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", stdout)
    assert m, stdout[-3000:]
    return dict(ok=int(m.group(1)), changed=int(m.group(2)), unreachable=int(m.group(3)), failures=int(m.group(4)))


def _mode(path):
    st = os.stat(path)
    return "%04o" % stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


@pytest.fixture
def layout(tmp_path):
    root, ctl = tmp_path / "root", tmp_path / "controller"
    root.mkdir()  # where the layout role mounted the new system
    vaulted = "vaulted-pw-%s" % os.urandom(6).hex()
    variables = dict(
        identity_root=str(root),
        identity_dir=str(ctl / "identity" / "h1"),
        identity_known_hosts_file=str(ctl / "known_hosts"),
        identity_known_hosts_names=["h1.example.org", "[192.0.2.10]:2222"],
        flake_hostname="h1",
        flake_users=[dict(name="alice", password=vaulted, authorized_keys=[]),
                     dict(name="bob", password_hash=ident.sha512_crypt("bob-pw", "bobsalt")),
                     dict(name="carol")],
        identity_extra_files=[
            dict(dest="/etc/wireguard/wg0.key", content="wg-private\n", mode="0400"),
            dict(dest="/home/alice/.config/app.conf", content="x = 1\n", owner=1000, group=100, mode="0640"),
        ],
    )
    return root, ctl, vaulted, variables


def test_identity_is_written_once_and_kept(tmp_path, layout):
    root, ctl, vaulted, variables = layout
    first = _run(tmp_path, variables)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    persist = root / "nix" / "persist"
    key, pub = persist / "etc/ssh/ssh_host_ed25519_key", persist / "etc/ssh/ssh_host_ed25519_key.pub"
    assert _mode(key) == ("0600", 0, 0) and _mode(pub) == ("0644", 0, 0)
    assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n") and key.read_text().endswith("\n")
    # the persisted pair belongs together and is the controller's copy
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    assert derived.stdout.split()[:2] == pub.read_text().split()[:2]
    assert (ctl / "identity/h1/ssh_host_ed25519_key").read_bytes() == key.read_bytes()
    # known_hosts: each name carries exactly the persisted key (ssh-keygen -F finds hashed or plain entries)
    for name in variables["identity_known_hosts_names"]:
        found = subprocess.run(["ssh-keygen", "-F", name, "-f", str(ctl / "known_hosts")],
                               capture_output=True, text=True)
        lines = [line for line in found.stdout.splitlines() if line and not line.startswith("#")]
        assert [line.split()[1:3] for line in lines] == [pub.read_text().split()[:2]], found.stdout
    # the age recipient is ssh-to-age's conversion of the persisted key (tests/unit checks it on published vectors)
    assert (ctl / "identity/h1/age-recipient").read_text().strip() == ident.ssh_to_age(pub.read_text())
    machine_id = (persist / "etc/machine-id").read_text()
    assert re.match(r"^[0-9a-f]{32}\n$", machine_id) and _mode(persist / "etc/machine-id")[1:] == (0, 0)
    assert _mode(persist / "passwords") == ("0700", 0, 0)
    for name, password in (("alice", vaulted), ("bob", "bob-pw")):
        path = persist / "passwords" / name
        assert _mode(path) == ("0600", 0, 0)
        assert _verify(password, path.read_text().strip()), name
        assert not _verify(password + "x", path.read_text().strip())
    assert not (persist / "passwords/carol").exists()
    assert _mode(persist / "etc/wireguard/wg0.key") == ("0400", 0, 0)
    assert (persist / "etc/wireguard/wg0.key").read_text() == "wg-private\n"
    assert _mode(persist / "home/alice/.config/app.conf") == ("0640", 1000, 100)

    before = {p: p.read_bytes() for p in persist.rglob("*") if p.is_file()}
    second = _run(tmp_path, variables)
    assert second.returncode == 0, second.stdout[-4000:]
    assert _recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
    assert {p: p.read_bytes() for p in persist.rglob("*") if p.is_file()} == before

    # a changed vaulted password gets a new hash; the host keys and machine id stay
    variables["flake_users"][0]["password"] = vaulted + "-new"
    third = _run(tmp_path, variables)
    assert third.returncode == 0, third.stdout[-4000:]
    assert _verify(vaulted + "-new", (persist / "passwords/alice").read_text().strip())
    assert key.read_bytes() == before[key] and (persist / "etc/machine-id").read_text() == machine_id

    # a controller file is only left alone while it holds what would be written: a stale age recipient and a
    # machine id given anew are written again
    (ctl / "identity/h1/age-recipient").write_text("age1stale\n")
    variables["identity_machine_id"] = "0123456789abcdef0123456789abcdef"
    fourth = _run(tmp_path, variables)
    assert fourth.returncode == 0, fourth.stdout[-4000:]
    assert (ctl / "identity/h1/age-recipient").read_text() == ident.ssh_to_age(pub.read_text()) + "\n"
    assert (ctl / "identity/h1/machine-id").read_text() == "0123456789abcdef0123456789abcdef\n"
    assert (persist / "etc/machine-id").read_text() == "0123456789abcdef0123456789abcdef\n"


def test_identity_refuses_a_persist_dir_outside_nix(tmp_path, layout):
    root, _, _, variables = layout
    variables["identity_persist_dir"] = "/persist"
    proc = _run(tmp_path, variables)
    assert proc.returncode != 0
    assert "must be a directory below /nix" in proc.stdout
    assert list(root.iterdir()) == [], "nothing may be written below the root"


def test_identity_refuses_a_bad_hash_or_key_naming_it_but_not_the_secret(tmp_path, layout):
    root, _, vaulted, variables = layout
    variables["flake_users"][1]["password_hash"] = "plain-not-a-hash"
    proc = _run(tmp_path, variables)
    assert proc.returncode != 0 and "not one for bob" in proc.stdout, proc.stdout[-3000:]
    assert "plain-not-a-hash" not in proc.stdout and vaulted not in proc.stdout
    assert list(root.iterdir()) == [], "nothing may be written below the root"

    variables["flake_users"][1]["password_hash"] = ident.sha512_crypt("bob-pw", "bobsalt")
    variables["identity_ssh_host_keys"] = {"ed25519": {
        "private": "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1ib2R5\n-----END OPENSSH PRIVATE KEY-----",
        "public": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== wrong-type"}}
    proc = _run(tmp_path, variables)
    assert proc.returncode != 0 and "the ed25519 host key of h1 is not an OpenSSH key pair" in proc.stdout
    assert "c2VjcmV0LWtleS1ib2R5" not in proc.stdout
    assert list(root.iterdir()) == [], "nothing may be written below the root"


def test_no_private_key_password_or_hash_leaks(tmp_path, layout):
    root, ctl, vaulted, variables = layout
    keydir = tmp_path / "given"
    keydir.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "given", "-f", str(keydir / "k")],
                   check=True)
    private = (keydir / "k").read_text()
    variables["identity_ssh_host_keys"] = {"ed25519": {"private": private, "public": (keydir / "k.pub").read_text()}}
    shutil.rmtree(keydir)
    bob_hash = variables["flake_users"][1]["password_hash"]
    # the private key's base64 body line that holds the secret half (the last lines are the private part)
    key_needle = private.splitlines()[-3]
    needles = {"private key": key_needle, "password": vaulted, "hash": bob_hash.split("$")[-1],
               "extra file content": "wg-private"}
    sampler = Sampler(list(needles.values()), interval=0.005)
    sampler.start()
    try:
        proc = _run(tmp_path, variables, verbose=True)
    finally:
        sampler.stop.set()
        sampler.join()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    persist = root / "nix" / "persist"
    assert (persist / "etc/ssh/ssh_host_ed25519_key").read_text() == private
    alice_hash = (persist / "passwords/alice").read_text().strip()
    needles["alice's hash"] = alice_hash.split("$")[-1]
    assert sampler.samples > 0 and sampler.cmdlines > 0
    assert sampler.hits == [], [(where, pid) for where, pid, _ in sampler.hits]
    for what, needle in needles.items():
        assert needle not in proc.stdout and needle not in proc.stderr, "%s in -vvv output" % what
    # the results (json callback) do not hold them either
    result = _run(tmp_path, variables)
    assert result.returncode == 0 and _recap(result.stdout)["changed"] == 0, result.stdout[-3000:]
    for what, needle in needles.items():
        assert needle not in result.stdout, "%s in the results" % what


def _journal():
    if shutil.which("journalctl") is None:
        return None
    proc = subprocess.run(["journalctl", "--no-pager", "-o", "cat", "-n", "20000"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 and proc.stdout.strip() else None


def test_no_identity_secret_in_the_journal(tmp_path, layout):
    """Modules log their arguments to the journal unless no_log: the secrets must not be there."""
    if _journal() is None:
        pytest.skip("this host has no systemd journal with entries (molecule/reinstall searches the guest's journal)")
    root, _, vaulted, variables = layout
    proc = _run(tmp_path, variables)
    assert proc.returncode == 0, proc.stdout[-3000:]
    persist = root / "nix" / "persist"
    needles = {"private key": (persist / "etc/ssh/ssh_host_ed25519_key").read_text().splitlines()[-3],
               "password": vaulted, "hash": (persist / "passwords/alice").read_text().strip().split("$")[-1],
               "extra file content": "wg-private"}
    journal = _journal()
    for what, needle in needles.items():
        assert needle not in journal, "%s in the journal" % what


DISK_PLAYBOOK = """- hosts: all
  gather_facts: false
  roles:
    - role: impermanent.nixos.%s
"""


def _remote(tmp_path, role, variables, env):
    """The role against an SSH host on a closed port: a run that got past its refusal fails as unreachable."""
    playbook = tmp_path / ("%s.yml" % role)
    playbook.write_text(DISK_PLAYBOOK % role)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"h1": {"ansible_host": "127.0.0.1", "ansible_port": 9,
                                                              "ansible_connection": "ssh",
                                                              "ansible_ssh_retries": 0}}}}))
    varsfile = tmp_path / "vars.json"
    varsfile.write_text(json.dumps(variables))
    full_env = _env()
    full_env.pop("ANSIBLE_HOST_KEY_CHECKING", None)
    full_env.update(env)
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), str(playbook), "-e", "@%s" % varsfile],
                          capture_output=True, text=True, env=full_env, check=False)
    return proc, _recap(proc.stdout)


DISK_VARS = dict(disk_device="/dev/disk/by-id/none", disk_luks=True, disk_luks_passphrase="never-sent",
                 flake_hostname="h1")


@pytest.mark.parametrize("how,env,extra", [
    ("host_key_checking off", {"ANSIBLE_HOST_KEY_CHECKING": "False"}, {}),
    ("StrictHostKeyChecking=no", {}, {"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"}),
    ("UserKnownHostsFile=/dev/null", {}, {"ansible_ssh_extra_args": "-o UserKnownHostsFile=/dev/null"}),
])
def test_passphrase_task_refuses_an_unverified_host(tmp_path, how, env, extra):
    proc, recap = _remote(tmp_path, "disk", dict(DISK_VARS, **extra), env)
    assert recap["failures"] == 1 and recap["unreachable"] == 0, proc.stdout[-3000:]
    assert "refusing to send the LUKS passphrase" in proc.stdout
    assert "disk_allow_unverified_host" in proc.stdout


def test_passphrase_task_opt_out_and_verified_host_get_past_the_refusal(tmp_path):
    # the opt-out: past the refusal, the run then fails to reach the closed port
    proc, recap = _remote(tmp_path, "disk", dict(DISK_VARS, disk_allow_unverified_host=True),
                          {"ANSIBLE_HOST_KEY_CHECKING": "False"})
    assert recap["unreachable"] == 1 and "refusing" not in proc.stdout, proc.stdout[-3000:]
    # host-key checking on: no refusal either
    proc, recap = _remote(tmp_path, "disk", DISK_VARS, {"ANSIBLE_HOST_KEY_CHECKING": "True"})
    assert recap["unreachable"] == 1 and "refusing" not in proc.stdout, proc.stdout[-3000:]


def test_identity_refuses_an_unverified_host(tmp_path):
    proc, recap = _remote(tmp_path, "identity", dict(identity_dir=str(tmp_path / "ctl"), flake_hostname="h1"),
                          {"ANSIBLE_HOST_KEY_CHECKING": "False"})
    assert recap["failures"] == 1 and recap["unreachable"] == 0, proc.stdout[-3000:]
    assert "refusing to send SSH host private keys" in proc.stdout
    assert not (tmp_path / "ctl").exists()


def test_identity_dir_inside_an_inventory_directory_is_refused(tmp_path, layout):
    """Ansible reads every file below an inventory directory as inventory: keys and hashes written there would turn
    into host names. The role refuses before it writes anything, on the controller or the target."""
    root, ctl, _, variables = layout
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.ini").write_text("h1\n")
    variables = dict(variables, identity_dir=str(inventory / "identity" / "h1"))
    proc = _run(tmp_path, variables, inventory=str(inventory))
    assert proc.returncode != 0
    assert "lies inside the inventory directory %s" % inventory in proc.stdout, proc.stdout[-3000:]
    assert not (inventory / "identity").exists()
    assert list(root.iterdir()) == [], "nothing may be written below the root" or not any(root.rglob("*"))
    # a file given as the inventory source is not a directory Ansible scans: its siblings stay usable
    ctl.mkdir(exist_ok=True)  # where the known_hosts file goes (the layout fixture's identity_dir made it before)
    ok = _run(tmp_path, variables, inventory=str(inventory / "hosts.ini"))
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert (inventory / "identity" / "h1" / "ssh_host_ed25519_key").is_file()
