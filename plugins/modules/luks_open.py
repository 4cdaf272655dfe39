#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: luks_open
short_description: Format a blank device with LUKS (once) and open it as /dev/mapper/NAME
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
description:
  - Opens the LUKS device O(device) as C(/dev/mapper/NAME) (O(state=opened)), or closes the mapping
    (O(state=closed)).
  - With O(format=true) it first runs C(cryptsetup luksFormat) when, and only when, the device has no LUKS header
    and no other signature at all (C(cryptsetup isLuks), C(blkid -p)). An existing LUKS header with at least one
    key slot is never reformatted, whatever the options; a device holding a file system, a partition table or any
    other signature is refused.
  - The one exception is a LUKS header without any key slot (C(luksDump) lists none). That is what a luksFormat
    killed during its key derivation leaves, and nothing can ever unlock it, so with O(format=true) it is formatted
    again (with a warning), so a run interrupted there resumes instead of failing.
  - The key is a passphrase, handed to cryptsetup on stdin (C(--key-file=-)) without a trailing newline, which is
    exactly the key that typing the passphrase at cryptsetup's prompt gives later; or a key file on the target.
    The secret is never part of a command line or of the returned C(commands).
  - A mapping already open under O(name) on O(device) is left alone (no key needed); O(name) open on another
    device is an error.
  - With O(format=true) on a device that already has a LUKS header and O(state=closed), the key is tested
    (C(cryptsetup open --test-passphrase)) so that a header the key cannot open is reported instead of silently
    accepted. In check mode the key is tested the same way before a planned open.
  - Never formats a device that is in use, even a blank one, and never one on the disk the running system lives
    on; checked before C(luksFormat), in check mode too. In use means anything built on the device, followed
    through every layer - a holder in C(/sys/class/block/*/holders) (dm-crypt, LVM, MD), a loop device backed by
    it (for an image file, attached to it) - or any of them mounted or active swap.
extends_documentation_fragment:
  - impermanent.nixos.attributes
  - impermanent.nixos.run_lock
attributes:
  check_mode:
    details: Returns the commands it would run; formats, opens and closes nothing (it may test the key, read-only).
      M(impermanent.nixos.install_plan) plans it for a device that an earlier step would create.
  diff_mode:
    support: none
requirements:
  - cryptsetup (LUKS2 needs cryptsetup 2) on the target
  - util-linux (C(blkid)) on the target
options:
  device:
    description:
      - The block device (or image file) holding, or to hold, the LUKS header, for example V(/dev/vda3).
      - Required when O(state=opened) or O(format=true). With O(state=closed), when given, the mapping is closed
        only if it is open on this device.
    type: path
  name:
    description:
      - The device-mapper name; the opened device is C(/dev/mapper/NAME).
    type: str
    default: crypted
  passphrase:
    description:
      - The passphrase, without a trailing newline (it may not contain one).
      - Mutually exclusive with O(keyfile). One of them is needed to format or to open.
    type: str
  keyfile:
    description:
      - A key file on the target; its whole content is the key.
      - Mutually exclusive with O(passphrase).
    type: path
  format:
    description:
      - Run C(cryptsetup luksFormat) when the device is blank. A blank device with V(false) is an error that
        says to set V(true).
    type: bool
    default: false
  type:
    description:
      - The LUKS version for C(luksFormat).
    type: str
    choices: [luks2, luks1]
    default: luks2
  pbkdf:
    description:
      - Key derivation function for C(luksFormat). Defaults to V(argon2id) for LUKS2 and V(pbkdf2) for LUKS1
        (which supports only V(pbkdf2)).
    type: str
    choices: [argon2id, argon2i, pbkdf2]
  pbkdf_memory:
    description:
      - Memory cost in KiB (C(--pbkdf-memory)); argon2 only.
    type: int
  pbkdf_parallel:
    description:
      - Parallel threads (C(--pbkdf-parallel)); argon2 only.
    type: int
  iter_time:
    description:
      - Milliseconds the benchmarked PBKDF should take (C(--iter-time)). Mutually exclusive with
        O(pbkdf_force_iterations).
    type: int
  pbkdf_force_iterations:
    description:
      - Fixed PBKDF cost, no benchmark (C(--pbkdf-force-iterations)). Tests use V(pbkdf2) with V(1000); too weak
        for real use.
    type: int
  label:
    description:
      - LUKS2 header label for C(luksFormat).
    type: str
  state:
    description:
      - V(opened) maps the device, V(closed) removes the mapping C(/dev/mapper/NAME) if it exists.
    type: str
    choices: [opened, closed]
    default: opened
seealso:
  - module: community.crypto.luks_device
    description: The general LUKS module; luks_open is the install step only (format a blank device, never a
      header with a key slot, then open), with a check-mode plan for a partition an earlier task would create.
  - module: impermanent.nixos.tmpfs_root
"""

EXAMPLES = r"""
- name: Encrypt the nix partition (first run only) and open it as /dev/mapper/crypted
  impermanent.nixos.luks_open:
    device: /dev/vda3
    passphrase: "{{ luks_passphrase }}"
    format: true

- name: Format without opening (for example to prepare a disk elsewhere)
  impermanent.nixos.luks_open:
    device: /dev/vda3
    keyfile: /root/nix.key
    format: true
    state: closed

- name: Close the mapping
  impermanent.nixos.luks_open:
    name: crypted
    state: closed
"""

RETURN = r"""
mapper:
  description: The path of the opened device.
  returned: always
  type: str
  sample: /dev/mapper/crypted
uuid:
  description: >-
    The LUKS UUID of O(device), read from its header (C(cryptsetup luksDump)); null when the device has no header
    (yet).
  returned: always
  type: str
  sample: 4f8c1a50-3f0e-4d0c-9a7e-1c2b3d4e5f60
formatted:
  description: Whether C(luksFormat) ran (in check mode, would run).
  returned: always
  type: bool
opened:
  description: Whether the mapping is open after the run (in check mode, would be).
  returned: always
  type: bool
luks:
  description: What C(luksDump) says about the header after the run; null without a header.
  returned: always
  type: dict
  sample: {version: 2, uuid: 4f8c1a50-3f0e-4d0c-9a7e-1c2b3d4e5f60, label: null, subsystem: null,
           cipher: aes-xts-plain64, keyslots: [{slot: 0, pbkdf: argon2id, iterations: null, time_cost: 4,
           memory: 1048576, threads: 4}]}
commands:
  description: The commands that changed (in check mode, would change) something, without any secret.
  returned: always
  type: list
  elements: str
  sample: ["/usr/sbin/cryptsetup luksFormat --batch-mode --type luks2 --pbkdf argon2id --key-file=- /dev/vda3",
           "/usr/sbin/cryptsetup open --type luks --key-file=- /dev/vda3 crypted"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module, with_run_lock
from ansible_collections.impermanent.nixos.plugins.module_utils._step_luks_open import MODULE_SPEC, failed_fields, run_step


def main():
    module = AnsibleModule(**with_run_lock(MODULE_SPEC))
    run_module(module, run_step, failed=failed_fields(module.params))


if __name__ == "__main__":
    main()
