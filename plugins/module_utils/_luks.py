# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""LUKS: pure parsers for cryptsetup/blkid output, argv builders and the planner of the luks_open module.

Nothing here runs a command. The module reads the device's state (``cryptsetup status NAME``, ``isLuks``,
``luksDump``, ``blkid -p``), hands it to :class:`LuksPlanner` as :class:`LuksFacts`, and runs the steps it returns.
The secret never appears in an argv built here: a passphrase is always read by cryptsetup from stdin
(``--key-file=-``), without a trailing newline, which is the same key cryptsetup's own prompt produces.
"""

from __future__ import annotations

import re

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import describe_signature
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError, Refused
from ansible_collections.impermanent.nixos.plugins.module_utils._plan import Plan, Step

# cryptsetup exit codes (man cryptsetup, RETURN CODES)
RC_WRONG_KEY = 2
RC_NO_DEVICE = 4
RC_BUSY = 5

PBKDFS = ("argon2id", "argon2i", "pbkdf2")
_NAME = re.compile(r"^[A-Za-z0-9#+.:=@_-]{1,127}$")


class LuksError(ModuleError):
    """The request cannot be carried out safely; the message says what to do."""


class LuksRefused(Refused, LuksError):
    """An interlock: the device may not be formatted (it is in use, or on the running system's disk)."""


# -- parsers ---------------------------------------------------------------------------------------------------
def _field(line):
    key, _sep, value = line.partition(":")
    return key.strip(), value.strip()


def parse_luks_dump(text):
    """``cryptsetup luksDump`` (LUKS1 or LUKS2) -> dict(version, uuid, label, subsystem, cipher, keyslots).

    ``keyslots`` lists the enabled key slots: dict(slot, pbkdf, iterations, time_cost, memory, threads).
    """
    info = dict(version=None, uuid=None, label=None, subsystem=None, cipher=None, keyslots=[])
    lines = text.splitlines()
    section = None
    slot = None
    luks1_cipher = {}
    for raw in lines:
        line = raw.rstrip()
        if not line.strip():
            continue
        indented = raw[:1] in (" ", "\t")
        key, value = _field(line)
        if not indented:
            section = None
            if key == "Version":
                info["version"] = int(value)
            elif key == "UUID":
                info["uuid"] = value
            elif key == "Label":
                info["label"] = None if value == "(no label)" else value
            elif key == "Subsystem":
                info["subsystem"] = None if value == "(no subsystem)" else value
            elif key in ("Cipher name", "Cipher mode"):
                luks1_cipher[key] = value
            elif key in ("Keyslots", "Data segments", "Tokens", "Digests"):
                section = key
            else:
                m = re.match(r"^Key Slot (\d+): (ENABLED|DISABLED)$", line)
                if m:
                    section = "luks1-slot"
                    slot = None
                    if m.group(2) == "ENABLED":
                        slot = dict(slot=int(m.group(1)), pbkdf="pbkdf2", iterations=None, time_cost=None,
                                    memory=None, threads=None)
                        info["keyslots"].append(slot)
            continue
        if section == "Keyslots":
            m = re.match(r"^\s+(\d+): (\S+)", line)
            if m and raw.startswith("  ") and not raw.startswith("\t"):
                slot = dict(slot=int(m.group(1)), pbkdf=None, iterations=None, time_cost=None, memory=None,
                            threads=None)
                info["keyslots"].append(slot)
                continue
            if slot is not None:
                if key == "PBKDF":
                    slot["pbkdf"] = value
                elif key == "Iterations":
                    slot["iterations"] = int(value)
                elif key == "Time cost":
                    slot["time_cost"] = int(value)
                elif key == "Memory":
                    slot["memory"] = int(value)
                elif key == "Threads":
                    slot["threads"] = int(value)
        elif section == "Data segments" and key == "cipher" and info["cipher"] is None:
            info["cipher"] = value
        elif section == "luks1-slot" and slot is not None and key == "Iterations":
            slot["iterations"] = int(value)
    if info["cipher"] is None and luks1_cipher:
        info["cipher"] = "%s-%s" % (luks1_cipher.get("Cipher name"), luks1_cipher.get("Cipher mode"))
    if info["version"] is None:
        raise LuksError("cryptsetup luksDump printed no 'Version:' line; is this a LUKS device?")
    return info


def parse_status(rc, stdout, stderr):
    """``cryptsetup status NAME`` -> dict(active, in_use, type, cipher, device, loop, mode, dm_available).

    rc 0: active (the indented lines are parsed); rc 4 / "is inactive": not active. When the kernel has no
    device-mapper at all ("Cannot initialize device-mapper"), no mapping can be active: not active,
    ``dm_available=False``. Anything else is an error.
    """
    status = dict(active=False, in_use=False, type=None, cipher=None, device=None, loop=None, mode=None,
                  dm_available=True)
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    if rc == 0 and " is active" in first:
        status["active"] = True
        status["in_use"] = first.endswith("and is in use.")
        for line in stdout.splitlines()[1:]:
            key, value = _field(line)
            if key in ("type", "cipher", "device", "loop", "mode"):
                status[key] = value
        if status["type"] == "n/a":
            status["type"] = None
        return status
    if rc == RC_NO_DEVICE or first.endswith(" is inactive."):
        return status
    if "Cannot initialize device-mapper" in stderr:
        status["dm_available"] = False
        return status
    raise LuksError("cryptsetup status failed (rc=%s): %s" % (rc, (stderr or stdout).strip() or "no output"))


# -- options -----------------------------------------------------------------------------------------------------
class FormatOptions:
    """luksFormat options, validated together (cryptsetup would reject the same combinations later)."""

    def __init__(self, luks_type="luks2", pbkdf=None, pbkdf_memory=None, pbkdf_parallel=None, iter_time=None,
                 pbkdf_force_iterations=None, label=None):
        if luks_type not in ("luks1", "luks2"):
            raise LuksError("type=%r: use luks2 or luks1." % (luks_type,))
        if pbkdf is None:
            pbkdf = "argon2id" if luks_type == "luks2" else "pbkdf2"
        if pbkdf not in PBKDFS:
            raise LuksError("pbkdf=%r: use one of %s." % (pbkdf, ", ".join(PBKDFS)))
        if luks_type == "luks1" and pbkdf != "pbkdf2":
            raise LuksError("type=luks1 supports only pbkdf=pbkdf2 (got %s)." % pbkdf)
        if luks_type == "luks1" and label:
            raise LuksError("label is a LUKS2 feature; drop it or use type=luks2.")
        if pbkdf == "pbkdf2" and (pbkdf_memory or pbkdf_parallel):
            raise LuksError("pbkdf_memory and pbkdf_parallel apply to argon2 only, not to pbkdf=pbkdf2.")
        if iter_time is not None and pbkdf_force_iterations is not None:
            raise LuksError("iter_time and pbkdf_force_iterations exclude each other: the first benchmarks, "
                            "the second fixes the cost.")
        for name, value in (("pbkdf_memory", pbkdf_memory), ("pbkdf_parallel", pbkdf_parallel),
                            ("iter_time", iter_time), ("pbkdf_force_iterations", pbkdf_force_iterations)):
            if value is not None and value < 1:
                raise LuksError("%s=%r must be a positive number." % (name, value))
        self.luks_type = luks_type
        self.pbkdf = pbkdf
        self.pbkdf_memory = pbkdf_memory
        self.pbkdf_parallel = pbkdf_parallel
        self.iter_time = iter_time
        self.pbkdf_force_iterations = pbkdf_force_iterations
        self.label = label

    def argv(self):
        out = ["--type", self.luks_type, "--pbkdf", self.pbkdf]
        for flag, value in (("--pbkdf-memory", self.pbkdf_memory), ("--pbkdf-parallel", self.pbkdf_parallel),
                            ("--iter-time", self.iter_time),
                            ("--pbkdf-force-iterations", self.pbkdf_force_iterations),
                            ("--label", self.label)):
            if value is not None:
                out += [flag, str(value)]
        return out


class Key:
    """Where the key comes from: a passphrase (stdin) or a key file on the target. ``data`` is what goes on stdin."""

    def __init__(self, passphrase=None, keyfile=None):
        if passphrase is not None and keyfile is not None:
            raise LuksError("passphrase and keyfile exclude each other.")
        if passphrase is not None and (passphrase == "" or "\n" in passphrase):
            raise LuksError("The passphrase must not be empty and must not contain a newline: a newline could "
                            "never be typed at cryptsetup's prompt.")
        self.passphrase = passphrase
        self.keyfile = keyfile

    @property
    def given(self):
        return self.passphrase is not None or self.keyfile is not None

    def argv(self):
        return ["--key-file=-"] if self.passphrase is not None else ["--key-file=%s" % self.keyfile]

    @property
    def data(self):
        return self.passphrase

    def describe(self):
        return "The given passphrase" if self.passphrase is not None else "Key file %s" % self.keyfile


# -- argv builders -------------------------------------------------------------------------------------------
def format_argv(cryptsetup, device, options, key):
    return [cryptsetup, "luksFormat", "--batch-mode"] + options.argv() + key.argv() + [device]


def open_argv(cryptsetup, device, name, key):
    return [cryptsetup, "open", "--type", "luks"] + key.argv() + [device, name]


def test_key_argv(cryptsetup, device, key):
    return [cryptsetup, "open", "--test-passphrase", "--type", "luks"] + key.argv() + [device]


def close_argv(cryptsetup, name):
    return [cryptsetup, "close", name]


# -- planner -------------------------------------------------------------------------------------------------------
class LuksFacts:
    """The device's state as the module read it.

    ``status``: parse_status() of ``cryptsetup status NAME``; ``status_matches``: whether the active mapping's
    backing device is ``device`` (same major:minor, or the same loop backing file); ``is_luks``: ``isLuks``;
    ``probe``: parse_blkid_export() of the device (for a non-LUKS device); ``dump``: parse_luks_dump() or None.
    ``pending``: check mode, the device would be created blank by an earlier step (not probed, planned as blank).
    """

    def __init__(self, status, status_matches=False, is_luks=False, probe=None, dump=None, device_exists=True,
                 pending=False):
        self.status = status
        self.status_matches = status_matches
        self.is_luks = is_luks
        self.probe = probe or {}
        self.dump = dump
        self.device_exists = device_exists
        self.pending = pending


class LuksStep(Step):
    """kind: format | open | close (write), verify (read-only key check)."""

    WRITES = ("format", "open", "close")

    def __init__(self, kind, why):
        super(LuksStep, self).__init__(kind, why=why, writes=kind in self.WRITES)

    def __repr__(self):
        return "LuksStep(%s)" % self.kind


class LuksPlan(Plan):
    step_type = LuksStep

    @property
    def formats(self):
        return "format" in self.kinds


class LuksRequest:
    """What the user asked for: shared by the planner and the module's executor."""

    def __init__(self, device, name, state, do_format, key, options):
        if not _NAME.match(name or "") or name.startswith("-"):
            raise LuksError("name=%r is not a usable device-mapper name (letters, digits and -_.:+=@#, "
                            "no slash)." % (name,))
        self.device, self.name, self.state, self.do_format = device, name, state, do_format
        self.key, self.options = key, options


class LuksPlanner:
    """Decides what luks_open must do. Never plans a luksFormat of a device that already has a LUKS header with a key slot."""

    def __init__(self, request, facts, check_mode=False):
        self.request = request
        self.device, self.name, self.key = request.device, request.name, request.key
        self.facts = facts
        self.check_mode = check_mode

    def plan(self):
        return self._plan_closed() if self.request.state == "closed" else self._plan_opened()

    def _need_key(self, doing):
        if not self.key.given:
            raise LuksError("To %s %s a passphrase or a keyfile is needed; set one of them." % (doing, self.device))

    def _check_device(self):
        if not self.facts.device_exists and not self.facts.pending:
            raise LuksError("device=%s does not exist on the target." % self.device)

    def _prepare(self, plan):
        """Format when allowed and needed; otherwise explain why not. Returns True when the device is (or will
        be) LUKS."""
        facts = self.facts
        if facts.is_luks and facts.dump is not None and not facts.dump["keyslots"]:
            return self._reformat_interrupted(plan)
        if facts.is_luks:
            if self.request.do_format:
                self._warn_differences(plan)
            return True
        if facts.probe:
            raise LuksError(
                "%s holds %s, not a LUKS header. luks_open formats only blank devices and never overwrites data; "
                "if that data is disposable, wipe it first (wipefs -a %s) and run again." %
                (self.device, describe_signature(facts.probe), self.device))
        if not self.request.do_format:
            raise LuksError("%s is blank (no LUKS header, no file system). Set format=true to luksFormat it." %
                            self.device)
        self._need_key("format")
        plan.add("format", "no LUKS header and no other signature on %s" % self.device)
        return True

    def _reformat_interrupted(self, plan):
        """A LUKS header without a single key slot is what a luksFormat killed during its key derivation leaves:
        no passphrase, key file or token can ever unlock the volume key, so no data behind it can be read and
        formatting again loses nothing. It is the one LUKS header luks_open formats over."""
        if not self.request.do_format:
            raise LuksError("%s has a LUKS header without any key slot (what an interrupted luksFormat leaves); "
                            "nothing can unlock it. Set format=true to format it again." % self.device)
        self._need_key("format")
        plan.warnings.append("%s had a LUKS header without any key slot (an interrupted luksFormat); it is formatted "
                             "again." % self.device)
        plan.add("format", "LUKS header without key slots on %s: nothing can unlock it" % self.device)
        return True

    def _warn_differences(self, plan):
        dump = self.facts.dump
        if not dump:
            return
        have = "luks%s" % dump["version"]
        if have != self.request.options.luks_type:
            plan.warnings.append("%s already has a %s header; type=%s is ignored (luks_open never reformats)." %
                                 (self.device, have.upper(), self.request.options.luks_type))
        if self.request.options.label is not None and dump.get("label") != self.request.options.label:
            plan.warnings.append("%s already has a LUKS header labelled %r; label=%r is ignored (luks_open never "
                                 "reformats)." % (self.device, dump.get("label"), self.request.options.label))

    def _plan_opened(self):
        plan, status = LuksPlan(), self.facts.status
        self._check_device()
        if status["active"]:
            if not self.facts.status_matches:
                raise LuksError("%s is already open on %s, not on %s. Close it (cryptsetup close %s) or choose "
                                "another name." % (self.name, status.get("device"), self.device, self.name))
            if not (status.get("type") or "").upper().startswith("LUKS"):
                raise LuksError("%s is an active mapping of type %s, not LUKS; choose another name." %
                                (self.name, status.get("type")))
            return plan
        self._prepare(plan)
        self._need_key("open")
        if self.check_mode and not plan.formats:
            plan.add("verify", "check mode: test the key without opening")
        plan.add("open", "map %s as /dev/mapper/%s" % (self.device, self.name))
        return plan

    def _plan_closed(self):
        plan, status = LuksPlan(), self.facts.status
        if status["active"]:
            if self.device is not None and not self.facts.status_matches:
                raise LuksError("%s is open on %s, not on %s; refusing to close it." %
                                (self.name, status.get("device"), self.device))
            plan.add("close", "state=closed")
        if self.request.do_format:
            self._check_device()
            if status["active"] and self.facts.status_matches:
                return plan  # open on this device: it is LUKS, nothing to format
            self._prepare(plan)
            if self.facts.is_luks and self.key.given and not plan.formats:
                plan.add("verify", "format=true on an existing LUKS header: make sure the key opens it")
        return plan
