# SPDX-License-Identifier: GPL-3.0-or-later
"""install_plan on loop devices: one read-only call plans partitions, LUKS, file systems and mounts; a blank disk
shows the whole install with forecasts, an installed one is reported in place exactly when every step module
finds its step in place; a refusal names its step; nothing is ever written.
"""
import json
import os
import subprocess

from conftest import mountinfo, run_module

MIB = 1 << 20
PASSPHRASE = "install-plan-passphrase-7f3a"


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def gpt_params(device, luks=False):
    return dict(device=device, partitions=[
        dict(name="boot", size="64MiB", type="esp"),
        dict(name="swap", size="16MiB", type="swap"),
        dict(name="nix", size="100%", type="luks" if luks else "linux")])


def filesystems_params(nix=None):
    return dict(filesystems=[
        dict(device={"ref": "partition:boot"}, fstype="vfat", label="boot"),
        dict(device={"ref": "partition:swap"}, fstype="swap", label="swap"),
        dict(device=nix or {"ref": "partition:nix"}, fstype="ext4", label="nixos")])


def plan(steps, check=False):
    return run_module("impermanent.nixos.install_plan", dict(steps=steps), check=check)


def test_a_blank_disk_shows_the_whole_disk_plan_and_nothing_is_written(loopdisk, tmp_path):
    disk = loopdisk(128 * MIB)
    before, mounts = disk.digest(), mountinfo()
    root = str(tmp_path / "target")
    rc, res = plan([
        dict(module="gpt_partition", params=gpt_params(disk.device, luks=True)),
        dict(module="luks_open", params=dict(device={"ref": "partition:nix"}, name="iplan-test", format=True,
                                             passphrase=PASSPHRASE)),
        dict(module="filesystems", params=filesystems_params(nix={"ref": "mapper"})),
        dict(module="tmpfs_root", params=dict(root=root, boot_device={"ref": "partition:boot"},
                                              nix_device={"ref": "mapper"}, swap_device={"ref": "partition:swap"},
                                              persist=["/var/log"])),
    ])
    assert rc == 0, res
    assert res["changed"] is False and res["in_place"] is False and res["first_change"] == "gpt_partition"
    steps = dict((s["module"], s) for s in res["steps"])
    assert [s["module"] for s in res["steps"]] == ["gpt_partition", "luks_open", "filesystems", "tmpfs_root"]
    assert all(s["changed"] for s in res["steps"])
    assert [s["forecast"] for s in res["steps"]] == [False, True, True, True]
    parts = ["%sp%d" % (disk.device, n) for n in (1, 2, 3)]
    assert [p["path"] for p in steps["gpt_partition"]["result"]["partitions"]] == parts
    # each later step planned on the forecast devices: the partitions and the mapping
    assert any("luksFormat" in c and parts[2] in c for c in steps["luks_open"]["commands"]), steps["luks_open"]
    mkfs = steps["filesystems"]["commands"]
    assert [c.split()[-1] for c in mkfs] == [parts[0], parts[1], "/dev/mapper/iplan-test"], mkfs
    assert [e["action"] for e in steps["filesystems"]["result"]["filesystems"]] == ["create"] * 3
    assert any(c.startswith("mount") and "/dev/mapper/iplan-test" in c for c in steps["tmpfs_root"]["commands"])
    # read-only, and the passphrase is nowhere in the result
    assert disk.digest() == before and mountinfo() == mounts
    assert not os.path.exists(root)
    assert PASSPHRASE not in json.dumps(res)


def test_in_place_exactly_when_every_step_module_finds_its_step_in_place(loopdisk):
    disk = loopdisk(128 * MIB)
    steps = [dict(module="gpt_partition", params=gpt_params(disk.device)),
             dict(module="filesystems", params=filesystems_params())]
    rc, res = run_module("impermanent.nixos.gpt_partition", gpt_params(disk.device))
    assert rc == 0 and res["changed"], res
    # the table is written; the file systems are not: the plan says so, and only filesystems would change
    rc, half = plan(steps)
    assert rc == 0, half
    assert [(s["module"], s["changed"], s["forecast"]) for s in half["steps"]] == [
        ("gpt_partition", False, False), ("filesystems", True, False)]
    assert half["in_place"] is False and half["first_change"] == "filesystems"
    parts = [p["path"] for p in res["partitions"]]
    made_args = dict(filesystems=[
        dict(device=parts[0], fstype="vfat", label="boot"), dict(device=parts[1], fstype="swap", label="swap"),
        dict(device=parts[2], fstype="ext4", label="nixos")])
    rc, made = run_module("impermanent.nixos.filesystems", made_args)
    assert rc == 0 and made["changed"], made
    assert made["commands"] == half["steps"][1]["commands"]
    before = disk.digest()
    rc, done = plan(steps)
    assert rc == 0, done
    assert done["in_place"] is True and done["first_change"] is None
    assert [(s["module"], s["changed"], s["commands"]) for s in done["steps"]] == [
        ("gpt_partition", False, []), ("filesystems", False, [])]
    assert [e["action"] for e in done["steps"][1]["result"]["filesystems"]] == ["keep"] * 3
    # the step modules agree, call by call
    for module, params in (("impermanent.nixos.gpt_partition", gpt_params(disk.device)),
                           ("impermanent.nixos.filesystems", made_args)):
        rc, again = run_module(module, params)
        assert rc == 0 and again["changed"] is False, again
    assert disk.digest() == before


def test_a_refused_step_fails_the_plan_with_its_name_and_reason(loopdisk):
    disk = loopdisk(128 * MIB)
    sh("mkfs.ext4", "-q", "-L", "data", disk.device)
    before = disk.digest()
    rc, res = plan([dict(module="gpt_partition", params=gpt_params(disk.device))])
    assert rc != 0, res
    assert res["msg"].startswith("gpt_partition: ") and "ext4" in res["msg"], res["msg"]
    assert res["refused"] == "content" and res["step"] == "gpt_partition"
    assert disk.digest() == before


def test_bad_plans_are_refused_before_any_step_runs(loopdisk):
    disk = loopdisk(128 * MIB)
    before = disk.digest()
    rc, res = plan([dict(module="filesystems", params=filesystems_params()),
                    dict(module="gpt_partition", params=gpt_params(disk.device))])
    assert rc != 0 and "listed after filesystems" in res["msg"], res
    assert res["steps"] == []
    rc, res = plan([dict(module="gpt_partition", params=gpt_params(disk.device)),
                    dict(module="filesystems", params=dict(filesystems=[
                        dict(device={"ref": "partition:home"}, fstype="ext4")]))])
    assert rc != 0 and "partition:home" in res["msg"] and "boot, nix, swap" in res["msg"], res
    rc, res = plan([dict(module="gpt_partition", params=dict(device=disk.device, partitions=[], colour="blue"))])
    assert rc != 0 and res["msg"].startswith("gpt_partition: ") and "colour" in res["msg"], res
    assert disk.digest() == before


DOUBLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "images", "doubles")
FLAKE_NIX = """{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";
  outputs = { self, nixpkgs, ... }: {
    nixosConfigurations.plantest = nixpkgs.lib.nixosSystem { system = "x86_64-linux"; modules = [ ./configuration.nix ]; };
  };
}
"""
CONFIGURATION_NIX = '{ ... }: { imports = [ ./hardware-configuration.nix ]; networking.hostName = "plantest"; }\n'


def test_a_blank_disk_and_an_empty_root_show_the_whole_install_in_one_call(loopdisk, tmp_path):
    """Partitions, file systems, mounts, the hardware-configuration.nix edits (planned on a stand-in: the root is
    not mounted yet, so the generator cannot run) and the starter flake with nixos-install: one read-only call,
    nothing written, no TEST DOUBLE of nixos-generate-config or nixos-install run."""
    disk = loopdisk(128 * MIB)
    before, mounts = disk.digest(), mountinfo()
    root = str(tmp_path / "mnt")
    log = tmp_path / "doubles.log"
    env = {"PATH": DOUBLES + os.pathsep + os.environ["PATH"], "IMPERMANENT_DOUBLES_LOG": str(log)}
    steps = [
        dict(module="gpt_partition", params=gpt_params(disk.device)),
        dict(module="filesystems", params=filesystems_params()),
        dict(module="tmpfs_root", params=dict(root=root, boot_device={"ref": "partition:boot"},
                                              nix_device={"ref": "partition:nix"},
                                              swap_device={"ref": "partition:swap"})),
        dict(module="hwconfig_patch", params=dict(path=root + "/etc/nixos/hardware-configuration.nix", root=root,
                                                  generate=True, backup=False, swap_random_encryption=True)),
        dict(module="nixos_flake_install", params=dict(
            flake=root + "/etc/nixos", host="plantest", root=root, open_flake_dir=True,
            starter=dict(files=[dict(name="flake.nix", content=FLAKE_NIX),
                                dict(name="configuration.nix", content=CONFIGURATION_NIX)]))),
    ]
    rc, res = run_module("impermanent.nixos.install_plan", dict(steps=steps), extra_env=env)
    assert rc == 0, res
    planned = dict((s["module"], s) for s in res["steps"])
    assert [s["module"] for s in res["steps"]] == [s["module"] for s in steps]
    assert all(s["changed"] for s in res["steps"]) and res["in_place"] is False
    parts = ["%sp%d" % (disk.device, n) for n in (1, 2, 3)]
    assert any(c.startswith("swapon") or " swapon " in c or c.split()[0].endswith("swapon")
               for c in planned["tmpfs_root"]["commands"]), planned["tmpfs_root"]["commands"]
    hw = planned["hwconfig_patch"]
    assert hw["commands"] == ["%s/nixos-generate-config --root %s" % (DOUBLES, root)], hw
    assert hw["result"]["stand_in"] is True and hw["result"]["generated"] is True
    assert hw["result"]["patched"]["root"]["options_after"] == ["defaults", "size=25%", "mode=755"]
    flake = planned["nixos_flake_install"]
    assert flake["result"]["starter_written"] == ["flake.nix", "configuration.nix"]
    install = [c for c in flake["commands"] if os.path.basename(c.split()[0]) == "nixos-install"]
    assert len(install) == 1 and "%s/etc/nixos#plantest" % root in install[0], flake["commands"]
    assert [c.split()[-1] for c in planned["filesystems"]["commands"]] == parts
    # read-only: the disk, the mounts, the root and the doubles' log
    assert disk.digest() == before and mountinfo() == mounts
    assert not os.path.exists(root) and not log.exists()


def test_applied_the_steps_make_what_the_step_modules_make_and_a_rerun_changes_nothing(loopdisk):
    """apply: one call partitions and makes the file systems, as gpt_partition then filesystems on a twin disk
    do (same table, same file systems); the same call again changes nothing and writes nothing."""
    disk, twin = loopdisk(128 * MIB), loopdisk(128 * MIB)
    steps = [dict(module="gpt_partition", params=gpt_params(disk.device)),
             dict(module="filesystems", params=filesystems_params())]
    rc, res = run_module("impermanent.nixos.install_plan", dict(steps=steps, apply=True))
    assert rc == 0, res
    assert res["changed"] is True and res["in_place"] is False and res["first_change"] == "gpt_partition"
    assert [(s["module"], s["changed"], s["forecast"]) for s in res["steps"]] == [
        ("gpt_partition", True, False), ("filesystems", True, False)]
    parts = [p["path"] for p in res["steps"][0]["result"]["partitions"]]
    assert [c.split()[-1] for c in res["steps"][1]["commands"]] == parts  # the references became real paths
    # the step modules, one after the other, on the twin: the same layout and the same file systems
    rc, gpt = run_module("impermanent.nixos.gpt_partition", gpt_params(twin.device))
    assert rc == 0 and gpt["changed"], gpt
    twin_parts = [p["path"] for p in gpt["partitions"]]
    rc, made = run_module("impermanent.nixos.filesystems", dict(filesystems=[
        dict(device=twin_parts[0], fstype="vfat", label="boot"), dict(device=twin_parts[1], fstype="swap", label="swap"),
        dict(device=twin_parts[2], fstype="ext4", label="nixos")]))
    assert rc == 0 and made["changed"], made
    layout = [(p["name"], p["start"], p["size"], p["type"]) for p in res["steps"][0]["result"]["partitions"]]
    assert layout == [(p["name"], p["start"], p["size"], p["type"]) for p in gpt["partitions"]]
    assert [c.replace(twin.device, disk.device) for c in made["commands"]] == res["steps"][1]["commands"]
    for mine, theirs in zip(parts, twin_parts):
        fields = [sh("blkid", "-p", "-o", "value", "-s", key, dev, check=False).stdout.strip()
                  for dev in (mine, theirs) for key in ("TYPE", "LABEL")]
        assert fields[:2] == fields[2:] and fields[0], (mine, theirs, fields)
    before = disk.digest()
    rc, again = run_module("impermanent.nixos.install_plan", dict(steps=steps, apply=True))
    assert rc == 0, again
    assert again["changed"] is False and again["in_place"] is True
    assert [s["commands"] for s in again["steps"]] == [[], []]
    assert disk.digest() == before


def test_applied_a_refused_step_stops_the_call_and_writes_nothing(loopdisk):
    disk = loopdisk(128 * MIB)
    sh("mkfs.ext4", "-q", "-L", "data", disk.device)
    before = disk.digest()
    steps = [dict(module="gpt_partition", params=gpt_params(disk.device)),
             dict(module="filesystems", params=filesystems_params())]
    rc, res = run_module("impermanent.nixos.install_plan", dict(steps=steps, apply=True))
    assert rc != 0, res
    assert res["msg"].startswith("gpt_partition: ") and res["refused"] == "content", res
    assert res["step"] == "gpt_partition" and res["steps"] == [] and res["device"] == disk.device
    assert res["applied"] is False  # refused by the plan made before anything is applied
    assert disk.digest() == before


def test_applied_a_later_step_that_would_fail_stops_the_call_before_the_first_write(loopdisk, tmp_path):
    """The steps are all planned before the first is applied: a root that is a regular file fails tmpfs_root's
    plan, so the disk is not even partitioned."""
    disk = loopdisk(128 * MIB)
    before, mounts = disk.digest(), mountinfo()
    root = tmp_path / "not-a-directory"
    root.write_text("a file\n")
    steps = [dict(module="gpt_partition", params=gpt_params(disk.device)),
             dict(module="filesystems", params=filesystems_params()),
             dict(module="tmpfs_root", params=dict(root=str(root), boot_device={"ref": "partition:boot"},
                                                   nix_device={"ref": "partition:nix"}))]
    rc, res = run_module("impermanent.nixos.install_plan", dict(steps=steps, apply=True))
    assert rc != 0, res
    assert res["step"] == "tmpfs_root" and res["msg"].startswith("tmpfs_root: ") and str(root) in res["msg"], res
    assert res["applied"] is False and [s["module"] for s in res["steps"]] == ["gpt_partition", "filesystems"]
    assert disk.digest() == before and mountinfo() == mounts
    assert root.read_text() == "a file\n"


def test_apply_in_check_mode_only_plans(loopdisk):
    disk = loopdisk(128 * MIB)
    before = disk.digest()
    rc, res = run_module("impermanent.nixos.install_plan",
                         dict(steps=[dict(module="gpt_partition", params=gpt_params(disk.device))], apply=True),
                         check=True)
    # check mode reports what the call would change, as the step modules do
    assert rc == 0 and res["changed"] is True and res["steps"][0]["changed"] is True, res
    assert disk.digest() == before


def test_a_flake_made_outside_the_plan_is_planned_unchecked(tmp_path):
    """made_outside (a git checkout the flake role makes with ansible.builtin.git): the install is planned without
    checking the flake, which is not there yet; on any other step the option is refused. Nothing is written."""
    root = tmp_path / "mnt"
    (root / "etc" / "nixos").mkdir(parents=True)
    env = {"PATH": DOUBLES + os.pathsep + os.environ["PATH"]}
    step = dict(module="nixos_flake_install", made_outside=True,
                params=dict(flake=str(root / "etc" / "nixos"), host="plantest", root=str(root)))
    rc, res = run_module("impermanent.nixos.install_plan", dict(steps=[step]), extra_env=env)
    assert rc == 0, res
    (flake,) = res["steps"]
    assert flake["changed"] and flake["forecast"] and flake["result"]["flake_checked"] is False, flake
    assert any(os.path.basename(c.split()[0]) == "nixos-install" for c in flake["commands"]), flake["commands"]
    # without it the flake is checked, and an empty directory is no flake
    rc, res = run_module("impermanent.nixos.install_plan", dict(steps=[dict(step, made_outside=False)]),
                         extra_env=env)
    assert rc != 0 and res["step"] == "nixos_flake_install", res
    rc, res = run_module("impermanent.nixos.install_plan", dict(steps=[dict(
        module="tmpfs_root", made_outside=True, params=dict(root=str(root), nix_device="/dev/null"))]))
    assert rc != 0 and "only nixos_flake_install" in res["msg"], res
    assert os.listdir(str(root / "etc" / "nixos")) == []
