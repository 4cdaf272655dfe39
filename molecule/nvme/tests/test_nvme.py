# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks specific to the `nvme` scenario: an NVMe namespace, no LUKS, no swap. The step-by-step checks shared by
every scenario come from ../default/tests/test_install.py (testinfra additional_files_or_dirs)."""


def test_scenario_inputs(host):
    """Steps 3, 4 and 7 (guard): the scenario really exercises an NVMe disk without LUKS and without swap."""
    v = host.ansible.get_variables()
    assert host.check_output("readlink -f %s", v["disk_device"]) == "/dev/nvme0n1"
    assert host.file("/sys/block/nvme0n1/device").exists
    assert v.get("disk_luks", False) is False
    assert str(v["disk_swap_size"]) == "0"


def test_nvme_partition_names(host):
    """Step 3: NVMe partitions carry the `p` separator: exactly nvme0n1p1 (boot) and nvme0n1p2 (nix)."""
    out = host.check_output("lsblk -n -r -o NAME,PARTLABEL /dev/nvme0n1")
    # sorted: lsblk lists partitions in sysfs directory order, which is not always by number
    rows = sorted(line.split() for line in out.splitlines())
    assert rows == [["nvme0n1"], ["nvme0n1p1", "boot"], ["nvme0n1p2", "nix"]]


def test_nix_mounted_from_partition(host):
    """Steps 4 and 6: without LUKS, /mnt/nix is the ext4 on nvme0n1p2 and no mapper was opened."""
    assert host.check_output("findmnt -n -o SOURCE /mnt/nix") == "/dev/nvme0n1p2"
    assert host.check_output("ls /dev/mapper").split() == ["control"]


def test_no_swap_at_all(host):
    """Step 7: with disk_swap_size 0 no swap is active and hardware-configuration.nix declares none."""
    assert host.file("/proc/swaps").content_string.splitlines()[1:] == []
    assert "swapDevices = [ ];" in host.file("/mnt/etc/nixos/hardware-configuration.nix").content_string
