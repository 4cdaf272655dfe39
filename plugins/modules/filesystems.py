#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: filesystems
short_description: Make the file systems of an install (vfat, swap, ext4) on blank devices, never over existing ones
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
description:
  - Makes every file system in O(filesystems) in one call (step 5 of the install) with C(mkfs.vfat -F 32 -n LABEL),
    C(mkswap -L LABEL) or C(mkfs.ext4 -F -L LABEL) on each device, in order.
  - Every device is read first (C(blkid -p), and what uses it); only when every entry can be carried out does
    the first mkfs run, so a refusal leaves every device as it was.
  - A device is written only when C(blkid -p) finds no signature at all on it (a new partition's own table entry
    does not count) and nothing uses it. A device that already holds the wanted type is kept as it is and
    reported with RV(filesystems[].action=keep); a different label is not changed, only reported in a warning.
    A device holding anything else (another file system, LUKS, a partition table, RAID, signatures blkid cannot
    tell apart) is refused; this module never writes over an existing file system.
  - Never writes a device that is in use, even a blank one, or one on the disk the running system lives on. In
    use means anything built on the device, followed through every layer - a holder in
    C(/sys/class/block/*/holders) (dm-crypt, LVM, MD), a loop device backed by it - or any of them mounted or
    active swap. A kept device may be in use (a rerun after the install mounted it).
  - Labels are checked before anything is probed, with the limits of what each mkfs stores as given; see
    O(filesystems[].label).
extends_documentation_fragment:
  - impermanent.nixos.attributes
  - impermanent.nixos.run_lock
attributes:
  check_mode:
    details: Probes every device and returns the commands it would run; writes nothing. A device that does not
      exist yet (a partition or LUKS mapping an earlier step of the same check run would create) is planned as
      V(create), with a warning; a real run fails on it.
  diff_mode:
    support: none
requirements:
  - util-linux (C(blkid), C(mkswap)) on the target
  - dosfstools (C(mkfs.vfat)) when a vfat file system is made
  - e2fsprogs (C(mkfs.ext4)) when an ext4 file system is made
options:
  filesystems:
    description:
      - The file systems to make, one per device, made in this order.
    type: list
    elements: dict
    required: true
    suboptions:
      device:
        description:
          - The block device, for example V(/dev/vda1) or V(/dev/mapper/crypted). Each device at most once.
        type: path
        required: true
      fstype:
        description:
          - The file system type. V(vfat) is always FAT32 (an EFI system partition).
        type: str
        required: true
        choices: [vfat, swap, ext4]
      label:
        description:
          - The label, stored exactly as given. Without it the file system gets none.
          - V(vfat) at most 11 characters of printable ASCII, not starting with a blank, without any of
            C(*?.,;:/\|+=<>[]"). Lowercase letters are stored as given (C(mkfs.vfat) warns that some systems show
            them uppercase; C(/dev/disk/by-label) names them as given).
          - V(ext4) and V(swap) at most 16 bytes (UTF-8), no control characters.
        type: str
seealso:
  - module: community.general.filesystem
    description: The general module for one file system per task, with resizing and forced overwrites.
  - module: impermanent.nixos.gpt_partition
  - module: impermanent.nixos.luks_open
"""

EXAMPLES = r"""
- name: Make the ESP, swap and the nix file system (only on blank devices)
  impermanent.nixos.filesystems:
    filesystems:
      - {device: /dev/vda1, fstype: vfat, label: boot}
      - {device: /dev/vda2, fstype: swap, label: swap}
      - {device: /dev/mapper/crypted, fstype: ext4, label: nixos}
  register: fs

- name: Show what ran
  ansible.builtin.debug:
    var: fs.commands
"""

RETURN = r"""
filesystems:
  description: One entry per O(filesystems) entry, in order.
  returned: always
  type: list
  elements: dict
  contains:
    device:
      description: The device, as given.
      type: str
      sample: /dev/vda1
    fstype:
      description: The file system type.
      type: str
      sample: vfat
    label:
      description: The label on the device after the run (in check mode, would be); for a kept file system the
        label it already has (null for none), whatever O(filesystems[].label) says.
      type: str
      sample: boot
    action:
      description: V(create) when it was made (in check mode, would be), V(keep) when the device already held
        that type.
      type: str
      choices: [create, keep]
      sample: create
  sample: [{device: /dev/vda1, fstype: vfat, label: boot, action: create},
           {device: /dev/mapper/crypted, fstype: ext4, label: nixos, action: keep}]
commands:
  description: The commands that made a file system (in check mode, would make one), in order.
  returned: always
  type: list
  elements: str
  sample: ["/usr/sbin/mkfs.vfat -F 32 -n boot /dev/vda1", "/usr/sbin/mkswap -L swap /dev/vda2",
           "/usr/sbin/mkfs.ext4 -F -L nixos /dev/mapper/crypted"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module, with_run_lock
from ansible_collections.impermanent.nixos.plugins.module_utils._step_filesystems import MODULE_SPEC, failed_fields, run_step


def main():
    module = AnsibleModule(**with_run_lock(MODULE_SPEC))
    run_module(module, run_step, failed=failed_fields(module.params))


if __name__ == "__main__":
    main()
