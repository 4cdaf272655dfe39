# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks specific to the `fleet` scenario: two guests, one provision run, each installed from its own inputs.
The step-by-step checks shared by every scenario come from ../default/tests/test_install.py and run per host."""
import json


def test_each_host_got_its_own_disk(host):
    """Step 3: the by-id path of this host's inputs is the disk that was partitioned (virtio for the VM, NVMe for
    the laptop), and nothing else in the guest got a GPT from us."""
    v = host.ansible.get_variables()
    disk = host.check_output("readlink -f %s", v["disk_device"])
    expected = "/dev/nvme0n1" if v["inventory_hostname"].endswith("laptop") else "/dev/vd"
    assert disk.startswith(expected), (disk, v["disk_device"])
    # The GPT's own order (sfdisk lists entries by number); lsblk follows sysfs directory order, not always by number.
    table = json.loads(host.check_output("sfdisk --json %s", disk))["partitiontable"]
    assert [p["name"] for p in table["partitions"]] == ["boot", "swap", "nix"]
    assert host.check_output("findmnt -n -o SOURCE /") == host.check_output("readlink -f /dev/disk/by-id/virtio-root")


def test_luks_only_where_declared(host):
    """Step 4: LUKS on the VM (declared), none on the laptop."""
    v = host.ansible.get_variables()
    mapper_active = host.run("cryptsetup status crypted").rc == 0
    assert mapper_active is bool(v["disk_luks"])
