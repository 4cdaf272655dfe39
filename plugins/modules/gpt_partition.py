#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright (c) impermanent.nixos contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpt_partition
short_description: Lay out a whole disk as GPT with aligned partitions (ESP, swap, nix) for an impermanent install
version_added: 0.1.0
author:
  - impermanent.nixos contributors (!UNKNOWN)
description:
  - Writes a GPT partition table with the partitions in O(partitions), in order, numbered from 1
    (step 3 of the install), and waits until the kernel (and udev, where it runs) shows them.
  - Starts are computed from the disk's topology (see O(alignment)) so that
    C(parted DISK align-check optimal N) passes for every partition; sizes are rounded up to whole
    alignment grains (never less than asked for) so the next start stays aligned; a V(100%) last partition runs to the last usable sector.
  - Idempotent. When the disk already holds exactly the planned table (names, types, starts and sizes; a V(100%)
    last partition matches when it ends within one grain of the end of the usable space) nothing is written and
    C(changed=false). A disk without a partition table, or with an empty one, is partitioned.
    Any other content (another table, an MBR, a file system or LUKS header on the whole disk) is an error
    unless O(force=true).
  - A disk that grew after the table was written (a resized VM disk) still holds the requested layout when the
    V(100%) partition ends within one grain of the table's own last usable sector; nothing is written or resized,
    and a warning and the C(notes) say how much the disk grew. Growing the partition and its file system is left
    to the user.
  - Never touches a disk that is in use, even with O(force=true). In use means anything built on the disk or on
    one of its partitions, followed through every layer - a holder in C(/sys/class/block/*/holders)
    (dm-crypt/LUKS, LVM, MD), a loop device backed by the disk, a partition or a file on one of their file
    systems - or any of them mounted (by whatever path) or active swap (C(/proc/self/mountinfo), C(/proc/swaps)).
  - Partition names and types are checked against what C(sfdisk) can store before anything is written. A name
    is at most 36 characters of the Basic Multilingual Plane (a character such as an emoji would be written as
    an empty name), without quotes, backslashes or control characters; the all-zero type GUID (an unused entry)
    is refused. After writing, the table is read back and compared with the plan before the kernel is told.
  - Never touches the disk the running system lives on, even with O(force=true) and even when its table matches;
    that is the disk behind C(/), C(/iso), C(/nix/.ro-store) and the other mount points of a live or installed system
    (through loop backing files, dm-crypt, LVM and MD), and the disk the kernel command line's C(root=) names (a
    live ISO copied to RAM keeps nothing mounted, but its stick is still named there).
  - With O(expect), the disk must also be the one the user pinned (serial, model, WWN, size, or a
    C(/dev/disk/by-id) link), checked before anything else is read or written; force does not override it.
  - On every refusal the result's C(refused) says why (V(system_disk), V(identity), V(content), V(in_use),
    V(read_only)), so a role can tell the user which variable, if any, overrides it.
  - >-
    Writes with one C(sfdisk) script (C(label: gpt), explicit C(start=)/C(size=) in sectors, C(type=), C(name=)),
    so the table is written in one step and sfdisk aligns nothing on its own; old signatures on the disk and
    inside the new partitions are wiped. It then tells the kernel with C(partprobe) (C(partx --update) if parted is
    missing) and runs C(udevadm settle) when udev is running.
  - Needs C(sfdisk), C(blkid), C(lsblk) (util-linux) and C(partprobe) (parted) or C(partx) on the target.
extends_documentation_fragment:
  - impermanent.nixos.attributes
  - impermanent.nixos.run_lock
attributes:
  check_mode:
    details: Returns the planned partitions and the commands it would run; the script is checked with
      C(sfdisk --no-act), which opens the disk read-only.
  diff_mode:
    support: full
    details: The table before and the planned table, one line per partition.
requirements:
  - util-linux (C(sfdisk), C(blkid), C(lsblk); C(partx) when parted is missing) on the target
  - parted (C(partprobe)), optional
options:
  device:
    description:
      - The whole disk, e.g. V(/dev/vda), V(/dev/nvme0n1) or V(/dev/disk/by-id/virtio-SERIAL) (symlinks are
        resolved). A partition, a missing path or anything but a block device is an error.
    type: path
    required: true
  partitions:
    description:
      - The partitions, in disk order. Each is numbered by its place in the list (first = 1).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The GPT partition name (C(PARTLABEL)), unique within the list, at most 36 characters, no quotes,
            backslashes or control characters, and no character beyond U+FFFF (an emoji), which sfdisk cannot
            store.
        type: str
        required: true
      size:
        description:
          - A size with an IEC unit (V(B), V(KiB), V(MiB), V(GiB), V(TiB); decimals such as V(1.5GiB) are fine)
            or a plain integer in bytes; or V(100%) for the rest of the disk, allowed for the last partition only.
          - SI and one-letter units (V(GB), V(M)) are rejected because parted and sfdisk read them differently.
          - Rounded up to the alignment grain, never down (the plan's C(notes) say when).
        type: raw
        required: true
      type:
        description:
          - V(esp) (EFI system partition; parted shows its C(boot, esp) flags), V(swap) (Linux swap),
            V(linux) (Linux file system), V(luks) (Linux LUKS), or any GPT partition type GUID but the all-zero
            one, which marks an unused entry.
        type: str
        default: linux
  alignment:
    description:
      - V(optimal) computes the grain from sysfs C(queue/optimal_io_size), C(minimum_io_size),
        C(physical_block_size), C(logical_block_size) and the disk's C(alignment_offset). The grain is the
        least common multiple of 1 MiB and the logical, physical, minimum and optimal I/O sizes (so never
        below 1 MiB); starts are at C(alignment_offset + k * grain). An C(optimal_io_size) that is not a
        multiple of the physical block or of C(minimum_io_size) is ignored with a warning.
      - An integer byte count (or a size string such as V(4MiB)) uses that grain instead; it must be a
        power-of-two multiple of the logical sector size. The C(alignment_offset) still applies.
    type: raw
    default: optimal
  force:
    description:
      - Replace a partition table (or whole-disk signature) that differs from the requested layout.
        This makes everything on the disk unreachable. It never overrides the in-use check.
    type: bool
    default: false
  expect:
    description:
      - Identity pins for the disk, checked on every run before anything else; the run fails, naming each
        difference, when the disk at O(device) is not this one. Use them where kernel names can change between
        boots or a wrong O(device) would be costly (fleets, laptops with several disks).
      - Values as C(lsblk -d -o SERIAL,MODEL,WWN) and C(lsblk -b -o SIZE) show them; blanks are squeezed before
        comparing.
    type: dict
    suboptions:
      serial:
        description: The disk's serial number (virtio disks show the libvirt C(<serial>)).
        type: str
      model:
        description: The disk's model string.
        type: str
      wwn:
        description: The disk's World Wide Name.
        type: str
      size:
        description:
          - The disk's exact size, in bytes or with an IEC unit (V(6GiB)). C(lsblk -b -d -o SIZE DISK) shows it.
        type: raw
      by_id:
        description:
          - A link, usually under C(/dev/disk/by-id), that must exist and point to this disk.
        type: path
notes:
  - Partition paths follow the kernel's naming (V(/dev/vda1), V(/dev/sda1), but V(/dev/nvme0n1p1),
    V(/dev/mmcblk0p1), V(/dev/loop0p1)); the P(impermanent.nixos.partition_path#filter) filter computes them
    without running this module.
seealso:
  - module: community.general.parted
    description: Creates one partition per task at the positions it is given; gpt_partition writes the whole table
      at once on the disk's optimal alignment and refuses a disk in use or the running system's own.
  - module: community.general.filesystem
    description: Makes the file systems on the partitions (the impermanent.nixos.disk role runs it after this module).
  - plugin: impermanent.nixos.partition_path
    plugin_type: filter
  - name: GPT partition type GUIDs
    description: The UEFI specification's table of partition types, and util-linux C(sfdisk --list-types --label gpt).
    link: https://uefi.org/specs/UEFI/2.10/05_GUID_Partition_Table_Format.html
"""

EXAMPLES = r"""
- name: ESP, swap and the rest for /nix
  impermanent.nixos.gpt_partition:
    device: /dev/disk/by-id/virtio-nixdisk
    partitions:
      - {name: esp, size: 512MiB, type: esp}
      - {name: swap, size: 8GiB, type: swap}
      - {name: nix, size: 100%, type: linux}
  register: disk

- name: The nix partition, as the kernel names it and as udev links it
  ansible.builtin.debug:
    msg: "{{ disk.partitions[2].path }} {{ disk.partitions[2].by_id_path }} PARTUUID={{ disk.partitions[2].partuuid }}"

- name: LUKS for /nix, 4 MiB alignment, replacing whatever table the disk had
  impermanent.nixos.gpt_partition:
    device: /dev/nvme0n1
    alignment: 4MiB
    force: true
    expect:
      serial: S4EWNX0R123456
      size: 1000204886016
    partitions:
      - {name: boot, size: 1GiB, type: esp}
      - {name: swap, size: 16GiB, type: swap}
      - {name: crypted, size: 100%, type: luks}
"""

RETURN = r"""
device:
  description: The disk, symlinks resolved.
  returned: always
  type: str
  sample: /dev/vda
alignment_bytes:
  description: The alignment grain in bytes; every start is a multiple of it plus RV(alignment_offset).
  returned: always
  type: int
  sample: 1048576
alignment_offset:
  description: The disk's alignment offset in bytes (from sysfs), the position of the grid.
  returned: always
  type: int
  sample: 0
sector_size:
  description: The disk's logical sector size in bytes; C(start_sector) and C(size_sectors) count these.
  returned: always
  type: int
  sample: 512
partitions:
  description:
    - The partitions as they are on the disk afterwards (in check mode, as they would be).
  returned: always
  type: list
  elements: dict
  contains:
    number:
      description: Partition number.
      type: int
      sample: 1
    name:
      description: GPT partition name.
      type: str
      sample: esp
    type:
      description: GPT partition type GUID (upper case).
      type: str
      sample: C12A7328-F81F-11D2-BA4B-00A0C93EC93B
    start:
      description: First byte.
      type: int
      sample: 1048576
    end:
      description: Last byte (inclusive, as C(parted unit B print) shows it).
      type: int
      sample: 537919487
    size:
      description: Size in bytes.
      type: int
      sample: 536870912
    start_sector:
      description: First logical sector.
      type: int
      sample: 2048
    size_sectors:
      description: Size in logical sectors.
      type: int
      sample: 1048576
    path:
      description: The kernel's device node for the partition.
      type: str
      sample: /dev/vda1
    by_id_path:
      description: The udev link for the partition (C(LINK-partN)), when O(device) was a C(/dev/disk/by-id/) path.
      type: str
      returned: when O(device) is a by-id path
      sample: /dev/disk/by-id/virtio-nixdisk-part1
    partuuid:
      description: The GPT partition GUID in lower case, as in C(/dev/disk/by-partuuid/); null in check mode for a
        partition that does not exist yet.
      type: str
      sample: 5d2ac1b7-e44a-7941-844f-bf0439f9e41f
    aligned:
      description: What C(parted DISK align-check optimal N) answers for this start (libparted's rule, computed).
      type: bool
      sample: true
commands:
  description: The commands that changed the disk (in check mode, that would); read-only probes are not listed.
  returned: always
  type: list
  elements: str
  sample: ["sfdisk --lock --wipe always --wipe-partitions always /dev/vda", "partprobe /dev/vda"]
script:
  description: The sfdisk script for the planned table (written on stdin of the C(sfdisk) command).
  returned: when the table is written or would be
  type: str
  sample: "label: gpt\nfirst-lba: 34\nlast-lba: 25165790\n\nstart=2048, size=1048576, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"esp\"\n"
notes:
  description: >-
    Why a size was rounded up, a topology value ignored, or how much the disk grew since its table was
    written.
  returned: always
  type: list
  elements: str
  sample: ["partition 'swap': 8GiB rounded up to 8193MiB to keep the next start aligned to 3MiB"]
refused:
  description:
    - Why the disk was refused, on failure only. V(system_disk) (the running system lives on it), V(identity)
      (not the disk O(expect) pins), V(content) (it holds something else; O(force=true) overrides),
      V(in_use) (mounted, swap, held or backing a loop device; unmount first), V(read_only).
  returned: failure, when the disk was refused
  type: str
  sample: content
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module, with_run_lock
from ansible_collections.impermanent.nixos.plugins.module_utils._step_gpt_partition import MODULE_SPEC, failed_fields, run_step


def main():
    module = AnsibleModule(**with_run_lock(MODULE_SPEC))
    run_module(module, run_step, failed=failed_fields(module.params))


if __name__ == "__main__":
    main()
