# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify a full `impermanent.nixos.provision` run inside the guest, step by step (docs/design.md numbering).

Shared by every scenario: molecule/nvme and molecule/topology pull this file in through the testinfra
`additional_files_or_dirs` option. What the scenario asked for (disk, swap, LUKS, host name) is read from the
host's inventory variables, so each scenario checks its own inputs; the expectations themselves (GUIDs, labels,
sizes, mount options, Nix values) are written here independently of the roles.

`nixos-generate-config` and `nixos-install` are test doubles in the guest (tests/images/doubles/): step 10 checks
the call the collection made, not a real NixOS build.
"""
import json
import math
import os
import sys

import pytest

MiB = 1024 * 1024
ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
SWAP_GUID = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
LINUX_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
LUKS_GUID = "CA7D7CCB-63ED-4C53-861C-1742536059CC"  # Discoverable Partitions Spec: LUKS
IEC = {"KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB, "TiB": 1024 * 1024 * MiB}
DOUBLES_LOG = "/var/log/impermanent-doubles.log"
HWCONFIG = "/mnt/etc/nixos/hardware-configuration.nix"
NIX_EVAL = (
    'let f = import %s { config = {}; lib = { mkDefault = x: x; mkForce = x: x; }; pkgs = {}; '
    'modulesPath = "/m"; }; in { inherit (f) fileSystems swapDevices; luks = f.boot.initrd.luks.devices or {}; }'
)

_cache = {}


def _once(host, key, fn):
    k = (host.backend.get_hostname(), key)
    if k not in _cache:
        _cache[k] = fn()
    return _cache[k]


def iec(text):
    text = str(text).strip()
    for unit, factor in IEC.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


@pytest.fixture()
def hv(host):
    """The scenario's inputs: the host's inventory variables, with the roles' documented defaults."""
    def load():
        v = host.ansible.get_variables()
        return {
            "disk": v["disk_device"],
            "swap": str(v.get("disk_swap_size", "8GiB")),
            "esp": str(v.get("disk_esp_size", "512MiB")),
            "luks": bool(v.get("disk_luks", False)),
            "mapper": "/dev/mapper/%s" % v.get("disk_luks_name", "crypted"),
            "hostname": v["flake_hostname"],
            # molecule/reinstall enlarges the disk after the install: the table keeps the size it was written for
            "grown": int(v.get("harness_disk_grown_bytes", 0)),
        }
    return _once(host, "hv", load)


def with_swap(hv):
    return hv["swap"].strip() not in ("0", "")


@pytest.fixture()
def disk(host, hv):
    """The data disk as the guest sees it: kernel name, sizes, topology, and its GPT read with sfdisk."""
    def load():
        dev = host.check_output("readlink -f %s", hv["disk"])
        name = os.path.basename(dev)
        sysfs = "/sys/block/%s" % name
        q = {k: int(host.check_output("cat %s/queue/%s", sysfs, k)) for k in (
            "logical_block_size", "physical_block_size", "minimum_io_size", "optimal_io_size")}
        q["alignment_offset"] = int(host.check_output("cat %s/alignment_offset", sysfs))
        size = int(host.check_output("blockdev --getsize64 %s", dev))
        table = json.loads(host.check_output("sfdisk --json %s", dev))["partitiontable"]
        parted = host.check_output("parted -s -m %s unit B print", dev).splitlines()
        flags = {}
        for line in parted[2:]:
            fields = line.rstrip(";").split(":")
            flags[int(fields[0])] = [f.strip() for f in fields[6].split(",") if f.strip()]
        sector = table.get("sectorsize", q["logical_block_size"])
        parts = []
        for number, p in enumerate(table["partitions"], start=1):
            parts.append({
                "number": number, "node": p["node"], "name": p.get("name", ""), "type": p["type"].upper(),
                "uuid": p["uuid"].lower(), "start": p["start"] * sector, "size": p["size"] * sector,
                "flags": flags.get(number, []),
            })
        return {"dev": dev, "name": name, "queue": q, "size": size, "table": table, "parts": parts}
    return _once(host, "disk", load)


def grain(queue):
    """Where parted's `align-check optimal` wants partitions to start (its Linux rule), in bytes."""
    opt = queue["optimal_io_size"]
    if opt == 0 or (MiB % opt == 0 and queue["alignment_offset"] == 0):
        return MiB
    return opt


def part(disk, name):
    found = [p for p in disk["parts"] if p["name"] == name]
    assert len(found) == 1, "expected one partition named %r in %s" % (name, disk["parts"])
    return found[0]


def nix_device(hv, disk):
    return hv["mapper"] if hv["luks"] else part(disk, "nix")["node"]


# --- step 3: GPT, names, types, flags, IEC sizes, alignment -----------------------------------------------------

def test_partition_table_layout(hv, disk):
    """Step 3: GPT with boot (ESP), swap (unless 0) and nix, with the right type GUIDs and ESP flags."""
    assert disk["table"]["label"] == "gpt"
    names = [p["name"] for p in disk["parts"]]
    assert names == (["boot", "swap", "nix"] if with_swap(hv) else ["boot", "nix"])
    boot = part(disk, "boot")
    assert boot["type"] == ESP_GUID
    assert "boot" in boot["flags"] and "esp" in boot["flags"], boot["flags"]
    if with_swap(hv):
        assert part(disk, "swap")["type"] == SWAP_GUID
    assert part(disk, "nix")["type"] == (LUKS_GUID if hv["luks"] else LINUX_GUID)


def test_partition_paths(hv, disk):
    """Step 3: partitions are numbered in order and named after the disk the kernel's way (vdb1, nvme0n1p1)."""
    sep = "p" if disk["name"][-1].isdigit() else ""
    for p in disk["parts"]:
        assert p["node"] == "%s%s%d" % (disk["dev"], sep, p["number"])


def test_partition_sizes(hv, disk):
    """Step 3: ESP and swap have the declared IEC sizes, exactly when the size is a multiple of the alignment unit
    (the lcm of parted's optimal grain and 1MiB: every boundary must sit on both), else rounded up by less than one
    unit (never smaller than declared); nix fills the rest of the disk (as it was when the table was written)."""
    g = math.lcm(grain(disk["queue"]), MiB)
    declared = [("boot", iec(hv["esp"]))] + ([("swap", iec(hv["swap"]))] if with_swap(hv) else [])
    for name, size in declared:
        got = part(disk, name)["size"]
        if size % g == 0:
            assert got == size, (name, got, size)
        else:
            assert size < got < size + g, (name, got, size, g)
    nix = part(disk, "nix")
    sector = disk["queue"]["logical_block_size"]
    backup_gpt = sector + -(-128 * 128 // sector) * sector  # the backup GPT: a header and 128 entries of 128 bytes
    table_end = disk["size"] - hv["grown"] - backup_gpt
    assert (disk["table"]["lastlba"] + 1) * sector == table_end, (disk["table"]["lastlba"], disk["size"], hv["grown"])
    unused_tail = table_end - (nix["start"] + nix["size"])
    assert 0 <= unused_tail < max(g, MiB), unused_tail


def test_partition_starts_aligned(hv, disk):
    """Step 3: the first partition starts at 1MiB or later and every start is on the optimal alignment grain;
    the partitions follow each other without gaps of a grain or more."""
    g = grain(disk["queue"])
    parts = disk["parts"]
    assert parts[0]["start"] >= MiB
    if g == MiB:
        assert parts[0]["start"] == MiB
    for p in parts:
        assert (p["start"] - disk["queue"]["alignment_offset"]) % g == 0, (p, g)
    for prev, nxt in zip(parts, parts[1:]):
        assert 0 <= nxt["start"] - (prev["start"] + prev["size"]) < g


def test_parted_align_check_optimal(host, disk):
    """Step 3: `parted align-check optimal N` passes for every partition (interactive mode, which prints
    "N aligned" or "N not aligned"; script mode prints nothing)."""
    for p in disk["parts"]:
        cmd = host.run("parted %s align-check optimal %s", disk["dev"], str(p["number"]))
        assert cmd.rc == 0, (p, cmd.stdout, cmd.stderr)
        assert cmd.stdout.strip() == "%d aligned" % p["number"], cmd.stdout


# --- step 4: LUKS -----------------------------------------------------------------------------------------------

def test_luks_header_and_mapper(host, hv, disk):
    """Step 4: with LUKS, the nix partition has a LUKS2 header and is open as /dev/mapper/crypted; without, neither."""
    nix = part(disk, "nix")["node"]
    is_luks = host.run("cryptsetup isLuks %s", nix).rc == 0
    assert is_luks == hv["luks"]
    if not hv["luks"]:
        assert not host.file(hv["mapper"]).exists
        return
    dump = host.check_output("cryptsetup luksDump %s", nix)
    assert any(line.split() == ["Version:", "2"] for line in dump.splitlines()), dump
    assert host.file(hv["mapper"]).exists
    status = host.check_output("cryptsetup status %s", os.path.basename(hv["mapper"]))
    assert "type:    LUKS2" in status
    assert any(line.split() == ["device:", nix] for line in status.splitlines()), status


# --- step 5: filesystems ----------------------------------------------------------------------------------------

def _blkid(host, dev):
    out = host.check_output("blkid -p -o export %s", dev)  # low-level probe: no cache, reports VERSION
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_filesystems(host, hv, disk):
    """Step 5: FAT32 labelled boot on the ESP, swap labelled swap, ext4 labelled nixos on the partition or mapper."""
    boot = _blkid(host, part(disk, "boot")["node"])
    assert (boot["TYPE"], boot["LABEL"], boot.get("VERSION")) == ("vfat", "boot", "FAT32"), boot
    if with_swap(hv):
        swap = _blkid(host, part(disk, "swap")["node"])
        assert (swap["TYPE"], swap["LABEL"]) == ("swap", "swap"), swap
    nixfs = _blkid(host, nix_device(hv, disk))
    assert (nixfs["TYPE"], nixfs["LABEL"]) == ("ext4", "nixos"), nixfs


# --- step 6: tmpfs root, mounts, persist bind mounts ------------------------------------------------------------

@pytest.fixture()
def mounts(host):
    def load():
        data = json.loads(host.check_output("findmnt -J -o TARGET,SOURCE,FSTYPE,OPTIONS,FSROOT --list"))
        return {fs["target"]: fs for fs in data["filesystems"]}
    return _once(host, "mounts", load)


def test_tmpfs_root(host, mounts):
    """Step 6: /mnt is a tmpfs of mode 755 sized 25% of RAM."""
    fs = mounts["/mnt"]
    assert fs["fstype"] == "tmpfs"
    options = fs["options"].split(",")
    assert "mode=755" in options
    assert host.file("/mnt").mode == 0o755
    size_kib = int([o for o in options if o.startswith("size=")][0][len("size="):].rstrip("k"))
    mem_kib = int(host.check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo"))
    expected = (mem_kib // 4 * 25 // 100) * 4  # tmpfs: 25% of the RAM pages
    assert abs(size_kib - expected) <= 4, (size_kib, expected)


def test_boot_and_nix_mounts(hv, disk, mounts):
    """Step 6: the ESP on /mnt/boot with umask 0077 (fmask/dmask 0077), the nix filesystem on /mnt/nix."""
    boot = mounts["/mnt/boot"]
    assert boot["source"] == part(disk, "boot")["node"] and boot["fstype"] == "vfat"
    options = boot["options"].split(",")
    assert "fmask=0077" in options and "dmask=0077" in options, options
    nix = mounts["/mnt/nix"]
    assert nix["source"] == nix_device(hv, disk) and nix["fstype"] == "ext4" and nix["fsroot"] == "/"


def test_persist_bind_mounts(host, hv, disk, mounts):
    """Step 6: /mnt/etc/nixos and /mnt/var/log are bind mounts of /nix/persist/{etc/nixos,var/log}."""
    for target, root in (("/mnt/etc/nixos", "/persist/etc/nixos"), ("/mnt/var/log", "/persist/var/log")):
        fs = mounts[target]
        assert fs["source"] == "%s[%s]" % (nix_device(hv, disk), root), fs
        assert fs["fsroot"] == root
        assert host.file("/mnt/nix" + root).is_directory


# --- step 7: swap -----------------------------------------------------------------------------------------------

def test_swap_active(host, hv, disk):
    """Step 7: the swap partition is active (and nothing from the data disk is when swap is 0)."""
    lines = host.file("/proc/swaps").content_string.splitlines()[1:]
    active = [host.check_output("readlink -f %s", line.split()[0]) for line in lines]
    on_disk = [a for a in active if a.startswith(disk["dev"])]
    if with_swap(hv):
        assert on_disk == [part(disk, "swap")["node"]]
    else:
        assert on_disk == []


# --- step 8: hardware-configuration.nix, evaluated --------------------------------------------------------------

@pytest.fixture()
def hwconfig(host):
    return _once(host, "hwconfig", lambda: json.loads(host.check_output(
        "nix-instantiate --eval --strict --json -E %s", NIX_EVAL % HWCONFIG)))


def test_hwconfig_root_and_boot(hwconfig):
    """Step 8: fileSystems."/" is the tmpfs with defaults/size=25%/mode=755; /boot is vfat with umask=0077."""
    root = hwconfig["fileSystems"]["/"]
    assert root["fsType"] == "tmpfs"
    assert root["options"] == ["defaults", "size=25%", "mode=755"]
    boot = hwconfig["fileSystems"]["/boot"]
    assert boot["fsType"] == "vfat"
    assert "umask=0077" in boot["options"], boot
    masks = [o for o in boot["options"] if o.split("=")[0] in ("umask", "fmask", "dmask")]
    assert all(o.endswith("=0077") for o in masks), boot  # no looser mask left next to it


def test_hwconfig_nix_and_luks(host, hv, disk, hwconfig):
    """Step 8: /nix is the ext4 filesystem; with LUKS the initrd opens the nix partition by UUID as crypted."""
    nix = hwconfig["fileSystems"]["/nix"]
    assert nix["fsType"] == "ext4"
    node = part(disk, "nix")["node"]
    if hv["luks"]:
        uuid = _blkid(host, node)["UUID"]
        assert hwconfig["luks"][os.path.basename(hv["mapper"])]["device"] == "/dev/disk/by-uuid/%s" % uuid
    else:
        assert hwconfig["luks"] == {}


def test_hwconfig_names_file_systems_by_uuid(host, hv, disk, hwconfig):
    """Step 8: /boot and /nix are named by their /dev/disk/by-uuid links, which stay the same from boot to boot.
    nixos-generate-config falls back to the kernel name (/dev/vda1) for a file system udev has not linked yet; the
    module waits for udev before it runs the generator."""
    boot = _blkid(host, part(disk, "boot")["node"])["UUID"]
    assert hwconfig["fileSystems"]["/boot"]["device"] == "/dev/disk/by-uuid/%s" % boot
    nix = _blkid(host, nix_device(hv, disk))["UUID"]
    assert hwconfig["fileSystems"]["/nix"]["device"] == "/dev/disk/by-uuid/%s" % nix


def test_hwconfig_swap(host, hv, disk, hwconfig):
    """Step 8: with LUKS, swap is addressed by PARTUUID with randomEncryption; without, by UUID and unencrypted;
    with swap 0, no swap device."""
    devices = hwconfig["swapDevices"]
    if not with_swap(hv):
        assert devices == []
        return
    assert len(devices) == 1
    swap = part(disk, "swap")
    if hv["luks"]:
        assert devices[0]["device"] == "/dev/disk/by-partuuid/%s" % swap["uuid"]
        assert devices[0]["randomEncryption"]["enable"] is True
    else:
        assert devices[0]["device"] == "/dev/disk/by-uuid/%s" % _blkid(host, swap["node"])["UUID"]
        assert not devices[0].get("randomEncryption", {}).get("enable", False)


# --- step 9: the flake, staged in git ---------------------------------------------------------------------------

def test_flake_staged_in_git(host, hv):
    """Step 9: /mnt/etc/nixos is a git repository (kept in /nix/persist) in which flake.nix, configuration.nix and
    hardware-configuration.nix are staged, with no untracked .nix file left; the files parse as Nix."""
    git = "git -C /mnt/etc/nixos -c safe.directory=*"
    tracked = host.check_output("%s ls-files" % git).split()
    for name in ("flake.nix", "configuration.nix", "hardware-configuration.nix"):
        assert name in tracked
        host.check_output("nix-instantiate --parse /mnt/etc/nixos/%s", name)
    untracked = [line for line in host.check_output("%s status --porcelain" % git).splitlines()
                 if line.startswith("??") and line.endswith(".nix")]
    assert untracked == []
    assert host.file("/mnt/nix/persist/etc/nixos/.git").is_directory
    flake = host.file("/mnt/etc/nixos/flake.nix").content_string
    assert 'nixosConfigurations."%s"' % hv["hostname"] in flake
    config = host.file("/mnt/etc/nixos/configuration.nix").content_string
    assert 'networking.hostName = "%s";' % hv["hostname"] in config


# --- step 10: nixos-install ----------------------------------------------------------------------------------------

def _double_calls(host, tool):
    log = host.file(DOUBLES_LOG)
    assert log.exists, "the test doubles wrote no log: were they installed by prepare?"
    entries = [json.loads(line) for line in log.content_string.splitlines() if line.strip()]
    return [e for e in entries if e.get("tool") == tool]


# --- steps 8-10: the files the guest got, evaluated against NixOS option declarations -------------------------

def _repo():
    here = os.path.dirname(os.path.realpath(__file__))
    while here != "/" and not os.path.isfile(os.path.join(here, "galaxy.yml")):
        here = os.path.dirname(here)
    return os.environ.get("MOLECULE_PROJECT_DIRECTORY") or here


def test_configuration_evaluates(host):
    """The guest's hardware-configuration.nix (the nixos-generate-config double's, patched), configuration.nix and
    flake.nix, brought back to $IMPERMANENT_TEST_LOGS/nixos-config/SCENARIO/HOST (`make eval` evaluates them again)
    and evaluated here, on the controller, by the vendored kit (tests/nix-eval): no failed assertion, no warning,
    no path mounted twice. And the collection's pre-install gate evaluated the same flake before nixos-install."""
    repo = _repo()
    sys.path.insert(0, os.path.join(repo, "tests", "eval"))
    import oracle  # noqa: E402 (tests/eval/oracle.py, found through the repository)

    logs = os.environ.get("IMPERMANENT_TEST_LOGS") or os.path.join(repo, ".build", "test-logs")
    saved = os.path.join(logs, "nixos-config", os.environ.get("MOLECULE_SCENARIO_NAME", "default"),
                         host.backend.get_hostname())
    os.makedirs(saved, exist_ok=True)
    for name in ("hardware-configuration.nix", "configuration.nix", "flake.nix"):
        with open(os.path.join(saved, name), "w") as f:
            f.write(host.file("/mnt/etc/nixos/" + name).content_string)
    assert oracle.choose()[0] is not None, "no NixOS oracle on the controller: %s" % oracle.choose()[2]
    rc, report = oracle.run_kit(os.path.join(saved, "hardware-configuration.nix"),
                                os.path.join(saved, "configuration.nix"))
    assert rc == 0, (saved, report.get("failedAssertions"), report.get("evalError"), report.get("sectionErrors"))
    assert report["failedAssertions"] == [] and report["warnings"] == [], report
    assert oracle.double_mounts(report) == [], oracle.double_mounts(report)
    # every nixos-install (once here; twice in molecule/reinstall) came right after a passing evaluation
    events = sorted(_double_calls(host, "nix") + _double_calls(host, "nixos-install"), key=lambda c: c["time"])
    installs = [i for i, c in enumerate(events) if c["tool"] == "nixos-install"]
    assert installs, events
    for i in installs:
        gate = events[i - 1] if i else None
        assert gate is not None and gate["tool"] == "nix" and gate["rc"] == 0, events
        assert gate["argv"][1:4] == ["eval", "--raw", "--no-write-lock-file"]
        assert gate["kit_exit"] == 0 and gate["warnings"] == [], gate


def test_nixos_install_called_once(host, hv):
    """Step 10: nixos-install ran exactly once over converge + idempotence, as
    `nixos-install --flake /mnt/etc/nixos#HOST --root /mnt --no-root-passwd`, with flakes enabled."""
    calls = _double_calls(host, "nixos-install")
    assert len(calls) == 1, calls
    call = calls[0]
    assert call["rc"] == 0, call
    argv = call["argv"]
    assert argv[argv.index("--flake") + 1] == "/mnt/etc/nixos#%s" % hv["hostname"]
    assert argv[argv.index("--root") + 1] == "/mnt"
    assert "--no-root-passwd" in argv
    assert "flakes" in call["NIX_CONFIG"] and "nix-command" in call["NIX_CONFIG"]
    assert host.file("/mnt/nix/var/nix/profiles/system").is_symlink


def test_nixos_generate_config_called_once(host):
    """Steps 7 and 8: nixos-generate-config ran once with --root /mnt; a rerun did not regenerate (un-patch) it."""
    calls = _double_calls(host, "nixos-generate-config")
    assert len(calls) == 1, calls
    argv = calls[0]["argv"]
    assert argv[argv.index("--root") + 1] == "/mnt"


def test_flake_directory_closed_after_install(host):
    """Step 10: /mnt/etc/nixos (and the persisted directory behind it) is back to mode 755 after the install."""
    assert host.file("/mnt/etc/nixos").mode == 0o755
    assert host.file("/mnt/nix/persist/etc/nixos").mode == 0o755
