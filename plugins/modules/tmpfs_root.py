#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tmpfs_root
short_description: Mount a tmpfs root with boot, nix and bind-mounted persisted paths for an impermanent install
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
description:
  - Builds the mount layout an impermanent NixOS is installed into, from a live system
    (steps 6 and 7 of the install).
    A tmpfs on O(root) with O(size) and O(mode); the directories C(boot), C(nix) and each O(persist) path on it;
    O(boot_device) on C(ROOT/boot) with O(boot_options); O(nix_device) on C(ROOT/nix); C(ROOT/PERSIST_DIR/PATH)
    for each persisted path, bind-mounted onto C(ROOT/PATH); optionally O(swap_device) swapped on.
  - Reads C(/proc/self/mountinfo) and follows the mount tree the way path lookup does, so a second run changes
    nothing and never stacks a second mount; a mount hidden under a later one is not taken for a mounted one.
  - Every mount that is already there is checked against what was asked for (device major:minor for
    block devices; for bind mounts also the directory inside the file system). A wrong mount is an error, it is
    never accepted or replaced silently.
  - A tmpfs already on O(root) with another size is remounted with the new size. The kernel ignores C(mode=) on
    a tmpfs remount, so a different mode of the root directory is set with C(chmod) instead.
    Modes of other existing directories are never changed (an installer may C(chmod 777 ROOT/etc/nixos)
    while it writes the configuration).
  - With O(state=unmounted) it tears the layout down in reverse order (swap, binds, boot, nix, tmpfs), and does
    nothing when nothing is mounted. It refuses when O(root) has mounts below it that are not part of the layout.
extends_documentation_fragment:
  - impermanent.nixos.attributes
  - impermanent.nixos.run_lock
attributes:
  check_mode:
    details: Returns the steps and the commands it would run; mounts and creates nothing.
      M(impermanent.nixos.install_plan) plans it for devices that an earlier step would create.
  diff_mode:
    support: none
requirements:
  - util-linux (C(mount), C(umount), C(swapon), C(swapoff), C(blkid)) on the target
options:
  root:
    description:
      - Where the new system's C(/) is mounted. Not V(/).
      - It must not exist, be an empty directory, or be a tmpfs this module mounted there (see the notes for how
        that is told); anything else (a directory with files, V(/dev/shm), V(/run), a regular file) is refused.
    type: path
    default: /mnt
  size:
    description:
      - The tmpfs C(size=) option. A percentage of RAM (V(25%)) or an amount with an optional
        V(k), V(m), V(g), V(t) suffix (V(2G), V(512m)), as C(mount -t tmpfs) takes it.
    type: str
    default: 25%
  mode:
    description:
      - Permissions of the tmpfs root directory, an octal string such as V(755) or V(0755).
      - Not V(1777), the kernel's default, which C(/proc/self/mountinfo) does not show (the module could not tell
        its own tmpfs from one like C(/dev/shm) on the next run).
    type: str
    default: '755'
  boot_device:
    description:
      - The EFI system partition, mounted on C(ROOT/boot). A device path, or V(LABEL=...), V(UUID=...),
        V(PARTUUID=...), V(PARTLABEL=...).
      - Left out, nothing is mounted on C(ROOT/boot) (the directory is still created).
    type: str
  boot_options:
    description:
      - Mount options for O(boot_device). They are used when mounting; an existing mount of the right device is
        accepted with the options it has.
    type: list
    elements: str
    default: [umask=0077]
  nix_device:
    description:
      - The file system mounted on C(ROOT/nix), which also holds O(persist_dir). A device path (V(/dev/mapper/crypted)
        for LUKS), or V(LABEL=...), V(UUID=...), V(PARTUUID=...), V(PARTLABEL=...).
      - Required when O(state=mounted).
    type: str
  persist_dir:
    description:
      - Where persisted paths live in the installed system; must be V(/nix) or below it.
    type: str
    default: /nix/persist
  persist:
    description:
      - Absolute paths of the installed system that survive reboots. Each becomes C(ROOT/PERSIST_DIR/PATH),
        bind-mounted onto C(ROOT/PATH). Not inside C(/nix) or C(/boot), no path inside another.
    type: list
    elements: str
    default: [/etc/nixos, /var/log]
  swap_device:
    description:
      - A swap device (or swap file) to C(swapon) when O(state=mounted) and to C(swapoff) when
        O(state=unmounted). Whether it is active is read from C(/proc/swaps), comparing device numbers, so
        symlinks and V(LABEL=...) forms match the kernel's name for the device.
    type: str
  state:
    description:
      - V(mounted) builds the layout, V(unmounted) tears it down.
    type: str
    choices: [mounted, unmounted]
    default: mounted
notes:
  - "A tmpfs on O(root) counts as one this module mounted when C(/proc/self/mountinfo) shows what
    C(mount -t tmpfs -o size=SIZE,mode=MODE tmpfs ROOT) leaves: source C(tmpfs), none of the per-mount flags
    C(ro), C(nosuid), C(nodev), C(noexec), no file system options but C(size=), C(mode=) (which must be shown)
    and C(inode64); and when nothing else is in the way: no other file system mounted below it apart from the
    layout's own mount points, and no overlay using a directory on it (like a live ISO's C(/nix/.rw-store)).
    Otherwise it is refused and nothing is changed: no remount, no C(chmod)."
  - Every path it creates, mounts on or unmounts below O(root) (C(boot), C(nix), each persisted path and its
    directory below O(persist_dir)) must consist of real directories below O(root). A symbolic link on the way is
    refused and named (in check mode too), whether it leads out of O(root) (C(ROOT/var) linked to the live
    system's C(/var) would mount over the live C(/var/log)) or stays inside (a mount made through it would land
    elsewhere and every later run would stack another one). The directories on O(nix_device) are checked again
    right after it is mounted, before anything is created or bind-mounted there.
  - A path that exists but is not a directory (O(root) itself, C(ROOT/boot), ...) is refused, in check mode too.
  - Device numbers are compared, not names, so V(/dev/mapper/crypted), V(/dev/dm-0) and V(LABEL=nixos) all match
    the same mount. A V(LABEL=...) style spec that matches several devices is an error.
  - Mounts that an earlier, unrelated tmpfs on O(root) had hidden become visible again after O(state=unmounted)
    removes it; a second run with O(state=unmounted) removes them if they are on the layout's mount points.
seealso:
  - module: ansible.posix.mount
    description: Mounts one file system and edits fstab; tmpfs_root builds the whole install layout (tmpfs root,
      ESP, nix, bind mounts, swap) from mountinfo and writes no fstab.
  - module: impermanent.nixos.luks_open
"""

EXAMPLES = r"""
- name: Mount the impermanent layout for nixos-install
  impermanent.nixos.tmpfs_root:
    root: /mnt
    boot_device: /dev/disk/by-partlabel/boot
    nix_device: /dev/mapper/crypted
    swap_device: /dev/disk/by-partlabel/swap
    persist:
      - /etc/nixos
      - /var/log
      - /var/lib/nixos

- name: Tear it down again
  impermanent.nixos.tmpfs_root:
    root: /mnt
    swap_device: /dev/disk/by-partlabel/swap
    state: unmounted
"""

RETURN = r"""
mounts:
  description:
    - The mounts of the layout after the run (in check mode, what they would be), parents first.
    - Each has C(target), C(source) (shown like findmnt does, V(/dev/loop0[/persist/etc/nixos]) for a bind mount),
      C(fstype), C(options) (per-mount then file system options), C(root) (the directory of the file system that
      is mounted) and C(device) (major:minor).
    - In check mode, when something would change, only C(target) and C(source) of the planned mounts (and
      C(fstype) of the tmpfs).
  returned: always
  type: list
  elements: dict
  sample:
    - {target: /mnt, source: tmpfs, fstype: tmpfs, options: "rw,relatime,size=6170916k,mode=755"}
    - {target: /mnt/nix, source: /dev/vda3, fstype: ext4, options: "rw,relatime"}
    - {target: /mnt/etc/nixos, source: "/dev/vda3[/persist/etc/nixos]", fstype: ext4, options: "rw,relatime"}
created_dirs:
  description:
    - Directories created (in check mode, that would be created; those on a file system that is not mounted yet
      are listed although they may exist on it already).
  returned: always
  type: list
  elements: str
  sample: [/mnt/boot, /mnt/nix, /mnt/etc/nixos, /mnt/var/log, /mnt/nix/persist/etc/nixos]
commands:
  description: The commands run (in check mode, that would run), in order.
  returned: always
  type: list
  elements: str
  sample: ["mount -t tmpfs -o size=25%,mode=755 tmpfs /mnt", "mount /dev/vda3 /mnt/nix"]
steps:
  description: What was (or would be) done and why, one entry per step.
  returned: always
  type: list
  elements: dict
  sample: [{kind: mount, target: /mnt, why: tmpfs as the new /, argv: [mount, -t, tmpfs, -o, "size=25%,mode=755",
            tmpfs, /mnt]}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module, with_run_lock
from ansible_collections.impermanent.nixos.plugins.module_utils._step_tmpfs_root import MODULE_SPEC, failed_fields, run_step


def main():
    module = AnsibleModule(**with_run_lock(MODULE_SPEC))
    run_module(module, run_step, failed=failed_fields(module.params))


if __name__ == "__main__":
    main()
