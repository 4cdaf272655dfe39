# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Disk filters: partition_path (documented in partition_path.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import (
    BlockDeviceError, partition_path as _partition_path,
)


def partition_path(disk, number):
    """``'/dev/nvme0n1' | partition_path(1)`` -> ``/dev/nvme0n1p1``."""
    if not isinstance(disk, str) or not disk:
        raise AnsibleFilterError("partition_path: the disk must be a path such as /dev/vda, got %r" % (disk,))
    try:
        if isinstance(number, str) and number.strip().isdigit():
            number = int(number)
        return _partition_path(disk, number)
    except BlockDeviceError as e:
        raise AnsibleFilterError("partition_path(%r, %r): %s" % (disk, number, e))


class FilterModule(object):
    def filters(self):
        return {"partition_path": partition_path}
