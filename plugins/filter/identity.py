# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Host identity filters: ssh_to_age, sha512_crypt, machine_id (documented in their .yml files)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.impermanent.nixos.plugins.module_utils import _identity


def ssh_to_age(value):
    """``'ssh-ed25519 AAAA... host' | ssh_to_age`` -> ``age1...``, the host's age recipient."""
    try:
        return _identity.ssh_to_age(str(value))
    except _identity.IdentityError as exc:
        raise AnsibleFilterError("ssh_to_age: %s" % (exc,))


def sha512_crypt(password, keep=""):
    """``password | sha512_crypt(keep)`` -> keep when it is a $6$ hash of password, else a new $6$ hash."""
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("sha512_crypt: expected a non-empty password string")
    return _identity.password_hash(password, str(keep or ""))


def machine_id(value=""):
    """``'' | machine_id`` -> a new random machine id; ``ID | machine_id`` -> ID, checked."""
    if value is None or str(value).strip() == "":
        return _identity.new_machine_id()
    try:
        return _identity.check_machine_id(str(value))
    except _identity.IdentityError as exc:
        raise AnsibleFilterError("machine_id: %s" % (exc,))


class FilterModule(object):
    def filters(self):
        return {"ssh_to_age": ssh_to_age, "sha512_crypt": sha512_crypt, "machine_id": machine_id}
