# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""A host's identity, computed on the controller: age recipients, SHA-512 crypt hashes, machine ids, and the
check whether an SSH connection verifies the host's key.

* :func:`ssh_to_age` is the standard ssh-to-age conversion of an Ed25519 public key: the Edwards point's
  y coordinate becomes the Montgomery u = (1 + y) / (1 - y) mod 2^255 - 19 (RFC 7748's birational map),
  the 32 little-endian bytes are bech32-encoded (BIP 173) with the human-readable part ``age``.
* :func:`sha512_crypt` is glibc's ``$6$`` scheme (Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"),
  in pure Python so that it does not depend on the ``crypt`` module (deprecated, gone in Python 3.13).
* :func:`unverified_host_reason` reads an SSH connection's settings and says why it does not check the host key.

Stdlib only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

# --- ssh-to-age -------------------------------------------------------------------------------------------------

_P = 2 ** 255 - 19
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class IdentityError(ModuleError, ValueError):
    """A value that cannot be used; the message names it and what to do."""


def _bech32_polymod(values):
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if (top >> i) & 1 else 0
    return chk


def bech32_encode(hrp, data):
    """BIP 173 bech32 of bytes ``data`` with the human-readable part ``hrp`` (lower case)."""
    acc = 0
    bits = 0
    words = []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _bech32_polymod(expanded + words + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[w] for w in words + checksum)


def ed25519_public_key(line):
    """The 32 raw key bytes of an OpenSSH ``ssh-ed25519 BASE64 [comment]`` line (a known_hosts line's host names
    in front are allowed)."""
    fields = str(line).split()
    try:
        index = fields.index("ssh-ed25519")
    except ValueError:
        raise IdentityError("not an ssh-ed25519 public key: %r (expected 'ssh-ed25519 AAAA... [comment]')"
                            % (str(line)[:60],))
    if index + 1 >= len(fields):
        raise IdentityError("ssh-ed25519 public key without its base64 part")
    try:
        blob = base64.b64decode(fields[index + 1], validate=True)
    except (ValueError, TypeError):
        raise IdentityError("the base64 part of the ssh-ed25519 public key does not decode")
    parts = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise IdentityError("truncated ssh-ed25519 public key blob")
        (length,) = struct.unpack(">I", blob[offset:offset + 4])
        parts.append(blob[offset + 4:offset + 4 + length])
        offset += 4 + length
    if len(parts) != 2 or parts[0] != b"ssh-ed25519" or len(parts[1]) != 32 or offset != len(blob):
        raise IdentityError("the ssh-ed25519 public key blob is not (\"ssh-ed25519\", 32 key bytes)")
    return parts[1]


def ssh_to_age(line):
    """The age recipient (``age1...``) of an ``ssh-ed25519`` public key, as ssh-to-age computes it."""
    key = ed25519_public_key(line)
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)  # the top bit is the sign of x, not part of y
    if y >= _P or (1 - y) % _P == 0:
        raise IdentityError("the ssh-ed25519 public key is not a valid curve point")
    u = (1 + y) * pow((1 - y) % _P, _P - 2, _P) % _P
    return bech32_encode("age", u.to_bytes(32, "little"))


# --- SHA-512 crypt ----------------------------------------------------------------------------------------------

_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHA512_ORDER = ((0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
                 (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
                 (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19),
                 (62, 20, 41))
_SHA512_RE = re.compile(r"^\$6\$(?:rounds=(\d+)\$)?([^$\n]{0,16})\$([./0-9A-Za-z]{86})$")


def _repeat(digest, length):
    return (digest * (length // len(digest) + 1))[:length]


def sha512_crypt(password, salt=None, rounds=None):
    """``$6$SALT$HASH`` of ``password`` (text), as glibc's crypt(3) makes it. A random 16-character salt when
    ``salt`` is None; ``rounds`` None is the scheme's default 5000 (not written into the hash)."""
    if salt is None:
        salt = "".join(secrets.choice(_CRYPT_ALPHABET) for _position in range(16))
    salt = salt[:16]
    if "$" in salt or "\n" in salt:
        raise IdentityError("a SHA-512 crypt salt cannot hold '$' or a newline")
    n_rounds = 5000 if rounds is None else min(max(int(rounds), 1000), 999999999)
    pw = password.encode("utf-8")
    sb = salt.encode("utf-8")
    b = hashlib.sha512(pw + sb + pw).digest()
    a = hashlib.sha512(pw + sb)
    a.update(_repeat(b, len(pw)))
    i = len(pw)
    while i:
        a.update(b if i & 1 else pw)
        i >>= 1
    a = a.digest()
    p = _repeat(hashlib.sha512(pw * len(pw)).digest(), len(pw))
    s = _repeat(hashlib.sha512(sb * (16 + a[0])).digest(), len(sb))
    c = a
    for r in range(n_rounds):
        h = hashlib.sha512(p if r & 1 else c)
        if r % 3:
            h.update(s)
        if r % 7:
            h.update(p)
        h.update(c if r & 1 else p)
        c = h.digest()
    out = []
    for b2, b1, b0 in _SHA512_ORDER:
        w = (c[b2] << 16) | (c[b1] << 8) | c[b0]
        for _digit in range(4):
            out.append(_CRYPT_ALPHABET[w & 63])
            w >>= 6
    w = c[63]
    for _digit in range(2):
        out.append(_CRYPT_ALPHABET[w & 63])
        w >>= 6
    prefix = "$6$" if rounds is None else "$6$rounds=%d$" % n_rounds
    return prefix + salt + "$" + "".join(out)


def sha512_crypt_verify(password, hashed):
    """True when ``hashed`` is a ``$6$`` hash of ``password``; False for any other hash or scheme."""
    match = _SHA512_RE.match(hashed or "")
    if not match:
        return False
    return hmac.compare_digest(sha512_crypt(password, match.group(2), match.group(1)), hashed)


def password_hash(password, keep=""):
    """The hash to write for ``password``: ``keep`` when it is a ``$6$`` hash that verifies it (a rerun writes
    the same bytes), else a new SHA-512 crypt hash with a random salt."""
    if keep and sha512_crypt_verify(password, keep.strip()):
        return keep.strip()
    return sha512_crypt(password)


_HASH_RE = re.compile(r"^\$[0-9a-z]+\$[!-~]+$")


def check_crypt_hash(value, name):
    """Refuse what is not one line in crypt(3)'s ``$id$...`` form (``$6$`` SHA-512, ``$y$`` yescrypt, ...)."""
    if not _HASH_RE.match(value or ""):
        raise IdentityError("the password hash given for user %s is not a crypt(3) hash ('$6$...' or '$y$...', "
                            "one line, as mkpasswd prints it)" % (name,))
    return value


# --- machine-id -------------------------------------------------------------------------------------------------

_MACHINE_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def new_machine_id():
    """A random machine id: 32 lower-case hex characters, as systemd-machine-id-setup writes (a v4 UUID)."""
    raw = bytearray(secrets.token_bytes(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def check_machine_id(value):
    value = (value or "").strip()
    if not _MACHINE_ID_RE.match(value) or value == "0" * 32:
        raise IdentityError("machine id %r is not 32 lower-case hex characters (systemd's machine-id(5) format)"
                            % (value,))
    return value


# --- host key checking ------------------------------------------------------------------------------------------

_OFF = ("no", "false", "off", "0", "n", "f")


def _ssh_option(args, name):
    """The value of ``-o Name=value`` / ``-oName value`` in an ssh argument string (last one wins, as in
    ssh_config), or None."""
    pattern = re.compile(r"(?:^|\s)-o\s*['\"]?%s\s*[= ]\s*([^\s'\"]+)" % name, re.IGNORECASE)
    found = pattern.findall(args or "")
    return found[-1] if found else None


def unverified_host_reason(connection, host_key_checking, ssh_args=()):
    """Why a connection does not verify the host's key, or "" when it does (or needs no network).

    ``connection`` is the connection plugin's name, ``host_key_checking`` its effective option,
    ``ssh_args`` the strings ssh gets (ssh_args, ssh_common_args, ssh_extra_args)."""
    name = (connection or "ssh").rsplit(".", 1)[-1]
    if name not in ("ssh", "paramiko", "paramiko_ssh", "smart"):
        return ""
    if str(host_key_checking).strip().lower() in _OFF:
        return "host_key_checking is off (ANSIBLE_HOST_KEY_CHECKING, ansible.cfg or ansible_host_key_checking)"
    if name in ("paramiko", "paramiko_ssh"):
        return ""
    joined = " ".join(a for a in ssh_args if a)
    strict = _ssh_option(joined, "StrictHostKeyChecking")
    if strict is not None and strict.lower() in _OFF + ("accept-new",):
        return "the SSH arguments set StrictHostKeyChecking=%s" % (strict,)
    known = _ssh_option(joined, "UserKnownHostsFile")
    if known is not None and known == "/dev/null":
        return "the SSH arguments set UserKnownHostsFile=/dev/null"
    return ""
