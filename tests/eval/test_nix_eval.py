# SPDX-License-Identifier: GPL-3.0-or-later
"""Every configuration the collection writes, evaluated against real NixOS option declarations (`make eval`).

What is evaluated:
  * the hardware-configuration.nix of each layout (LUKS or not, swap or not, the layout's persist bind mounts or
    none): written by the nixos-generate-config TEST DOUBLE from a machine description, then patched by the
    collection's own patcher (plugins/module_utils/_hwconfig.py), as the hwconfig role does;
  * the check-mode plan's version of it (the patched stand-in hwconfig_patch shows before the disk exists);
  * the starter flake.nix + configuration.nix of every variant whose Nix output differs (users or none, the
    default, custom or empty persist lists, with or without the layout's bind mounts, with the identity role's
    host keys and machine-id), rendered by the flake role itself in one playbook run
    (tests/eval/render_starters.yml). The role's pre-install gate runs there too, through the `nix` TEST DOUBLE;
  * each starter with each hardware configuration it can meet;
  * the files the Molecule guests really got, when a Molecule run left them in $IMPERMANENT_TEST_LOGS
    (default .build/test-logs; molecule/default/tests/test_install.py saves them and evaluates them itself).

Each must evaluate with no failed assertion, no warning and no path mounted twice. The oracle (tests/eval/oracle.py)
is a real nixpkgs when one is at hand, else the vendored offline kit (tests/nix-eval); the double-mount check always
reads the kit's report (impermanence's generated mount units). Without nix-instantiate the layer skips and says why.
The oracle used and the number of configurations evaluated are printed at the end.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

import oracle
from ansible_collections.impermanent.nixos.plugins.module_utils import _hwconfig as hwconfig

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = oracle.REPO
DOUBLES = os.path.join(REPO, "tests", "images", "doubles")
GENERATE = os.path.join(DOUBLES, "nixos-generate-config")
ORACLE, ORACLE_DETAIL, SKIP = oracle.choose()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

EVALUATED = []  # (name, oracle) of every configuration that passed; conftest.py prints the count

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq1aN0tARealKeyButWellFormed0000000000000 admin@controller"
BINDS = ["/etc/nixos", "/var/log"]  # the layout role's default layout_persist
UUIDS = {"boot": "BC56-78F2", "nix": "5ccf78d1-6874-4974-b2b1-f38c96811c2a",
         "luks": "0f3a4e1b-9c2d-4e5f-a6b7-c8d9e0f1a2b3", "swap": "d3a38786-4e6b-4723-80e0-a234075b28e8"}
SWAP_PARTUUID = "1d9d1b3c-7d30-374c-b195-e7698003933f"

# Hardware configurations: (LUKS, swap, the layout's bind mounts)
LAYOUTS = {
    "luks-swap": (True, True, BINDS),
    "luks-noswap": (True, False, BINDS),
    "plain-swap": (False, True, BINDS),
    "plain-noswap": (False, False, BINDS),
    "luks-swap-nobinds": (True, True, []),
}
# Starter variants: role variables (flake_hwconfig_bind_mounts follows layout_persist, as in provision.yml)
STARTERS = {
    "defaults": {"layout_persist": BINDS},
    "users": {"layout_persist": BINDS, "flake_users": [
        {"name": "alice", "groups": ["wheel", "networkmanager"], "authorized_keys": [KEY]},
        {"name": "bob", "authorized_keys": [KEY]}]},
    "custom-lists": {"layout_persist": BINDS, "flake_persist_directories": [
        "/etc/nixos", "/var/lib/nixos", "/var/lib/libvirt", "/srv/data"],
        "flake_persist_files": ["/etc/machine-id", "/etc/adjtime"]},
    "empty-lists": {"layout_persist": BINDS, "flake_persist_directories": [], "flake_persist_files": []},
    "nobinds": {"layout_persist": []},
    # what the identity role leaves for the starter: host keys and machine-id read from the persistent directory
    "identity": {"layout_persist": BINDS, "flake_users": [{"name": "alice", "authorized_keys": [KEY]}],
                 "identity_persisted": {
                     "persist_dir": "/nix/persist", "host_key_types": ["ed25519", "rsa"],
                     "machine_id": "/nix/persist/etc/machine-id",
                     "replaces": ["/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key",
                                  "/etc/ssh/ssh_host_ed25519_key.pub", "/etc/ssh/ssh_host_rsa_key",
                                  "/etc/ssh/ssh_host_rsa_key.pub"]}},
}
# which hardware configurations each starter meets (the bind mounts come from the same layout_persist)
PAIRS = [(s, h) for s in ("defaults", "users", "custom-lists", "empty-lists", "identity")
         for h in LAYOUTS if h != "luks-swap-nobinds"]
PAIRS += [("nobinds", "luks-swap-nobinds")]
# A starter input broken on purpose: a directory persisted twice (flake_persist_directories lists it twice).
BROKEN_STARTER = {"layout_persist": BINDS,
                  "flake_persist_directories": ["/var/lib/nixos", "/var/lib/systemd", "/var/lib/nixos"]}


# ---------------------------------------------------------------------------------------------- the inputs

def machine(luks, swap, binds):
    """A machine description for the nixos-generate-config double (its IMPERMANENT_DOUBLES_MACHINE seam): the
    layout role's mounts below /mnt, as the Molecule guest shows them."""
    nix_dev, nix_src = ("253:0", "/dev/mapper/crypted") if luks else ("254:3", "/dev/vda3")
    lines = ["22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
             "23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw",
             "26 1 254:17 / / rw,relatime shared:1 - ext4 /dev/vdb1 rw",
             "60 26 0:47 / /mnt rw,relatime shared:30 - tmpfs none rw,size=1002568k,mode=755",
             "61 60 %s / /mnt/nix rw,relatime shared:31 - ext4 %s rw" % (nix_dev, nix_src)]
    for i, path in enumerate(binds):
        lines.append("%d 60 %s /persist%s /mnt%s rw,relatime shared:31 - ext4 %s rw" % (62 + i, nix_dev, path, path,
                                                                                          nix_src))
    lines.append("70 60 254:1 / /mnt/boot rw,relatime shared:32 - vfat /dev/vda1 rw,fmask=0077,dmask=0077,"
                 "codepage=437,iocharset=ascii,shortname=mixed,utf8,errors=remount-ro")
    devices = {"/dev/vda1": {"UUID": UUIDS["boot"], "TYPE": "vfat"}}
    if luks:
        devices["/dev/mapper/crypted"] = {"UUID": UUIDS["nix"], "TYPE": "ext4", "dm_name": "crypted",
                                          "dm_uuid": "CRYPT-LUKS2-%s-crypted" % UUIDS["luks"].replace("-", ""),
                                          "slaves": ["/dev/vda3"]}
        devices["/dev/vda3"] = {"UUID": UUIDS["luks"], "TYPE": "crypto_LUKS"}
    else:
        devices["/dev/vda3"] = {"UUID": UUIDS["nix"], "TYPE": "ext4"}
    swaps = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    if swap:
        devices["/dev/vda2"] = {"UUID": UUIDS["swap"], "TYPE": "swap"}
        swaps += "/dev/vda2                               partition\t1048572\t\t0\t\t-2\n"
    return {"mountinfo": "\n".join(lines) + "\n", "swaps": swaps, "devices": devices, "virt": "qemu",
            "initrd_modules": ["ahci", "xhci_pci", "virtio_pci", "sr_mod", "virtio_blk"],
            "cpuinfo": "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu svm sse2\n",
            "interfaces": ["eth0"], "efi": True, "machine": "x86_64"}


def generated_hwconfig(tmp, name, luks, swap, binds):
    """What the hwconfig role leaves: the double's hardware-configuration.nix, patched by the collection's
    patcher with the role's defaults (swap random encryption with LUKS, as the disk role sets it)."""
    path = os.path.join(tmp, "machine-%s.json" % name)
    with open(path, "w") as f:
        json.dump(machine(luks, swap, binds), f)
    env = dict(os.environ, IMPERMANENT_DOUBLES_MACHINE=path, IMPERMANENT_DOUBLES_LOG=os.path.join(tmp, "gen.log"))
    proc = subprocess.run([GENERATE, "--root", "/mnt", "--show-hardware-config"], capture_output=True, text=True,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    plan = hwconfig.plan_patch(proc.stdout, swap_random_encryption=luks,
                               resolve_partuuid={"/dev/disk/by-uuid/" + UUIDS["swap"]: SWAP_PARTUUID}.get)
    return plan.after


def stand_in_hwconfig():
    """The check-mode plan's version: the patched stand-in hwconfig_patch diffs before the disk exists."""
    text, resolve = hwconfig.stand_in("/boot", "/dev/vda1", ["/dev/vda2"])
    return hwconfig.plan_patch(text, swap_random_encryption=True, resolve_partuuid=resolve).after


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.fixture(scope="module")
def work():
    base = tempfile.mkdtemp(prefix="impermanent-eval-", dir="/tmp")
    os.chmod(base, 0o755)  # nixos-install (the double, like the real one) wants a root others can enter
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def hwconfigs(work):
    made = {name: write(os.path.join(work, "hw", name, "hardware-configuration.nix"),
                        generated_hwconfig(work, name, *spec)) for name, spec in LAYOUTS.items()}
    made["check-mode-stand-in"] = write(os.path.join(work, "hw", "stand-in", "hardware-configuration.nix"),
                                        stand_in_hwconfig())
    return made


@pytest.fixture(scope="module")
def rendered(work, hwconfigs):
    """Every starter variant (and the broken one) rendered and installed by the flake role, in one playbook run
    over local hosts. Returns {variant: (flake directory, that host's result of the install task)}."""
    variants = dict(STARTERS, **{"broken-duplicate-dir": BROKEN_STARTER})
    hosts = {}
    for name, role_vars in variants.items():
        root = os.path.join(work, "starter", name, "root")
        hw_name = "luks-swap-nobinds" if name == "nobinds" else "luks-swap"
        with open(hwconfigs[hw_name]) as f:
            write(os.path.join(root, "etc", "nixos", "hardware-configuration.nix"), f.read())
        hosts[name] = dict(role_vars, flake_root=root, flake_hostname="eval-" + name,
                           ansible_connection="local", ansible_python_interpreter=sys.executable)
    inventory = write(os.path.join(work, "inventory.yml"), yaml.safe_dump({"all": {"hosts": hosts}}))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_LOCALHOST_WARNING="false",
               PATH=DOUBLES + os.pathsep + os.environ["PATH"],
               IMPERMANENT_DOUBLES_LOG=os.path.join(work, "doubles.log"))
    env.pop("NIX_CONFIG", None)
    proc = subprocess.run(["ansible-playbook", "-i", inventory, "-f", "6", os.path.join(HERE, "render_starters.yml")],
                          capture_output=True, text=True, env=env, check=False)
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        pytest.fail("ansible-playbook gave no JSON (rc=%s): %s %s" % (proc.returncode, proc.stdout[-3000:],
                                                                     proc.stderr[-3000:]))
    install = {}
    for play in data["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith("Install NixOS from the flake"):
                install.update(task["hosts"])
    out = {}
    for name in variants:
        assert name in install, "no install task result for %s: %s" % (name, proc.stdout[-3000:])
        out[name] = (os.path.join(hosts[name]["flake_root"], "etc", "nixos"), install[name])
    return out


# ---------------------------------------------------------------------------------------------- evaluation

def evaluate(hw, flake_dir, host):
    """(exit status, report) from the chosen oracle; the report has failedAssertions/warnings (kit) or
    drvPath/warnings (nixpkgs), evalError when the evaluation failed."""
    if ORACLE == "nixpkgs":
        # the flake evaluates its own ./hardware-configuration.nix: put this one there
        tmp = tempfile.mkdtemp(prefix="impermanent-eval-flake-")
        try:
            for name in ("flake.nix", "configuration.nix"):
                shutil.copy(os.path.join(flake_dir, name), tmp)
            shutil.copy(hw, os.path.join(tmp, "hardware-configuration.nix"))
            return oracle.run_nixpkgs(oracle.find_nixpkgs(), os.path.join(tmp, "flake.nix"), host)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return oracle.run_kit(hw, os.path.join(flake_dir, "configuration.nix"))


def assert_clean(name, rc, report, hw, configuration):
    assert rc == 0, "%s does not evaluate (%s, exit %s): %s" % (
        name, ORACLE, rc, report.get("failedAssertions") or report.get("evalError") or report.get("sectionErrors"))
    assert report.get("failedAssertions", []) == [], (name, report["failedAssertions"])
    assert report.get("warnings") == [], (name, report.get("warnings"))
    if ORACLE != "kit":  # the double-mount lint reads the kit's report (impermanence's generated mount units)
        rc, report = oracle.run_kit(hw, configuration)
        assert rc == 0, (name, report)
    assert oracle.double_mounts(report) == [], (name, oracle.double_mounts(report))
    EVALUATED.append((name, ORACLE))


@pytest.mark.parametrize("starter, layout", PAIRS, ids=["%s+%s" % p for p in PAIRS])
def test_starter_with_each_layout_evaluates(rendered, hwconfigs, starter, layout):
    flake_dir, install = rendered[starter]
    assert install.get("failed") is not True, install.get("msg")
    rc, report = evaluate(hwconfigs[layout], flake_dir, "eval-" + starter)
    assert_clean("%s + %s" % (starter, layout), rc, report, hwconfigs[layout],
                 os.path.join(flake_dir, "configuration.nix"))


def test_check_mode_plan_evaluates(rendered, hwconfigs):
    with open(hwconfigs["check-mode-stand-in"]) as f:
        text = f.read()
    assert "STAND-IN" in text and "randomEncryption.enable = true" in text
    rc, report = evaluate(hwconfigs["check-mode-stand-in"], rendered["defaults"][0], "eval-defaults")
    assert_clean("defaults + check-mode stand-in", rc, report, hwconfigs["check-mode-stand-in"],
                 os.path.join(rendered["defaults"][0], "configuration.nix"))


def test_role_ran_the_pre_install_gate(rendered):
    """Every good variant went through the gate (nix eval of the toplevel's drvPath) and was installed."""
    for name in STARTERS:
        _flake_dir, install = rendered[name]
        assert install.get("changed") is True, (name, install.get("msg"))
        assert re.match(r"^/nix/store/[0-9a-z]{32}-nixos-system-eval-%s-double\.drv$" % name, install["drv_path"])


def test_one_owner_for_each_persisted_path(rendered, hwconfigs):
    """What hardware-configuration.nix bind-mounts (the layout's persist paths) is not in the starter's
    environment.persistence, and the reverse: the kit sees no path mounted twice, in stage 1 or after."""
    flake_dir, _install = rendered["defaults"]
    with open(os.path.join(flake_dir, "configuration.nix")) as f:
        text = f.read()
    assert "hardware-configuration.nix mounts them already" in text and "/etc/nixos, /var/log." in text
    rc, report = oracle.run_kit(hwconfigs["luks-swap"], os.path.join(flake_dir, "configuration.nix"))
    assert rc == 0 and oracle.double_mounts(report) == []
    fs = report["fileSystems"]
    assert fs["/etc/nixos"]["options"] == ["bind"] and "x-initrd.mount" in fs["/var/log"]["options"]  # stage 1
    persisted = [d["directory"] for d in report["persistence"]["/nix/persist"]["directories"]]
    assert persisted == ["/var/lib/nixos", "/var/lib/systemd", "/var/lib/bluetooth"]
    # without the layout's bind mounts, impermanence owns them, in the initrd too for /var/log
    flake_dir, _install = rendered["nobinds"]
    rc, report = oracle.run_kit(hwconfigs["luks-swap-nobinds"], os.path.join(flake_dir, "configuration.nix"))
    assert rc == 0 and oracle.double_mounts(report) == []
    assert "/etc/nixos" not in report["fileSystems"] and "/var/log" not in report["fileSystems"]
    initrd = [m["where"] for m in report["impermanenceUnits"]["initrdSystemdMounts"]]
    assert "/sysroot/var/log" in initrd


def test_the_old_pairing_is_caught(rendered, hwconfigs, work):
    """The lint can fail: the starter listing the layout's paths again (as before one owner was chosen) with the
    bind-mounting hardware-configuration.nix mounts /etc/nixos and /var/log twice."""
    flake_dir, _install = rendered["nobinds"]  # lists /etc/nixos and /var/log itself
    rc, report = oracle.run_kit(hwconfigs["luks-swap"], os.path.join(flake_dir, "configuration.nix"))
    problems = oracle.double_mounts(report)
    assert rc == 0 and any(p.startswith("/etc/nixos: ") for p in problems), problems
    assert any(p.startswith("/var/log: a fileSystems entry and one of impermanence's initrdSystemdMounts")
               for p in problems), problems


def test_broken_starter_fails_with_nixos_message(rendered, hwconfigs):
    """A directory persisted twice: impermanence's own assertion, from the oracle and from the role's pre-install
    gate, which stopped the install (no system profile)."""
    flake_dir, install = rendered["broken-duplicate-dir"]
    rc, report = evaluate(hwconfigs["luks-swap"], flake_dir, "eval-broken-duplicate-dir")
    message = json.dumps(report.get("failedAssertions") or report.get("evalError"))
    assert rc == 1 and "The following directories were specified two or more" in message, report
    assert install.get("failed") is True
    assert "does not evaluate, so nixos-install was not run and nothing was installed" in install["msg"]
    assert "Failed assertions:" in install["msg"] and "/var/lib/nixos" in install["msg"]
    root = os.path.dirname(os.path.dirname(flake_dir))
    assert not os.path.lexists(os.path.join(root, "nix/var/nix/profiles/system"))


def test_broken_hwconfig_fails_with_nixos_message(rendered, hwconfigs, work):
    """Swap by-uuid with random encryption (what the patch exists to prevent): swap.nix's own assertion."""
    with open(hwconfigs["luks-swap"]) as f:
        text = f.read()
    broken = text.replace("/dev/disk/by-partuuid/" + SWAP_PARTUUID, "/dev/disk/by-uuid/" + UUIDS["swap"])
    assert broken != text
    path = write(os.path.join(work, "hw", "broken-swap", "hardware-configuration.nix"), broken)
    rc, report = evaluate(path, rendered["defaults"][0], "eval-defaults")
    message = json.dumps(report.get("failedAssertions") or report.get("evalError"))
    assert rc == 1, report
    assert ('You cannot use swap device \\"/dev/disk/by-uuid/%s\\" with randomEncryption enabled.' % UUIDS["swap"]
            in message), message


def molecule_configs():
    logs = os.environ.get("IMPERMANENT_TEST_LOGS") or os.path.join(REPO, ".build", "test-logs")
    return sorted(glob.glob(os.path.join(logs, "nixos-config", "*", "*", "hardware-configuration.nix")))


@pytest.mark.skipif(not molecule_configs(), reason=(
    "no Molecule files to evaluate: `make molecule` saves each guest's hardware-configuration.nix and starter under "
    "$IMPERMANENT_TEST_LOGS/nixos-config/SCENARIO/HOST (and evaluates them in its verify step); run this layer "
    "again after it"))
@pytest.mark.parametrize("hw", molecule_configs(), ids=lambda p: "/".join(p.split(os.sep)[-3:-1]))
def test_molecule_guest_files_evaluate(hw):
    directory = os.path.dirname(hw)
    with open(os.path.join(directory, "flake.nix")) as f:
        host = re.search(r'nixosConfigurations\."([^"]+)"', f.read()).group(1)
    rc, report = evaluate(hw, directory, host)
    assert_clean("molecule " + "/".join(directory.split(os.sep)[-2:]), rc, report, hw,
                 os.path.join(directory, "configuration.nix"))
