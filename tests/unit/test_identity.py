# SPDX-License-Identifier: GPL-3.0-or-later
"""A host's identity computed on the controller: ssh-to-age against published vectors, SHA-512 crypt against
Drepper's published vector and the system's crypt(3), machine ids, and the host-key checking verdict."""
import base64
import re
import shutil
import subprocess

import pytest

import system_crypt  # tests/system_crypt.py

from ansible_collections.impermanent.nixos.plugins.module_utils import _identity as ident
from ansible_collections.impermanent.nixos.plugins.filter import identity as filters

# Published ssh-to-age input/output pairs, copied from their sources (not computed here):
AGE_VECTORS = [
    # github.com/Mic92/ssh-to-age README.md, "Exports the public key": the key of the repository's
    # cmd/ssh-to-age/test-assets/id_ed25519.pub and the recipient the README prints for it.
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOHz+U0YtjINc54dZiJNclfmEFifF7RXCFlNlTbuZBji joerg@turingmachine",
     "age17044m9wgakla6pzftf4srtl3h5mcsr85jysgt5fg23zpnta8sfdqhzn452"),
    # github.com/Mic92/ssh-to-age README.md, "ssh-keyscan eve.thalheim.io eva.thalheim.io | ssh-to-age": the
    # ed25519 lines of the repository's cmd/ssh-to-age/test-assets/keyscan.txt and the two recipients printed.
    ("eve.thalheim.io ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF/KPU3Z5LSjbBI6hrq25wCcseq2UpqSzUFZRr+ux6LM",
     "age1hjm3aujg9e79f5yth8a2cejzdjg5n9vnu96l05p70uvfpeltnpms7yy3pp"),
    ("eva.thalheim.io ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIL2vjdqpppuCn7yPdF2muINriAG7zBWrsELKpPWkhn5",
     "age1v8zjc47jmlqwefyu66s0d4ke98qr4vnuj3cpvs4z9npfdw833dxqwjrhzv"),
    # github.com/pinpox/pgp2ssh README.md, "Get age key and encrypt test file": gpg --export-ssh-key | ssh-to-age.
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICYvKXGcG4a19tTT0Rycbn+D0r/YlKltLJ9dY2gR/Fjx openpgp:0x47C9F3FF",
     "age18s8m9hvlrwvltgys4lafyyqe356ntc7e06t4kd2nccqm5amsaa2s878mju"),
]


@pytest.mark.parametrize("line,recipient", AGE_VECTORS)
def test_ssh_to_age_published_vectors(line, recipient):
    assert ident.ssh_to_age(line) == recipient
    assert filters.ssh_to_age(line) == recipient


def test_ssh_to_age_a_changed_bit_changes_the_recipient():
    line, recipient = AGE_VECTORS[0]
    blob = bytearray(base64.b64decode(line.split()[1]))
    blob[-1] ^= 1
    other = "ssh-ed25519 " + base64.b64encode(bytes(blob)).decode()
    assert ident.ssh_to_age(other) != recipient


@pytest.mark.parametrize("line", [
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x",
    "ssh-ed25519",
    "ssh-ed25519 not-base64!",
    # a blob that names ssh-ed25519 but carries 31 key bytes
    "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x1f" + b"a" * 31).decode(),
])
def test_ssh_to_age_refuses_what_is_not_an_ed25519_key(line):
    with pytest.raises(ident.IdentityError):
        ident.ssh_to_age(line)


# "Unix crypt using SHA-256 and SHA-512" (Ulrich Drepper, akkadia.org/drepper/SHA-crypt.txt), its SHA-512 test
# vectors (salt, password, hash).
DREPPER_SHA512 = [
    ("$6$saltstring", "Hello world!",
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
    ("$6$rounds=10000$saltstringsaltstring", "Hello world!",
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBm"
     "SK6H9qs/y3RnOaw5v."),
]


@pytest.mark.parametrize("setting,password,expected", DREPPER_SHA512)
def test_sha512_crypt_published_vectors(setting, password, expected):
    m = re.match(r"^\$6\$(?:rounds=(\d+)\$)?(.*)$", setting)
    assert ident.sha512_crypt(password, m.group(2), m.group(1)) == expected
    assert ident.sha512_crypt_verify(password, expected)
    assert not ident.sha512_crypt_verify(password + "x", expected)


@pytest.mark.parametrize("password", ["", "a", "p" * 64, "p" * 130, "h\u00e9llo w\u00f6rld", "with $ and \\"])
def test_sha512_crypt_matches_the_system_crypt(password):
    if system_crypt.crypt("x", "$6$s") is None:
        pytest.fail("libcrypt (libcrypt1, part of every Debian system) is missing: nothing to compare with")
    for salt in ("s", "0123456789abcdef", "./ABCxyz"):
        assert ident.sha512_crypt(password, salt) == system_crypt.crypt(password, "$6$" + salt)


def test_password_hash_keeps_a_matching_hash_and_replaces_another():
    first = ident.password_hash("vaulted")
    assert first.startswith("$6$") and ident.sha512_crypt_verify("vaulted", first)
    assert ident.password_hash("vaulted", first) == first
    assert ident.password_hash("vaulted", first + "\n") == first
    # the password changed: a new hash, with a new random salt
    second = ident.password_hash("changed", first)
    assert second != first and ident.sha512_crypt_verify("changed", second)
    # a yescrypt hash cannot be verified here: replaced by a SHA-512 one
    assert ident.password_hash("vaulted", "$y$j9T$abc$def").startswith("$6$")
    assert filters.sha512_crypt("vaulted", first) == first


def test_password_hash_verifies_with_mkpasswd_when_present():
    mkpasswd = shutil.which("mkpasswd")
    if mkpasswd is None:
        pytest.skip("mkpasswd (Debian package whois) is not installed: compared with crypt(3) and the vectors only")
    made = subprocess.run([mkpasswd, "-m", "sha-512", "-S", "abcdefgh", "-s"], input="secret",
                          capture_output=True, text=True, check=True).stdout.strip()
    assert ident.sha512_crypt_verify("secret", made)


@pytest.mark.parametrize("value", ["$6$abc$def", "$y$j9T$salt$hash", "$2b$10$abcdefghijklmnopqrstuv"])
def test_check_crypt_hash_accepts_crypt_forms(value):
    assert ident.check_crypt_hash(value, "alice") == value


@pytest.mark.parametrize("value", ["", "plain", "$6$abc\n$def", "$6$ab c$d"])
def test_check_crypt_hash_refuses_the_rest(value):
    with pytest.raises(ident.IdentityError, match="alice"):
        ident.check_crypt_hash(value, "alice")


def test_machine_ids():
    ids = {ident.new_machine_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.match(r"^[0-9a-f]{32}$", i) and i[12] == "4" for i in ids)
    known = "e492338032f446bab6f7c4f432d18a6c"
    assert filters.machine_id(known) == known
    assert re.match(r"^[0-9a-f]{32}$", filters.machine_id(""))
    for bad in ("E492338032F446BAB6F7C4F432D18A6C", "e4923380-32f4-46ba-b6f7-c4f432d18a6c", "0" * 32, "abc"):
        with pytest.raises(ident.IdentityError):
            ident.check_machine_id(bad)


@pytest.mark.parametrize("connection,checking,args,reason", [
    ("ssh", True, [], ""),
    ("ssh", "True", ["-C -o ControlMaster=auto", "-o StrictHostKeyChecking=yes", ""], ""),
    ("ssh", False, [], "host_key_checking is off"),
    ("ssh", "false", [], "host_key_checking is off"),
    ("ssh", True, ["", "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"], "StrictHostKeyChecking=no"),
    ("ssh", True, ["-oStrictHostKeyChecking=accept-new"], "StrictHostKeyChecking=accept-new"),
    ("ssh", True, ["-o UserKnownHostsFile=/dev/null"], "UserKnownHostsFile=/dev/null"),
    ("ssh", True, ["-o StrictHostKeyChecking=no", "-o StrictHostKeyChecking=yes"], ""),
    ("ansible.builtin.ssh", True, ["-o 'StrictHostKeyChecking no'"], "StrictHostKeyChecking=no"),
    ("paramiko_ssh", False, [], "host_key_checking is off"),
    ("local", False, ["-o StrictHostKeyChecking=no"], ""),
    ("community.docker.docker", False, [], ""),
])
def test_unverified_host_reason(connection, checking, args, reason):
    got = ident.unverified_host_reason(connection, checking, args)
    assert (got == "") if reason == "" else (reason in got)
