# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks specific to the `fleet` scenario: two guests, one provision run, each installed from its own inputs.
The step-by-step checks shared by every scenario come from ../default/tests/test_install.py and run per host."""


def test_each_host_got_its_own_disk(host):
    """Step 3: the by-id path of this host's inputs is the disk that was partitioned (virtio for the VM, NVMe for
    the laptop), and nothing else in the guest got a GPT from us."""
    v = host.ansible.get_variables()
    disk = host.check_output("readlink -f %s", v["disk_device"])
    expected = "/dev/nvme0n1" if v["inventory_hostname"].endswith("laptop") else "/dev/vd"
    assert disk.startswith(expected), (disk, v["disk_device"])
    # lsblk lists partitions in sysfs directory order, which is not always by number: map each name to its label.
    rows = [line.split() for line in host.check_output("lsblk -n -r -o NAME,PARTLABEL %s", disk).splitlines()]
    base = disk[len("/dev/"):]
    sep = "p" if base[-1].isdigit() else ""
    assert dict(row for row in rows if len(row) == 2) == {
        "%s%s1" % (base, sep): "boot", "%s%s2" % (base, sep): "swap", "%s%s3" % (base, sep): "nix"}
    assert host.check_output("findmnt -n -o SOURCE /") == host.check_output("readlink -f /dev/disk/by-id/virtio-root")


def test_luks_only_where_declared(host):
    """Step 4: LUKS on the VM (declared), none on the laptop."""
    v = host.ansible.get_variables()
    mapper_active = host.run("cryptsetup status crypted").rc == 0
    assert mapper_active is bool(v["disk_luks"])
