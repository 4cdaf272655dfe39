# SPDX-License-Identifier: GPL-3.0-or-later
"""Which NixOS oracle evaluates the configurations the collection writes, and how.

Used by tests/eval/test_nix_eval.py and by the Molecule verify step (molecule/default/tests/test_install.py, which
evaluates the files each guest really got, on the controller). Standard library only.

Oracles, best first:
  * ``nixpkgs``: a real nixpkgs (``$IMPERMANENT_NIXPKGS``, a checkout or a flake input's store path, or
    ``<nixpkgs>`` on NIX_PATH). The rendered flake.nix's ``outputs`` is called with that nixpkgs
    (``lib.nixosSystem`` is nixpkgs' ``nixos/lib/eval-config.nix``), impermanence's real module and a home-manager
    stub (both from the kit), and ``nixosConfigurations.HOST.config.system.build.toplevel.drvPath`` is evaluated.
  * ``kit``: the offline evaluation kit vendored in tests/nix-eval (real nixpkgs lib, filesystems.nix, swap.nix,
    luksroot.nix and impermanence; stubs for the rest), through its ``check`` script.
  * none (no nix-instantiate): the callers skip and say why.
"""
import json
import os
import re
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KIT = os.path.join(REPO, "tests", "nix-eval")


def _quiet_env():
    env = dict(os.environ)
    env["NIX_CONFIG"] = "build-users-group ="  # nix-bin without build users: no nixbld warning
    return env


def find_nixpkgs():
    """A real nixpkgs tree, or None."""
    given = os.environ.get("IMPERMANENT_NIXPKGS")
    if given:
        return given if os.path.isfile(os.path.join(given, "nixos", "lib", "eval-config.nix")) else None
    if shutil.which("nix-instantiate") is None:
        return None
    proc = subprocess.run(["nix-instantiate", "--find-file", "nixpkgs"], capture_output=True, text=True,
                          check=False, env=_quiet_env())
    path = proc.stdout.strip()
    if proc.returncode == 0 and os.path.isfile(os.path.join(path, "nixos", "lib", "eval-config.nix")):
        return path
    return None


def choose():
    """(name, detail, skip_reason): the oracle to use, or why there is none."""
    nixpkgs = find_nixpkgs()
    if nixpkgs:
        return "nixpkgs", "nixpkgs at %s (flake outputs -> toplevel.drvPath)" % nixpkgs, None
    if shutil.which("nix-instantiate") is None:
        return None, None, ("no oracle: neither a real nixpkgs (IMPERMANENT_NIXPKGS or <nixpkgs>) nor "
                            "nix-instantiate for the vendored kit (Debian: nix-bin; scripts/setup-host.sh installs it)")
    return "kit", "vendored offline kit tests/nix-eval (real lib, filesystems/swap/luksroot, impermanence; " \
                  "stubs for the rest)", None


def run_kit(hwconfig, configuration, extra=(), home_manager=True):
    """The kit's verdict: (exit status, report dict). Exit 0 ok, 1 failed assertion, 2 evaluation error."""
    argv = [os.path.join(KIT, "check"), "--compact", hwconfig, configuration] + list(extra)
    if home_manager:
        argv.append("--home-manager")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("the kit gave no report (rc=%s): %s" % (proc.returncode, proc.stderr))
    return proc.returncode, report


NIXPKGS_EXPR = """{ nixpkgs, flake, host, kit }:
let
  f = import flake;
  lib = import (nixpkgs + "/lib");
  nixosSystem = args: import (nixpkgs + "/nixos/lib/eval-config.nix") ({ system = null; } // args);
  inputs = {
    nixpkgs = { inherit lib; outPath = nixpkgs; } // { lib = lib // { inherit nixosSystem; }; };
    home-manager.nixosModules.home-manager = kit + "/stubs/home-manager.nix";
    impermanence.nixosModules.impermanence = kit + "/impermanence/nixos.nix";
  };
  out = f.outputs (inputs // { self = out; });
  system = out.nixosConfigurations.${host};
in {
  drvPath = system.config.system.build.toplevel.drvPath;
  warnings = system.config.warnings;
}"""


def run_nixpkgs(nixpkgs, flake_nix, host):
    """Evaluate the flake's toplevel drvPath against real nixpkgs: (exit status, {"drvPath", "warnings"} or
    {"evalError"}). Failed assertions make the evaluation throw NixOS's "Failed assertions:" error (exit 1)."""
    argv = ["nix-instantiate", "--read-write-mode", "--eval", "--strict", "--json", "-E",
            "(%s) { nixpkgs = /. + %s; flake = /. + %s; host = %s; kit = /. + %s; }" % (
                NIXPKGS_EXPR, json.dumps(nixpkgs), json.dumps(flake_nix), json.dumps(host), json.dumps(KIT))]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=_quiet_env())
    if proc.returncode != 0:
        return 1, {"evalError": proc.stderr}
    return 0, json.loads(proc.stdout)


def _mount_point(unit):
    where = unit.get("where") or ""
    return where[len("/sysroot"):] or "/" if where.startswith("/sysroot") else where


def double_mounts(report):
    """Paths with more than one mount definition in a kit report: a fileSystems entry that impermanence mounts too
    (its systemd mounts, its systemd-initrd mounts, its scripted-initrd postMountCommands; the kit's lint
    persistedPathsWithOwnFileSystemsEntry), or a path impermanence mounts twice. [] when every path has one owner."""
    problems = []
    lint = report.get("kitLint") or {}
    for entry in lint.get("persistedPathsWithOwnFileSystemsEntry") or []:
        problems.append("%s: persisted by impermanence and a fileSystems entry (%s)" % (
            entry.get("mountPoint"), json.dumps(entry.get("fileSystemsEntry"), sort_keys=True)))
    units = report.get("impermanenceUnits") or {}
    fs = set(report.get("fileSystems") or {})
    for kind in ("systemdMounts", "initrdSystemdMounts"):
        where = [_mount_point(u) for u in units.get(kind) or []]
        for path in sorted(set(where)):
            if path in fs:
                problems.append("%s: a fileSystems entry and one of impermanence's %s" % (path, kind))
            if where.count(path) > 1:
                problems.append("%s: %d of impermanence's %s" % (path, where.count(path), kind))
    post = units.get("scriptedInitrdPostMountCommands") or ""
    for path in sorted(fs - {"/"}):
        # impermanence's scripted stage 1: `mountFS /mnt-root/PERSIST/PATH PATH bind none`
        if re.search(r"(?m)^mountFS \S+ %s " % re.escape(path), post):
            problems.append("%s: a fileSystems entry and mounted by impermanence's initrd postMountCommands" % path)
    return problems
