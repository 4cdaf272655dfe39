#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nixos_flake_install
short_description: Run C(nixos-install) from a flake, once
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
description:
  - Runs C(nixos-install --flake REF#HOST --root ROOT --no-root-passwd) with flakes enabled through
    E(NIX_CONFIG) (C(experimental-features = nix-command flakes), merged line by line with an E(NIX_CONFIG) the
    target already has).
  - A flake in a git repository only sees the files git tracks; with O(stage=true) the module first runs
    C(git add) on untracked and modified C(*.nix) files and C(flake.lock) under the flake directory (stage only,
    nothing is committed), so that a freshly generated C(hardware-configuration.nix) is not missing from the build.
  - Skips (V(changed=false)) when the target already has a system profile, C(ROOT/nix/var/nix/profiles/system),
    unless O(reinstall=true).
  - Before running it checks, for a flake on the target, that the directory exists, is in a git repository
    (for a plain directory or a C(git+file://) ref), has a C(flake.nix), and that the host name appears in it.
  - Remote flake refs (C(github:), C(git+https://), ...) are passed to C(nixos-install) unchecked and unstaged.
  - "Pre-install gate: after staging and before C(nixos-install), the module evaluates what C(nixos-install) would
    build, C(nix eval --raw --no-write-lock-file REF#nixosConfigurations.\"HOST\".config.system.build.toplevel.drvPath)
    (same E(NIX_CONFIG), and the C(--option), C(--override-input), C(--impure), C(--show-trace) and C(--offline)
    arguments of O(extra_args)). When that fails (a failed NixOS assertion, a type error, an unknown option, a
    missing file) the module stops with Nix's message and nothing is installed. Evaluation builds nothing and
    writes no C(flake.lock); it may fetch the flake's inputs into the live system's store, as C(nixos-install)
    would. C(nix) missing on the target is an error (C(nixos-install) cannot work without it either)."
  - Paths below O(root) must lead to places below it. The module refuses, naming the link, when the directory
    C(ROOT/nix/var/nix/profiles) or a flake directory below O(root) is reached through a symbolic link out of
    O(root) (C(ROOT/nix) linked to the live system's C(/nix) would make the live system's profile look like an
    installed one), or when a flake below O(root) belongs to a git repository outside it. The profile itself is
    a link into the target's store and is only looked at, not followed. A flake outside O(root) (on the live
    system) is used as it is.
  - With O(open_flake_dir=true) the flake directory is mode 0777 while C(nixos-install) runs and 0755 again right
    after it, also when it fails (the C(chmod 777) and C(chmod 755) of the manual install, in the same call).
  - With O(starter), a flake directory that has no C(flake.nix) yet first gets the starter files (rendered by the
    caller, for example from templates on the controller) and, without a C(.git), a C(git init) - the whole flake
    step of an install in one call.
extends_documentation_fragment:
  - impermanent.nixos.attributes
  - impermanent.nixos.run_lock
attributes:
  check_mode:
    details: Returns the files it would stage and the command it would run; runs nothing that writes. The
      pre-install evaluation runs in check mode too (it only reads), except when the flake is not there yet
      (planned by M(impermanent.nixos.install_plan) with the steps that would make it) or when files would first
      be staged (the flake does not see them yet); a warning says so. The C(chmod) commands of O(open_flake_dir)
      are listed in RV(commands) like the others. Starter files it would write (O(starter)) are returned in
      RV(starter_written) and shown by C(--diff); the flake they make is not checked yet either.
  diff_mode:
    support: partial
    details: Shows the starter files it writes (O(starter)), each as a diff of the file before and after.
requirements:
  - C(nixos-install) and nix with flakes on the target (a NixOS live system has both)
  - git on the target, for a flake in a git repository
options:
  flake:
    description:
      - The flake. An absolute directory on the target (for example V(/mnt/etc/nixos)), or a flake reference such
        as V(git+file:///mnt/etc/nixos), V(path:/mnt/etc/nixos) or V(github:owner/repo).
      - May carry the host as a fragment, V(/mnt/etc/nixos#laptop); then O(host) may be left out.
      - A plain directory must be inside a git repository. Nix fetches a flake in a git repository with git, so
        only tracked (or staged) files are installed; outside git Nix would copy the directory as it is, which
        this module refuses to do by accident. Use a V(path:) ref to install from a directory without git.
    type: str
    required: true
  host:
    description:
      - The C(nixosConfigurations) name to install.
      - Letters, digits, V(-), V(_) and V(.), starting with a letter or digit, at most 63 characters.
      - "Checked textually against C(flake.nix): C(nixosConfigurations.HOST), or C(HOST = ...) after
        C(nixosConfigurations). A name that appears only in another form (a list given to C(genAttrs), a function
        call) gives a warning; a name that does not appear in C(flake.nix) at all is an error. The check does not
        evaluate Nix, so names generated from directories or defined outside C(flake.nix) are not seen."
      - Required unless O(flake) ends in V(#HOST).
    type: str
  root:
    description:
      - The mount point of the system being installed, passed as C(--root).
    type: path
    default: /mnt
  no_root_passwd:
    description:
      - Pass C(--no-root-passwd), so that C(nixos-install) does not prompt for a root password.
    type: bool
    default: true
  stage:
    description:
      - Before installing, C(git add) untracked and modified C(*.nix) files and C(flake.lock) under the flake
        directory, so that the flake sees them. Nothing is committed and no git identity is needed.
      - Only for a flake in a git repository on the target.
    type: bool
    default: true
  extra_args:
    description:
      - More arguments for C(nixos-install), appended as given (for example V([--no-bootloader]) or
        V([--option, substituters, ""])).
    type: list
    elements: str
    default: []
  reinstall:
    description:
      - Run C(nixos-install) even though C(ROOT/nix/var/nix/profiles/system) exists (a new system generation).
    type: bool
    default: false
  open_flake_dir:
    description:
      - Make the flake directory mode 0777 (C(chmod 0777)) right before C(nixos-install) runs, and 0755 right after
        it, also when it fails. Nothing changes when nothing is installed, except that a directory an interrupted
        earlier run left at 0777 is set back to 0755.
      - Needs a flake directory below O(root), reached through no link out of it.
    type: bool
    default: false
  starter:
    description:
      - A starter flake to write into the flake directory O(flake) (a local directory, not a flake reference)
        before anything else, when the directory has no C(flake.nix) yet.
      - Each file is written whole, mode 0644, replacing a file of that name (the C(configuration.nix) that
        C(nixos-generate-config) wrote, say) unless it already has that content. A link in its place is refused.
      - Once C(flake.nix) exists, nothing is written (the user may have edited the starter), unless
        O(starter.overwrite=true).
    type: dict
    suboptions:
      files:
        description: The files, in order. Their content is shown by C(--diff); do not put secrets in it.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: The file's name in the flake directory, for example V(flake.nix) (no C(/)).
            type: str
            required: true
          content:
            description: The file's whole text.
            type: str
            required: true
      overwrite:
        description: Write the files also when the directory has a C(flake.nix); each only when its text differs.
        type: bool
        default: false
      git_init:
        description: Run C(git init --quiet) in the flake directory when it has no C(.git) (a flake only sees the
          files git knows).
        type: bool
        default: true
notes:
  - Git commands run as C(git -c safe.directory=*), because on a live ISO the flake directory is often owned by
    another user than the one running the module.
  - "On failure the last 60 lines of C(nixos-install) output are in C(msg) and C(stdout_lines); when Nix reports
    C(getting status of '.../nix/store/...-source/FILE': No such file or directory) the message names the
    untracked file."
seealso:
  - name: nixos-install manual page
    description: The options of C(nixos-install).
    link: https://nixos.org/manual/nixos/stable/#sec-nixos-install
"""

EXAMPLES = r"""
- name: Install the flake's "laptop" configuration into /mnt
  impermanent.nixos.nixos_flake_install:
    flake: /mnt/etc/nixos
    host: laptop

- name: The same, host given as a fragment, without installing a boot loader
  impermanent.nixos.nixos_flake_install:
    flake: git+file:///mnt/etc/nixos#laptop
    extra_args:
      - --no-bootloader

- name: Install again over an existing system (a new generation)
  impermanent.nixos.nixos_flake_install:
    flake: /mnt/etc/nixos
    host: laptop
    reinstall: true
"""

RETURN = r"""
cmd:
  description: The C(nixos-install) command line that ran (or would run), secrets masked.
  returned: when the install ran, would run, or failed while running
  type: list
  elements: str
  sample: [/run/current-system/sw/bin/nixos-install, --flake, /mnt/etc/nixos#laptop, --root, /mnt, --no-root-passwd]
staged:
  description: Files C(git add) staged (in check mode, would stage), relative to the repository's top level.
  returned: always
  type: list
  elements: str
  sample: [hardware-configuration.nix]
skipped_reason:
  description: Why nothing ran (the system profile exists); V(null) when the install ran.
  returned: always
  type: str
  sample: /mnt/nix/var/nix/profiles/system exists (NixOS is already installed); set reinstall=true to install again
log_tail:
  description: The last 60 lines of C(nixos-install) output (stdout, then stderr).
  returned: when nixos-install ran
  type: list
  elements: str
  sample: [installing the boot loader..., installation finished!]
host:
  description: The C(nixosConfigurations) name installed.
  returned: always
  type: str
  sample: laptop
drv_path:
  description: The C(.drv) path of the system's toplevel that the pre-install evaluation printed; V(null) when
    it did not run (install skipped, or check mode could not evaluate yet).
  returned: always
  type: str
  sample: /nix/store/0c7mx6lvqfnbg1d2ifz6sf0xa3m3sfsw-nixos-system-laptop-25.05.drv
eval_cmd:
  description: The pre-install evaluation command (C(nix eval ...)), secrets masked; V(null) when none was planned.
  returned: always
  type: list
  elements: str
  sample: [/run/current-system/sw/bin/nix, eval, --raw, --no-write-lock-file,
           '/mnt/etc/nixos#nixosConfigurations."laptop".config.system.build.toplevel.drvPath']
flake_checked:
  description: Whether the flake was checked before the install (its directory, git repository, C(flake.nix)
    and the host name); V(false) when the install is skipped, and in check mode when the flake is not there yet
    (a root or checkout an earlier step would make, or starter files that would be written first).
  returned: always
  type: bool
  sample: true
starter_written:
  description: The starter files written (in check mode, that would be), by name, in order (O(starter)).
  returned: always
  type: list
  elements: str
  sample: [flake.nix, configuration.nix]
commands:
  description: Commands that changed something (or would, in check mode), shell-quoted.
  returned: always
  type: list
  elements: str
  sample: ["git -C /mnt/etc/nixos -c 'safe.directory=*' add -- hardware-configuration.nix",
           "/usr/bin/chmod 0777 /mnt/etc/nixos"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module, with_run_lock
from ansible_collections.impermanent.nixos.plugins.module_utils._step_nixos_flake_install import MODULE_SPEC, failed_fields, run_step


def main():
    module = AnsibleModule(**with_run_lock(MODULE_SPEC))
    run_module(module, run_step, failed=failed_fields(module.params))


if __name__ == "__main__":
    main()
