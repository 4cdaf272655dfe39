# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks specific to the `default` scenario: a virtio disk addressed by /dev/disk/by-id, LUKS with the test KDF,
1GiB swap with random encryption. The step-by-step checks shared by every scenario are in test_install.py."""
import json


def test_scenario_inputs(host):
    """Steps 3, 4 and 7 (guard): the scenario really exercises by-id addressing, LUKS and swap (otherwise test_install proves less)."""
    v = host.ansible.get_variables()
    assert v["disk_device"].startswith("/dev/disk/by-id/virtio-")
    assert v["disk_luks"] is True
    assert str(v["disk_swap_size"]) == "1GiB"


def test_disk_by_id_resolves_to_virtio_disk(host):
    """Step 3: the by-id path names the blank virtio data disk, not the guest's root disk."""
    dev = host.check_output("readlink -f %s", host.ansible.get_variables()["disk_device"])
    assert dev.startswith("/dev/vd")
    root_source = host.check_output("findmnt -n -o SOURCE /")
    assert not root_source.startswith(dev)


def test_luks_uses_requested_kdf(host):
    """Step 4: the pbkdf options reached luksFormat (pbkdf2, 1000 iterations: test-only settings)."""
    dev = host.check_output("readlink -f %s", host.ansible.get_variables()["disk_device"])
    parts = json.loads(host.check_output("sfdisk --json %s", dev))["partitiontable"]["partitions"]
    nix = [p["node"] for p in parts if p.get("name") == "nix"][0]
    dump = host.check_output("cryptsetup luksDump %s", nix)
    keyslots = dump[dump.index("Keyslots:"):dump.index("Tokens:")]
    fields = [line.split() for line in keyslots.splitlines()]
    assert ["PBKDF:", "pbkdf2"] in fields, keyslots
    assert ["Iterations:", "1000"] in fields, keyslots


def test_swap_random_encryption_in_config_only(host):
    """Step 8: random swap encryption is a NixOS boot-time setting; in the live system the plain swap partition
    is active (the installer does not encrypt it), and hardware-configuration.nix carries the setting."""
    text = host.file("/mnt/etc/nixos/hardware-configuration.nix").content_string
    assert "/dev/disk/by-partuuid/" in text
    assert "randomEncryption" in text
