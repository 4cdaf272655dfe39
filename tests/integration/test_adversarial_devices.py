# SPDX-License-Identifier: GPL-3.0-or-later
"""Adversarial devices, inputs and bytes, through the installed modules as a user runs them.

* A device in use is never written, even with force: loop devices stacked on a disk, on a partition or on a file
  of a partition's (lazily unmounted) file system, several layers deep, mounted read-only, mounted through another
  node, or active swap.
* gpt_partition checks names and types against what sfdisk can store before the first write.
* Arguments reach the programs exactly as given ($HOME, ${VAR}, ~ are not expanded) and ``commands`` is what ran.
* hwconfig_patch returns valid results whatever bytes the file holds, and a second run changes nothing.

Every refusal asserts the message and that the disk's bytes and the mounts of the devices involved are unchanged.
Loop devices, mounts and swap made here are undone in finalizers. This host has no device-mapper, so holders
(dm-crypt, LVM, MD) are covered by tests/unit/test_inuse.py on fake sysfs trees.
"""
import json
import os
import subprocess
import time

import pytest

from conftest import mount_point, mountinfo, run_module, sha256_of
from test_nixos_flake_install import install, scratch  # noqa: F401 (fixture)
from test_tmpfs_root import Layout, layout  # noqa: F401 (fixture)

GPT = "impermanent.nixos.gpt_partition"
LUKS = "impermanent.nixos.luks_open"
HWCONFIG = "impermanent.nixos.hwconfig_patch"
TMPFS = "impermanent.nixos.tmpfs_root"
MIB = 1 << 20
SIZE = 64 * MIB
LAYOUT = [{"name": "esp", "size": "8MiB", "type": "esp"},
          {"name": "swap", "size": "8MiB", "type": "swap"},
          {"name": "nix", "size": "100%", "type": "linux"}]
OTHER = [{"name": "data", "size": "100%"}]
UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "unit", "fixtures", "hwconfig")


def sh(*argv, check=True):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check)


class Stack(object):
    """Loop devices, mounts and swap made by one test, undone in reverse order by the finalizer."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.undo = []

    def loop(self, backing, read_only=False):
        argv = ["losetup", "-f", "--show"] + (["-r"] if read_only else []) + [backing]
        dev = sh(*argv).stdout.strip()
        self.undo.append(["losetup", "-d", dev])
        return dev

    def mount(self, source, *options):
        mnt = self.tmp_path / ("mnt%d" % len(self.undo))
        mnt.mkdir()
        sh("mount", *(list(options) + [source, mnt]))
        self.undo.append(["umount", "-l", mnt])
        return str(mnt)

    def swapon(self, dev):
        sh("mkswap", "-q", dev)
        sh("swapon", dev)
        self.undo.append(["swapoff", dev])

    def cleanup(self):
        for argv in reversed(self.undo):
            sh(*argv, check=False)
        self.undo = []


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    yield s
    s.cleanup()


def gpt(disk, layout=None, check=False, **extra):
    args = dict(device=disk.device, partitions=layout or LAYOUT)
    args.update(extra)
    return run_module(GPT, args, check=check)


def refused_in_use(disk, devices, check=False, layout=None):
    """Run gpt_partition with force on a disk that is in use; assert it is refused and nothing changed."""
    before, mounted = disk.digest(), mountinfo(devices=devices)
    rc, res = gpt(disk, layout or OTHER, check=check, force=True)
    assert rc != 0 and res.get("failed"), res
    assert res.get("refused") == "in_use", res
    assert "force=true does not override this. Nothing was written." in res["msg"]
    assert disk.digest() == before
    assert mountinfo(devices=devices) == mounted
    return res["msg"]


def partitioned(loopdisk):
    disk = loopdisk(SIZE)
    rc, res = gpt(disk)
    assert rc == 0 and res["changed"], res
    return disk, [p["path"] for p in res["partitions"]]


# -- gpt_partition: a disk in use -------------------------------------------------------------------------------
def test_loop_on_the_whole_disk_mounted_read_only(loopdisk, stack):
    """The issue's case: whole-disk ext4 on A, loop B backed by A and mounted read-only; lsblk shows nothing on A."""
    disk = loopdisk(SIZE)
    sh("mkfs.ext4", "-q", disk.device)
    b = stack.loop(disk.device, read_only=True)
    mnt = stack.mount(b, "-o", "ro")
    msg = refused_in_use(disk, [b])
    assert "%s (a loop device backed by %s) is mounted on %s" % (b, disk.device, mnt) in msg, msg
    assert "%s (a loop device backed by %s) is built on it" % (b, disk.device) in msg


def test_check_mode_refuses_the_disk_in_use_too(loopdisk, stack):
    disk = loopdisk(SIZE)
    sh("mkfs.ext4", "-q", disk.device)
    b = stack.loop(disk.device, read_only=True)
    mnt = stack.mount(b, "-o", "ro")
    msg = refused_in_use(disk, [b], check=True)
    assert "is mounted on %s" % mnt in msg


def test_an_unmounted_loop_on_the_whole_disk(loopdisk, stack):
    disk = loopdisk(SIZE)
    b = stack.loop(disk.device)
    msg = refused_in_use(disk, [b], layout=LAYOUT)  # a blank disk: only the loop device stands in the way
    assert msg.startswith("%s is in use: %s (a loop device backed by %s) is built on it." % (disk.device, b,
                                                                                          disk.device)), msg


def test_a_loop_on_a_partition(loopdisk, stack):
    disk, parts = partitioned(loopdisk)
    b = stack.loop(parts[2])
    msg = refused_in_use(disk, [b])
    assert "%s (a loop device backed by %s) is built on it" % (b, parts[2]) in msg


def test_three_layers_of_loops_on_a_partition_mounted_at_the_top(loopdisk, stack):
    disk, parts = partitioned(loopdisk)
    b = stack.loop(parts[2])
    c = stack.loop(b)
    sh("mkfs.ext4", "-q", c)
    mnt = stack.mount(c)
    msg = refused_in_use(disk, [b, c])
    assert "%s (a loop device backed by %s) is built on it" % (b, parts[2]) in msg
    assert "%s (a loop device backed by %s) is mounted on %s" % (c, b, mnt) in msg


def test_swap_on_a_loop_on_a_partition(loopdisk, stack):
    disk, parts = partitioned(loopdisk)
    b = stack.loop(parts[1])
    stack.swapon(b)
    msg = refused_in_use(disk, [b])
    assert "%s (a loop device backed by %s) is active swap" % (b, parts[1]) in msg


def test_a_partition_mounted_through_another_device_node(loopdisk, stack, tmp_path):
    """mount names the partition by a node of its own (same major:minor, another path)."""
    disk, parts = partitioned(loopdisk)
    sh("mkfs.ext4", "-q", parts[2])
    rdev = os.stat(parts[2]).st_rdev
    node = tmp_path / "nixnode"
    os.mknod(str(node), 0o600 | 0o060000, rdev)
    mnt = stack.mount(str(node))
    msg = refused_in_use(disk, [parts[2]])
    assert "%s is mounted on %s" % (parts[2], mnt) in msg


def test_a_loop_on_a_file_of_a_lazily_unmounted_partition(loopdisk, stack, tmp_path):
    """umount -l drops the mount from every table, but a loop device on a file inside keeps the file system busy."""
    disk, parts = partitioned(loopdisk)
    sh("mkfs.ext4", "-q", parts[2])
    mnt = tmp_path / "lazy"
    mnt.mkdir()
    sh("mount", parts[2], mnt)
    image = mnt / "inner.img"
    with open(str(image), "wb") as f:
        f.truncate(4 * MIB)
    inner = sh("losetup", "-f", "--show", image).stdout.strip()
    stack.undo.append(["losetup", "-d", inner])
    sh("umount", "-l", mnt)
    assert mountinfo(devices=[parts[2]]) == []
    msg = refused_in_use(disk, [parts[2], inner])
    # the kernel now names the file from the detached file system's root: /inner.img
    assert "%s (a loop device backed by /inner.img, a file on %s) is built on it" % (inner, parts[2]) in msg, msg


def test_the_same_layout_on_a_disk_in_use_is_no_change(loopdisk, stack):
    """Nothing to write: a disk in use that already holds the layout is fine (the run is a no-op)."""
    disk, parts = partitioned(loopdisk)
    b = stack.loop(disk.device, read_only=True)
    before = disk.digest()
    rc, res = gpt(disk, force=True)
    assert rc == 0 and res["changed"] is False and res["commands"] == [], res
    assert disk.digest() == before and os.path.exists(b)


def test_a_loop_on_another_disk_does_not_block(loopdisk, stack):
    disk, other = loopdisk(SIZE), loopdisk(SIZE)
    stack.loop(other.device)
    rc, res = gpt(disk)
    assert rc == 0 and res["changed"], res


# -- gpt_partition: inputs sfdisk cannot store are refused before the first write ---------------------------------
@pytest.mark.parametrize("name, words", [
    ("nix\U0001F600", ["U+1F600", "sfdisk cannot store"]),
    ("\U0001F600" * 18, ["U+1F600"]),  # 36 UTF-16 code units: fits the entry, yet sfdisk writes an empty name
    ("\u540d" * 37, ["longer than the 36 characters", "it has 37"]),
    ("a\u0085b", ["control characters"]),
])
def test_names_sfdisk_cannot_store(loopdisk, name, words):
    disk = loopdisk(SIZE)
    before = disk.digest()
    rc, res = gpt(disk, [{"name": name, "size": "100%"}])
    assert rc != 0 and res.get("failed"), res
    for word in words:
        assert word in res["msg"], res["msg"]
    assert res["commands"] == [] and disk.digest() == before


def test_an_emoji_name_with_force_leaves_the_old_table(loopdisk):
    """Before: the table was replaced with one with an empty name, the run failed, and every forced rerun wrote."""
    disk, _parts = partitioned(loopdisk)
    before = disk.digest()
    for _ in range(2):
        rc, res = gpt(disk, [{"name": "data\U0001F600", "size": "100%"}], force=True)
        assert rc != 0 and "U+1F600" in res["msg"] and res["commands"] == [], res
        assert disk.digest() == before


def test_the_unused_entry_type_guid_is_refused_at_once(loopdisk):
    disk = loopdisk(SIZE)
    before = disk.digest()
    start = time.time()
    rc, res = gpt(disk, [{"name": "x", "size": "100%", "type": "00000000-0000-0000-0000-000000000000"}])
    assert rc != 0 and "unused GPT entry" in res["msg"] and "reboot" not in res["msg"], res
    assert time.time() - start < 15  # not the 20 s wait for partitions that never appear
    assert res["commands"] == [] and disk.digest() == before


@pytest.mark.parametrize("value", ["0FC63DAF-8483-4772-8E79-3D69D8477DE", "{0FC63DAF-8483-4772-8E79-3D69D8477DE4}"])
def test_a_malformed_type_guid(loopdisk, value):
    disk = loopdisk(SIZE)
    before = disk.digest()
    rc, res = gpt(disk, [{"name": "x", "size": "100%", "type": value}])
    assert rc != 0 and "is not a known partition type" in res["msg"], res
    assert disk.digest() == before


def test_a_size_beyond_the_disk_with_force_leaves_the_old_table(loopdisk):
    disk, _parts = partitioned(loopdisk)
    before = disk.digest()
    rc, res = gpt(disk, [{"name": "big", "size": "1GiB"}, {"name": "rest", "size": "100%"}], force=True)
    assert rc != 0 and "does not fit" in res["msg"] and res["commands"] == [], res
    assert disk.digest() == before


def test_a_name_of_36_bmp_characters_is_written_and_read_back_exactly(loopdisk):
    disk = loopdisk(SIZE)
    name = "\u540d\u00e9" * 18
    rc, res = gpt(disk, [{"name": name, "size": "100%"}])
    assert rc == 0 and res["changed"] and res["partitions"][0]["name"] == name, res
    table = json.loads(sh("sfdisk", "--json", disk.device).stdout)["partitiontable"]
    assert table["partitions"][0]["name"] == name
    rc, res = gpt(disk, [{"name": name, "size": "100%"}])
    assert rc == 0 and res["changed"] is False, res


# -- luks_open: never luksFormat a device in use -------------------------------------------------------------------
LUKS_ARGS = dict(passphrase="correct horse", format=True, pbkdf="pbkdf2", pbkdf_force_iterations=1000)


def refused_format(device, devices, check=False, digest_of=None):
    digest_of = digest_of or device
    before, mounted = sha256_of(digest_of), mountinfo(devices=devices)
    rc, res = run_module(LUKS, dict(LUKS_ARGS, device=device), check=check)
    assert rc != 0 and res.get("failed"), res
    assert "%s is in use: " % device in res["msg"] and "Nothing was written." in res["msg"], res["msg"]
    assert res["commands"] == [] and res["formatted"] is False
    assert sha256_of(digest_of) == before and mountinfo(devices=devices) == mounted
    return res["msg"]


def test_luks_refuses_a_blank_device_with_a_loop_on_it(loopdisk, stack):
    disk = loopdisk(SIZE)
    b = stack.loop(disk.device)
    msg = refused_format(disk.device, [b])
    assert "%s (a loop device backed by %s) is built on it" % (b, disk.device) in msg
    refused_format(disk.device, [b], check=True)


def test_luks_refuses_a_blank_partition_whose_disk_a_loop_maps(loopdisk, stack):
    disk, parts = partitioned(loopdisk)
    b = stack.loop(disk.device, read_only=True)
    msg = refused_format(parts[2], [b])
    assert "%s is built on its whole disk %s" % (b, disk.device) in msg, msg


def test_luks_refuses_a_blank_image_file_attached_to_a_loop(tmp_path, stack):
    image = tmp_path / "blank.img"
    with open(str(image), "wb") as f:
        f.truncate(SIZE)
    b = stack.loop(str(image))
    c = stack.loop(b)
    msg = refused_format(str(image), [b, c])
    assert "%s is a loop device attached to it" % b in msg
    assert "%s (a loop device backed by %s) is built on it" % (c, b) in msg


# -- nixos_flake_install and tmpfs_root: arguments as given -------------------------------------------------------
@pytest.mark.parametrize("extra", [
    ["--option", "substituters", "https://cache.example.org/$HOME"],
    ["--option", "extra-substituters", "~/cache ${HOME}/x"],
])
def test_nixos_install_gets_extra_args_exactly_as_given(scratch, extra):  # noqa: F811
    s = scratch()
    rc, res = install(s, extra_args=extra)
    assert rc == 0, res
    assert s.installed()["argv"][-3:] == extra
    assert res["cmd"][-3:] == extra
    assert res["commands"][-1].endswith(" ".join("'%s'" % a if set(a) & set("$~ {}") else a for a in extra))


def test_tmpfs_root_persists_a_path_with_a_dollar_literally(layout):  # noqa: F811
    """Before: the directory was made as named, then the bind mount went to the expanded path and failed."""
    root = layout.root
    path = "/var/lib/$HOME"
    rc, res = run_module(TMPFS, layout.args(persist=[path]))
    assert rc == 0, res
    assert os.path.isdir(root + path) and os.path.isdir(root + "/nix/persist" + path)
    assert root + path in [mount_point(m) for m in mountinfo(below=root)]
    assert any(c.endswith("'%s/nix/persist/var/lib/$HOME' '%s/var/lib/$HOME'" % (root, root))
               for c in res["commands"]), res["commands"]
    rc, again = run_module(TMPFS, layout.args(persist=[path]))
    assert rc == 0 and again["changed"] is False, again


# -- hwconfig_patch: bytes that are not UTF-8 ----------------------------------------------------------------------
def latin1_hwconfig():
    with open(os.path.join(UTILS, "ngc_current.nix"), "rb") as f:
        text = f.read()
    return text.replace(b"{ config, lib", b"# Ma\xefs, caf\xe9 (Latin-1)\n{ config, lib", 1)


def test_a_latin1_comment_is_kept_and_the_rerun_changes_nothing(tmp_path):
    hw = tmp_path / "hardware-configuration.nix"
    original = latin1_hwconfig()
    hw.write_bytes(original)
    args = {"path": str(hw), "root_options": ["defaults", "size=25%", "mode=755"]}

    rc, res = run_module(HWCONFIG, args, check=True)
    assert rc == 0 and res["changed"], res
    assert "# Ma\ufffds, caf\ufffd (Latin-1)" in res["diff"]["before"]
    assert hw.read_bytes() == original

    rc, res = run_module(HWCONFIG, args)
    assert rc == 0 and res["changed"], res
    patched = hw.read_bytes()
    assert b"\n# Ma\xefs, caf\xe9 (Latin-1)\n" in patched and b'"size=25%"' in patched
    with open(res["backup_file"], "rb") as f:
        assert f.read() == original

    rc, res = run_module(HWCONFIG, args)
    assert rc == 0 and res["changed"] is False, res
    assert hw.read_bytes() == patched


def test_latin1_bytes_in_a_failure_message_make_a_valid_result(tmp_path):
    """nix-instantiate quotes the offending line, Latin-1 bytes and all, in the error the module returns."""
    hw = tmp_path / "hardware-configuration.nix"
    line = b"  networking.useDHCP = lib.mkDefault true;\n"
    broken = latin1_hwconfig().replace(line, line + b"  networking.useDHCP = false; # caf\xe9\n", 1)
    assert b"caf\xe9\n" in broken
    hw.write_bytes(broken)
    rc, res = run_module(HWCONFIG, {"path": str(hw), "backup": False})
    assert rc != 0 and res.get("failed"), res
    assert "does not parse with nix-instantiate" in res["msg"] and "# caf\ufffd" in res["msg"], res["msg"]
    assert hw.read_bytes() == broken
