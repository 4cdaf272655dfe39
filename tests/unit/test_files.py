# SPDX-License-Identifier: GPL-3.0-or-later
"""_files: what persist_files plans for each entry, and the atomic write (scratch trees, run as any user)."""
import os
import stat

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._files import (
    FilesError, Found, Wanted, apply_action, digest, parse_mode, plan_entry, read_entry, resolve_owner)

UID, GID = os.getuid(), os.getgid()


def wanted_file(path, content=b"key\n", mode=0o600):
    return Wanted(str(path), "file", mode, UID, GID, content)


@pytest.mark.parametrize("text, mode", [("0600", 0o600), ("600", 0o600), ("0444", 0o444), ("1777", 0o1777),
                                        (" 0755 ", 0o755)])
def test_parse_mode_reads_octal_permission_strings(text, mode):
    assert parse_mode(text, "/p") == mode


@pytest.mark.parametrize("text, why", [("", "not an octal"), ("0x1ff", "not an octal"), ("0800", "not an octal"),
                                       ("07777", "not an octal"), ("4755", "setuid or setgid"),
                                       ("2755", "setuid or setgid"), ("rw-------", "not an octal")])
def test_parse_mode_refuses_what_is_not_a_plain_mode(text, why):
    with pytest.raises(FilesError, match=why) as e:
        parse_mode(text, "/mnt/x")
    assert "/mnt/x" in str(e.value) and repr(text) in str(e.value)


def test_owner_by_name_or_number():
    def getpwnam(name):
        if name == "alice":
            return type("P", (), {"pw_uid": 1000})
        raise KeyError(name)

    def getgrnam(name):
        if name == "users":
            return type("G", (), {"gr_gid": 100})
        raise KeyError(name)
    assert resolve_owner("alice", "users", "/p", getpwnam, getgrnam) == (1000, 100)
    assert resolve_owner("0", 7, "/p", getpwnam, getgrnam) == (0, 7)
    with pytest.raises(FilesError, match="owner 'bob' of /p does not exist"):
        resolve_owner("bob", "users", "/p", getpwnam, getgrnam)
    with pytest.raises(FilesError, match="group 'wheel' of /p does not exist"):
        resolve_owner("alice", "wheel", "/p", getpwnam, getgrnam)


def test_plan_per_state():
    w = wanted_file("/r/f", b"new\n", 0o600)
    assert plan_entry(w, Found("missing", None, None, None, None)).action == "create"
    assert plan_entry(w, Found("file", 0o600, UID, GID, digest(b"old\n"))).action == "update"
    a = plan_entry(w, Found("file", 0o644, UID, GID, digest(b"new\n")))
    assert (a.action, a.mode_before, a.mode_after) == ("attributes", "0644", "0600")
    assert plan_entry(w, Found("file", 0o600, UID + 1, GID, digest(b"new\n"))).action == "attributes"
    assert plan_entry(w, Found("file", 0o600, UID, GID, digest(b"new\n"))) is None
    d = Wanted("/r/d", "dir", 0o755, UID, GID, None)
    assert plan_entry(d, Found("dir", 0o755, UID, GID, None)) is None
    assert plan_entry(d, Found("dir", 0o700, UID, GID, None)).action == "attributes"


@pytest.mark.parametrize("kind, found, says", [("file", "dir", "is a directory, not a file"),
                                                ("dir", "file", "is a file, not a directory"),
                                                ("file", "other", "is a link or special file, not a file")])
def test_plan_refuses_to_replace_one_kind_with_another(kind, found, says):
    w = Wanted("/r/x", kind, 0o600, UID, GID, b"x" if kind == "file" else None)
    with pytest.raises(FilesError, match=says):
        plan_entry(w, Found(found, 0o755, UID, GID, None))


def test_read_entry_does_not_follow_links(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    os.symlink(str(tmp_path / "f"), str(tmp_path / "l"))
    assert read_entry(str(tmp_path / "f")).digest == digest(b"abc")
    assert read_entry(str(tmp_path / "l")).kind == "other"
    assert read_entry(str(tmp_path / "none")).kind == "missing"


def test_write_is_atomic_with_mode_set_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "ssh_host_ed25519_key"
    path.write_bytes(b"old\n")
    os.chmod(str(path), 0o644)
    inode = path.stat().st_ino
    w = wanted_file(path, b"-----BEGIN OPENSSH PRIVATE KEY-----\n", 0o600)
    apply_action(w, plan_entry(w, read_entry(str(path))))
    assert path.read_bytes() == b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != inode, "the new content must arrive by rename, not by rewriting the old file"
    assert sorted(os.listdir(str(tmp_path))) == ["ssh_host_ed25519_key"]
    assert plan_entry(w, read_entry(str(path))) is None


def test_attributes_only_keep_the_inode(tmp_path):
    path = tmp_path / "machine-id"
    path.write_bytes(b"id\n")
    os.chmod(str(path), 0o600)
    inode = path.stat().st_ino
    w = wanted_file(path, b"id\n", 0o444)
    apply_action(w, plan_entry(w, read_entry(str(path))))
    assert stat.S_IMODE(path.stat().st_mode) == 0o444 and path.stat().st_ino == inode


def test_directory_created_with_its_mode(tmp_path):
    w = Wanted(str(tmp_path / "passwords"), "dir", 0o700, UID, GID, None)
    apply_action(w, plan_entry(w, read_entry(w.path)))
    assert stat.S_IMODE(os.stat(w.path).st_mode) == 0o700
