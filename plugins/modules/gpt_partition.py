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

import os
import stat
import time
from collections import namedtuple

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.impermanent.nixos.plugins.module_utils._alignment import (
    AlignmentError, explicit_grain, optimal_grain, parted_aligned,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import (
    BlockDeviceError, identity_mismatches, is_link_path, is_read_only, kernel_partitions, parse_blkid_export,
    parse_lsblk_identity, partition_name, partition_path, read_topology, sysfs_dir, whole_disk_of,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import Refused
from ansible_collections.impermanent.nixos.plugins.module_utils._inuse import UsageProbe
from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module
from ansible_collections.impermanent.nixos.plugins.module_utils._gpt import (
    GptLayoutError, compare, describe_plan, describe_table, parse_sfdisk_json, parse_partition_size, parse_specs,
    plan_layout, render_sfdisk_script,
)

NO_TABLE = "does not contain a recognized partition table"
UDEV_CONTROL = "/run/udev/control"
KERNEL_TIMEOUT = 20.0
# --wipe always: drop every old signature on the disk (an MBR, a stale backup GPT, a file system or LUKS header
# written to the whole disk) so blkid and udev see only the new GPT. --wipe-partitions always: an old file system
# or LUKS header that happens to sit where a new partition starts would otherwise make the next steps believe the
# new partition is already formatted. Both only run when the disk is empty or force=true says to replace it.
# --lock: an exclusive flock on the disk, so udev does not probe it while the table is being written.
SFDISK_WRITE = ["--lock", "--wipe", "always", "--wipe-partitions", "always"]


class DiskRefused(Refused):
    """The disk may not be partitioned; ``reason`` names the check (see the module's RETURN ``refused``)."""

    def __init__(self, msg, reason):
        super(DiskRefused, self).__init__(msg, reason)


class Disk(namedtuple("Disk", "arg path name topology")):
    """The disk as found: the path the user gave, the resolved path, kernel name, topology."""

    __slots__ = ()

    @property
    def label(self):
        """The disk as the user named it, with the kernel path when that differs."""
        return self.path if self.arg == self.path else "%s (%s)" % (self.arg, self.path)


class DiskInspector(object):
    """Reads the disk (what it is, its table and signatures) and runs the interlocks (system disk, identity,
    in use): it decides nothing to write; partition() plans with _gpt and GptWriter writes."""

    def __init__(self, runner, sysfs="/sys"):
        self.runner = runner
        self.sysfs = sysfs
        self.probe = UsageProbe(sysfs=sysfs)

    def resolve(self, device):
        if not os.path.exists(device):
            raise BlockDeviceError("device %s does not exist; give the whole disk, e.g. /dev/vda or "
                                   "/dev/disk/by-id/virtio-SERIAL" % device)
        path = os.path.realpath(device)
        if not stat.S_ISBLK(os.stat(path).st_mode):
            raise BlockDeviceError("device %s (%s) is not a block device; give the whole disk, e.g. /dev/vda"
                                   % (device, path))
        name = os.path.basename(path)
        if not os.path.isdir(sysfs_dir(name, self.sysfs)):
            raise BlockDeviceError("device %s (%s) has no %s; is it a block device the kernel knows?"
                                   % (device, path, sysfs_dir(name, self.sysfs)))
        parent = whole_disk_of(name, self.sysfs)
        if parent:
            raise BlockDeviceError("device %s (%s) is a partition of /dev/%s; give the whole disk /dev/%s"
                                   % (device, path, parent, parent))
        return Disk(device, path, name, read_topology(name, self.sysfs))

    def grain(self, disk, alignment):
        if alignment is None or str(alignment).strip().lower() == "optimal":
            return optimal_grain(disk.topology)
        try:
            value = parse_partition_size(alignment, "alignment")
        except GptLayoutError as e:
            raise AlignmentError("%s (or alignment=optimal)" % e)
        if value == "100%":
            raise AlignmentError("alignment=100%% makes no sense; use optimal or a byte count such as 1048576")
        return explicit_grain(disk.topology, value)

    def read_table(self, disk):
        rc, out, err = self.runner.run([self.runner.find("sfdisk"), "--json", disk.path], check_rc=False, record=False)
        if rc != 0:
            if NO_TABLE in err:
                return None
            raise CommandError("sfdisk --json %s failed (rc=%s): %s" % (disk.path, rc, (err or out).strip()),
                               rc=rc, stdout=out, stderr=err)
        return parse_sfdisk_json(out)

    def read_signature(self, disk, table):
        """What blkid finds on a disk without partitions: a file system, LUKS, RAID... on the whole disk, or a
        partition table sfdisk did not read (``table`` is what sfdisk read, None for nothing). None when empty."""
        rc, out, err = self.runner.run([self.runner.find("blkid"), "-p", "-o", "export", disk.path],
                                       check_rc=False, record=False)
        if rc == 2:
            return None
        if rc != 0:
            return "signatures blkid cannot tell apart (blkid -p rc=%d: %s)" % (rc, (err or out).strip())
        found = parse_blkid_export(out)
        if found.get("TYPE"):
            return "a whole-disk %s signature (%s)" % (found["TYPE"], found.get("USAGE") or "unknown usage")
        if found.get("PTTYPE") and table is None:
            return "a %s partition table that sfdisk does not read" % found["PTTYPE"]
        return None

    def check_not_system(self, disk):
        """Refuse the disk the running system lives on, whatever force says."""
        try:
            why = self.probe.system_disk(disk.path)
        except (IOError, OSError) as e:
            raise DiskRefused("cannot tell whether %s holds the running system (%s); nothing was written."
                              % (disk.label, e), "system_disk")
        if why:
            raise DiskRefused("%s is the disk the running system lives on: %s. It is never partitioned, not even "
                              "with force=true; nothing was written. Point device at the disk to install on "
                              "(lsblk -o NAME,SIZE,SERIAL,MODEL,MOUNTPOINTS lists them)." % (disk.label, why),
                              "system_disk")

    def check_identity(self, disk, expect):
        """Refuse a disk that is not the one the user pinned (expect)."""
        pins = dict((k, v) for k, v in (expect or {}).items() if v not in (None, ""))
        if not pins:
            return
        if pins.get("size") is not None:
            size = parse_partition_size(pins["size"], "expect.size")
            if size == "100%":
                raise GptLayoutError("expect.size=100% is not a disk size; give bytes or an IEC size such as 6GiB")
            pins["size"] = size
        found = dict(size=disk.topology.size, path=disk.path)
        if any(k in pins for k in ("serial", "model", "wwn")):
            out = self.runner.run([self.runner.find("lsblk"), "-J", "-d", "-o", "PATH,SERIAL,MODEL,WWN", disk.path],
                                  record=False)[1]
            found.update(parse_lsblk_identity(out))
        if pins.get("by_id"):
            found["by_id"] = os.path.realpath(pins["by_id"]) if os.path.exists(pins["by_id"]) else None
        wrong = identity_mismatches(pins, found)
        if wrong:
            raise DiskRefused("%s is not the disk pinned by expect: %s. Nothing was read or written. Fix device or "
                              "expect for this host." % (disk.label, "; ".join(wrong)), "identity")

    def check_not_in_use(self, disk):
        """Refuse a disk that anything uses (see _inuse), whatever force says."""
        try:
            users = self.probe.users(disk.path)
        except (IOError, OSError) as e:
            raise DiskRefused("cannot tell whether %s is in use (%s); nothing was written." % (disk.label, e),
                              "in_use")
        if users:
            raise DiskRefused("%s is in use: %s. Unmount, swapoff, detach and close what is on it first; force=true "
                              "does not override this. Nothing was written." % (disk.label, "; ".join(users)),
                              "in_use")


class GptWriter(object):
    """Writes the planned table and waits until the kernel (and udev) show it."""

    def __init__(self, runner, sysfs="/sys", timeout=KERNEL_TIMEOUT):
        self.runner = runner
        self.sysfs = sysfs
        self.timeout = timeout

    def udev_running(self):
        return os.path.exists(UDEV_CONTROL) and self.runner.find("udevadm", required=False) is not None

    def commands(self, disk):
        """The commands write() runs, for check mode."""
        argv = [[self.runner.find("sfdisk")] + SFDISK_WRITE + [disk.path], self.reread_argv(disk)]
        if self.udev_running():
            argv.append([self.runner.find("udevadm"), "settle"])
        return argv

    def reread_argv(self, disk):
        # partprobe and partx add/remove partitions one by one (BLKPG) from their own reading of the table, which
        # also works where the kernel cannot parse GPT itself or the disk was busy during sfdisk's BLKRRPART.
        partprobe = self.runner.find("partprobe", required=False)
        if partprobe:
            return [partprobe, disk.path]
        return [self.runner.find("partx"), "--update", disk.path]

    def validate(self, disk, script):
        """sfdisk --no-act: the whole script is parsed and applied in memory; the disk is opened read-only."""
        self.runner.run([self.runner.find("sfdisk"), "--no-act"] + SFDISK_WRITE + [disk.path], data=script,
                        record=False, what="sfdisk --no-act (checking the planned table)")

    def write(self, disk, script):
        """sfdisk writes the table; the caller reads it back before the kernel is told (tell_kernel)."""
        self.runner.run(self.commands(disk)[0], data=script, what="sfdisk (writing the partition table)")

    def tell_kernel(self, disk, plan):
        commands = self.commands(disk)
        self.runner.run(commands[1], what="telling the kernel about the new partitions")
        for argv in commands[2:]:
            self.runner.run(argv)
        self.wait_for_kernel(disk, plan)

    def wait_for_kernel(self, disk, plan):
        per_512 = plan.sector_size // 512
        want = dict((partition_name(disk.name, p.number), (p.start * per_512, p.size * per_512))
                    for p in plan.partitions)
        deadline = time.time() + self.timeout
        while True:
            seen = kernel_partitions(disk.name, self.sysfs)
            if seen == want:
                return
            if time.time() > deadline:
                raise CommandError(
                    "the partition table on %s was written, but after %ds the kernel still shows %s instead of %s "
                    "(start, size in 512-byte units); is a partition still in use? Run partprobe %s or reboot."
                    % (disk.path, self.timeout, sorted(seen.items()), sorted(want.items()), disk.path))
            time.sleep(0.1)

    def wait_for_links(self, paths):
        deadline = time.time() + self.timeout
        missing = [p for p in paths if not os.path.exists(p)]
        while missing and time.time() < deadline:
            time.sleep(0.2)
            missing = [p for p in missing if not os.path.exists(p)]
        return missing


def describe_conflict(disk, table, signature, reasons, plan):
    content = describe_table(table, plan.sector_size) if table is not None and table.partitions else signature
    return ("%s already holds something other than the requested layout: %s. Differences: %s. Requested: %s. "
            "Nothing was written. Set force=true to replace it (everything on the disk becomes unreachable), or "
            "choose another disk." % (disk.label, content.replace("\n", "; "), "; ".join(reasons),
                                      describe_plan(plan).replace("\n", "; ")))


def result_partitions(disk, plan, table):
    """Returned partitions: from the table on the disk when there is one that matches, else from the plan."""
    ss = plan.sector_size
    uuids = {}
    rows = [(p.number, p.name, p.type, p.start, p.size) for p in plan.partitions]
    if table is not None:
        rows = [(e.number, e.name, e.type, e.start, e.size) for e in table.partitions]
        uuids = dict((e.number, e.uuid) for e in table.partitions)
    out = []
    for number, name, ptype, start, size in rows:
        item = dict(
            number=number, name=name, type=ptype.upper(), start=start * ss, end=(start + size) * ss - 1,
            size=size * ss, start_sector=start, size_sectors=size,
            path="/dev/" + partition_name(disk.name, number),
            partuuid=uuids[number].lower() if uuids.get(number) else None,
            aligned=parted_aligned(disk.topology, start),
        )
        if is_link_path(disk.arg):
            item["by_id_path"] = partition_path(disk.arg, number)
        out.append(item)
    return out


def partition(run, inspector, writer):
    """The module's body (see _module.run_module): returns the result of a run that succeeds."""
    p = run.params
    specs = parse_specs(p["partitions"])
    disk = inspector.resolve(p["device"])
    inspector.check_not_system(disk)
    inspector.check_identity(disk, p["expect"])
    grain = inspector.grain(disk, p["alignment"])
    for note in grain.notes:
        run.warn("%s: %s" % (disk.path, note))
    plan = plan_layout(specs, disk.topology, grain)
    table = inspector.read_table(disk)
    signature = None
    status, reasons = compare(plan, table)
    if status == "empty":
        signature = inspector.read_signature(disk, table)
        if signature:
            status, reasons = "different", ["no partition table, but %s" % signature]
    result = dict(changed=False, device=disk.path, alignment_bytes=grain.size, alignment_offset=grain.offset,
                  sector_size=plan.sector_size, notes=list(plan.notes))
    if status == "grown":
        for note in reasons:
            run.warn("%s: %s" % (disk.path, note))
        result["notes"].extend(reasons)
    if status in ("same", "grown"):
        result.update(partitions=result_partitions(disk, plan, table))
        return result
    if status == "different" and not p["force"]:
        raise DiskRefused(describe_conflict(disk, table, signature, reasons, plan), "content")
    inspector.check_not_in_use(disk)
    if is_read_only(disk.name, inspector.sysfs):
        raise DiskRefused("%s is read-only; nothing was written." % disk.label, "read_only")
    script = render_sfdisk_script(plan)
    result.update(changed=True, script=script)
    if run.diff_mode:
        result["diff"] = run.diff(describe_table(table, plan.sector_size) + "\n",
                                  "label: gpt\n" + describe_plan(plan) + "\n", disk.path)
    if run.check_mode:
        writer.validate(disk, script)
        for argv in writer.commands(disk):
            run.runner.would_run(argv)
        result.update(partitions=result_partitions(disk, plan, None))
        return result
    writer.write(disk, script)
    # Read back before anything else: a value sfdisk stored differently must be reported as that, not as a
    # kernel that does not show the partitions.
    written = inspector.read_table(disk)
    status, reasons = compare(plan, written)
    if status != "same":
        raise GptLayoutError("sfdisk wrote a table on %s that differs from the plan: %s. The disk now holds: %s"
                             % (disk.path, "; ".join(reasons), describe_table(written, plan.sector_size)
                                .replace("\n", "; ")))
    writer.tell_kernel(disk, plan)
    result.update(partitions=result_partitions(disk, plan, written))
    if is_link_path(disk.arg) and writer.udev_running():
        missing = writer.wait_for_links([part["by_id_path"] for part in result["partitions"]])
        if missing:
            run.warn("udev did not create %s within %ds" % (", ".join(missing), writer.timeout))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            device=dict(type="path", required=True),
            partitions=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                size=dict(type="raw", required=True),
                type=dict(type="str", default="linux"),
            )),
            alignment=dict(type="raw", default="optimal"),
            force=dict(type="bool", default=False),
            expect=dict(type="dict", options=dict(
                serial=dict(type="str"),
                model=dict(type="str"),
                wwn=dict(type="str"),
                size=dict(type="raw"),
                by_id=dict(type="path"),
            )),
        ),
        supports_check_mode=True,
    )
    # every failure names the device as given; a success returns it resolved
    run_module(module, lambda run: partition(run, DiskInspector(run.runner), GptWriter(run.runner)),
               failed=dict(device=module.params["device"]))


if __name__ == "__main__":
    main()
