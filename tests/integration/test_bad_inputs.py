# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad inputs through the real modules (``ansible localhost -m impermanent.nixos.X``).

Every case must fail with a message that names the offending value (or parameter) and says what to do, and must
leave everything as it was: the partition-table areas and the first/last MiB of every partition of the shared loop
disk (and of a small ext4 disk), the whole mount table (``/proc/self/mountinfo`` of the session's own mount
namespace, see conftest), and the files for hwconfig_patch and nixos_flake_install.
"""
import json
import os
import subprocess

import pytest

from conftest import LoopDisk, _can_loop, mount_point, mountinfo, run_module, sha256_of, unmount

MIB = 1 << 20
GIB = 1 << 30
PASS = "right passphrase 1"
CHEAP = dict(pbkdf="pbkdf2", pbkdf_force_iterations=1000)
LAYOUT = [{"name": "esp", "size": "64MiB", "type": "esp"},
          {"name": "swap", "size": "128MiB", "type": "swap"},
          {"name": "nix", "size": "100%", "type": "linux"}]
HWCONFIG = """{ config, lib, pkgs, modulesPath, ... }:
{
  imports = [ ];
  fileSystems."/" = { device = "none"; fsType = "tmpfs"; };
  fileSystems."/boot" = { device = "/dev/disk/by-uuid/1234-ABCD"; fsType = "vfat"; };
  swapDevices = [ ];
}
"""
FLAKE = """{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
  outputs = { self, nixpkgs }: {
    nixosConfigurations.goodhost = nixpkgs.lib.nixosSystem { modules = [ ./configuration.nix ]; };
  };
}
"""


def sh(*argv, data=None, check=True):
    return subprocess.run(argv, input=data, capture_output=True, text=True, check=check)


def layout(*items):
    return [dict(zip(("name", "size", "type"), item)) for item in items]


class Env(object):
    """The shared loop disks and scratch files; ``snapshot()`` hashes everything a case must not touch."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.disk = LoopDisk(tmp / "shared.img", 2 * GIB)
        self.small = LoopDisk(tmp / "small.img", 64 * MIB)
        self.blank = LoopDisk(tmp / "blank.img", 32 * MIB)
        self.disks = [self.disk, self.small, self.blank]
        rc, res = run_module("impermanent.nixos.gpt_partition", dict(device=self.disk.device, partitions=LAYOUT))
        assert rc == 0 and res.get("changed"), res
        sh("partx", "-u", self.disk.device, check=False)
        self.parts = res["partitions"]
        self.p = dict((p["name"], p["path"]) for p in self.parts)
        assert all(os.path.exists(p) for p in self.p.values()), self.p
        rc, res = run_module("impermanent.nixos.luks_open", dict(device=self.p["nix"], passphrase=PASS, format=True,
                                                                 state="closed", **CHEAP))
        assert rc == 0 and res.get("formatted"), res
        sh("mkfs.ext4", "-q", "-L", "notluks", self.small.device)
        # a by-id style link to the wrong disk, for the identity pins
        self.small_link = str(tmp / "small-disk-link")
        os.symlink(self.small.device, self.small_link)
        self.file = str(tmp / "regular-file.img")
        with open(self.file, "wb") as f:
            f.truncate(64 * MIB)
        self.root = tmp / "root"
        self.root.mkdir()
        self.cwd = tmp / "cwd"  # the cases run here: a relative path resolves below the scratch dir
        self.cwd.mkdir()
        self.hw = tmp / "hw"
        self.hw.mkdir()
        (self.hw / "hardware-configuration.nix").write_text(HWCONFIG)
        (self.hw / "broken.nix").write_text("{ config, ... }:\n{\n  fileSystems.\"/\" = { device = \"none\"; \n")
        self.flakes = tmp / "flakes"
        for name in ("git", "plain", "noflake"):
            (self.flakes / name).mkdir(parents=True)
            if name != "noflake":
                (self.flakes / name / "flake.nix").write_text(FLAKE)
            (self.flakes / name / "configuration.nix").write_text("{ ... }: { }\n")
        g = str(self.flakes / "git")
        sh("git", "-C", g, "init", "-q")
        sh("git", "-C", g, "add", "-A")
        sh("git", "-C", g, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")

    def regions(self):
        out = []
        for d in self.disks:
            out += [(d.device, 0, MIB), (d.device, d.size - MIB, MIB)]
        for p in self.parts:
            out += [(self.disk.device, p["start"], MIB), (self.disk.device, p["end"] + 1 - MIB, MIB)]
        return out

    def snapshot(self):
        sh("sync", check=False)
        state = dict(("%s@%d" % (dev, off), sha256_of(dev, off, length)) for dev, off, length in self.regions())
        for top in (self.hw, self.flakes, self.root, self.cwd):
            for dirpath, dirnames, filenames in os.walk(str(top)):
                dirnames.sort()
                for name in sorted(filenames) + dirnames:
                    path = os.path.join(dirpath, name)
                    st = os.lstat(path)
                    state[path] = (st.st_mode, sha256_of(path) if os.path.isfile(path) else None)
        state["regular-file"] = sha256_of(self.file)
        state["mountinfo"] = mountinfo()  # all of it: exact in the session's own mount namespace (conftest)
        state["tables"] = [sh("sfdisk", "--dump", d.device, check=False).stdout for d in self.disks]
        return state

    def unmount_strays(self, before):
        """Undo mounts a (buggy) case made, anywhere (in this session's own mount namespace only); returns their
        mount points."""
        stray = [mount_point(line) for line in mountinfo() if line not in before]
        unmount(stray)
        return stray

    def close(self):
        for d in self.disks:
            d.detach()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not _can_loop():
        pytest.fail("the integration layer needs root and loop devices (losetup, /dev/loop-control)")
    e = Env(tmp_path_factory.mktemp("bad_inputs"))
    yield e
    e.close()


GPT = "impermanent.nixos.gpt_partition"
LUKS = "impermanent.nixos.luks_open"
TMPFS = "impermanent.nixos.tmpfs_root"
HW = "impermanent.nixos.hwconfig_patch"
FLK = "impermanent.nixos.nixos_flake_install"


def gpt(parts=None, **kw):
    def make(e):
        out = dict(device=e.disk.device, partitions=parts or LAYOUT)
        out.update(dict((k, _resolve(v, e)) for k, v in kw.items()))
        return out
    return make


def _resolve(value, e):
    """A case's argument: callables get the env, dicts are resolved value by value."""
    if callable(value):
        return value(e)
    if isinstance(value, dict):
        return dict((k, _resolve(v, e)) for k, v in value.items())
    return value


def luks(**kw):
    def make(e):
        out = dict(state="closed", **CHEAP)
        out.update(dict((k, v(e) if callable(v) else v) for k, v in kw.items()))
        return out
    return make


def tmpfs(**kw):
    def make(e):
        out = dict(root=str(e.root), nix_device=e.p["nix"], boot_device=e.p["esp"])
        out.update(kw)
        return out
    return make


def flake(**kw):
    def make(e):
        out = dict(root=str(e.root), host="goodhost")
        out.update(dict((k, v(e) if callable(v) else v) for k, v in kw.items()))
        return out
    return make


# (id, module, args(env), substrings the message must contain: the offending value and the advice)
CASES = [
    ("gpt-missing-device", GPT, gpt(device="/dev/does-not-exist-disk"),
     ["/dev/does-not-exist-disk", "does not exist", "give the whole disk"]),
    ("gpt-partition-as-disk", GPT, gpt(device=lambda e: e.p["esp"]),
     ["is a partition of", "give the whole disk /dev/"]),
    ("gpt-regular-file", GPT, gpt(device=lambda e: e.file),
     ["regular-file.img", "not a block device", "give the whole disk"]),
    ("gpt-sizes-do-not-fit", GPT, gpt(layout(("a", "1500MiB", "linux"), ("b", "1500MiB", "linux"))),
     ["'b'", "does not fit", "shrink"]),
    ("gpt-swap-larger-than-disk", GPT, gpt(layout(("esp", "64MiB", "esp"), ("swap", "8GiB", "swap"),
                                                  ("nix", "100%", "linux"))),
     ["'swap'", "8GiB", "does not fit"]),
    ("gpt-two-100pct", GPT, gpt(layout(("a", "100%", "linux"), ("b", "100%", "linux"))),
     ["all ask for 100%", "only the last partition"]),
    ("gpt-100pct-not-last", GPT, gpt(layout(("nix", "100%", "linux"), ("swap", "1GiB", "swap"))),
     ["'nix'", "not the last one", "move it to the end"]),
    ("gpt-size-zero", GPT, gpt(layout(("esp", "0", "esp"), ("nix", "100%", "linux"))),
     ["must be positive", "512MiB"]),
    ("gpt-size-negative", GPT, gpt(layout(("esp", "-1GiB", "esp"), ("nix", "100%", "linux"))),
     ["'-1GiB'", "negative", "512MiB"]),
    ("gpt-size-parsecs", GPT, gpt(layout(("esp", "12 parsecs", "esp"), ("nix", "100%", "linux"))),
     ["12 parsecs", "MiB"]),
    ("gpt-size-50pct", GPT, gpt(layout(("esp", "50%", "esp"), ("nix", "100%", "linux"))),
     ["'50%'", "only 100%"]),
    ("gpt-size-ambiguous-MB", GPT, gpt(layout(("esp", "512MB", "esp"), ("nix", "100%", "linux"))),
     ["512MB", "ambiguous"]),
    ("gpt-unknown-type", GPT, gpt(layout(("esp", "64MiB", "ntfs-please"), ("nix", "100%", "linux"))),
     ["ntfs-please", "not a known partition type", "GUID"]),
    ("gpt-duplicate-names", GPT, gpt(layout(("nix", "64MiB", "linux"), ("nix", "100%", "linux"))),
     ["'nix'", "already used", "must be unique"]),
    ("gpt-name-with-quote", GPT, gpt(layout(('ni"x', "64MiB", "linux"),)),
     ['ni"x', "may not contain quotes"]),
    ("gpt-empty-layout", GPT, lambda e: dict(device=e.disk.device, partitions=[]),
     ["partitions is empty", "at least one"]),
    ("gpt-alignment-3000", GPT, gpt(alignment=3000),
     ["alignment=3000", "power-of-two multiple", "1048576"]),
    ("gpt-alignment-banana", GPT, gpt(alignment="banana"),
     ["banana", "optimal"]),
    ("gpt-other-layout-without-force", GPT, gpt(layout(("esp", "128MiB", "esp"), ("swap", "128MiB", "swap"),
                                                       ("nix", "100%", "linux"))),
     ["force"]),
    ("gpt-whole-disk-ext4-without-force", GPT, gpt(layout(("esp", "16MiB", "esp"), ("nix", "100%", "linux")),
                                                   device=lambda e: e.small.device),
     ["ext4", "Nothing was written", "force=true"]),
    ("gpt-expect-size-differs", GPT, gpt(expect={"size": "3GiB"}),
     ["is not the disk pinned by expect", "size is %d bytes, not %d" % (2 * GIB, 3 * GIB), "Fix device or expect"]),
    ("gpt-expect-serial-differs", GPT, gpt(expect={"serial": "WD-WX11A12345"}),
     ["serial is None, not 'WD-WX11A12345'", "Nothing was read or written"]),
    ("gpt-expect-by-id-other-disk", GPT, gpt(expect={"by_id": lambda e: e.small_link}),
     ["small-disk-link points to /dev/loop", "not to this disk"]),
    ("gpt-expect-by-id-missing", GPT, gpt(expect={"by_id": "/dev/disk/by-id/ata-NOT_ATTACHED_123"}),
     ["/dev/disk/by-id/ata-NOT_ATTACHED_123 does not exist", "not attached"]),
    ("gpt-expect-size-garbled", GPT, gpt(expect={"size": "big"}),
     ["'big'", "expect.size"]),
    ("luks-wrong-passphrase", LUKS, luks(device=lambda e: e.p["nix"], passphrase="wrong passphrase", format=True),
     ["does not unlock any key slot", "check the passphrase"]),
    ("luks-ext4-without-format", LUKS, luks(device=lambda e: e.small.device, passphrase=PASS, state="opened"),
     ["ext4", "not a LUKS header", "wipefs -a"]),
    ("luks-ext4-with-format", LUKS, luks(device=lambda e: e.small.device, passphrase=PASS, format=True),
     ["ext4", "never overwrites data", "wipefs -a"]),
    ("luks-blank-without-format", LUKS, luks(device=lambda e: e.blank.device, passphrase=PASS, state="opened"),
     ["is blank", "format=true"]),
    ("luks-keyfile-missing", LUKS, luks(device=lambda e: e.p["nix"], keyfile="/nonexistent/luks.key"),
     ["/nonexistent/luks.key", "not a file"]),
    ("luks-device-missing", LUKS, luks(device="/dev/no-such-luks-dev", passphrase=PASS, format=True),
     ["/dev/no-such-luks-dev", "does not exist"]),
    ("luks-no-secret", LUKS, luks(device=lambda e: e.p["nix"], state="opened"),
     ["passphrase or a keyfile", "set one of them"]),
    ("luks-bad-mapper-name", LUKS, luks(device=lambda e: e.p["nix"], passphrase=PASS, name="a/b"),
     ["'a/b'", "no slash"]),
    ("luks-pbkdf2-with-memory", LUKS, lambda e: dict(device=e.p["nix"], passphrase=PASS, format=True,
                                                     state="closed", pbkdf="pbkdf2", pbkdf_memory=1024),
     ["pbkdf_memory", "argon2 only"]),
    ("tmpfs-size-lots", TMPFS, tmpfs(size="lots"),
     ["size='lots'", "25%"]),
    ("tmpfs-mode-999", TMPFS, tmpfs(mode="999"),
     ["mode='999'", "octal", "755"]),
    ("tmpfs-root-relative", TMPFS, tmpfs(root="mnt"),
     ["mnt", "absolute", "/mnt"]),
    ("tmpfs-persist-relative", TMPFS, tmpfs(persist=["etc/nixos"]),
     ["etc/nixos", "absolute"]),
    ("tmpfs-persist-dir-outside-nix", TMPFS, tmpfs(persist_dir="/persist"),
     ["/persist", "below it"]),
    ("hw-missing", HW, lambda e: dict(path=str(e.hw / "nope" / "hardware-configuration.nix")),
     ["nope/hardware-configuration.nix", "nixos-generate-config"]),
    ("hw-unparsable", HW, lambda e: dict(path=str(e.hw / "broken.nix")),
     ["broken.nix", "not valid Nix"]),
    ("hw-relative-path", HW, lambda e: dict(path="etc/nixos/hardware-configuration.nix"),
     ["etc/nixos/hardware-configuration.nix", "must be absolute"]),
    ("flake-dir-missing", FLK, flake(flake=lambda e: str(e.flakes / "missing")),
     ["missing", "does not exist"]),
    ("flake-no-flake-nix", FLK, flake(flake=lambda e: "path:" + str(e.flakes / "noflake")),
     ["noflake", "no flake.nix", "point flake at"]),
    ("flake-host-absent", FLK, flake(flake=lambda e: str(e.flakes / "git"), host="otherhost"),
     ["'otherhost'", "does not appear", "Check the name"]),
    ("flake-not-git", FLK, flake(flake=lambda e: str(e.flakes / "plain")),
     ["not in a git repository", "git init", "path:"]),
    ("flake-hostname-invalid", FLK, flake(flake=lambda e: str(e.flakes / "git"), host="bad_host!"),
     ["'bad_host!'", "not a usable nixosConfigurations name", "letters, digits"]),
    ("flake-relative", FLK, flake(flake="./flakes/git"),
     ["./flakes/git", "relative", "absolute"]),
    ("flake-host-disagrees", FLK, flake(flake=lambda e: str(e.flakes / "git") + "#goodhost", host="otherhost"),
     ["'otherhost'", "disagrees", "give the name once"]),
]

# Cases that once exposed a bug, kept as regression tests: tmpfs_root resolved a relative root against the working
# directory and mounted a tmpfs there; hwconfig_patch resolved a relative path the same way.
XFAIL = {}


def _params():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[case[0]])] if case[0] in XFAIL else []
        yield pytest.param(*case[1:], id=case[0], marks=marks)


@pytest.mark.parametrize("module,make_args,expected", list(_params()))
def test_bad_input_fails_cleanly_and_changes_nothing(env, monkeypatch, module, make_args, expected):
    args = make_args(env)
    monkeypatch.chdir(env.cwd)
    before = env.snapshot()
    try:
        rc, res = run_module(module, args)
        after = env.snapshot()
    finally:
        stray = env.unmount_strays(before["mountinfo"])
    assert not stray, "the module mounted %s" % stray
    msg = res.get("msg", "")
    assert rc != 0 and res.get("failed") is True, json.dumps(res)[:2000]
    for part in expected:
        assert part in msg, "%r not in message: %s" % (part, msg)
    assert "Traceback" not in json.dumps(res)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [], "case changed %s" % changed
    assert not res.get("changed")


def test_cases_are_distinct():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 25
