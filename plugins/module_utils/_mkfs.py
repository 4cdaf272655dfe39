# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""File systems of the install: validation, the mkfs argv and the planner of the filesystems module.

Nothing here runs a command. The module's body (:mod:`._step_filesystems`) reads every device first (does it
exist, ``blkid -p``, what uses it, see :mod:`._inuse`), hands that to :func:`plan` as :class:`DeviceFacts`, and only
then runs the ``create`` steps.
The rule the planner holds: a device is written only when blkid finds no signature at all on it and nothing uses
it. A device that already holds the wanted type is kept as it is (its label too); any other signature is refused.
"""

from __future__ import annotations

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import describe_signature
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError, Refused
from ansible_collections.impermanent.nixos.plugins.module_utils._plan import Plan

FSTYPES = ("vfat", "swap", "ext4")
#: the program that makes each type (the module looks it up on the target's PATH)
PROGRAMS = {"vfat": "mkfs.vfat", "swap": "mkswap", "ext4": "mkfs.ext4"}
#: label limits in bytes: the FAT boot sector and directory entry hold 11 characters; ext4's s_volume_name and
#: the swap header's volume name hold 16 bytes (mke2fs and mkswap truncate a longer one with only a warning)
LABEL_MAX = {"vfat": 11, "swap": 16, "ext4": 16}
#: characters mkfs.vfat (dosfstools 4.2) refuses in a label
VFAT_FORBIDDEN = '*?.,;:/\\|+=<>[]"'
#: what relabels an existing file system of each type (named when a kept one has another label)
RELABEL = {"vfat": "fatlabel", "swap": "swaplabel", "ext4": "e2label"}


class MkfsError(ModuleError, ValueError):
    """A request that cannot be carried out; the message names the value and what to do."""


class MkfsRefused(Refused, MkfsError):
    """An interlock: the device holds something else, or something uses it. Nothing was written."""


class Wanted(object):
    """One entry of the ``filesystems`` option, validated."""

    def __init__(self, device, fstype, label=None):
        self.device = device
        self.fstype = fstype
        self.label = label

    def __repr__(self):
        return "Wanted(%r, %r, %r)" % (self.device, self.fstype, self.label)


def check_label(fstype, label, device=""):
    """Raise :class:`MkfsError` when ``label`` is not one ``fstype``'s mkfs stores exactly as given."""
    if label is None:
        return
    where = " (for %s)" % device if device else ""
    if not isinstance(label, str) or label == "":
        raise MkfsError("label=%r%s: give a non-empty text, or leave label out for no label." % (label, where))
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in label):
        raise MkfsError("label=%r%s holds a control character; labels are printable text." % (label, where))
    limit = LABEL_MAX[fstype]
    if fstype == "vfat":
        # mkfs.vfat converts the label to the DOS code page (under the C locale the module runs it in, only ASCII
        # converts) and refuses these characters and a leading blank. Lowercase is stored as given (dosfstools 4.2
        # warns that some systems show it uppercase); the label is kept as written, since /dev/disk/by-label and
        # the NixOS configuration name it as written.
        if any(ord(c) > 0x7e for c in label):
            raise MkfsError("label=%r%s: a vfat label is ASCII only (mkfs.vfat stores it in the DOS code page)."
                            % (label, where))
        bad = sorted(set(c for c in label if c in VFAT_FORBIDDEN))
        if bad:
            raise MkfsError("label=%r%s: mkfs.vfat refuses the characters %s in a label."
                            % (label, where, " ".join(bad)))
        if label.startswith(" "):
            raise MkfsError("label=%r%s: a vfat label may not start with a blank." % (label, where))
        if len(label) > limit:
            raise MkfsError("label=%r%s is %d characters; a vfat label holds at most %d."
                            % (label, where, len(label), limit))
        return
    size = len(label.encode("utf-8", "surrogateescape"))
    if size > limit:
        raise MkfsError("label=%r%s is %d bytes; a %s label holds at most %d bytes (UTF-8), longer ones would be "
                        "cut short." % (label, where, size, fstype, limit))


def parse_wanted(entries):
    """The ``filesystems`` option as a list of :class:`Wanted`, every entry checked before anything is probed."""
    wanted = []
    seen = {}
    for i, entry in enumerate(entries or []):
        if not isinstance(entry, dict):
            raise MkfsError("filesystems[%d] is %r; each entry is a dict with device, fstype and label." % (i, entry))
        unknown = sorted(set(entry) - set(("device", "fstype", "label")))
        if unknown:
            raise MkfsError("filesystems[%d] has unknown keys %s; use device, fstype and label."
                            % (i, ", ".join(unknown)))
        device, fstype, label = entry.get("device"), entry.get("fstype"), entry.get("label")
        if not isinstance(device, str) or not device.startswith("/"):
            raise MkfsError("filesystems[%d].device=%r: give the absolute path of a block device." % (i, device))
        if fstype not in FSTYPES:
            raise MkfsError("filesystems[%d].fstype=%r (device %s): use one of %s."
                            % (i, fstype, device, ", ".join(FSTYPES)))
        check_label(fstype, label, device)
        if device in seen:
            raise MkfsError("%s is listed twice (filesystems[%d] and [%d]); one device holds one file system."
                            % (device, seen[device], i))
        seen[device] = i
        wanted.append(Wanted(device, fstype, label))
    return wanted


def mkfs_argv(fstype, device, label=None, program=None):
    """The command that makes ``fstype`` on ``device``. ``program``: its path (default: the bare name)."""
    argv = [program or PROGRAMS[fstype]]
    if fstype == "vfat":
        argv += ["-F", "32"] + (["-n", label] if label is not None else [])
    elif fstype == "swap":
        # no -f: it only overrides mkswap's own sanity checks (a device smaller than the size asked for, a
        # partition table it would not erase), and a blank device passes them
        argv += ["-L", label] if label is not None else []
    else:
        # -F: only so that mke2fs never stops to ask "Proceed anyway?" (a whole disk, or a signature it sees).
        # Safe because the plan writes only a device where blkid found no signature at all and nothing uses it;
        # a single -F does not override mke2fs's own refusal of a mounted device (that takes -F -F).
        argv += ["-F"] + (["-L", label] if label is not None else [])
    return argv + [device]


class DeviceFacts(object):
    """What the module read of one device before planning.

    ``exists``: the path exists (the module refuses one that is not a block device). ``identity``: (major, minor),
    to find two paths of one device. ``signature``: :func:`._blockdev.content_signature` of ``blkid -p`` (empty
    for a blank device). ``ambivalent``: blkid's message when it found signatures it cannot tell apart.
    ``users``: sentences saying what uses the device (:meth:`._inuse.UsageProbe.users`). ``system``: why it is on
    the running system's disk, or None."""

    def __init__(self, exists=True, identity=None, signature=None, ambivalent=None, users=(), system=None):
        self.exists = exists
        self.identity = identity
        self.signature = dict(signature or {})
        self.ambivalent = ambivalent
        self.users = list(users)
        self.system = system


class MkfsPlan(Plan):
    """Steps ``create`` (writes, with ``argv``) and ``keep`` (no write), one per entry in order; ``entries`` are
    the module's ``filesystems`` result."""

    def __init__(self):
        super(MkfsPlan, self).__init__()
        self.entries = []


NEVER = "this module never writes over an existing file system or any other signature"


def _refusal(want, facts):
    """The :class:`MkfsRefused` for a device that may not be written, or None when it may."""
    dev = want.device
    here = ("it holds %s" % describe_signature(facts.signature)) if facts.signature else "it is blank"
    if facts.users:
        return MkfsRefused("%s is in use: %s (%s). Nothing was written: unmount, swapoff, detach (losetup -d) and "
                           "close what is on it first." % (dev, "; ".join(facts.users), here), "in_use")
    if facts.system:
        return MkfsRefused("%s is on the disk the running system lives on: %s. Nothing was written; name a device "
                           "of the disk to install on." % (dev, facts.system), "system_disk")
    if facts.ambivalent:
        return MkfsRefused("%s holds signatures blkid cannot tell apart (%s); %s. Nothing was written. If its "
                           "content is disposable, wipe it (wipefs -a %s) and run again."
                           % (dev, facts.ambivalent, NEVER, dev), "content")
    if facts.signature:
        return MkfsRefused("%s holds %s, not a %s file system; %s. Nothing was written. If its content is "
                           "disposable, wipe it (wipefs -a %s) and run again, or fix device or fstype."
                           % (dev, describe_signature(facts.signature), want.fstype, NEVER, dev), "content")
    return None


def plan(wanted, facts, check_mode=False, programs=None):
    """The :class:`MkfsPlan` for ``wanted`` (:func:`parse_wanted`) given ``facts`` ({device path:
    :class:`DeviceFacts`}). Raises on the first entry that cannot be carried out, before anything is written.

    A missing device is an error, except in check mode, where it is planned as ``create`` with a warning: an
    earlier step of the same check run (a new partition, a LUKS mapping not open yet) would create it."""
    programs = programs or {}
    out = MkfsPlan()
    owners = {}
    for want in wanted:
        fact = facts[want.device]
        argv = mkfs_argv(want.fstype, want.device, want.label, programs.get(want.fstype))
        entry = dict(device=want.device, fstype=want.fstype, label=want.label, action="create")
        if not fact.exists:
            if not check_mode:
                raise MkfsError("%s does not exist. Create the partition or open the LUKS mapping first; nothing "
                                "was written." % want.device)
            out.warnings.append(
                "%s does not exist yet; planned as a new %s file system, as if an earlier step of this check run "
                "creates it blank (a new partition, a LUKS mapping not open yet). A real run fails if it is still "
                "missing, and keeps a %s file system it finds there." % (want.device, want.fstype, want.fstype))
            out.add("create", want.device, argv, why="check mode: the device does not exist yet")
            out.entries.append(entry)
            continue
        if fact.identity is not None:
            other = owners.setdefault(fact.identity, want.device)
            if other != want.device:
                raise MkfsError("%s and %s are the same device; one device holds one file system."
                                % (other, want.device))
        if fact.signature.get("TYPE") == want.fstype and not fact.ambivalent:
            found = fact.signature.get("LABEL")
            entry.update(action="keep", label=found)
            if want.label is not None and found != want.label:
                out.warnings.append(
                    "%s already holds a %s file system labelled %r, not %r: kept as it is, label included (this "
                    "module never changes an existing file system; %s relabels it)."
                    % (want.device, want.fstype, found, want.label, RELABEL[want.fstype]))
            out.add("keep", want.device, why="it already holds a %s file system" % want.fstype, writes=False)
            out.entries.append(entry)
            continue
        refused = _refusal(want, fact)
        if refused is not None:
            raise refused
        out.add("create", want.device, argv, why="no signature on it and nothing uses it")
        out.entries.append(entry)
    return out
