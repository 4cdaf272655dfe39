# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The body of the impermanent.nixos.gpt_partition module: the disk's inspection and interlocks (system disk,
identity, content, in use, read-only), the planned GPT table, its write with sfdisk and the wait for the kernel, and
the module's argument spec, kept here so that install_plan can run it too.
"""

from __future__ import annotations

import os
import stat
import time
from collections import namedtuple

from ansible_collections.impermanent.nixos.plugins.module_utils._alignment import (
    AlignmentError, explicit_grain, optimal_grain, parted_aligned,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import (
    BlockDeviceError, identity_mismatches, is_link_path, is_read_only, kernel_partitions, parse_blkid_export,
    parse_lsblk_identity, partition_name, partition_path, read_topology, sysfs_dir, udev_settle_argv, whole_disk_of,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import Refused
from ansible_collections.impermanent.nixos.plugins.module_utils._inuse import UsageProbe
from ansible_collections.impermanent.nixos.plugins.module_utils._gpt import (
    GptLayoutError, compare, describe_plan, describe_table, parse_sfdisk_json, parse_partition_size, parse_specs,
    plan_layout, render_sfdisk_script,
)

NO_TABLE = "does not contain a recognized partition table"
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
        return udev_settle_argv(self.runner) is not None

    def commands(self, disk):
        """The commands write() runs, for check mode."""
        argv = [[self.runner.find("sfdisk")] + SFDISK_WRITE + [disk.path], self.reread_argv(disk)]
        settle = udev_settle_argv(self.runner)
        if settle:
            argv.append(settle)
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


MODULE_SPEC = dict(
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


def run_step(run):
    """The body as :func:`._module.run_module` calls it: :func:`partition` with the real inspector and writer."""
    return partition(run, DiskInspector(run.runner), GptWriter(run.runner))


def failed_fields(params):
    """The fields every failure returns: the device as given (a success returns it resolved)."""
    return dict(device=params["device"])
