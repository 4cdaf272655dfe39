# SPDX-License-Identifier: GPL-3.0-or-later
"""hwconfig_patch through `ansible localhost -m impermanent.nixos.hwconfig_patch`, on files in a scratch dir.

The PARTUUID lookup runs the real blkid of this host. This host's kernel does not create partition nodes for
loop devices, so the positive by-uuid -> by-partuuid lookup is exercised in the Molecule guest; here the lookup
is shown refusing a UUID that does not exist and a swap area that is not a partition (a whole loop device).
"""
import json
import os
import shutil
import subprocess
import uuid

import pytest

from conftest import run_module

MODULE = "impermanent.nixos.hwconfig_patch"
UNIT_FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "unit", "fixtures", "hwconfig")
SWAP_UUID = "0b7a0c3e-62a4-4c8e-9a51-7f3e2d1c9b84"
SWAP_PARTUUID = "9e4c1b2a-3d5f-4e6a-8b7c-1d2e3f4a5b6c"
with open(os.path.join(UNIT_FIXTURES, "ngc_current.nix"), encoding="utf-8") as _f:
    UUID_SWAP = _f.read()  # what nixos-generate-config writes; swap by-uuid
PARTUUID_SWAP = UUID_SWAP.replace("by-uuid/" + SWAP_UUID, "by-partuuid/" + SWAP_PARTUUID)


def evaluate(path):
    nix = shutil.which("nix-instantiate")
    if nix is None:
        pytest.fail("nix-instantiate is a test dependency (Debian package nix-bin) and is not on PATH")
    expr = ('let f = import %s { config = {}; lib = { mkDefault = x: x; }; pkgs = {}; modulesPath = "/m"; }; '
            "in { inherit (f) fileSystems swapDevices; }" % path)
    out = subprocess.run([nix, "--eval", "--strict", "--json", "-E", expr], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def snapshot(directory):
    return {name: (directory / name).read_bytes() for name in os.listdir(directory)}


def test_check_mode_then_patch_then_nothing_to_do(tmp_path):
    hw = tmp_path / "hardware-configuration.nix"
    hw.write_text(PARTUUID_SWAP, encoding="utf-8")
    os.chmod(hw, 0o640)
    args = {"path": str(hw), "root_options": ["defaults", "size=25%", "mode=755"], "swap_random_encryption": True}

    rc, res = run_module(MODULE, args, check=True)
    assert rc == 0 and res["changed"], res
    assert res["diff"]["before"] == PARTUUID_SWAP and res["diff"]["before_header"].startswith(str(hw))
    assert '      fsType = "tmpfs";\n      options = [ "defaults" "size=25%" "mode=755" ];\n' in res["diff"]["after"]
    assert "backup_file" not in res
    assert snapshot(tmp_path) == {"hardware-configuration.nix": PARTUUID_SWAP.encode()}

    rc, res = run_module(MODULE, args)
    assert rc == 0 and res["changed"], res
    backup = res["backup_file"]
    assert os.path.dirname(backup) == str(tmp_path)
    with open(backup, encoding="utf-8") as f:
        assert f.read() == PARTUUID_SWAP
    assert res["validated"] is True  # nix-instantiate --parse ran on the candidate
    assert oct(os.stat(hw).st_mode & 0o7777) == oct(0o640)
    assert hw.read_text(encoding="utf-8") == res["diff"]["after"]
    value = evaluate(hw)
    assert value["fileSystems"]["/"]["options"] == ["defaults", "size=25%", "mode=755"]
    assert value["fileSystems"]["/boot"]["options"] == ["fmask=0077", "dmask=0077", "umask=0077"]
    assert value["swapDevices"] == [{"device": "/dev/disk/by-partuuid/" + SWAP_PARTUUID,
                                     "randomEncryption": {"enable": True}}]
    assert res["patched"]["swap"][0]["random_encryption"] == "added"

    files = snapshot(tmp_path)
    rc, res = run_module(MODULE, args)
    assert rc == 0 and not res["changed"], res
    assert "backup_file" not in res
    assert snapshot(tmp_path) == files  # no second backup, file byte-identical


def test_unknown_swap_uuid_fails_and_leaves_the_file(tmp_path):
    missing = str(uuid.uuid4())
    hw = tmp_path / "hardware-configuration.nix"
    hw.write_text(UUID_SWAP.replace(SWAP_UUID, missing), encoding="utf-8")
    before = snapshot(tmp_path)
    rc, res = run_module(MODULE, {"path": str(hw), "swap_random_encryption": True})
    assert rc != 0 and res.get("failed"), res
    assert missing in res["msg"] and "no block device with UUID" in res["msg"], res["msg"]
    assert snapshot(tmp_path) == before


def test_swap_that_is_not_a_partition_is_refused(tmp_path, loopdisk):
    disk = loopdisk(32 * 1024 * 1024)
    swap_uuid = str(uuid.uuid4())
    subprocess.run(["mkswap", "-U", swap_uuid, disk.device], capture_output=True, check=True)
    hw = tmp_path / "hardware-configuration.nix"
    hw.write_text(UUID_SWAP.replace(SWAP_UUID, swap_uuid), encoding="utf-8")
    before = snapshot(tmp_path)
    rc, res = run_module(MODULE, {"path": str(hw), "swap_random_encryption": True})
    assert rc != 0 and res.get("failed"), res
    assert "/dev/disk/by-uuid/%s (%s) is not a partition" % (swap_uuid, disk.device) in res["msg"], res["msg"]
    assert snapshot(tmp_path) == before


def test_root_that_is_not_tmpfs_fails_and_leaves_the_file(tmp_path):
    hw = tmp_path / "hardware-configuration.nix"
    shutil.copy(os.path.join(UNIT_FIXTURES, "fail_root_ext4.nix"), hw)
    before = snapshot(tmp_path)
    rc, res = run_module(MODULE, {"path": str(hw)})
    assert rc != 0 and res.get("failed"), res
    assert str(hw) in res["msg"] and "not a tmpfs" in res["msg"], res["msg"]
    assert snapshot(tmp_path) == before


def test_nix_instantiate_rejection_leaves_the_file(tmp_path):
    # a repeated attribute: our parser accepts it (it does not check duplicates), Nix does not
    text = PARTUUID_SWAP.replace("  networking.useDHCP = lib.mkDefault true;\n",
                                 "  networking.useDHCP = lib.mkDefault true;\n  networking.useDHCP = false;\n")
    assert text != PARTUUID_SWAP
    hw = tmp_path / "hardware-configuration.nix"
    hw.write_text(text, encoding="utf-8")
    before = snapshot(tmp_path)
    rc, res = run_module(MODULE, {"path": str(hw)})
    assert rc != 0 and res.get("failed"), res
    assert "does not parse with nix-instantiate (file left untouched)" in res["msg"], res["msg"]
    assert "already defined" in res["msg"], res["msg"]
    assert snapshot(tmp_path) == before

    rc, res = run_module(MODULE, {"path": str(hw), "validate": False, "backup": False})
    assert rc == 0 and res["changed"] and "validated" not in res, res
    assert len(os.listdir(tmp_path)) == 1


def test_missing_file_fails_clearly(tmp_path):
    path = str(tmp_path / "nope" / "hardware-configuration.nix")
    rc, res = run_module(MODULE, {"path": path})
    assert rc != 0 and path in res["msg"] and "nixos-generate-config" in res["msg"], res


def test_symlinked_file_is_patched_through_the_link(tmp_path):
    real = tmp_path / "flake" / "hardware-configuration.nix"
    real.parent.mkdir()
    real.write_text(PARTUUID_SWAP, encoding="utf-8")
    link = tmp_path / "hardware-configuration.nix"
    link.symlink_to(real)
    rc, res = run_module(MODULE, {"path": str(link), "backup": False})
    assert rc == 0 and res["changed"], res
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert '"mode=755" ];' in real.read_text(encoding="utf-8")


DOUBLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "images", "doubles")


def double_machine(root):
    """A machine description for the nixos-generate-config TEST DOUBLE (its IMPERMANENT_DOUBLES_MACHINE seam): a
    tmpfs on ``root``, the ESP on ROOT/boot and ext4 on ROOT/nix, no swap."""
    mountinfo = "".join(line + "\n" for line in (
        "26 1 254:17 / / rw,relatime shared:1 - ext4 /dev/vdb1 rw",
        "60 26 0:47 / %s rw,relatime shared:30 - tmpfs none rw,size=1002568k,mode=755" % root,
        "61 60 254:3 / %s/nix rw,relatime shared:31 - ext4 /dev/vda3 rw" % root,
        "70 60 254:1 / %s/boot rw,relatime shared:32 - vfat /dev/vda1 rw,fmask=0077,dmask=0077" % root))
    return {"mountinfo": mountinfo, "swaps": "Filename\tType\tSize\tUsed\tPriority\n",
            "devices": {"/dev/vda1": {"UUID": "1234-ABCD", "TYPE": "vfat"},
                        "/dev/vda3": {"UUID": "5b1f7a0e-8d44-4b8e-9e1c-2f3a4b5c6d7e", "TYPE": "ext4"}},
            "virt": "qemu", "initrd_modules": ["virtio_pci", "virtio_blk"],
            "cpuinfo": "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu svm sse2\n",
            "interfaces": ["eth0"], "efi": True, "machine": "x86_64"}


def test_generate_runs_the_generator_once_then_patches(tmp_path):
    """generate=true: check mode lists nixos-generate-config and, with no file to patch yet, plans no edit (planned
    with the step that mounts the root, install_plan patches a stand-in: test_install_plan.py); the real run generates (the TEST DOUBLE, through PATH) and patches in one call; a rerun neither regenerates
    nor changes anything."""
    root = tmp_path / "mnt"
    root.mkdir()
    machine = tmp_path / "machine.json"
    machine.write_text(json.dumps(double_machine(str(root))), encoding="utf-8")
    log = tmp_path / "doubles.log"
    env = {"PATH": DOUBLES + os.pathsep + os.environ["PATH"], "IMPERMANENT_DOUBLES_MACHINE": str(machine),
           "IMPERMANENT_DOUBLES_LOG": str(log)}
    hw = root / "etc/nixos/hardware-configuration.nix"
    args = {"path": str(hw), "root": str(root), "generate": True, "backup": False}

    rc, res = run_module(MODULE, args, check=True, extra_env=env)
    assert rc == 0 and res["changed"] and res["generated"] and res["stand_in"] is False, res
    assert res["commands"] == ["%s/nixos-generate-config --root %s" % (DOUBLES, root)], res["commands"]
    assert res["patched"] is None and any("does not exist yet" in w for w in res["warnings"]), res
    assert os.listdir(root) == [] and not log.exists()

    rc, res = run_module(MODULE, args, extra_env=env)
    assert rc == 0 and res["changed"] and res["generated"] and not res["stand_in"], res
    assert res["commands"] == ["%s/nixos-generate-config --root %s" % (DOUBLES, root)]
    assert sorted(os.listdir(hw.parent)) == ["configuration.nix", "hardware-configuration.nix"]
    value = evaluate(hw)
    assert value["fileSystems"]["/"]["options"] == ["defaults", "size=25%", "mode=755"]
    assert value["fileSystems"]["/boot"]["options"] == ["fmask=0077", "dmask=0077", "umask=0077"]
    assert [json.loads(line)["argv"] for line in log.read_text().splitlines()] == [
        ["nixos-generate-config", "--root", str(root)]]

    files = snapshot(hw.parent)
    rc, res = run_module(MODULE, args, extra_env=env)
    assert rc == 0 and not res["changed"] and not res["generated"] and res["commands"] == [], res
    assert snapshot(hw.parent) == files
    assert len(log.read_text().splitlines()) == 1  # not generated again


@pytest.mark.parametrize("args, needle", [
    ({"generate": True}, "generate=true needs root"),
    ({"generate": True, "root": "ROOT", "path": "ROOT/hw.nix"},
     "writes ROOT/etc/nixos/hardware-configuration.nix, not path=ROOT/hw.nix"),
])
def test_generate_refuses_a_path_the_generator_does_not_write(tmp_path, args, needle):
    """generate=true without root, or with a path the generator does not write: refused before anything runs."""
    root = tmp_path / "mnt"
    root.mkdir()
    log = tmp_path / "doubles.log"
    args = dict((k, v.replace("ROOT", str(root)) if isinstance(v, str) else v) for k, v in args.items())
    args.setdefault("path", str(root / "etc/nixos/hardware-configuration.nix"))
    env = {"PATH": DOUBLES + os.pathsep + os.environ["PATH"], "IMPERMANENT_DOUBLES_LOG": str(log)}
    rc, res = run_module(MODULE, args, extra_env=env)
    assert rc != 0 and needle.replace("ROOT", str(root)) in res["msg"], res
    assert os.listdir(root) == [] and not log.exists()
