# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The body of the impermanent.nixos.hwconfig_patch module: the ``blkid`` lookup of a swap device's PARTUUID,
the read, ``nix-instantiate --parse`` check and atomic write of the file, and the body that runs
``nixos-generate-config`` when asked to and patches ``hardware-configuration.nix`` with the plan of
:mod:`._hwconfig`, kept here so that install_plan can run it too.
"""

from __future__ import annotations

import os
import re
import tempfile

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import parse_blkid_export, udev_settle_argv
from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError
from ansible_collections.impermanent.nixos.plugins.module_utils._hwconfig import (
    DEFAULT_BOOT_OPTIONS,
    DEFAULT_ROOT_OPTIONS,
    HwconfigError,
    SwapLookupError,
    plan_patch,
    stand_in,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._paths import PathError, resolve_beneath

_BY_TAG = re.compile(r"^/dev/disk/by-(uuid|label|partuuid|partlabel)/(.+)$")


class PartuuidLookup:
    """Find the PARTUUID of a swap device on the target with blkid (works with or without udev's symlinks)."""

    def __init__(self, runner):
        self.runner = runner
        self._blkid = None

    @property
    def blkid(self):
        if self._blkid is None:
            self._blkid = self.runner.find("blkid")
        return self._blkid

    def node(self, device):
        if os.path.exists(device):
            return os.path.realpath(device)
        m = _BY_TAG.match(device)
        if not m:
            raise SwapLookupError("swap device %s does not exist on this machine: run the module where the swap "
                                  "partition is attached, or fix swapDevices" % device)
        tag = m.group(1).upper()
        value = m.group(2)
        rc, out, err = self.runner.run([self.blkid, "-o", "device", "-t", "%s=%s" % (tag, value)],
                                       check_rc=False, record=False)
        devices = out.split()
        if rc not in (0, 2) or (rc == 0 and not devices):
            raise SwapLookupError("blkid -t %s=%s failed (rc=%s): %s" % (tag, value, rc, (err or out).strip()))
        if not devices:
            raise SwapLookupError(
                "swap device %s: no block device with %s %s on this machine (blkid -t %s=%s found none). Run the "
                "module where the swap partition is attached, right after nixos-generate-config, or fix "
                "swapDevices" % (device, tag, value, tag, value))
        if len(devices) > 1:
            raise SwapLookupError("swap device %s: %s %s is not unique on this machine (%s); refusing to guess" % (
                device, tag, value, ", ".join(devices)))
        return devices[0]

    def __call__(self, device):
        node = self.node(device)
        rc, out, err = self.runner.run([self.blkid, "-p", "-o", "export", node], check_rc=False, record=False)
        fields = parse_blkid_export(out)
        if rc != 0 and not fields:
            raise SwapLookupError("swap device %s (%s): blkid -p found no signature (rc=%s) %s" % (
                device, node, rc, (err or "").strip()))
        if fields.get("TYPE") != "swap":
            raise SwapLookupError(
                "swap device %s (%s) holds %s, not a swap area: refusing to enable random encryption, which "
                "overwrites the partition at every boot" % (device, node, fields.get("TYPE") or "no signature"))
        partuuid = fields.get("PART_ENTRY_UUID")
        if not partuuid:
            raise SwapLookupError(
                "swap device %s (%s) is not a partition of a GPT or MBR disk (blkid reports no PART_ENTRY_UUID); "
                "random encryption needs a stable /dev/disk/by-partuuid/ path" % (device, node))
        return partuuid


class HwconfigFile:
    """Reads, validates and atomically writes the file; keeps its mode and owner (module.atomic_move)."""

    def __init__(self, module, runner, path):
        self.module = module
        self.runner = runner
        self.path = path

    def read(self):
        if not os.path.isfile(self.path):
            raise HwconfigError("%s does not exist or is not a file: run nixos-generate-config --root <root> first"
                                % self.path)
        with open(self.path, "rb") as f:
            # surrogateescape: bytes that are not UTF-8 go back out exactly as they came in
            return f.read().decode("utf-8", "surrogateescape")

    def validate(self, text):
        """nix-instantiate --parse on the candidate text; None when fine or unavailable, else a CommandError."""
        nix = self.runner.find("nix-instantiate", required=False)
        if nix is None:
            return False
        fd, tmp = tempfile.mkstemp(prefix="hwconfig-", suffix=".nix", dir=self.module.tmpdir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8", "surrogateescape"))
            rc, out, err = self.runner.run([nix, "--parse", tmp], check_rc=False, record=False)
        finally:
            os.unlink(tmp)
        if rc != 0:
            raise CommandError(
                "the patched %s does not parse with nix-instantiate (file left untouched): %s" % (
                    self.path, err.strip().replace(tmp, self.path + " (patched)")),
                rc=rc, stdout=out, stderr=err, cmd=self.runner.quote([nix, "--parse", self.path + " (patched)"]))
        return True

    def write(self, text):
        # through a symlink, replace the file it points to (as an editor would), not the link
        target = os.path.realpath(self.path)
        fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(target), suffix=".tmp",
                                   dir=os.path.dirname(target))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8", "surrogateescape"))
                f.flush()
                os.fsync(f.fileno())
            self.module.atomic_move(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def check_generated_path(root, path):
    """``generate`` needs ``root`` and the path nixos-generate-config writes below it."""
    if not root:
        raise ModuleError("generate=true needs root (the mounted system nixos-generate-config --root reads).")
    wanted = os.path.join(os.path.normpath(root), "etc/nixos/hardware-configuration.nix")
    if os.path.normpath(path) != wanted:
        raise ModuleError("generate=true: nixos-generate-config --root %s writes %s, not path=%s; give that path, "
                          "or generate=false." % (root, wanted, path))


def patch(run):
    """The module's body (see _module.run_module). Every text it returns is made valid UTF-8 by the harness: the
    file is edited as text decoded with surrogateescape (its bytes go back out exactly as they came in)."""
    p = run.params
    path = p["path"]
    run.result.update(changed=False, path=path)
    if not os.path.isabs(path):
        # The module runs on the target from a directory nobody chose: a relative path could patch the wrong file.
        raise ModuleError("path=%r must be absolute (like /mnt/etc/nixos/hardware-configuration.nix)." % path)
    if p["root"]:
        try:
            resolve_beneath(p["root"], path)
        except PathError as e:
            raise ModuleError("%s; %s was not written." % (e, path))
    hwfile = HwconfigFile(run.module, run.runner, path)
    generate = p["generate"] and not os.path.lexists(path)
    run.result["generated"] = generate
    if p["generate"]:
        check_generated_path(p["root"], path)
    if generate:
        # nixos-generate-config names a device by its /dev/disk/by-uuid link only if udev has made it, else by its
        # kernel name (/dev/vda3), which can change at the next boot: a file system made moments ago (in this call)
        # may still be in udev's queue.
        settle = udev_settle_argv(run.runner)
        argv = [run.runner.find("nixos-generate-config"), "--root", p["root"]]
        if run.check_mode:
            if settle:
                run.runner.would_run(settle)
            run.runner.would_run(argv)
        else:
            if settle:
                run.runner.run(settle, what="udevadm settle (before nixos-generate-config)")
            run.runner.run(argv, what="nixos-generate-config")
            if not os.path.isfile(path):
                raise ModuleError("nixos-generate-config --root %s ran but did not write %s." % (p["root"], path))
    planned_on_stand_in = run.stand_in is not None and not os.path.lexists(path)
    run.result["stand_in"] = planned_on_stand_in
    if run.check_mode and generate and not planned_on_stand_in:
        run.warn("%s does not exist yet: nixos-generate-config would write it, and the patch is planned once it "
                 "exists (impermanent.nixos.install_plan shows the edits now, planned with the step that mounts the root)."
                 % path)
        run.result.update(changed=True, patched=None)
        return run.result
    if planned_on_stand_in:
        before, resolve = stand_in(p["boot_mountpoint"], run.stand_in.get("boot_device"),
                                   run.stand_in.get("swap_devices") or [])
    else:
        before, resolve = hwfile.read(), PartuuidLookup(run.runner)
    plan = plan_patch(before, name=path, root_options=p["root_options"], boot_options=p["boot_options"],
                      boot_mountpoint=p["boot_mountpoint"], swap_random_encryption=p["swap_random_encryption"],
                      resolve_partuuid=resolve)

    shown = "%s (stand-in: not generated yet)" % path if planned_on_stand_in else path
    run.result.update(changed=plan.changed or generate, patched=plan.patched,
                      diff=run.diff(plan.before, plan.after, "%s (before)" % shown, "%s (after)" % shown))
    if planned_on_stand_in:
        run.warn("%s does not exist yet (nixos-generate-config writes it once the disk is set up): the patch "
                 "was planned on a stand-in holding only the entries it edits; see the comment at its top." % path)
    if plan.changed:
        try:
            if p["validate"]:
                run.result["validated"] = hwfile.validate(plan.after)
            if not run.check_mode:
                if p["backup"]:
                    run.result["backup_file"] = run.module.backup_local(path)
                hwfile.write(plan.after)
        except (IOError, OSError) as e:
            raise ModuleError("could not write %s: %s (file left as it was)" % (path, e))
    return run.result


#: what main() passes to AnsibleModule
MODULE_SPEC = dict(
    argument_spec=dict(
        path=dict(type="path", required=True),
        root=dict(type="path"),
        root_options=dict(type="list", elements="str", default=list(DEFAULT_ROOT_OPTIONS)),
        boot_options=dict(type="list", elements="str", default=list(DEFAULT_BOOT_OPTIONS)),
        boot_mountpoint=dict(type="str", default="/boot"),
        swap_random_encryption=dict(type="bool", default=False),
        backup=dict(type="bool", default=True),
        validate=dict(type="bool", default=True),
        generate=dict(type="bool", default=False),
    ),
    supports_check_mode=True,
)


#: the body as _module.run_module calls it
run_step = patch


def failed_fields(params):
    """The fields only a failed run returns: none."""
    return None
