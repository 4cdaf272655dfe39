# SPDX-License-Identifier: GPL-3.0-or-later
"""filesystems on loop devices: the three file systems of an install, reruns, refusals, check mode.

The partitions are made with sfdisk and added with partx (this host's kernel does not parse GPT itself); every
assertion about what was written reads the device with ``blkid -p`` or hashes its bytes.
"""
import os
import subprocess

from conftest import run_module, sha256_of

MODULE = "impermanent.nixos.filesystems"
MIB = 1 << 20
# ESP 64 MiB (enough clusters for FAT32 with 512-byte sectors), swap 16 MiB, the rest (~46 MiB) for ext4
TABLE = "label: gpt\nsize=64MiB, type=U, name=boot\nsize=16MiB, type=S, name=swap\ntype=L, name=nix\n"


def sh(*argv, check=True, data=None):
    return subprocess.run(argv, input=data, capture_output=True, text=True, check=check)


def probe(device):
    """blkid -p of the device as a dict (empty for a blank one)."""
    out = sh("blkid", "-p", "-o", "export", device, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def partitioned(loopdisk):
    disk = loopdisk(128 * MIB)
    sh("sfdisk", "-q", disk.device, data=TABLE)
    sh("partx", "-u", disk.device, check=False)
    parts = [disk.device + "p%d" % n for n in (1, 2, 3)]
    for part in parts:
        assert os.path.exists(part), "partx did not add %s" % part
    return disk, parts


def install(parts, **labels):
    names = dict(boot="boot", swap="swap", nix="nixos")
    names.update(labels)
    return dict(filesystems=[dict(device=parts[0], fstype="vfat", label=names["boot"]),
                             dict(device=parts[1], fstype="swap", label=names["swap"]),
                             dict(device=parts[2], fstype="ext4", label=names["nix"])])


def programs(commands):
    return [os.path.basename(c.split()[0]) for c in commands]


def test_creates_all_three_then_a_rerun_changes_nothing(loopdisk):
    disk, parts = partitioned(loopdisk)
    rc, res = run_module(MODULE, install(parts))
    assert rc == 0, res
    assert res["changed"] is True
    assert [(e["device"], e["fstype"], e["label"], e["action"]) for e in res["filesystems"]] == [
        (parts[0], "vfat", "boot", "create"), (parts[1], "swap", "swap", "create"),
        (parts[2], "ext4", "nixos", "create")]
    assert programs(res["commands"]) == ["mkfs.vfat", "mkswap", "mkfs.ext4"]
    assert res["commands"][0].endswith(" -F 32 -n boot %s" % parts[0])
    assert res["commands"][1].endswith("mkswap -L swap %s" % parts[1])
    assert res["commands"][2].endswith("mkfs.ext4 -F -L nixos %s" % parts[2])
    found = [probe(p) for p in parts]
    assert (found[0]["TYPE"], found[0]["LABEL"], found[0]["VERSION"]) == ("vfat", "boot", "FAT32")
    assert (found[1]["TYPE"], found[1]["LABEL"]) == ("swap", "swap")
    assert (found[2]["TYPE"], found[2]["LABEL"]) == ("ext4", "nixos")
    before = disk.digest()
    rc, again = run_module(MODULE, install(parts))
    assert rc == 0, again
    assert again["changed"] is False and again["commands"] == []
    assert [e["action"] for e in again["filesystems"]] == ["keep"] * 3
    assert disk.digest() == before


def test_a_different_label_is_reported_and_left_alone(loopdisk):
    device = loopdisk(64 * MIB).device
    sh("mkfs.ext4", "-q", "-L", "nixos", device)
    before = sha256_of(device)
    rc, res = run_module(MODULE, dict(filesystems=[dict(device=device, fstype="ext4", label="other")]))
    assert rc == 0, res
    assert res["changed"] is False and res["commands"] == []
    assert res["filesystems"] == [dict(device=device, fstype="ext4", label="nixos", action="keep")]
    assert any("labelled 'nixos', not 'other'" in w for w in res.get("warnings", [])), res
    assert sha256_of(device) == before


def test_another_signature_is_refused_and_no_device_is_written(loopdisk):
    disk, parts = partitioned(loopdisk)
    sh("mkfs.ext4", "-q", "-L", "data", parts[0])  # the ESP holds ext4: the whole call is refused
    before = disk.digest()
    rc, res = run_module(MODULE, install(parts))
    assert rc != 0
    assert res["refused"] == "content"
    assert res["msg"].startswith("%s holds an ext4 file system (LABEL=data" % parts[0]), res["msg"]
    assert "never writes over an existing file system" in res["msg"]
    assert res["commands"] == []
    assert disk.digest() == before
    assert all("TYPE" not in probe(p) for p in parts[1:])


def test_luks_is_refused(loopdisk):
    device = loopdisk(64 * MIB).device
    sh("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
       "--pbkdf-force-iterations", "1000", "--key-file=-", device, data="pass")
    before = sha256_of(device)
    rc, res = run_module(MODULE, dict(filesystems=[dict(device=device, fstype="ext4", label="nixos")]))
    assert rc != 0 and "crypto_LUKS encrypted volume" in res["msg"] and res["commands"] == []
    assert sha256_of(device) == before


def test_a_mounted_device_is_refused(loopdisk, tmp_path):
    device = loopdisk(64 * MIB).device
    sh("mkfs.ext4", "-q", "-L", "data", device)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    before = sha256_of(device)
    sh("mount", "-o", "ro,noload", device, str(mnt))  # read-only: the mount itself writes nothing
    try:
        rc, res = run_module(MODULE, dict(filesystems=[dict(device=device, fstype="vfat", label="boot")]))
        assert rc != 0
        assert res["refused"] == "in_use" and "%s is mounted on %s" % (device, mnt) in res["msg"], res["msg"]
        assert res["commands"] == []
        # what it already is stays fine while mounted (a rerun after the install mounted it)
        rc, res = run_module(MODULE, dict(filesystems=[dict(device=device, fstype="ext4", label="data")]))
        assert rc == 0 and res["changed"] is False and res["filesystems"][0]["action"] == "keep", res
    finally:
        sh("umount", str(mnt), check=False)
    assert sha256_of(device) == before


def test_a_blank_device_in_use_is_refused(loopdisk):
    device = loopdisk(64 * MIB).device
    over = sh("losetup", "-f", "--show", device).stdout.strip()
    try:
        before = sha256_of(device)
        rc, res = run_module(MODULE, dict(filesystems=[dict(device=device, fstype="swap", label="swap")]))
        assert rc != 0
        assert res["refused"] == "in_use" and "a loop device backed by %s" % device in res["msg"], res["msg"]
        assert "(it is blank)" in res["msg"] and res["commands"] == []
        assert sha256_of(device) == before
    finally:
        sh("losetup", "-d", over, check=False)


def test_check_mode_writes_nothing_and_lists_the_commands(loopdisk):
    disk, parts = partitioned(loopdisk)
    before = disk.digest()
    rc, res = run_module(MODULE, install(parts), check=True)
    assert rc == 0, res
    assert res["changed"] is True
    assert programs(res["commands"]) == ["mkfs.vfat", "mkswap", "mkfs.ext4"]
    assert res["commands"][2].endswith("-F -L nixos %s" % parts[2])
    assert [e["action"] for e in res["filesystems"]] == ["create"] * 3
    assert disk.digest() == before
    assert all("TYPE" not in probe(p) for p in parts)


def test_a_missing_device_fails_a_real_run_and_is_planned_in_check_mode(loopdisk):
    device = loopdisk(64 * MIB).device
    missing = device + "p7"  # a partition the disk does not have
    args = dict(filesystems=[dict(device=device, fstype="vfat", label="boot"),
                             dict(device=missing, fstype="ext4", label="nixos")])
    before = sha256_of(device)
    rc, res = run_module(MODULE, args)
    assert rc != 0 and res["msg"].startswith("%s does not exist" % missing), res
    assert res["commands"] == [] and sha256_of(device) == before
    rc, res = run_module(MODULE, args, check=True)
    assert rc == 0, res
    assert [e["action"] for e in res["filesystems"]] == ["create", "create"]
    assert res["commands"][1].endswith("mkfs.ext4 -F -L nixos %s" % missing)
    assert any(w.startswith("%s does not exist yet" % missing) for w in res.get("warnings", [])), res
    assert sha256_of(device) == before and not os.path.exists(missing)


def test_bad_labels_are_refused_before_anything_is_written(loopdisk):
    disk, parts = partitioned(loopdisk)
    before = disk.digest()
    for labels, words in ((dict(boot="BOOTLOADER12"), ["'BOOTLOADER12'", "at most 11"]),
                          (dict(boot="EFI.SYS"), ["'EFI.SYS'", "refuses the characters ."]),
                          (dict(nix="a-label-that-is-long"), ["'a-label-that-is-long'", "at most 16 bytes"]),
                          (dict(swap="s" * 17), ["at most 16 bytes"])):
        for check in (False, True):
            rc, res = run_module(MODULE, install(parts, **labels), check=check)
            assert rc != 0, res
            for word in words:
                assert word in res["msg"], (word, res["msg"])
            assert res["commands"] == []
    assert disk.digest() == before
    assert all("TYPE" not in probe(p) for p in parts)
