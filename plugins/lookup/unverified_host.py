# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors
"""Lookup unverified_host: why the current host's SSH connection does not verify its host key."""

from __future__ import annotations

DOCUMENTATION = r"""
name: unverified_host
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
short_description: Say why the connection to the current host does not verify its SSH host key
description:
  - Returns a one-element list holding the reason why the current host's connection accepts any host key, or an
    empty string when it verifies the key (or is not an SSH connection at all, for example C(local)).
  - Reads the connection plugin's effective settings for the host, from the same sources the plugin uses
    (ansible.cfg, environment, inventory variables) - C(host_key_checking) (C(ANSIBLE_HOST_KEY_CHECKING),
    C(ansible_host_key_checking), C(ansible_ssh_host_key_checking)) and the SSH arguments
    (C(ssh_args), C(ansible_ssh_common_args), C(ansible_ssh_extra_args)) for C(StrictHostKeyChecking=no),
    C(StrictHostKeyChecking=accept-new) and C(UserKnownHostsFile=/dev/null).
  - The roles that send a secret (the LUKS passphrase, SSH host private keys, password hashes) refuse to run when
    it is not empty, unless the documented opt-out variable is set.
options: {}
"""

EXAMPLES = r"""
- name: Refuse to send a secret to a host whose key is not checked
  ansible.builtin.assert:
    that: lookup('impermanent.nixos.unverified_host') | length == 0
"""

RETURN = r"""
_raw:
  description: One string, the reason (empty when the host key is verified).
  type: list
  elements: str
"""

from ansible import constants as C
from ansible.plugins.loader import connection_loader
from ansible.plugins.lookup import LookupBase

from ansible_collections.impermanent.nixos.plugins.module_utils._identity import unverified_host_reason


class LookupModule(LookupBase):

    def _value(self, option, plugin, variables):
        # the ssh plugin's option definitions must be registered before the config manager can resolve them
        connection_loader.get(plugin, class_only=True)
        value = C.config.get_config_value(option, plugin_type="connection", plugin_name=plugin,
                                          variables=variables)
        if isinstance(value, str) and "{{" in value and self._templar is not None:
            value = self._templar.template(value)
        return value

    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        connection = variables.get("ansible_connection") or C.DEFAULT_TRANSPORT
        if isinstance(connection, str) and "{{" in connection and self._templar is not None:
            connection = self._templar.template(connection)
        name = str(connection).rsplit(".", 1)[-1]
        if name in ("ssh", "smart"):
            plugin = "ssh"
            args = [self._value(option, plugin, variables) or ""
                    for option in ("ssh_args", "ssh_common_args", "ssh_extra_args")]
        elif name in ("paramiko", "paramiko_ssh"):
            plugin = "paramiko_ssh"
            args = []
        else:
            return [""]
        checking = self._value("host_key_checking", plugin, variables)
        return [unverified_host_reason(name, checking, args)]
