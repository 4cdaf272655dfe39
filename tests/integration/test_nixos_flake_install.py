# SPDX-License-Identifier: GPL-3.0-or-later
"""impermanent.nixos.nixos_flake_install on this host, with the nixos-install TEST DOUBLE on PATH.

There is no nixpkgs here, so tests/images/doubles/nixos-install stands in for the real tool: it checks the
options, NIX_CONFIG's experimental features, that every file the flake refers to is visible to git, and the
nixosConfigurations name, then records the call and creates ROOT/nix/var/nix/profiles/system. The module is
not told about the double; it finds `nixos-install` on PATH like on a live ISO. What a real build would do
(evaluate NixOS, copy a closure, install a boot loader) is exercised only in the Molecule guests.
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from conftest import run_module

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLES = os.path.join(os.path.dirname(HERE), "images", "doubles")
MODULE = "impermanent.nixos.nixos_flake_install"

FLAKE_NIX = """{
  description = "test flake for impermanent.nixos";
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";
  outputs = { self, nixpkgs, ... }: {
    nixosConfigurations.testhost = nixpkgs.lib.nixosSystem {
      system = "x86_64-linux";
      modules = [ ./configuration.nix ];
    };
  };
}
"""
CONFIGURATION_NIX = """{ config, lib, pkgs, ... }:
{
  imports = [ ./hardware-configuration.nix ];
  networking.hostName = "testhost";
  system.stateVersion = "24.11";
}
"""
HARDWARE_NIX = """{ config, lib, pkgs, modulesPath, ... }:
{
  fileSystems."/" = { device = "none"; fsType = "tmpfs"; options = [ "defaults" "size=25%" "mode=755" ]; };
}
"""


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, "-c", "safe.directory=*"] + list(args), capture_output=True,
                          text=True, check=True).stdout


class Scratch(object):
    """A flake git repo (flake.nix + configuration.nix committed, hardware-configuration.nix untracked) and a
    ROOT, under a 0755 directory: nixos-install refuses a root whose parents others cannot enter."""

    def __init__(self, base, subdir="", below_root=False):
        self.base = base
        self.root = os.path.join(base, "root")
        # below_root: the flake where the flake role puts it, ROOT/etc/nixos
        self.repo = os.path.join(self.root, "etc", "nixos") if below_root else os.path.join(base, "flake")
        self.flake = os.path.join(self.repo, subdir) if subdir else self.repo
        self.log = os.path.join(base, "doubles.log")
        os.makedirs(self.flake, mode=0o755)
        os.makedirs(self.root, mode=0o755, exist_ok=True)
        git(self.repo, "init", "-q", "-b", "main")
        self.write("flake.nix", FLAKE_NIX)
        self.write("configuration.nix", CONFIGURATION_NIX)
        git(self.repo, "add", "-A")
        git(self.repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "init")
        self.write("hardware-configuration.nix", HARDWARE_NIX)

    def write(self, name, text):
        with open(os.path.join(self.flake, name), "w") as f:
            f.write(text)

    def read(self, name):
        with open(os.path.join(self.flake, name)) as f:
            return f.read()

    def tracked(self):
        return git(self.repo, "ls-files").split()

    def commits(self):
        return int(git(self.repo, "rev-list", "--count", "HEAD"))

    def calls(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [json.loads(line) for line in f]

    def installed(self):
        with open(os.path.join(self.root, "nix/var/nix/impermanent-double-install.json")) as f:
            return json.load(f)

    @property
    def profile(self):
        return os.path.join(self.root, "nix/var/nix/profiles/system")


@pytest.fixture
def scratch(monkeypatch):
    base = tempfile.mkdtemp(prefix="impermanent-flake-", dir="/tmp")
    os.chmod(base, 0o755)
    made = []

    def make(subdir="", below_root=False):
        s = Scratch(os.path.join(base, str(len(made))), subdir, below_root)
        made.append(s)
        monkeypatch.setenv("IMPERMANENT_DOUBLES_LOG", s.log)
        return s

    monkeypatch.setenv("PATH", DOUBLES + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("NIX_CONFIG", raising=False)
    yield make
    shutil.rmtree(base, ignore_errors=True)


def install(s, check=False, **args):
    params = dict(flake=s.flake, host="testhost", root=s.root)
    params.update(args)
    return run_module(MODULE, params, check=check)


def test_installs_stages_then_skips_then_reinstalls(scratch, monkeypatch):
    s = scratch()
    monkeypatch.setenv("NIX_CONFIG", "max-jobs = 2")
    rc, res = install(s)
    assert rc == 0, res
    assert res["changed"] is True
    assert res["staged"] == ["hardware-configuration.nix"]
    assert "hardware-configuration.nix" in s.tracked() and s.commits() == 1  # staged, not committed
    assert res["cmd"][1:] == ["--flake", s.flake + "#testhost", "--root", s.root, "--no-root-passwd"]
    assert os.path.basename(res["cmd"][0]) == "nixos-install"
    assert res["skipped_reason"] is None
    assert "installation finished!" in res["log_tail"]
    assert any(c.endswith("add -- hardware-configuration.nix") for c in res["commands"])
    call = s.installed()
    assert call["argv"][1:] == ["--flake", s.flake + "#testhost", "--root", s.root, "--no-root-passwd"]
    assert call["NIX_CONFIG"] == "max-jobs = 2\nexperimental-features = nix-command flakes"
    assert call["host"] == "testhost" and call["source"] == "git" and call["generation"] == 1
    # the profile points into the target's store, /nix/store/... : dangling when seen from the live system
    assert os.path.islink(s.profile) and not os.path.exists(s.profile)

    rc, again = install(s)
    assert rc == 0, again
    assert again["changed"] is False
    assert s.profile in again["skipped_reason"] and "reinstall" in again["skipped_reason"]
    assert again["staged"] == [] and again["commands"] == []
    assert len([c for c in s.calls() if c["tool"] == "nixos-install"]) == 1

    s.write("extra.nix", "{ }\n")
    rc, re_run = install(s, reinstall=True, extra_args=["--no-bootloader"])
    assert rc == 0, re_run
    assert re_run["changed"] is True and re_run["staged"] == ["extra.nix"]
    assert s.installed()["generation"] == 2 and s.installed()["no_bootloader"] is True
    assert os.readlink(s.profile) == "system-2-link"


def test_stage_false_fails_with_the_untracked_file_named(scratch):
    s = scratch()
    rc, res = install(s, stage=False)
    assert rc != 0 and res.get("failed") is True
    assert res["rc"] == 1
    assert "getting status of" in res["msg"] and "-source/hardware-configuration.nix" in res["msg"]
    assert "git add hardware-configuration.nix" in res["msg"]
    assert any("No such file or directory" in line for line in res["stdout_lines"])
    assert res["log_tail"] == res["stdout_lines"]
    assert res["staged"] == [] and "hardware-configuration.nix" not in s.tracked()
    assert not os.path.lexists(s.profile)


def test_flake_in_a_subdirectory_of_the_repo(scratch):
    s = scratch(subdir="nixos")
    rc, res = install(s, flake="git+file://%s?dir=nixos#testhost" % s.repo, host=None)
    assert rc == 0, res
    assert res["staged"] == ["nixos/hardware-configuration.nix"]
    assert res["cmd"][1:3] == ["--flake", "git+file://%s?dir=nixos#testhost" % s.repo]
    assert s.installed()["flake_top"] == s.repo


def test_generated_host_name_warns_and_installs(scratch):
    s = scratch()
    s.write("flake.nix", FLAKE_NIX.replace(
        "nixosConfigurations.testhost = nixpkgs.lib.nixosSystem {",
        'nixosConfigurations = nixpkgs.lib.genAttrs [ "testhost" ] (name: nixpkgs.lib.nixosSystem {').replace(
        "    };\n  };\n}", "    });\n  };\n}"))
    rc, res = install(s)
    assert rc == 0, res
    assert any("assuming it is generated" in w for w in res.get("warnings", [])), res
    assert res["staged"] == ["flake.nix", "hardware-configuration.nix"]


def test_repo_owned_by_another_user(scratch):
    s = scratch()
    subprocess.run(["chown", "-R", "4321:4321", s.repo], check=True)
    rc, res = install(s)
    assert rc == 0, res
    assert res["staged"] == ["hardware-configuration.nix"]


def test_check_mode_runs_nothing(scratch):
    s = scratch()
    index = os.path.join(s.repo, ".git", "index")
    with open(index, "rb") as f:
        before = f.read()
    stat_before = os.stat(index).st_mtime_ns
    rc, res = install(s, check=True)
    assert rc == 0, res
    assert res["changed"] is True and res["staged"] == ["hardware-configuration.nix"]
    assert len(res["commands"]) == 2 and "nixos-install" in res["commands"][1]
    assert "hardware-configuration.nix" not in s.tracked()
    with open(index, "rb") as f:
        assert f.read() == before
    assert os.stat(index).st_mtime_ns == stat_before
    assert s.calls() == [] and not os.path.lexists(s.profile)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_open_flake_dir_opens_only_around_the_install_and_repairs_an_interrupted_run(scratch):
    s = scratch(below_root=True)
    rc, res = install(s, open_flake_dir=True)
    assert rc == 0, res
    chmod = [c for c in res["commands"] if os.path.basename(c.split()[0]) == "chmod"]
    assert chmod == [res["commands"][1], res["commands"][3]], res["commands"]
    assert res["commands"][1].endswith("chmod 0777 " + s.flake) and "nixos-install" in res["commands"][2]
    assert res["commands"][3].endswith("chmod 0755 " + s.flake)
    assert s.installed()["flake_dir_mode"] == "777"  # what nixos-install saw
    assert mode_of(s.flake) == 0o755

    rc, again = install(s, open_flake_dir=True)
    assert rc == 0 and again["changed"] is False and again["commands"] == [], again

    os.chmod(s.flake, 0o777)  # a run killed during nixos-install, after the profile was made
    rc, repair = install(s, open_flake_dir=True)
    assert rc == 0 and repair["changed"] is True, repair
    assert len(repair["commands"]) == 1 and repair["commands"][0].endswith("chmod 0755 " + s.flake)
    assert mode_of(s.flake) == 0o755
    assert len([c for c in s.calls() if c["tool"] == "nixos-install"]) == 1


def test_open_flake_dir_closes_the_directory_when_the_install_fails(scratch):
    s = scratch(below_root=True)
    rc, res = install(s, open_flake_dir=True, extra_args=["--no-such-option"])
    assert rc != 0 and "nixos-install failed" in res["msg"], res
    assert mode_of(s.flake) == 0o755
    assert [c.split()[1:] for c in res["commands"] if os.path.basename(c.split()[0]) == "chmod"] == [
        ["0777", s.flake], ["0755", s.flake]]
    assert not os.path.lexists(s.profile)


def test_open_flake_dir_in_check_mode_lists_the_chmods_and_changes_nothing(scratch):
    s = scratch(below_root=True)
    rc, res = install(s, check=True, open_flake_dir=True)
    assert rc == 0 and res["changed"] is True, res
    assert [os.path.basename(c.split()[0]) for c in res["commands"]] == ["git", "chmod", "nixos-install", "chmod"]
    assert mode_of(s.flake) == 0o755 and "hardware-configuration.nix" not in s.tracked()
    assert s.calls() == []


def test_open_flake_dir_refuses_a_flake_outside_root(scratch):
    s = scratch()
    rc, res = install(s, open_flake_dir=True)
    assert rc != 0 and "open_flake_dir" in res["msg"] and "below root" in res["msg"], res
    assert res["commands"] == [] and s.calls() == [] and mode_of(s.flake) == 0o755


# swap.nix's assertion (the real NixOS module, evaluated by the kit behind the nix double)
SWAP_BY_UUID_RANDOM = HARDWARE_NIX.replace("}\n", """  swapDevices = [ {
    device = "/dev/disk/by-uuid/3f040604-aaa5-4d75-82ab-5192b8b45e5b";
    randomEncryption.enable = true;
  } ];
}
""")


def test_gate_stops_a_configuration_that_fails_an_assertion(scratch):
    """The pre-install gate: `nix eval` of the toplevel's drvPath (the nix TEST DOUBLE, answering with the
    evaluation kit's verdict) fails on swap.nix's assertion, so nixos-install never runs."""
    s = scratch()
    s.write("hardware-configuration.nix", SWAP_BY_UUID_RANDOM)
    rc, res = install(s)
    assert rc != 0 and res.get("failed") is True, res
    assert "does not evaluate, so nixos-install was not run and nothing was installed" in res["msg"]
    assert "Failed assertions:" in res["msg"]
    assert ('You cannot use swap device "/dev/disk/by-uuid/3f040604-aaa5-4d75-82ab-5192b8b45e5b" with '
            'randomEncryption enabled.') in res["msg"]
    assert res["cmd"][1:4] == ["eval", "--raw", "--no-write-lock-file"]
    assert res["cmd"][4] == '%s#nixosConfigurations."testhost".config.system.build.toplevel.drvPath' % s.flake
    assert res["log_tail"] == res["stdout_lines"] and any("Failed assertions" in x for x in res["log_tail"])
    assert [c["tool"] for c in s.calls()] == ["nix"] and s.calls()[0]["rc"] == 1
    assert s.calls()[0]["NIX_CONFIG"] == "experimental-features = nix-command flakes"
    assert not os.path.lexists(s.profile) and not os.path.exists(os.path.join(s.root, "etc/NIXOS"))
    # the staging before the gate happened (the flake must see the file it evaluates); nothing else
    assert "hardware-configuration.nix" in s.tracked()


def test_gate_passes_evaluates_before_installing_and_check_mode_evaluates(scratch):
    s = scratch()
    git(s.repo, "add", "hardware-configuration.nix")  # nothing to stage: check mode can evaluate
    rc, res = install(s, check=True)
    assert rc == 0, res
    assert re.match(r"^/nix/store/[0-9a-z]{32}-nixos-system-testhost-double\.drv$", res["drv_path"]), res
    assert [c["tool"] for c in s.calls()] == ["nix"] and not os.path.lexists(s.profile)
    rc, res = install(s)
    assert rc == 0, res
    assert res["drv_path"].endswith("-nixos-system-testhost-double.drv")
    assert [c["tool"] for c in s.calls()] == ["nix", "nix", "nixos-install"]
    assert res["eval_cmd"][0].endswith("/nix") and "nix eval" not in " ".join(res["commands"])
    # skipped install: no gate either
    rc, res = install(s)
    assert rc == 0 and res["changed"] is False and res["drv_path"] is None and res["eval_cmd"] is None, res
    assert len(s.calls()) == 3


def test_check_mode_with_files_to_stage_does_not_evaluate(scratch):
    s = scratch()
    s.write("hardware-configuration.nix", SWAP_BY_UUID_RANDOM)  # would fail the gate, if it ran
    rc, res = install(s, check=True)
    assert rc == 0, res
    assert res["drv_path"] is None and s.calls() == []
    assert any("was not evaluated" in w and "not staged yet (hardware-configuration.nix)" in w
               for w in res.get("warnings", [])), res


def test_gate_without_nix_on_the_target_fails(scratch, monkeypatch, tmp_path):
    """No nix on PATH: an error before anything is staged or installed (nixos-install would need nix too)."""
    s = scratch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(os.path.join(DOUBLES, "nixos-install"), str(bin_dir / "nixos-install"))
    for directory in ("/usr/bin", "/bin"):  # everything the system has, but nix
        for name in os.listdir(directory):
            if name != "nix" and not (bin_dir / name).exists():
                os.symlink(os.path.join(directory, name), str(bin_dir / name))
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.path.dirname(sys.executable))
    rc, res = install(s)
    assert rc != 0 and "nix is not on the target's PATH" in res["msg"], res
    assert s.calls() == [] and "hardware-configuration.nix" not in s.tracked()


@pytest.mark.parametrize("case, needle", [
    ("missing-dir", "does not exist on the target"),
    ("not-git", "is not in a git repository"),
    ("no-flake-nix", "has no flake.nix"),
    ("unknown-host", "'otherhost' does not appear in"),
    ("bad-host", "not a usable nixosConfigurations name"),
    ("no-root", "is not a directory"),
])
def test_clear_failures_before_running(scratch, case, needle):
    s = scratch()
    args = {}
    if case == "missing-dir":
        args["flake"] = s.flake + "-missing"
    elif case == "not-git":
        shutil.rmtree(os.path.join(s.repo, ".git"))
    elif case == "no-flake-nix":
        git(s.repo, "rm", "-q", "flake.nix")
    elif case == "unknown-host":
        args["host"] = "otherhost"
    elif case == "bad-host":
        args["host"] = "bad host"
    elif case == "no-root":
        args["root"] = s.root + "-missing"
    rc, res = install(s, **args)
    assert rc != 0 and res.get("failed") is True, res
    assert needle in res["msg"]
    if case == "not-git":
        assert "path:" in res["msg"]
    assert s.calls() == []


def test_generate_config_double_reads_real_mounts(loopdisk, scratch):
    """The nixos-generate-config double without its test seam, on a real layout: a tmpfs root, an ext4 loop
    partition on /nix, bind mounts from /nix/persist and a swap partition (vfat and LUKS need the guest)."""
    s = scratch()
    disk = loopdisk(96 * 1024 * 1024)
    subprocess.run(["parted", "-s", disk.device, "mklabel", "gpt", "mkpart", "swap", "linux-swap", "1MiB", "17MiB",
                    "mkpart", "nix", "ext4", "17MiB", "100%"], check=True)
    subprocess.run(["partx", "-u", disk.device], check=False)  # no udev here: make sure the nodes exist
    swap, nix = disk.device + "p1", disk.device + "p2"
    subprocess.run(["mkswap", "-L", "swap", swap], check=True, capture_output=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "nixos", nix], check=True)
    mnt = os.path.join(s.base, "mnt")
    mounted = []

    def mount(*argv):
        subprocess.run(["mount"] + list(argv), check=True)
        mounted.append(argv[-1])

    try:
        os.makedirs(mnt)
        mount("-t", "tmpfs", "-o", "size=64m,mode=755", "none", mnt)
        for d in ("nix", "etc/nixos", "var/log"):
            os.makedirs(os.path.join(mnt, d))
        mount(nix, os.path.join(mnt, "nix"))
        for d in ("etc/nixos", "var/log"):
            os.makedirs(os.path.join(mnt, "nix/persist", d))
            mount("--bind", os.path.join(mnt, "nix/persist", d), os.path.join(mnt, d))
        subprocess.run(["swapon", swap], check=True)
        mounted.append(None)
        proc = subprocess.run([os.path.join(DOUBLES, "nixos-generate-config"), "--root", mnt], capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        etc = os.path.join(mnt, "etc/nixos")
        expr = ('let hw = import %s/hardware-configuration.nix { config = { hardware.enableRedistributableFirmware '
                '= false; }; lib = { mkDefault = x: x; }; pkgs = { }; modulesPath = "/m"; }; '
                'in { inherit (hw) fileSystems swapDevices; }' % etc)
        got = json.loads(subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
                                        capture_output=True, text=True, check=True).stdout)
        uuid = {}
        for dev in (swap, nix):
            uuid[dev] = subprocess.run(["blkid", "-c", "/dev/null", "-s", "UUID", "-o", "value", dev],
                                       capture_output=True, text=True, check=True).stdout.strip()

        def stable(dev):  # by-uuid when udev made the link (in the guest), else the node (this host)
            link = "/dev/disk/by-uuid/" + uuid[dev]
            return link if os.path.exists(link) else dev

        assert got == {
            "fileSystems": {
                "/": {"device": "none", "fsType": "tmpfs"},
                "/nix": {"device": stable(nix), "fsType": "ext4"},
                "/etc/nixos": {"device": "/nix/persist/etc/nixos", "fsType": "none", "options": ["bind"]},
                "/var/log": {"device": "/nix/persist/var/log", "fsType": "none", "options": ["bind"]},
            },
            "swapDevices": [{"device": stable(swap)}],
        }
        with open(os.path.join(etc, "configuration.nix")) as f:
            assert "./hardware-configuration.nix" in f.read()
        assert [c["argv"][1:] for c in s.calls()] == [["--root", mnt]]
    finally:
        if None in mounted:
            subprocess.run(["swapoff", swap], check=False)
        for target in reversed([m for m in mounted if m]):
            subprocess.run(["umount", target], check=False)


NGC_CONFIGURATION_NIX = "{ config, pkgs, ... }:\n{\n  imports = [ ./hardware-configuration.nix ];\n}\n"
STARTER = {"files": [{"name": "flake.nix", "content": FLAKE_NIX},
                     {"name": "configuration.nix", "content": CONFIGURATION_NIX}]}


@pytest.fixture
def generated(scratch):
    """ROOT/etc/nixos as the hwconfig role leaves it: nixos-generate-config's two files, no flake, no git."""
    s = scratch(below_root=True)
    shutil.rmtree(s.repo)
    os.makedirs(s.repo, mode=0o755)
    s.write("hardware-configuration.nix", HARDWARE_NIX)
    s.write("configuration.nix", NGC_CONFIGURATION_NIX)
    return s


def listing(s):
    return dict((name, open(os.path.join(s.flake, name)).read()) for name in sorted(os.listdir(s.flake))
                if os.path.isfile(os.path.join(s.flake, name)))


def test_starter_in_check_mode_shows_the_files_and_writes_nothing(generated):
    s = generated
    before = listing(s)
    argv = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", MODULE, "--check", "--diff", "-a",
            json.dumps(dict(flake=s.flake, host="testhost", root=s.root, starter=STARTER, open_flake_dir=True))]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "+    nixosConfigurations.testhost = nixpkgs.lib.nixosSystem {" in proc.stdout  # flake.nix, new
    assert '-{ config, pkgs, ... }:' in proc.stdout and '+  networking.hostName = "testhost";' in proc.stdout
    rc, res = install(s, check=True, starter=STARTER, open_flake_dir=True)
    assert rc == 0 and res["changed"], res
    assert res["starter_written"] == ["flake.nix", "configuration.nix"] and res["flake_checked"] is False
    assert [os.path.basename(c.split()[0]) for c in res["commands"]] == ["git", "chmod", "nixos-install", "chmod"]
    assert res["commands"][0].endswith("init --quiet")
    assert listing(s) == before and not os.path.exists(os.path.join(s.flake, ".git")) and s.calls() == []


def test_starter_is_written_initialised_staged_and_installed_in_one_call_then_left_alone(generated):
    s = generated
    rc, res = install(s, starter=STARTER, open_flake_dir=True)
    assert rc == 0 and res["changed"], res
    assert res["starter_written"] == ["flake.nix", "configuration.nix"] and res["flake_checked"] is True
    assert s.read("flake.nix") == FLAKE_NIX and s.read("configuration.nix") == CONFIGURATION_NIX
    assert all(mode_of(os.path.join(s.flake, n)) == 0o644 for n in ("flake.nix", "configuration.nix"))
    assert res["commands"][0].endswith("-C %s -c 'safe.directory=*' init --quiet" % s.flake), res["commands"]
    assert sorted(res["staged"]) == ["configuration.nix", "flake.nix", "hardware-configuration.nix"]
    assert s.installed()["host"] == "testhost" and mode_of(s.flake) == 0o755

    rc, again = install(s, starter=STARTER, open_flake_dir=True)
    assert rc == 0 and not again["changed"] and again["starter_written"] == [] and again["commands"] == [], again

    s.write("configuration.nix", CONFIGURATION_NIX + "# my edit\n")
    rc, edited = install(s, starter=STARTER, reinstall=True)
    assert rc == 0 and edited["starter_written"] == [], edited  # flake.nix exists: the user's edit is kept
    assert s.read("configuration.nix").endswith("# my edit\n")
    rc, over = install(s, starter=dict(STARTER, overwrite=True), reinstall=True)
    assert rc == 0 and over["starter_written"] == ["configuration.nix"], over  # flake.nix already as given
    assert s.read("configuration.nix") == CONFIGURATION_NIX


@pytest.mark.parametrize("case, needle", [
    ("remote", "is not one"),
    ("link", "is a symbolic link"),
    ("name", "give a file name in the flake directory"),
    ("twice", "flake.nix is given twice"),
    ("dir", "Is a directory; nothing was written"),
])
def test_starter_refusals_write_nothing(generated, tmp_path, case, needle):
    s = generated
    starter, flake = STARTER, s.flake
    if case == "remote":
        flake = "github:example/flake"
    elif case == "link":
        outside = tmp_path / "elsewhere.nix"
        outside.write_text("{ }\n")
        os.symlink(str(outside), os.path.join(s.flake, "flake.nix"))
    elif case == "dir":
        os.mkdir(os.path.join(s.flake, "flake.nix"))
    elif case == "name":
        starter = {"files": [{"name": "../flake.nix", "content": FLAKE_NIX}]}
    else:
        starter = {"files": STARTER["files"] + [{"name": "flake.nix", "content": "{ }\n"}]}
    before = listing(s)
    rc, res = install(s, flake=flake, starter=starter)
    assert rc != 0 and needle in res["msg"], res
    assert listing(s) == before and not os.path.exists(os.path.join(s.flake, ".git")) and s.calls() == []
    if case == "link":
        assert (tmp_path / "elsewhere.nix").read_text() == "{ }\n"
