#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hwconfig_patch
short_description: Patch hardware-configuration.nix for an impermanent NixOS layout
version_added: 0.1.0
description:
  - Edits the C(hardware-configuration.nix) that C(nixos-generate-config) wrote for a tmpfs root (install step 8).
  - "C(fileSystems.\"/\") must be a C(tmpfs); it gets O(root_options) merged into its C(options)."
  - "The vfat C(fileSystems.\"/boot\") (see O(boot_mountpoint)) gets O(boot_options) merged into its C(options)."
  - With O(swap_random_encryption=true), every C(swapDevices) entry gets C(device = "/dev/disk/by-partuuid/...")
    and C(randomEncryption.enable = true). Random encryption re-creates the swap area with a new key at every boot,
    so its filesystem UUID or label changes; the partition's PARTUUID does not.
  - "Merging options: a requested C(key=value) option replaces an existing option with the same key
    (C(size=50%) becomes C(size=25%)); a requested plain option (C(defaults)) is added when missing; other options
    already in the list are kept. A current C(nixos-generate-config) writes C(fmask=0077) and C(dmask=0077) for
    the ESP; they are kept next to the added C(umask=0077) (all three are valid vfat options and agree)."
  - The file is parsed as Nix (a small parser that keeps exact source positions), not matched with line regexes.
    Edits are splices, so comments, layout and every other attribute stay byte for byte. Attribute sets written
    inline, nested (C(fileSystems = { "/" = ...; };)), as split attribute paths
    (C(fileSystems."/".options = ...)), and values wrapped in C(lib.mkDefault), C(lib.mkForce) or
    C(lib.mkOverride) are understood.
  - Bytes that are not UTF-8 (a Latin-1 comment, say) are kept in the file exactly as they were; in the returned
    diff and messages each shows as U+FFFD, so the result is always valid for Ansible and a rerun is
    C(changed=false).
  - Idempotent, patching a patched file changes nothing. A file the module cannot understand (no tmpfs
    C(fileSystems."/"), unbalanced braces, options built by an expression) fails with a message naming the file
    and what was not found, and the file is left untouched.
  - The PARTUUID of a swap device given by UUID, label or device path is looked up with C(blkid) on the target, so
    run the module where the disk is attached (the live system, after C(nixos-generate-config)).
  - With O(generate=true), the module runs C(nixos-generate-config --root ROOT) itself when the file does not
    exist yet, and then patches what it wrote, in one call. An existing file is never regenerated, so a rerun
    does not undo the patch.
author:
  - impermanent.nixos contributors (!UNKNOWN)
extends_documentation_fragment:
  - impermanent.nixos.attributes
  - impermanent.nixos.run_lock
attributes:
  check_mode:
    details: With O(generate=true) and no file yet, RV(commands) lists the C(nixos-generate-config) it would run
      and the patch is not planned (the file does not exist). M(impermanent.nixos.install_plan), planning it with
      the step that would mount the root, plans the patch on a stand-in instead - a file in the generator's layout
      holding only what the patch edits, with placeholders for what does not exist yet - and returns that diff
      with RV(stand_in=true) and a warning.
  diff_mode:
    support: full
requirements:
  - util-linux (C(blkid)) on the target, for O(swap_random_encryption)
  - C(nixos-generate-config) on the target, for O(generate)
  - nix (C(nix-instantiate)), optional, for O(validate)
options:
  path:
    description:
      - The C(hardware-configuration.nix) to patch, for example C(/mnt/etc/nixos/hardware-configuration.nix).
    type: path
    required: true
  root:
    description:
      - The root of the system being installed, for example V(/mnt). When given, O(path) must lie below it and
        lead to a place below it. A directory on the way, or the file itself, that is a symbolic link out of
        O(root) (to the live system's C(/etc/nixos), say) is refused and named, in check mode too, and nothing is
        written. Links that stay below O(root) are followed.
      - Left out, O(path) is used as it is, and a link is followed wherever it leads.
    type: path
  root_options:
    description:
      - "Mount options that C(fileSystems.\"/\") (the tmpfs root) must have."
      - Use an empty list to leave the root's options alone (the root must still be a tmpfs).
    type: list
    elements: str
    default: ["defaults", "size=25%", "mode=755"]
  boot_options:
    description:
      - Mount options that the vfat file system at O(boot_mountpoint) must have.
      - Use an empty list to leave it alone (also when there is no separate boot file system).
    type: list
    elements: str
    default: ["umask=0077"]
  boot_mountpoint:
    description:
      - Mount point of the EFI system partition in the file.
    type: str
    default: /boot
  swap_random_encryption:
    description:
      - Move every swap device to its C(/dev/disk/by-partuuid/) path and enable C(randomEncryption).
      - Use it with a LUKS-encrypted C(/nix) so that swap is encrypted too.
      - A swap device given by UUID or label that does not exist on the target is an error.
    type: bool
    default: false
  backup:
    description:
      - Keep a timestamped copy of the file before changing it; returned as RV(backup_file).
    type: bool
    default: true
  validate:
    description:
      - Check the patched text with C(nix-instantiate --parse) before writing it, when C(nix-instantiate) is on
        the target's PATH. A parse failure fails the task and leaves the file untouched.
    type: bool
    default: true
  generate:
    description:
      - When O(path) does not exist, run C(nixos-generate-config --root ROOT) first (it writes
        C(ROOT/etc/nixos/hardware-configuration.nix), and C(configuration.nix) when there is none), then patch.
      - Needs O(root), and O(path) must be C(ROOT/etc/nixos/hardware-configuration.nix), where the generator
        writes; anything else is refused before anything runs.
      - The generator reads the mounted layout (file systems under O(root), active swap), so run it after the
        layout is mounted, as the install does.
      - Where udev runs, the module first waits for its queue to empty (C(udevadm settle)), because the generator
        names a device by its C(/dev/disk/by-uuid) link only once udev has made it, else by its kernel name, which
        can change at the next boot.
    type: bool
    default: false
notes:
  - Only the Python standard library is needed on the target; C(blkid) is needed for O(swap_random_encryption).
seealso:
  - module: ansible.builtin.lineinfile
    description: Edits lines by regular expression; hwconfig_patch parses the Nix file and keeps the rest of it
      byte for byte.
  - module: impermanent.nixos.tmpfs_root
"""

EXAMPLES = r"""
- name: Patch the generated hardware configuration for tmpfs root, private ESP and random-key swap
  impermanent.nixos.hwconfig_patch:
    path: /mnt/etc/nixos/hardware-configuration.nix
    swap_random_encryption: true

- name: The same, refusing a file or directory that is a link out of /mnt
  impermanent.nixos.hwconfig_patch:
    path: /mnt/etc/nixos/hardware-configuration.nix
    root: /mnt

- name: A smaller tmpfs root, leave /boot as generated
  impermanent.nixos.hwconfig_patch:
    path: /mnt/etc/nixos/hardware-configuration.nix
    root_options: ["defaults", "size=2G", "mode=755"]
    boot_options: []
"""

RETURN = r"""
path:
  description: The patched file.
  returned: always
  type: str
  sample: /mnt/etc/nixos/hardware-configuration.nix
generated:
  description: Whether C(nixos-generate-config) ran (in check mode, would run) because O(path) did not exist
    (O(generate=true)).
  returned: always
  type: bool
  sample: true
commands:
  description: The C(nixos-generate-config) command that ran (in check mode, would run); empty when the file
    existed. The C(nix-instantiate --parse) check is not listed.
  returned: always
  type: list
  elements: str
  sample: ["/run/current-system/sw/bin/nixos-generate-config --root /mnt"]
stand_in:
  description: Whether the plan was made on a stand-in because O(path) does not exist yet (check mode, planned by
    M(impermanent.nixos.install_plan) with the step that mounts the root).
  returned: always
  type: bool
  sample: false
backup_file:
  description: The copy of the file made before changing it.
  returned: when O(backup=true) and the file changed (not in check mode)
  type: str
  sample: /mnt/etc/nixos/hardware-configuration.nix.12345.2026-11-26@12:00:00~
diff:
  description: The file before and after, shown by C(--diff).
  returned: always
  type: dict
  contains:
    before:
      description: The file's text before.
      type: str
    after:
      description: The file's text after (what would be written in check mode).
      type: str
    before_header:
      description: Name shown for the old text.
      type: str
    after_header:
      description: Name shown for the new text.
      type: str
validated:
  description: Whether C(nix-instantiate --parse) checked the patched text (false when it is not installed).
  returned: when the file changed and O(validate=true)
  type: bool
  sample: true
patched:
  description: What was (or in check mode would be) edited; null in a check run that would generate the file
    without a stand-in to plan on.
  returned: always
  type: dict
  contains:
    root:
      description: "C(fileSystems.\"/\"): C(mountpoint), C(options_before) (null when there were none),
        C(options_after), C(changed); null when O(root_options) is empty."
      type: dict
      sample: {"mountpoint": "/", "options_before": null, "options_after": ["defaults", "size=25%", "mode=755"],
               "changed": true}
    boot:
      description: The boot file system, same keys as RV(patched.root); null when O(boot_options) is empty.
      type: dict
      sample: {"mountpoint": "/boot", "options_before": ["fmask=0077", "dmask=0077"],
               "options_after": ["fmask=0077", "dmask=0077", "umask=0077"], "changed": true}
    swap:
      description:
        - One item per C(swapDevices) entry (empty unless O(swap_random_encryption=true)).
        - C(random_encryption) is C(added), C(enabled) (was false) or C(present).
      type: list
      elements: dict
      sample: [{"device_before": "/dev/disk/by-uuid/0b7a0c3e-62a4-4c8e-9a51-7f3e2d1c9b84",
                "device_after": "/dev/disk/by-partuuid/9e4c1b2a-3d5f-4e6a-8b7c-1d2e3f4a5b6c",
                "random_encryption": "added"}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module, with_run_lock
from ansible_collections.impermanent.nixos.plugins.module_utils._step_hwconfig_patch import MODULE_SPEC, failed_fields, run_step


def main():
    module = AnsibleModule(**with_run_lock(MODULE_SPEC))
    run_module(module, run_step, failed=failed_fields(module.params))


if __name__ == "__main__":
    main()
