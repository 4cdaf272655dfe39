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


def _gpt_refusal(host, **args):
    """Run gpt_partition in check mode (so that even a broken refusal could not write) and return its failure."""
    args.setdefault("partitions", [{"name": "nix", "size": "100%"}])
    try:
        result = host.ansible("impermanent.nixos.gpt_partition", json.dumps(args), check=True)
    except host.ansible.AnsibleException as e:
        result = e.result
    # testinfra hands back a failed module result without its "failed" key: "refused" is only set on failure
    if "refused" not in result or result.get("changed"):
        raise AssertionError("gpt_partition did not refuse %s: %s" % (args, result))
    return result


def test_the_guest_root_disk_is_refused_even_with_force(host):
    """Interlock: the disk the running system lives on (/ on /dev/vda, the root=LABEL=root disk) is refused before
    anything is read from it, whatever force says, and its first MiB stays as it was."""
    before = host.check_output("head -c 1048576 /dev/disk/by-id/virtio-root | sha256sum")
    res = _gpt_refusal(host, device="/dev/disk/by-id/virtio-root", force=True)
    assert res["refused"] == "system_disk", res
    assert "/dev/disk/by-id/virtio-root (/dev/vda) is the disk the running system lives on" in res["msg"]
    assert "/ is mounted from it" in res["msg"] and "not even with force=true" in res["msg"]
    assert res["commands"] == []
    assert host.check_output("head -c 1048576 /dev/disk/by-id/virtio-root | sha256sum") == before


def test_identity_pins_hold_for_the_data_disk_and_refuse_a_wrong_serial(host):
    """Interlock: the scenario pins the data disk's serial and size (disk_expect), so every converge passed the
    identity check; a wrong serial is refused, naming the serial found."""
    v = host.ansible.get_variables()
    assert v["disk_expect"] == {"serial": "nixdisk-default", "size": "6GiB"}
    res = _gpt_refusal(host, device=v["disk_device"], expect={"serial": "nixdisk-other"})
    assert res["refused"] == "identity", res
    assert "serial is 'nixdisk-default', not 'nixdisk-other'" in res["msg"]
