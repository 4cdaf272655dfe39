# SPDX-License-Identifier: GPL-3.0-or-later
"""The wrong-disk interlock of the disk role and gpt_partition, on loop disks of this host.

A disk holding anything is refused unless disk_wipe says it is disposable, and the error names the disk, what is on
it and disk_wipe; identity pins (disk_expect) are checked first; a mounted disk and the disk this very system runs
from are refused even with disk_wipe / force. Every refusal leaves the disk's bytes as they were.
"""
import os
import re
import subprocess

import pytest

from conftest import mountinfo, run_module, run_playbook, sha256_of

MIB = 1 << 20
SIZE = 256 * MIB
SMALL = dict(disk_esp_size="32MiB", disk_swap_size="32MiB")


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def role(device, **kw):
    extra = dict(SMALL, disk_device=device)
    extra.update(kw)
    return run_playbook("disk_role.yml", extra)


def refusal(res):
    """The disk role's refusal message (its rescue task re-raises gpt_partition's message with the hint)."""
    assert res.rc != 0, res.stdout[-3000:]
    return res.task("impermanent.nixos.disk : Say which variable, if any, overrides the refusal")["msg"]


def signatures(device):
    """TYPE of every partition of device (blkid -p), by partition number."""
    sh("partx", "-u", device, check=False)
    out = {}
    for n in (1, 2, 3):
        r = sh("blkid", "-p", "-o", "value", "-s", "TYPE", "%sp%d" % (device, n), check=False)
        out[n] = r.stdout.strip()
    return out


@pytest.fixture
def ext4_disk(loopdisk):
    disk = loopdisk(SIZE)
    sh("mkfs.ext4", "-q", "-L", "precious", disk.device)
    return disk


def test_non_blank_disk_is_refused_naming_disk_content_and_disk_wipe(ext4_disk):
    before = sha256_of(ext4_disk.image)
    text = refusal(role(ext4_disk.device))
    assert "%s already holds something other than the requested layout" % ext4_disk.device in text, text[-3000:]
    assert "whole-disk ext4 signature" in text
    assert "set disk_wipe: true (the role's force=true) for localhost" in text
    assert sha256_of(ext4_disk.image) == before


def test_disk_wipe_replaces_it_and_a_rerun_changes_nothing(ext4_disk):
    res = role(ext4_disk.device, disk_wipe=True)
    assert res.rc == 0, res.stdout[-3000:]
    assert signatures(ext4_disk.device) == {1: "vfat", 2: "swap", 3: "ext4"}
    assert sh("blkid", "-p", "-o", "value", "-s", "LABEL", ext4_disk.device + "p3").stdout.strip() == "nixos"
    before = sha256_of(ext4_disk.image)
    again = role(ext4_disk.device, disk_wipe=True)
    assert again.rc == 0 and again.changed == 0, again.stdout[-3000:]
    assert sha256_of(ext4_disk.image) == before


def test_check_mode_over_a_table_disk_wipe_replaces_plans_every_file_system_as_new(loopdisk):
    """An installed disk, and a layout that moves the partitions (a larger swap) with disk_wipe: check mode plans
    the new table and all three file systems as new. The devices at the new paths are the old partitions, still
    holding their file systems: were they probed, the ESP and swap would look kept and the plan would leave
    their mkfs out. Check mode writes nothing."""
    disk = loopdisk(SIZE)
    assert role(disk.device).rc == 0
    before = sha256_of(disk.image)
    res = run_playbook("disk_role.yml", dict(SMALL, disk_device=disk.device, disk_wipe=True,
                                             disk_swap_size="48MiB"), check=True)
    assert res.rc == 0, res.stdout[-3000:]
    assert res.task("impermanent.nixos.disk : Create the file systems (FAT32 ESP, swap, ext4 for /nix), never "
                    "over an existing one").get("skipped"), res.stdout[-3000:]
    plan = "\n".join(res.task("impermanent.nixos.disk : Show the check-mode plan for the disk (what the steps "
                              "above would do)")["msg"])
    for command in ("mkfs.vfat -F 32 -n boot %sp1" % disk.device, "mkswap -L swap %sp2" % disk.device,
                    "mkfs.ext4 -F -L nixos %sp3" % disk.device):
        # the program as the module finds it on the target (with its directory)
        assert re.search(r"would run: (\S*/)?%s$" % re.escape(command), plan, re.M), plan
    assert sha256_of(disk.image) == before


def test_identity_pins_refuse_another_disk_and_accept_this_one(loopdisk, tmp_path):
    disk, other = loopdisk(SIZE), loopdisk(SIZE)
    link = tmp_path / "by-id-link"
    os.symlink(other.device, str(link))
    before = sha256_of(disk.image)
    text = refusal(role(disk.device, disk_expect=dict(size=str(SIZE + MIB), by_id=str(link))))
    assert "is not the disk pinned by expect: size is %d bytes, not %d" % (SIZE, SIZE + MIB) in text
    assert "%s points to %s, not to this disk" % (link, other.device) in text
    assert "Fix disk_device or disk_expect for localhost" in text
    assert sha256_of(disk.image) == before
    os.unlink(str(link))
    os.symlink(disk.device, str(link))
    ok = role(disk.device, disk_expect=dict(size="256MiB", by_id=str(link)))
    assert ok.rc == 0, ok.stdout[-3000:]
    assert signatures(disk.device)[3] == "ext4"


def test_mounted_disk_is_refused_even_with_disk_wipe(loopdisk, tmp_path):
    disk = loopdisk(SIZE)
    assert role(disk.device).rc == 0
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh("mount", disk.device + "p3", str(mnt))
    try:
        before = sha256_of(disk.image, 0, MIB)
        text = refusal(role(disk.device, disk_wipe=True, disk_swap_size="64MiB"))
        assert "%sp3 is mounted on %s" % (disk.device, mnt) in text
        assert "No variable overrides this (disk_wipe neither)" in text
        assert sha256_of(disk.image, 0, MIB) == before
    finally:
        sh("umount", str(mnt), check=False)


def _root_disk():
    """The whole disk behind / on this host, or None when / is not on a block device (a container's overlay)."""
    for line in mountinfo():
        fields = line.split(" ")
        if fields[4] != "/":
            continue
        link = "/sys/dev/block/%s" % fields[2]
        if not os.path.exists(link):
            return None
        name = os.path.basename(os.path.realpath(link))
        if os.path.exists("/sys/class/block/%s/partition" % name):
            name = os.path.basename(os.path.dirname(os.path.realpath("/sys/class/block/" + name)))
        return "/dev/" + name
    return None


def test_the_disk_this_system_runs_from_is_refused_even_with_force():
    """In check mode, so that a broken refusal could still not write (gpt_partition's check mode only runs
    sfdisk --no-act); the mounted-disk check would refuse too, but the message must be the system-disk one."""
    root = _root_disk()
    if root is None:
        pytest.skip("/ is not on a block device here")
    rc, res = run_module("impermanent.nixos.gpt_partition",
                         dict(device=root, force=True, partitions=[{"name": "nix", "size": "100%"}]), check=True)
    assert rc != 0 and res["refused"] == "system_disk", res
    assert "%s is the disk the running system lives on: / is mounted from it" % root in res["msg"]
    assert "not even with force=true" in res["msg"] and res["commands"] == []
