# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""File system filters: mkfs_command (documented in mkfs_command.yml)."""

from __future__ import annotations

import shlex

from ansible.errors import AnsibleFilterError

from ansible_collections.impermanent.nixos.plugins.module_utils import _mkfs as mkfs


def mkfs_command(entry):
    """``{'device': '/dev/vda1', 'fstype': 'vfat', 'label': 'boot'} | mkfs_command`` ->
    ``mkfs.vfat -F 32 -n boot /dev/vda1``: the command impermanent.nixos.filesystems runs for that entry (the
    program by its bare name), built by the same code."""
    try:
        (wanted,) = mkfs.parse_wanted([entry])
    except (mkfs.MkfsError, TypeError, ValueError) as e:
        raise AnsibleFilterError("mkfs_command(%r): %s" % (entry, e))
    return " ".join(shlex.quote(a) for a in mkfs.mkfs_argv(wanted.fstype, wanted.device, wanted.label))


class FilterModule(object):
    def filters(self):
        return {"mkfs_command": mkfs_command}
