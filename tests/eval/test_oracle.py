# SPDX-License-Identifier: GPL-3.0-or-later
"""The oracles of tests/eval/oracle.py.

The `nixpkgs` oracle's plumbing (the rendered flake.nix's outputs called with a nixpkgs, the toplevel's drvPath
evaluated, NixOS's failed-assertions error reported) is checked with a STAND-IN nixpkgs tree
(tests/eval/fake-nixpkgs: the kit's lib, and an eval-config.nix that evaluates with the kit); the test machines have
no real nixpkgs. The kit's own proof cases run from the vendored copy.
"""
import os
import shutil
import subprocess

import pytest

import oracle

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_NIXPKGS = os.path.join(HERE, "fake-nixpkgs")
CASES = os.path.join(oracle.KIT, "tests", "cases")
pytestmark = pytest.mark.skipif(shutil.which("nix-instantiate") is None,
                                reason="nix-instantiate (Debian nix-bin) is needed to evaluate")

FLAKE = """{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
  inputs.home-manager.url = "github:nix-community/home-manager/release-25.05";
  inputs.impermanence.url = "github:nix-community/impermanence";
  outputs = { self, nixpkgs, home-manager, impermanence, ... }@inputs: {
    nixosConfigurations."box" = nixpkgs.lib.nixosSystem {
      specialArgs = { inherit inputs; };
      modules = [
        ./hardware-configuration.nix
        ./configuration.nix
        home-manager.nixosModules.home-manager
        impermanence.nixosModules.impermanence
      ];
    };
  };
}
"""


def flake_of(tmp_path, case):
    for name in ("hardware-configuration.nix", "configuration.nix"):
        shutil.copy(os.path.join(CASES, case, name), str(tmp_path))
    (tmp_path / "flake.nix").write_text(FLAKE)
    return str(tmp_path / "flake.nix")


def test_choose_prefers_a_nixpkgs(monkeypatch):
    monkeypatch.setenv("IMPERMANENT_NIXPKGS", FAKE_NIXPKGS)
    name, detail, skip = oracle.choose()
    assert name == "nixpkgs" and FAKE_NIXPKGS in detail and skip is None
    monkeypatch.setenv("IMPERMANENT_NIXPKGS", str(HERE))  # not a nixpkgs tree: not taken
    assert oracle.find_nixpkgs() is None


def test_nixpkgs_oracle_evaluates_the_flake_toplevel(tmp_path):
    rc, out = oracle.run_nixpkgs(FAKE_NIXPKGS, flake_of(tmp_path, "good"), "box")
    assert rc == 0, out
    assert out == {"drvPath": "/nix/store/00000000000000000000000000000000-stand-in.drv", "warnings": []}


def test_nixpkgs_oracle_reports_failed_assertions(tmp_path):
    rc, out = oracle.run_nixpkgs(FAKE_NIXPKGS, flake_of(tmp_path, "bad-swap-randomencryption-by-uuid"), "box")
    assert rc == 1
    assert "Failed assertions:" in out["evalError"] and "with randomEncryption enabled" in out["evalError"]


def test_kit_proof_cases_from_the_vendored_copy(tmp_path):
    proc = subprocess.run([os.path.join(oracle.KIT, "tests", "run-proofs.sh")], capture_output=True, text=True,
                          env=dict(os.environ, PROOF_OUT=str(tmp_path)), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASS ") == len(os.listdir(CASES)) == 9
