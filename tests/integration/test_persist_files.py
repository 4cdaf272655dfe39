# SPDX-License-Identifier: GPL-3.0-or-later
"""persist_files through `ansible localhost -m impermanent.nixos.persist_files`, below a scratch root.

One call writes directories and files with their modes; a rerun changes nothing; contents never reach the output
(also at -vvv); check mode writes nothing and fails where the run would; a link below the root is refused before
anything is written.
"""
import hashlib
import json
import os
import stat
import subprocess

from conftest import _env, run_module
from test_adversarial_paths import snapshot as tree

SECRET = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-persist-files-test\n" \
         "-----END OPENSSH PRIVATE KEY-----\n"


def identity_args(root):
    persist = os.path.join(root, "nix", "persist")
    return dict(root=root,
                directories=[dict(path=persist + "/etc/ssh"), dict(path=persist + "/etc"),
                             dict(path=persist + "/passwords", mode="0700")],
                files=[dict(path=persist + "/etc/ssh/ssh_host_ed25519_key", content=SECRET, mode="0600"),
                       dict(path=persist + "/etc/ssh/ssh_host_ed25519_key.pub", content="ssh-ed25519 AAAA x\n",
                            mode="0644"),
                       dict(path=persist + "/etc/machine-id", content="0123456789abcdef0123456789abcdef\n",
                            mode="0444"),
                       dict(path=persist + "/passwords/root", content="$6$salt$hash\n")])


def test_one_call_writes_everything_and_a_rerun_changes_nothing(tmp_path):
    root = str(tmp_path / "mnt")
    os.mkdir(root)
    rc, result = run_module("impermanent.nixos.persist_files", identity_args(root))
    assert rc == 0, result
    assert result["changed"] is True
    # the implicit nix and nix/persist come first, then the directories by depth, then the files
    assert [(a["path"][len(root):], a["action"]) for a in result["actions"]] == [
        ("/nix", "create"), ("/nix/persist", "create"), ("/nix/persist/etc", "create"),
        ("/nix/persist/passwords", "create"), ("/nix/persist/etc/ssh", "create"),
        ("/nix/persist/etc/ssh/ssh_host_ed25519_key", "create"),
        ("/nix/persist/etc/ssh/ssh_host_ed25519_key.pub", "create"), ("/nix/persist/etc/machine-id", "create"),
        ("/nix/persist/passwords/root", "create")]
    t = tree(root)
    assert t["nix/persist/etc/ssh/ssh_host_ed25519_key"] == (0o600, hashlib.sha256(SECRET.encode()).hexdigest())
    assert t["nix/persist/etc/machine-id"][0] == 0o444
    assert t["nix/persist/passwords"] == (0o700, "dir") and t["nix/persist/passwords/root"][0] == 0o600
    assert t["nix"] == (0o755, "dir") and t["nix/persist/etc/ssh"] == (0o755, "dir")
    rc, again = run_module("impermanent.nixos.persist_files", identity_args(root))
    assert rc == 0 and again["changed"] is False and again["actions"] == [], again
    assert tree(root) == t


def test_contents_never_reach_the_output_even_at_vvv(tmp_path):
    root = str(tmp_path / "mnt")
    os.mkdir(root)
    argv = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-vvv", "--diff", "-m",
            "impermanent.nixos.persist_files", "-a", json.dumps(identity_args(root))]
    env = _env()
    env.pop("ANSIBLE_STDOUT_CALLBACK")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert "ssh_host_ed25519_key" in output, "the output should name what was written"
    for secret in ("b3BlbnNzaC1rZXktdjEAAAAA-persist-files-test", "$6$salt$hash"):
        assert secret not in output, "a file's content reached the output"


def test_check_mode_writes_nothing_and_plans_the_same(tmp_path):
    root = str(tmp_path / "mnt")
    os.mkdir(root)
    rc, result = run_module("impermanent.nixos.persist_files", identity_args(root), check=True)
    assert rc == 0 and result["changed"] is True and len(result["actions"]) == 9, result
    assert os.listdir(root) == []


def test_check_mode_before_the_root_exists_plans_everything_with_a_warning(tmp_path):
    root = str(tmp_path / "not-yet")
    rc, result = run_module("impermanent.nixos.persist_files", identity_args(root), check=True)
    assert rc == 0 and result["changed"] is True, result
    assert any("does not exist yet" in w for w in result.get("warnings", [])), result
    assert not os.path.exists(root)
    rc, result = run_module("impermanent.nixos.persist_files", identity_args(root))
    assert rc != 0 and "root %s is not a directory" % root in result["msg"], result
    assert not os.path.exists(root)


def test_a_link_below_the_root_is_refused_before_any_write(tmp_path):
    root = str(tmp_path / "mnt")
    outside = tmp_path / "live-etc"
    outside.mkdir()
    os.makedirs(os.path.join(root, "nix", "persist"))
    os.symlink(str(outside), os.path.join(root, "nix", "persist", "etc"))
    before = tree(str(tmp_path))
    for check in (True, False):
        rc, result = run_module("impermanent.nixos.persist_files", identity_args(root), check=check)
        assert rc != 0, result
        assert "%s/nix/persist/etc is a symbolic link to %s, which is outside %s" % (root, outside, root) \
            in result["msg"], result
        assert tree(str(tmp_path)) == before


def test_a_directory_where_a_file_goes_is_refused_and_nothing_is_written(tmp_path):
    root = str(tmp_path / "mnt")
    os.makedirs(os.path.join(root, "nix", "persist", "etc", "machine-id"))
    before = tree(root)
    rc, result = run_module("impermanent.nixos.persist_files", identity_args(root))
    assert rc != 0 and "%s/nix/persist/etc/machine-id is a directory, not a file" % root in result["msg"], result
    assert tree(root) == before, "entries before the bad one must not have been written"


def test_an_unknown_owner_is_refused_before_any_write(tmp_path):
    root = str(tmp_path / "mnt")
    os.mkdir(root)
    args = identity_args(root)
    args["files"][-1]["owner"] = "no-such-user-persist-files"
    rc, result = run_module("impermanent.nixos.persist_files", args)
    assert rc != 0 and "owner 'no-such-user-persist-files' of" in result["msg"], result
    assert os.listdir(root) == []


def test_changed_content_and_mode_are_corrected(tmp_path):
    root = str(tmp_path / "mnt")
    os.mkdir(root)
    run_module("impermanent.nixos.persist_files", identity_args(root))
    key = os.path.join(root, "nix/persist/etc/ssh/ssh_host_ed25519_key")
    mid = os.path.join(root, "nix/persist/etc/machine-id")
    with open(key, "w") as f:
        f.write("tampered\n")
    os.chmod(mid, 0o644)
    rc, result = run_module("impermanent.nixos.persist_files", identity_args(root))
    assert rc == 0 and [(a["path"], a["action"]) for a in result["actions"]] == [(key, "update"),
                                                                                (mid, "attributes")], result
    assert open(key).read() == SECRET and stat.S_IMODE(os.stat(mid).st_mode) == 0o444
