# SPDX-License-Identifier: GPL-3.0-or-later
# STAND-IN for nixpkgs' nixos/lib/eval-config.nix (see ../../README.md): the vendored kit evaluates the modules.
{ system ? null, modules ? [ ], specialArgs ? { }, ... }:
let
  kit = ../../../../nix-eval;
  lib = import (kit + "/lib");
  files = map toString (lib.filter builtins.isPath modules);
  kitEval = import (kit + "/eval.nix") {
    hwconfig = lib.elemAt files 0;
    configuration = lib.elemAt files 1;
    extraModules = lib.concatStringsSep "\n" (lib.drop 2 files);
  };
  inherit (kitEval.eval) config;
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
in
{
  config = config // {
    system.build.toplevel.drvPath =
      if failed != [ ] then throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (m: "- ${m}") failed}"
      else builtins.seq (builtins.length config.warnings) "/nix/store/00000000000000000000000000000000-stand-in.drv";
  };
}
