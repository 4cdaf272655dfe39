# SPDX-License-Identifier: GPL-3.0-or-later
"""`ansible-playbook impermanent.nixos.provision --check --diff` on a loop disk: the whole plan, nothing written.

The playbook runs by FQCN against localhost, with the default stdout callback: the assertions read the plan a user
sees (one install_plan call, printed by the task after it). It must show the partition table with the byte offsets
gpt_partition computes (checked against gpt_partition run on its own in check mode), the luksFormat/open commands, the mkfs commands, the mounts under the
root, the hardware-configuration.nix edits (on the stand-in: the file does not exist before the disk is set up) and
the nixos-install command; the recap must have failed=0 and every byte of the disk must be unchanged.

Not here: check mode on a provisioned disk (changed=0) needs dm-crypt and vfat mounts, which this host lacks; the
Molecule default scenario checks it (molecule/default/tests/test_check_mode.py). nixos-install is looked up on
PATH (the TEST DOUBLE in tests/images/doubles is put first), never run.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import _env, mountinfo, run_module, sha256_of

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLES = os.path.join(os.path.dirname(HERE), "images", "doubles")
MIB = 1 << 20
PASSPHRASE = "check-mode passphrase 7f3a"
HOST = "checkhost"
# Small sizes: the test hashes every byte of the disk.
SIZES = dict(disk_esp_size="64MiB", disk_swap_size="64MiB")
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def run_provision_check(disk, root, luks, tmp_path):
    extra = dict(SIZES, provision_hosts="localhost", provision_become=False,
                 ansible_python_interpreter=sys.executable, disk_device=disk.device, disk_luks=luks,
                 layout_root=str(root), flake_hostname=HOST)
    if luks:
        # the test KDF, as in the Molecule scenarios; the passphrase comes from a vars file, as from a vault
        extra.update(disk_luks_pbkdf="pbkdf2", disk_luks_pbkdf_force_iterations=1000)
        secret = tmp_path / "secret.json"
        secret.write_text(json.dumps({"disk_luks_passphrase": PASSPHRASE}))
    argv = [shutil.which("ansible-playbook") or "ansible-playbook", "-i", "localhost,", "-c", "local",
            "impermanent.nixos.provision", "--check", "--diff", "-e", json.dumps(extra)]
    if luks:
        argv += ["-e", "@%s" % secret]
    env = _env()
    env["ANSIBLE_STDOUT_CALLBACK"] = "default"  # what a user sees
    env["ANSIBLE_DISPLAY_SKIPPED_HOSTS"] = "false"
    env["PATH"] = DOUBLES + os.pathsep + env["PATH"]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def gpt_plan(disk, luks):
    """gpt_partition alone, in check mode, with the layout the disk role declares."""
    layout = [{"name": "boot", "size": SIZES["disk_esp_size"], "type": "esp"},
              {"name": "swap", "size": SIZES["disk_swap_size"], "type": "swap"},
              {"name": "nix", "size": "100%", "type": "luks" if luks else "linux"}]
    rc, res = run_module("impermanent.nixos.gpt_partition", dict(device=disk.device, partitions=layout), check=True)
    assert rc == 0, res
    return res


def disk_bytes(disk):
    subprocess.run(["sync"], check=False)
    return sha256_of(disk.image), sha256_of(disk.device)


def would_run(out, command):
    """The command appears in a plan line ("would run: ...", the program may carry its directory)."""
    pattern = r"would run: (\S*/)?%s(\s|\"|$)" % re.escape(command)
    assert re.search(pattern, out, re.M), "no plan line for %r in:\n%s" % (command, out[-6000:])


def check_plan(out, disk, root, luks, gpt):
    parts = dict((p["name"], p) for p in gpt["partitions"])
    boot, swap, nix = parts["boot"]["path"], parts["swap"]["path"], parts["nix"]["path"]
    nix_device = "/dev/mapper/crypted" if luks else nix

    # the partition table, byte offsets as gpt_partition plans them, and its commands
    for p in gpt["partitions"]:
        line = "  %d %s %s start=%d end=%d size=%d type=%s" % (p["number"], p["name"], p["path"], p["start"], p["end"],
                                                               p["size"], p["type"])
        assert line in out, line
    would_run(out, "sfdisk --lock --wipe always --wipe-partitions always %s" % disk.device)
    assert "+label: gpt" in out  # gpt_partition's diff

    # LUKS
    if luks:
        would_run(out, "cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "
                       "--key-file=- %s" % nix)
        would_run(out, "cryptsetup open --type luks --key-file=- %s crypted" % nix)
    else:
        assert "luksFormat" not in out and "cryptsetup" not in out

    # file systems, as impermanent.nixos.filesystems would create them
    would_run(out, "mkfs.vfat -F 32 -n boot %s" % boot)
    would_run(out, "mkswap -L swap %s" % swap)
    would_run(out, "mkfs.ext4 -F -L nixos %s" % nix_device)

    # mounts under the root
    would_run(out, "mount -t tmpfs -o size=25%%,mode=755 tmpfs %s" % root)
    would_run(out, "mount -o umask=0077 %s %s/boot" % (boot, root))
    would_run(out, "mount %s %s/nix" % (nix_device, root))
    for path in ("etc/nixos", "var/log"):
        would_run(out, "mount --bind %s/nix/persist/%s %s/%s" % (root, path, root, path))
    would_run(out, "swapon %s" % swap)

    # hardware-configuration.nix: generated later, patched on the stand-in (diff and warning)
    would_run(out, "nixos-generate-config --root %s" % root)
    assert "(stand-in: not generated yet)" in out
    assert "planned on a stand-in" in out
    assert '+      options = [ "defaults" "size=25%" "mode=755" ];' in out
    assert '+      options = [ "umask=0077" ];' in out
    swap_edit = ('+    [ { device = "/dev/disk/by-partuuid/<PARTUUID of %s>"; randomEncryption.enable = true; }'
                 % swap)
    assert (swap_edit in out) == luks  # random swap encryption only with LUKS (the role's default)

    # the flake and nixos-install
    assert '+    nixosConfigurations."%s" = nixpkgs.lib.nixosSystem {' % HOST in out  # template diff of flake.nix
    would_run(out, "git -C %s/etc/nixos -c 'safe.directory=*' init --quiet" % root)
    would_run(out, "nixos-install --flake '%s/etc/nixos#%s' --root %s --no-root-passwd" % (root, HOST, root))


def shown_plan(out):
    """The lines provision.yml's check mode printed as the whole install plan (task `Show the whole install plan
    (check mode)`: the install_plan_text of its one install_plan call), as one text."""
    start = out.index("TASK [Show the whole install plan (check mode)]")
    at = out.index("ok: [localhost] => ", start) + len("ok: [localhost] => ")
    shown, _ = json.JSONDecoder().raw_decode(out, at)
    return "\n".join(shown["msg"])


def whole_plan(plan, luks):
    """The plan shows every step, in the order a real run carries them out."""
    markers = ["Partition table for", "sfdisk --lock"] + (["LUKS on ", "luksFormat"] if luks else []) + [
        "File systems, by", "mkfs.ext4", "Mounts under", "mount -t tmpfs", "swapon",
        "Files under", "etc/machine-id", "nixos-generate-config", "hwconfig_patch would edit", "fileSystems.",
        "git -C", "nixos-install --flake", "chmod 0755"]
    found = [(plan.find(m), m) for m in markers]
    assert all(at >= 0 for at, _ in found), [m for at, m in found if at < 0]
    assert [m for _, m in sorted(found)] == markers, plan
    assert ("cryptsetup" in plan) == luks
    return plan


def recap(out):
    found = RECAP.findall(out)
    assert len(found) == 1, out[-3000:]
    ok, changed, unreachable, failed = map(int, found[0])
    return dict(ok=ok, changed=changed, unreachable=unreachable, failed=failed)


@pytest.mark.parametrize("luks", [False, True], ids=["plain", "luks"])
def test_check_diff_on_a_blank_disk_shows_the_plan_and_writes_nothing(loopdisk, tmp_path, luks):
    disk = loopdisk(256 * MIB)
    root = tmp_path / "root"
    root.mkdir()
    gpt = gpt_plan(disk, luks)
    assert gpt["changed"] and [p["name"] for p in gpt["partitions"]] == ["boot", "swap", "nix"]
    before = disk_bytes(disk)
    # the whole mount table, not only below root: check mode must mount nothing anywhere (exact, as the session has
    # a mount namespace of its own: other processes' mounts do not show up in it, see conftest)
    mounts_before = mountinfo()

    proc = run_provision_check(disk, root, luks, tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-3000:]
    stats = recap(out)
    assert stats["failed"] == 0 and stats["unreachable"] == 0 and stats["changed"] > 0, stats
    plan = shown_plan(out)
    check_plan(plan, disk, str(root), luks, gpt)
    whole_plan(plan, luks)

    assert disk_bytes(disk) == before
    assert not os.path.exists(disk.device + "p1")  # no partition appeared
    assert os.listdir(str(root)) == []  # nothing created under the root
    assert mountinfo() == mounts_before
    assert not os.path.exists("/dev/mapper/crypted")
    assert PASSPHRASE not in out + proc.stderr


def test_check_diff_on_a_partitioned_blank_disk_plans_from_the_real_probes(loopdisk, tmp_path):
    """The table is there already (partitions exist, no file systems yet): gpt_partition plans nothing,
    luks_open and filesystems probe the real partitions, and the mapper that luks_open would
    open does not exist yet (the plan still covers it)."""
    disk = loopdisk(256 * MIB)
    layout = [{"name": "boot", "size": "64MiB", "type": "esp"}, {"name": "swap", "size": "64MiB", "type": "swap"},
              {"name": "nix", "size": "100%", "type": "luks"}]
    rc, res = run_module("impermanent.nixos.gpt_partition", dict(device=disk.device, partitions=layout))
    assert rc == 0 and res["changed"], res
    subprocess.run(["partx", "-u", disk.device], check=False)
    parts = dict((p["name"], p["path"]) for p in res["partitions"])
    assert all(os.path.exists(p) for p in parts.values()), parts
    root = tmp_path / "root"
    root.mkdir()
    before = disk_bytes(disk)

    proc = run_provision_check(disk, root, True, tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-3000:]
    assert recap(out)["failed"] == 0
    plan = shown_plan(out)
    assert "Partition table for" not in plan  # the table is right: nothing to plan there
    would_run(plan, "cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "
                   "--key-file=- %s" % parts["nix"])
    would_run(plan, "mkfs.vfat -F 32 -n boot %s" % parts["boot"])  # filesystems: blank, would create
    would_run(plan, "mkswap -L swap %s" % parts["swap"])
    would_run(plan, "mkfs.ext4 -F -L nixos /dev/mapper/crypted")
    would_run(plan, "mount -o umask=0077 %s %s/boot" % (parts["boot"], root))
    would_run(plan, "mount /dev/mapper/crypted %s/nix" % root)
    assert disk_bytes(disk) == before
    assert os.listdir(str(root)) == []
    assert PASSPHRASE not in out + proc.stderr


def test_no_module_option_says_that_something_is_pending(tmp_path, monkeypatch):
    """Forecasts are install_plan's alone: the step modules have no option that tells them a device, a root or a
    flake is pending, so a real run can never be relaxed by one. The old options are refused as unknown, in check
    mode and out of it, and nothing is created."""
    monkeypatch.setenv("PATH", DOUBLES + os.pathsep + os.environ["PATH"])  # nixos-install is looked up, not run
    missing = "/dev/impermanent-check-missing"
    root = tmp_path / "root"
    root.mkdir()
    mounts_before = mountinfo()  # the whole table: exact in the session's own mount namespace (conftest)
    cases = [
        ("impermanent.nixos.luks_open", dict(device=missing, passphrase=PASSPHRASE, format=True, pending=True),
         "pending"),
        ("impermanent.nixos.tmpfs_root", dict(root=str(root), nix_device=missing, boot_device=missing,
                                              pending_devices=[missing]), "pending_devices"),
        ("impermanent.nixos.hwconfig_patch", dict(path=str(root / "hardware-configuration.nix"),
                                                  stand_in=dict(boot_device=missing)), "stand_in"),
        ("impermanent.nixos.nixos_flake_install", dict(flake=str(root / "etc" / "nixos"), host=HOST,
                                                       root=str(root / "nope"), pending=True), "pending"),
    ]
    for module, args, option in cases:
        for check in (False, True):
            rc, res = run_module(module, args, check=check)
            assert rc != 0 and res.get("failed"), (module, check, res)
            assert "Unsupported parameters" in res["msg"] and option in res["msg"], (module, res["msg"])
            assert PASSPHRASE not in json.dumps(res)
    assert os.listdir(str(root)) == []
    assert mountinfo() == mounts_before


def test_check_diff_on_a_prepared_disk_shows_no_disk_plan(loopdisk, tmp_path):
    """Table and file systems are there (no LUKS): the disk role has nothing to do and shows no plan (not even an
    empty one); the mounts are planned against the real devices."""
    disk = loopdisk(256 * MIB)
    layout = [{"name": "boot", "size": "64MiB", "type": "esp"}, {"name": "swap", "size": "64MiB", "type": "swap"},
              {"name": "nix", "size": "100%", "type": "linux"}]
    rc, res = run_module("impermanent.nixos.gpt_partition", dict(device=disk.device, partitions=layout))
    assert rc == 0 and res["changed"], res
    subprocess.run(["partx", "-u", disk.device], check=False)
    parts = dict((p["name"], p["path"]) for p in res["partitions"])
    for argv in (["mkfs.vfat", "-F", "32", "-n", "boot", parts["boot"]], ["mkswap", "-L", "swap", parts["swap"]],
                 ["mkfs.ext4", "-q", "-L", "nixos", parts["nix"]]):
        subprocess.run(argv, capture_output=True, check=True)
    root = tmp_path / "root"
    root.mkdir()
    before = disk_bytes(disk)

    proc = run_provision_check(disk, root, False, tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-3000:]
    assert recap(out)["failed"] == 0
    assert "Show the check-mode plan for the disk" not in out  # skipped (skipped hosts are not displayed)
    assert '"None"' not in out
    plan = shown_plan(out)
    assert "would run: mkfs" not in plan and "would run: mkswap" not in plan
    assert "File systems, by" not in plan  # the disk has nothing to do: no step, not even an empty one
    would_run(plan, "mount -o umask=0077 %s %s/boot" % (parts["boot"], root))
    would_run(plan, "mount %s %s/nix" % (parts["nix"], root))
    assert disk_bytes(disk) == before
    assert os.listdir(str(root)) == []
