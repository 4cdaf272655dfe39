# SPDX-License-Identifier: GPL-3.0-or-later
"""The mkfs_command filter: the disk role's check-mode plan shows, for devices that do not exist yet, the command
impermanent.nixos.filesystems would run. It must be the module's own command (same code), quoted for a shell, and
refuse what the module refuses."""
import shlex

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.impermanent.nixos.plugins.filter.mkfs_command import FilterModule, mkfs_command
from ansible_collections.impermanent.nixos.plugins.module_utils import _mkfs as mkfs


@pytest.mark.parametrize("entry, expected", [
    ({"device": "/dev/vda1", "fstype": "vfat", "label": "boot"}, "mkfs.vfat -F 32 -n boot /dev/vda1"),
    ({"device": "/dev/vda2", "fstype": "swap", "label": "swap"}, "mkswap -L swap /dev/vda2"),
    ({"device": "/dev/mapper/crypted", "fstype": "ext4", "label": "nixos"},
     "mkfs.ext4 -F -L nixos /dev/mapper/crypted"),
    ({"device": "/dev/vda3", "fstype": "ext4"}, "mkfs.ext4 -F /dev/vda3"),
    ({"device": "/dev/vda3", "fstype": "ext4", "label": "my nix"}, "mkfs.ext4 -F -L 'my nix' /dev/vda3"),
])
def test_the_command_is_the_modules_own_quoted(entry, expected):
    line = mkfs_command(entry)
    assert line == expected
    assert shlex.split(line) == mkfs.mkfs_argv(entry["fstype"], entry["device"], entry.get("label"))


@pytest.mark.parametrize("entry, needle", [
    ({"device": "/dev/vda1", "fstype": "vfat", "label": "much-too-long"}, "at most 11"),
    ({"device": "/dev/vda1", "fstype": "xfs"}, "use one of vfat, swap, ext4"),
    ({"device": "vda1", "fstype": "ext4"}, "absolute path"),
    ({"device": "/dev/vda1", "fstype": "ext4", "opts": "-F"}, "unknown keys opts"),
    ("/dev/vda1", "each entry is a dict"),
])
def test_what_the_module_refuses_the_filter_refuses(entry, needle):
    with pytest.raises(AnsibleFilterError) as e:
        mkfs_command(entry)
    assert needle in str(e.value)


def test_registered_under_its_name():
    assert FilterModule().filters() == {"mkfs_command": mkfs_command}
