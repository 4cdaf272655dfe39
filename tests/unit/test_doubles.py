# SPDX-License-Identifier: GPL-3.0-or-later
"""The TEST DOUBLES of nixos-generate-config and nixos-install (tests/images/doubles), run as subprocesses.

nixos-generate-config reads a machine description through its own test seam (IMPERMANENT_DOUBLES_MACHINE):
one built from mountinfo, /proc/swaps and blkid output captured on this host with a tmpfs root, an ext4 loop
partition, bind mounts and swap (tests/unit/fixtures/flake/host-layout.*), and one synthesized for the guest's
LUKS + vfat layout, which the host cannot mount. Its output is checked by Nix itself: nix-instantiate parses and
evaluates it. nixos-install runs against scratch git repositories and a scratch root.
"""
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLES = os.path.join(os.path.dirname(HERE), "images", "doubles")
GENERATE = os.path.join(DOUBLES, "nixos-generate-config")
INSTALL = os.path.join(DOUBLES, "nixos-install")
NIX = os.path.join(DOUBLES, "nix")
KIT_CASES = os.path.join(os.path.dirname(HERE), "nix-eval", "tests", "cases")
FIXTURES = os.path.join(HERE, "fixtures", "flake")
FLAKES_ON = "experimental-features = nix-command flakes"


@pytest.fixture(autouse=True)
def nix_instantiate():
    """The doubles' Nix output is checked by Nix: without nix-instantiate these tests fail rather than skip."""
    if shutil.which("nix-instantiate") is None:
        pytest.fail("nix-instantiate (Debian nix-bin, installed by scripts/setup-host.sh) is needed here")


def run(argv, env=None, cwd=None):
    full = dict(os.environ)
    full.pop("NIX_CONFIG", None)
    full.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=full, cwd=cwd, check=False)


@pytest.fixture
def scratch():
    """A 0755 directory under /tmp: nixos-install, like the real one, refuses a root others cannot enter."""
    base = tempfile.mkdtemp(prefix="impermanent-doubles-", dir="/tmp")
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def evaluate(directory, expr):
    """Evaluate hardware-configuration.nix with stub module arguments, as JSON."""
    full = ('let hw = import %s/hardware-configuration.nix { config = { hardware.enableRedistributableFirmware = '
            'false; }; lib = { mkDefault = x: x; }; pkgs = { }; modulesPath = "/m"; }; in %s' % (directory, expr))
    proc = run(["nix-instantiate", "--eval", "--strict", "--json", "-E", full])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def blkid_export(name):
    with open(os.path.join(FIXTURES, name)) as f:
        info = dict(line.strip().split("=", 1) for line in f if "=" in line)
    return info.pop("DEVNAME"), info


def host_machine(tmp, udev):
    """The captured host layout as a machine description; udev=False is this host (no /dev/disk/by-uuid)."""
    with open(os.path.join(FIXTURES, "host-layout.mountinfo")) as f:
        mountinfo = f.read()
    with open(os.path.join(FIXTURES, "host-layout.swaps")) as f:
        swaps = f.read()
    devices = {}
    for name in ("host-layout.blkid-nix", "host-layout.blkid-swap"):
        dev, info = blkid_export(name)
        devices[dev] = dict(info, udev=udev)
    path = os.path.join(tmp, "machine-%s.json" % udev)
    with open(path, "w") as f:
        json.dump({"mountinfo": mountinfo, "swaps": swaps, "devices": devices, "virt": "none", "efi": False,
                   "cpuinfo": "vendor_id\t: GenuineIntel\nflags\t\t: fpu vmx sse2\n"}, f)
    return path


def generate(scratch, machine, *args):
    env = {"IMPERMANENT_DOUBLES_MACHINE": machine, "IMPERMANENT_DOUBLES_LOG": os.path.join(scratch, "log")}
    return run([GENERATE] + list(args), env=env)


# ------------------------------------------------------------------ nixos-generate-config


def test_generate_config_says_it_is_a_double(scratch):
    proc = run([GENERATE, "--help"])
    assert proc.returncode == 0 and "TEST DOUBLE" in proc.stdout and "NOT THE REAL TOOL" in proc.stdout
    with open(GENERATE) as f:
        assert "TEST DOUBLE -- NOT THE REAL nixos-generate-config" in f.read(1500)
    proc = generate(scratch, host_machine(scratch, False), "--root", scratch + "/r", "--show-hardware-config")
    assert proc.stderr.splitlines()[0] == (
        "nixos-generate-config: TEST DOUBLE for impermanent.nixos tests -- not the real nixos-generate-config")


@pytest.mark.parametrize("udev, nix, swap", [
    (False, "/dev/loop0p3", "/dev/loop0p2"),  # this host: blkid knows the UUIDs, but no by-uuid links exist
    (True, "/dev/disk/by-uuid/5ccf78d1-6874-4974-b2b1-f38c96811c2a",
     "/dev/disk/by-uuid/d3a38786-4e6b-4723-80e0-a234075b28e8"),
])
def test_generate_config_from_captured_host_layout(scratch, udev, nix, swap):
    root = "/tmp/ngc.RqE0/mnt"  # where the layout was mounted when captured
    out = os.path.join(scratch, "out")
    proc = generate(scratch, host_machine(scratch, udev), "--root", root, "--show-hardware-config")
    assert proc.returncode == 0, proc.stderr
    os.makedirs(out)
    with open(os.path.join(out, "hardware-configuration.nix"), "w") as f:
        f.write(proc.stdout)
    assert run(["nix-instantiate", "--parse", os.path.join(out, "hardware-configuration.nix")]).returncode == 0
    assert evaluate(out, "{ inherit (hw) fileSystems swapDevices imports; }") == {
        "fileSystems": {
            "/": {"device": "none", "fsType": "tmpfs"},
            "/nix": {"device": nix, "fsType": "ext4"},
            "/etc/nixos": {"device": "/nix/persist/etc/nixos", "fsType": "none", "options": ["bind"]},
            "/var/log": {"device": "/nix/persist/var/log", "fsType": "none", "options": ["bind"]},
        },
        "swapDevices": [{"device": swap}],
        "imports": [],
    }
    assert evaluate(out, "{ inherit (hw.boot) kernelModules; inherit (hw.hardware.cpu.intel) updateMicrocode; }") \
        == {"kernelModules": ["kvm-intel"], "updateMicrocode": False}
    assert proc.stdout.startswith(
        "# Do not modify this file!  It was generated by ‘nixos-generate-config’\n"
        "# and may be overwritten by future invocations.  Please make changes\n"
        "# to /etc/nixos/configuration.nix instead.\n"
        "{ config, lib, pkgs, modulesPath, ... }:\n")


def test_generate_config_guest_luks_layout(scratch):
    machine = os.path.join(FIXTURES, "guest-luks.machine.json")
    proc = generate(scratch, machine, "--root", "/mnt", "--show-hardware-config")  # writes nothing below /mnt
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    hw_dir = os.path.join(scratch, "hw")
    os.makedirs(hw_dir)
    with open(os.path.join(hw_dir, "hardware-configuration.nix"), "w") as f:
        f.write(text)
    got = evaluate(hw_dir, "{ inherit (hw) fileSystems swapDevices imports nixpkgs networking; "
                           "inherit (hw.boot.initrd) availableKernelModules; luks = hw.boot.initrd.luks.devices; "
                           "inherit (hw.boot) kernelModules; amd = hw.hardware.cpu.amd.updateMicrocode; }")
    assert got["fileSystems"] == {
        "/": {"device": "none", "fsType": "tmpfs"},
        "/nix": {"device": "/dev/disk/by-uuid/5ccf78d1-6874-4974-b2b1-f38c96811c2a", "fsType": "ext4"},
        "/etc/nixos": {"device": "/nix/persist/etc/nixos", "fsType": "none", "options": ["bind"]},
        "/var/log": {"device": "/nix/persist/var/log", "fsType": "none", "options": ["bind"]},
        "/boot": {"device": "/dev/disk/by-uuid/BC56-78F2", "fsType": "vfat", "options": ["fmask=0077", "dmask=0077"]},
        "/with space": {"device": "tmpfs", "fsType": "tmpfs"},  # /tmp on tmpfs is left out, like the real tool
    }
    assert got["luks"] == {"crypted": {"device": "/dev/disk/by-uuid/0f3a4e1b-9c2d-4e5f-a6b7-c8d9e0f1a2b3"}}
    assert got["swapDevices"] == [{"device": "/dev/disk/by-uuid/d3a38786-4e6b-4723-80e0-a234075b28e8"}]  # no zram
    assert got["imports"] == ["/m/profiles/qemu-guest.nix"]
    assert got["availableKernelModules"] == ["ahci", "xhci_pci", "virtio_pci", "sr_mod", "virtio_blk"]
    assert got["kernelModules"] == ["kvm-amd"] and got["amd"] is False
    assert got["nixpkgs"] == {"hostPlatform": "x86_64-linux"} and got["networking"] == {"useDHCP": True}
    # the shape of the real tool's output, for the hwconfig patcher's sake
    assert ('  fileSystems."/boot" =\n    { device = "/dev/disk/by-uuid/BC56-78F2";\n      fsType = "vfat";\n'
            '      options = [ "fmask=0077" "dmask=0077" ];\n    };\n') in text
    assert '  boot.initrd.luks.devices."crypted".device = "/dev/disk/by-uuid/0f3a4e1b' in text
    assert "  swapDevices =\n    [ { device = " in text
    assert "  # networking.interfaces.eth0.useDHCP = lib.mkDefault true;\n" in text


def test_generate_config_dm_device_without_udev(scratch):
    with open(os.path.join(FIXTURES, "guest-luks.machine.json")) as f:
        machine = json.load(f)
    for info in machine["devices"].values():
        info["udev"] = False
    path = os.path.join(scratch, "m.json")
    with open(path, "w") as f:
        json.dump(machine, f)
    proc = generate(scratch, path, "--root", "/mnt", "--show-hardware-config")
    assert '{ device = "/dev/mapper/crypted";' in proc.stdout
    assert 'boot.initrd.luks.devices."crypted".device = "/dev/vda3";' in proc.stdout


def test_generate_config_writes_files_and_keeps_configuration(scratch):
    root = os.path.join(scratch, "root")
    machine = host_machine(scratch, True)
    proc = generate(scratch, machine, "--root", root)
    assert proc.returncode == 0, proc.stderr
    etc = os.path.join(root, "etc", "nixos")
    assert sorted(os.listdir(etc)) == ["configuration.nix", "hardware-configuration.nix"]
    for name in os.listdir(etc):
        assert run(["nix-instantiate", "--parse", os.path.join(etc, name)]).returncode == 0, name
    with open(os.path.join(etc, "configuration.nix")) as f:
        conf = f.read()
    assert "./hardware-configuration.nix" in conf and "boot.loader.grub.enable = true;" in conf  # efi: false
    with open(os.path.join(etc, "configuration.nix"), "w") as f:
        f.write("{ mine = true; }\n")
    again = generate(scratch, machine, "--root", root)
    assert "warning: not overwriting existing %s/configuration.nix" % etc in again.stderr
    with open(os.path.join(etc, "configuration.nix")) as f:
        assert f.read() == "{ mine = true; }\n"
    generate(scratch, machine, "--root", root, "--force")
    with open(os.path.join(etc, "configuration.nix")) as f:
        assert f.read() == conf
    with open(os.path.join(scratch, "log")) as f:
        calls = [json.loads(line) for line in f]
    assert [c["argv"] for c in calls] == [
        ["nixos-generate-config", "--root", root]] * 2 + [["nixos-generate-config", "--root", root, "--force"]]
    generate(scratch, machine, "--root", root, "--dir", "/cfg")
    assert sorted(os.listdir(os.path.join(root, "cfg"))) == ["configuration.nix", "hardware-configuration.nix"]
    assert all(c["tool"] == "nixos-generate-config" and c["seam"] == machine for c in calls)


@pytest.mark.parametrize("args, needle", [
    (["--bogus"], "unrecognized argument ‘--bogus’"),
    (["--root", "/"], "no need to specify `/` with `--root`"),
    (["--root"], "‘--root’ requires an argument"),
])
def test_generate_config_rejects_bad_arguments(scratch, args, needle):
    proc = generate(scratch, host_machine(scratch, False), *args)
    assert proc.returncode != 0 and needle in proc.stderr


# ------------------------------------------------------------------ nixos-install


class Flake(object):
    def __init__(self, base):
        self.dir = os.path.join(base, "cfg")
        self.root = os.path.join(base, "target")
        self.log = os.path.join(base, "calls.log")
        os.makedirs(os.path.join(self.dir, "hosts"))
        os.makedirs(self.root)
        self.put("flake.nix", '{\n  outputs = { self, nixpkgs }: {\n    nixosConfigurations = {\n'
                              '      box = nixpkgs.lib.nixosSystem { modules = [ ./hosts/box.nix ]; };\n    };\n  };\n}\n')
        self.put("hosts/box.nix", "{ ... }: {\n  imports = [ ../hardware-configuration.nix ];\n}\n")
        self.put("hardware-configuration.nix", '{ ... }: { fileSystems."/".fsType = "tmpfs"; }\n')
        self.put("unused-draft.nix", "{ draft = true; }\n")
        self.git("init", "-q")
        self.git("add", "flake.nix", "hosts/box.nix")

    def put(self, rel, text):
        with open(os.path.join(self.dir, rel), "w") as f:
            f.write(text)

    def git(self, *args):
        subprocess.run(["git", "-C", self.dir] + list(args), check=True, capture_output=True)

    def install(self, *args, nix_config=FLAKES_ON, flake=None, cwd=None):
        env = {"IMPERMANENT_DOUBLES_LOG": self.log}
        if nix_config is not None:
            env["NIX_CONFIG"] = nix_config
        argv = [INSTALL, "--flake", flake or self.dir + "#box", "--root", self.root] + list(args)
        return run(argv, env=env, cwd=cwd)

    def profile(self):
        return os.path.join(self.root, "nix/var/nix/profiles/system")

    def calls(self):
        with open(self.log) as f:
            return [json.loads(line) for line in f]


def test_install_says_it_is_a_double(scratch):
    proc = run([INSTALL, "--help"])
    assert proc.returncode == 0 and "TEST DOUBLE" in proc.stdout and "NOT THE REAL TOOL" in proc.stdout
    proc = Flake(scratch).install("--no-root-passwd")
    assert proc.stderr.splitlines()[0].startswith("nixos-install: TEST DOUBLE for impermanent.nixos tests")


@pytest.mark.parametrize("nix_config, feature", [
    (None, "flakes"),
    ("experimental-features = nix-command", "flakes"),
    ("extra-experimental-features = flakes", "nix-command"),
])
def test_install_needs_flake_features(scratch, nix_config, feature):
    f = Flake(scratch)
    f.git("add", "hardware-configuration.nix")
    proc = f.install("--no-root-passwd", nix_config=nix_config)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        "error: experimental Nix feature '%s' is disabled; use '--extra-experimental-features %s' to override"
        % (feature, feature))
    assert not os.path.lexists(f.profile())
    assert f.calls()[-1]["rc"] == 1 and f.calls()[-1]["NIX_CONFIG"] == nix_config


def test_install_untracked_import_fails_like_nix(scratch):
    f = Flake(scratch)
    proc = f.install("--no-root-passwd")
    assert proc.returncode == 1
    pattern = (r"^error: getting status of '%s/nix/store/[0-9abcdfghijklmnpqrsvwxyz]{32}-source/"
               r"hardware-configuration\.nix': No such file or directory$" % re.escape(f.root))
    assert any(re.match(pattern, line) for line in proc.stderr.splitlines()), proc.stderr
    assert not os.path.lexists(f.profile())
    # staged is enough (Nix reads the index), and an untracked file nothing imports does not matter
    f.git("add", "hardware-configuration.nix")
    assert f.install("--no-root-passwd").returncode == 0


def test_install_creates_profile_and_records_the_call(scratch):
    f = Flake(scratch)
    f.git("add", "hardware-configuration.nix")
    proc = f.install("--no-root-passwd", "--option", "max-jobs", "2", "-v", nix_config="max-jobs = 1\n" + FLAKES_ON)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "building the flake in git+file://%s..." % f.dir, "copying channel...", "installing the boot loader...",
        "setting up /etc...", "installation finished!"]
    profiles = os.path.dirname(f.profile())
    assert os.readlink(f.profile()) == "system-1-link"
    target = os.readlink(os.path.join(profiles, "system-1-link"))
    assert re.match(r"^/nix/store/[0-9a-z]{32}-nixos-system-box-double$", target)
    with open(os.path.join(f.root, target.lstrip("/"), "TEST-DOUBLE")) as fh:
        assert "NOT a NixOS system" in fh.read()
    with open(os.path.join(f.root, "nix/var/nix/impermanent-double-install.json")) as fh:
        call = json.load(fh)
    assert call["argv"] == ["nixos-install", "--flake", f.dir + "#box", "--root", f.root, "--no-root-passwd",
                            "--option", "max-jobs", "2", "-v"]
    assert call["NIX_CONFIG"] == "max-jobs = 1\n" + FLAKES_ON
    assert (call["host"], call["flake"], call["root"], call["generation"]) == ("box", f.dir, f.root, 1)
    assert call["no_root_passwd"] is True
    assert f.calls()[-1]["rc"] == 0 and f.calls()[-1]["argv"] == call["argv"]
    assert os.path.exists(os.path.join(f.root, "etc/NIXOS"))
    # again: a second generation, the profile moves
    assert f.install("--no-root-passwd", "--no-bootloader").returncode == 0
    assert os.readlink(f.profile()) == "system-2-link"


def test_install_writes_boot_loader_stand_ins(scratch):
    """Without --no-bootloader the double leaves systemd-boot's files on ROOT/boot (stand-ins that say so), with an
    entry per generation; with --no-bootloader it touches nothing there."""
    f = Flake(scratch)
    f.git("add", "hardware-configuration.nix")
    boot = os.path.join(f.root, "boot")
    assert f.install("--no-root-passwd", "--no-bootloader").returncode == 0
    assert not os.path.exists(boot) and f.calls()[-1]["bootloader"] == []
    assert f.install("--no-root-passwd").returncode == 0
    written = ["EFI/BOOT/BOOTX64.EFI", "EFI/systemd/systemd-bootx64.efi", "loader/entries/nixos-generation-1.conf",
               "loader/entries/nixos-generation-2.conf", "loader/loader.conf"]
    assert f.calls()[-1]["bootloader"] == written
    found = sorted(os.path.relpath(os.path.join(d, n), boot) for d, _, names in os.walk(boot) for n in names)
    assert found == written
    with open(os.path.join(boot, "EFI/BOOT/BOOTX64.EFI")) as fh:
        assert "TEST DOUBLE" in fh.read()
    profiles = os.path.dirname(f.profile())
    with open(os.path.join(boot, "loader/entries/nixos-generation-2.conf")) as fh:
        entry = fh.read()
    assert "version Generation 2\n" in entry
    assert "options init=%s/init\n" % os.readlink(os.path.join(profiles, "system-2-link")) in entry


def test_install_relative_flake_from_cwd(scratch):
    f = Flake(scratch)
    f.git("add", "-A")
    proc = f.install(flake=".#box", cwd=f.dir)
    assert proc.returncode == 0, proc.stderr
    assert f.calls()[-1]["flake_top"] == f.dir


@pytest.mark.parametrize("case, stream, needle", [
    ("unknown option", "stdout", "nixos-install: unknown option `--frobnicate'"),
    ("no fragment", "stdout", "Please specify the name of the NixOS configuration to be installed"),
    ("unknown host", "stderr", "does not provide attribute 'packages.x86_64-linux.nixosConfigurations.\"nobox\""),
    ("syntax error", "stderr", "syntax error"),
    ("closed root", "stdout", "should have permissions 755, but had permissions 700"),
    ("remote", "stderr", "cannot fetch remote flakes"),
])
def test_install_failures(scratch, case, stream, needle):
    f = Flake(scratch)
    f.git("add", "-A")
    args, flake = ["--no-root-passwd"], None
    if case == "unknown option":
        args.append("--frobnicate")
    elif case == "no fragment":
        flake = f.dir
    elif case == "unknown host":
        flake = f.dir + "#nobox"
    elif case == "syntax error":
        f.put("hosts/box.nix", "{ ... }: { imports = [ ../hardware-configuration.nix ]; \n")
    elif case == "closed root":
        os.chmod(os.path.dirname(f.root), 0o700)
    elif case == "remote":
        flake = "github:example/cfg#box"
    proc = f.install(*args, flake=flake)
    assert proc.returncode == 1
    assert needle in getattr(proc, stream), (proc.stdout, proc.stderr)
    assert not os.path.lexists(f.profile())
    assert f.calls()[-1]["rc"] == 1


def test_install_path_ref_sees_untracked_files(scratch):
    f = Flake(scratch)
    shutil.rmtree(os.path.join(f.dir, ".git"))
    proc = f.install("--no-root-passwd", flake="path:%s#box" % f.dir)
    assert proc.returncode == 0, proc.stderr
    assert "building the flake in path:%s..." % f.dir in proc.stdout
    # a plain directory outside git is a path: flake for Nix as well
    assert f.install("--no-root-passwd").returncode == 0


# ------------------------------------------------------------------ nix (eval)

EVAL_FLAKE = """{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
  inputs.impermanence.url = "github:nix-community/impermanence";
  outputs = { self, nixpkgs, impermanence, ... }: {
    nixosConfigurations = nixpkgs.lib.genAttrs [ "box" ] (name: nixpkgs.lib.nixosSystem {
      modules = [ ./hardware-configuration.nix ./configuration.nix impermanence.nixosModules.impermanence ];
    });
  };
}
"""
TOPLEVEL = "#nixosConfigurations.%s.config.system.build.toplevel.drvPath"


def eval_flake(scratch, case, host='"box"', nix_config=FLAKES_ON, stage=True):
    flake = os.path.join(scratch, "flake")
    os.makedirs(flake)
    with open(os.path.join(flake, "flake.nix"), "w") as f:
        f.write(EVAL_FLAKE)
    for name in ("hardware-configuration.nix", "configuration.nix"):
        shutil.copy(os.path.join(KIT_CASES, case, name), flake)
    run(["git", "-C", flake, "init", "-q"])
    run(["git", "-C", flake, "add"] + (["-A"] if stage else ["flake.nix"]))
    env = {"IMPERMANENT_DOUBLES_LOG": os.path.join(scratch, "log")}
    if nix_config:
        env["NIX_CONFIG"] = nix_config
    return run([NIX, "eval", "--raw", "--no-write-lock-file", flake + TOPLEVEL % host], env=env)


def test_nix_eval_double_prints_a_drv_path(scratch):
    proc = eval_flake(scratch, "good")
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"^/nix/store/[0-9a-z]{32}-nixos-system-box-double\.drv$", proc.stdout)  # --raw: no newline
    assert "TEST DOUBLE" in proc.stderr and "not the real nix" in proc.stderr
    with open(os.path.join(scratch, "log")) as f:
        call = json.loads(f.readline())
    assert call["tool"] == "nix" and call["rc"] == 0 and call["host"] == "box" and call["kit_exit"] == 0
    assert [os.path.basename(m) for m in call["modules"]] == [
        "hardware-configuration.nix", "configuration.nix", "@impermanence"]


@pytest.mark.parametrize("case, host, nix_config, stage, needles", [
    ("bad-swap-randomencryption-by-uuid", '"box"', FLAKES_ON, True,
     ["error:", "       Failed assertions:", "       - You cannot use swap device", "with randomEncryption enabled"]),
    ("bad-duplicate-persisted-dir", "box", FLAKES_ON, True,
     ["Failed assertions:", "The following directories were specified two or more", "/var/log"]),
    ("bad-type-options-string", "box", FLAKES_ON, True, ["is not of type `non-empty (list of"]),
    ("good", '"other"', FLAKES_ON, True, ["does not provide attribute", 'nixosConfigurations."other"']),
    ("good", "box", "experimental-features = nix-command", True,
     ["experimental Nix feature 'flakes' is disabled"]),
    ("good", "box", None, True, ["experimental Nix feature 'nix-command' is disabled"]),
    ("good", "box", FLAKES_ON, False, ["getting status of '/nix/store/", "-source/hardware-configuration.nix'"]),
])
def test_nix_eval_double_fails_like_nix(scratch, case, host, nix_config, stage, needles):
    proc = eval_flake(scratch, case, host, nix_config, stage)
    assert proc.returncode == 1 and proc.stdout == "", (proc.stdout, proc.stderr)
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_doubles_are_executable():
    for path in (GENERATE, INSTALL, NIX):
        assert os.stat(path).st_mode & stat.S_IXUSR, path
        with open(path) as f:
            assert f.readline() == "#!/usr/bin/env python3\n"
