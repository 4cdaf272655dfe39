# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""GPT layouts: the user's partition list, the sector plan, and what ``sfdisk``/``parted`` say is on a disk.

Pure code. :func:`parse_specs` checks the user's list, :func:`plan_layout` turns it into sectors
on the alignment grid of :mod:`._alignment`, :func:`parse_sfdisk_json` reads the table on the
disk, :func:`compare` says whether that table already is the plan, :func:`render_sfdisk_script`
writes the plan as an ``sfdisk`` script.
"""

from __future__ import annotations

import json
import re
from collections import namedtuple
from fractions import Fraction

from ansible_collections.impermanent.nixos.plugins.module_utils._alignment import (
    align_up, gpt_usable_lbas, round_up_to_grain,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

#: GPT partition type GUIDs (UEFI spec; util-linux ``sfdisk --list-types --label gpt``).
TYPE_GUIDS = {
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",    # EFI System; parted shows it as flags "boot, esp"
    "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",   # Linux swap
    "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",  # Linux filesystem
    "luks": "CA7D7CCB-63ED-4C53-861C-1742536059CC",   # Linux LUKS
}
TYPE_NAMES = dict((guid, name) for name, guid in TYPE_GUIDS.items())
GUID_RE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")

# Units parted and sfdisk both read as these powers of 1024 (parted knows no PiB: it reads 1PiB as 1MB).
IEC_UNITS = {"B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
SI_OR_SHORT = ("K", "M", "G", "T", "P", "KB", "MB", "GB", "TB", "PB")
# ASCII digits only (int() and Fraction() would also read other scripts' digits)
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$", re.ASCII)
#: GPT partition names are 36 UTF-16 code units.
MAX_NAME = 36
#: The all-zero type GUID marks an unused entry: a partition written with it does not exist for the kernel.
UNUSED_TYPE = "00000000-0000-0000-0000-000000000000"
MAX_PARTITIONS = 128
REST = "100%"


class GptLayoutError(ModuleError, ValueError):
    """A partition list or partition table plan that cannot work; the message names the value and the fix."""


Spec = namedtuple("Spec", "name size type")  # size: bytes (int) or REST
Planned = namedtuple("Planned", "number name type start size requested")  # start/size in sectors
Plan = namedtuple("Plan", "partitions sector_size first_lba last_lba grain notes")
Existing = namedtuple("Existing", "number node start size type uuid name")
Table = namedtuple("Table", "label id device first_lba last_lba sector_size partitions")


def human_size(n):
    """Exact in the largest unit that divides: 1073741824 -> '1GiB', 1610612736 -> '1536MiB';
    else two decimals: 11273223680 -> '10.50GiB'; 1000 -> '1000B'."""
    units = (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))
    for unit, factor in units:
        if n >= factor and n % factor == 0:
            return "%d%s" % (n // factor, unit)
    for unit, factor in units:
        if n >= factor:
            return "%.2f%s" % (n / float(factor), unit)
    return "%dB" % n


def parse_partition_size(value, what="size"):
    """A partition size as ``sfdisk`` and ``parted`` read it: bytes for ``512MiB``, ``8GiB``, ``1.5GiB``,
    ``4096B``, ``4096`` (int or digits), or REST for ``100%``.

    Only spellings both tools read the same are accepted: IEC units (powers of 1024). ``2G``, ``2GB`` and the
    other short and SI units are refused, because parted reads MB/GB as powers of 1000 and sfdisk reads M/G as
    powers of 1024. This is not the tmpfs grammar (:func:`._layout.parse_tmpfs_size`, the kernel's memparse),
    which takes ``2G``."""
    if isinstance(value, bool):
        raise GptLayoutError("%s=%r is not a size; write e.g. 512MiB, 8GiB or 100%%" % (what, value))
    if isinstance(value, int):
        if value <= 0:
            raise GptLayoutError("%s=%d must be positive; write e.g. 512MiB, 8GiB or 100%%" % (what, value))
        return value
    text = str(value).strip()
    if text.endswith("%"):
        if text == REST:
            return REST
        raise GptLayoutError("%s=%r: only 100%% (the rest of the disk, last partition only) is supported; "
                             "give other partitions a size such as 8GiB" % (what, value))
    if text.startswith("-"):
        raise GptLayoutError("%s=%r is negative; sizes must be positive, e.g. 512MiB" % (what, value))
    m = SIZE_RE.match(text)
    if not m:
        raise GptLayoutError("%s=%r is not a size; write a number with an IEC unit (B, KiB, MiB, GiB, TiB), "
                             "e.g. 512MiB, 8GiB, or 100%%" % (what, value))
    number, unit = m.group(1), m.group(2).upper()
    if unit == "":
        unit = "B"
    if unit not in IEC_UNITS:
        if unit in SI_OR_SHORT:
            raise GptLayoutError("%s=%r: %r is ambiguous (parted reads MB/GB as powers of 1000, sfdisk reads M/G "
                                 "as powers of 1024); write IEC units such as %sMiB or %sGiB"
                                 % (what, value, m.group(2), number, number))
        raise GptLayoutError("%s=%r: unknown unit %r; use B, KiB, MiB, GiB or TiB" % (what, value, m.group(2)))
    size = Fraction(number) * IEC_UNITS[unit]
    if size.denominator != 1:
        raise GptLayoutError("%s=%r is not a whole number of bytes" % (what, value))
    if size <= 0:
        raise GptLayoutError("%s=%r must be positive; write e.g. 512MiB, 8GiB or 100%%" % (what, value))
    return int(size)


def resolve_type(value, what="type"):
    """esp|swap|linux|luks or a GUID -> upper-case GUID."""
    text = str(value).strip()
    if text.lower() in TYPE_GUIDS:
        return TYPE_GUIDS[text.lower()]
    if GUID_RE.match(text):
        if text == UNUSED_TYPE:
            raise GptLayoutError("%s=%s is the GUID of an unused GPT entry: a partition of that type does not exist "
                                 "for the kernel or any tool; use one of %s or the GUID of a real partition type"
                                 % (what, text, ", ".join(sorted(TYPE_GUIDS))))
        return text.upper()
    raise GptLayoutError("%s=%r is not a known partition type; use one of %s or a GPT type GUID such as %s"
                         % (what, value, ", ".join(sorted(TYPE_GUIDS)), TYPE_GUIDS["linux"]))


def _check_name(name, what):
    """The name as sfdisk stores it, or GptLayoutError. A GPT entry holds 36 UTF-16 code units; sfdisk (libfdisk)
    writes only characters of the Basic Multilingual Plane: one outside it (an emoji, U+1F600) makes it write an
    empty name without an error, so such names are refused here, before anything is written. Quotes and
    backslashes cannot be written in an sfdisk script; control characters have no place in a label."""
    if not isinstance(name, str) or not name.strip():
        raise GptLayoutError("%s needs a non-empty name (the GPT partition label, e.g. 'nix')" % what)
    outside = [c for c in name if ord(c) > 0xFFFF or 0xD800 <= ord(c) <= 0xDFFF]
    if outside:
        raise GptLayoutError("%s: name %s contains %s, which sfdisk cannot store in a GPT entry (it would write an "
                             "empty name); use characters from U+0000 to U+FFFF only, e.g. letters, digits, '-' and '_'"
                             % (what, ascii(name), ", ".join("U+%04X" % ord(c) for c in outside)))
    if len(name) > MAX_NAME:
        raise GptLayoutError("%s: name %r is longer than the %d characters a GPT entry holds (it has %d)"
                             % (what, name, MAX_NAME, len(name)))
    if any(c in name for c in '"\\') or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise GptLayoutError("%s: name %r may not contain quotes, backslashes or control characters" % (what, name))
    return name


def parse_specs(items):
    """Validate the user's ``partitions`` list -> [Spec]. Raises GptLayoutError naming the entry and the fix."""
    if not items:
        raise GptLayoutError("partitions is empty; list at least one {name, size, type}")
    if len(items) > MAX_PARTITIONS:
        raise GptLayoutError("%d partitions requested; a GPT holds at most %d" % (len(items), MAX_PARTITIONS))
    specs = []
    seen = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise GptLayoutError("partitions[%d] is %r; each entry is a dict {name, size, type}" % (i, item))
        what = "partitions[%d]" % i
        name = _check_name(item.get("name"), what)
        what = "partitions[%d] (%s)" % (i, name)
        if name in seen:
            raise GptLayoutError("%s: the name %r is already used by partitions[%d]; partition names must be unique"
                                 % (what, name, seen[name]))
        seen[name] = i
        if item.get("size") is None:
            raise GptLayoutError("%s has no size; give e.g. 512MiB, 8GiB or 100%%" % what)
        size = parse_partition_size(item["size"], "%s size" % what)
        specs.append(Spec(name, size, resolve_type(item.get("type") or "linux", "%s type" % what)))
    rest = [i for i, s in enumerate(specs) if s.size == REST]
    if len(rest) > 1:
        raise GptLayoutError("partitions %s all ask for 100%%; only the last partition may take the rest of the disk"
                             % ", ".join(specs[i].name for i in rest))
    if rest and rest[0] != len(specs) - 1:
        raise GptLayoutError("partition %r asks for 100%% but is not the last one; move it to the end of the list "
                             "or give it a size" % specs[rest[0]].name)
    return specs


def plan_layout(specs, topo, grain, table_entries=128):
    """Sectors for every spec: starts on ``grain``, sizes rounded up to whole grains (never less than asked
    for) so the next start stays aligned, a ``100%`` partition running to the last usable LBA. Raises GptLayoutError when the
    layout does not fit."""
    ss = topo.logical
    total = topo.sectors
    first_lba, last_lba = gpt_usable_lbas(total, ss, entries=table_entries)
    notes = list(grain.notes)
    planned = []
    start = align_up(first_lba, grain)
    disk = "the %s disk (%d-byte sectors, usable LBAs %d-%d)" % (human_size(topo.size), ss, first_lba, last_lba)
    if start > last_lba:
        raise GptLayoutError("%s is too small: the first aligned start (%s) lies beyond the usable area; use a bigger "
                             "disk" % (disk, human_size(start * ss)))
    for number, spec in enumerate(specs, 1):
        if start > last_lba:
            raise GptLayoutError("partition %r does not fit on %s: the partitions before it end at %s; "
                                 "shrink them or use a bigger disk" % (spec.name, disk, human_size(start * ss)))
        if spec.size == REST:
            size = last_lba - start + 1
            if size < grain.sectors:
                raise GptLayoutError("partition %r (100%%) would get only %s on %s, less than one alignment grain (%s); "
                                     "shrink the partitions before it or use a bigger disk"
                                     % (spec.name, human_size(size * ss), disk, human_size(grain.size)))
        else:
            size = round_up_to_grain(-(-spec.size // ss), grain)
            if size * ss != spec.size:
                notes.append("partition %r: %s rounded up to %s to keep the next start aligned to %s"
                             % (spec.name, human_size(spec.size), human_size(size * ss), human_size(grain.size)))
            if start + size - 1 > last_lba:
                raise GptLayoutError("partition %r (%s from %s) does not fit on %s: it would end at %s; shrink it, "
                                     "make it the 100%% partition, or use a bigger disk"
                                     % (spec.name, human_size(spec.size), human_size(start * ss), disk,
                                        human_size((start + size) * ss)))
        planned.append(Planned(number, spec.name, spec.type, start, size, spec.size))
        start = start + size
    return Plan(planned, ss, first_lba, last_lba, grain, notes)


def render_sfdisk_script(plan):
    """The plan as an ``sfdisk`` script: explicit ``start=``/``size=`` in sectors, so sfdisk aligns nothing."""
    lines = ["label: gpt", "first-lba: %d" % plan.first_lba, "last-lba: %d" % plan.last_lba, ""]
    for p in plan.partitions:
        lines.append('start=%d, size=%d, type=%s, name="%s"' % (p.start, p.size, p.type, p.name))
    return "\n".join(lines) + "\n"


def describe_plan(plan):
    """One line per partition, for diffs and messages."""
    return "\n".join(_line(p.number, p.name, p.type, p.start, p.size, plan.sector_size) for p in plan.partitions)


def describe_table(table, sector_size=512):
    """``sector_size`` is used when sfdisk did not print one (older util-linux)."""
    if table is None:
        return "(no partition table)"
    head = "label: %s" % table.label
    if not table.partitions:
        return head + " (no partitions)"
    ss = table.sector_size or sector_size
    return "\n".join([head] + [_line(p.number, p.name, p.type, p.start, p.size, ss) for p in table.partitions])


def _line(number, name, ptype, start, size, ss):
    kind = TYPE_NAMES.get(str(ptype).upper(), ptype)
    label = "%r " % name if name is not None else ""
    return "%d: %s%s start=%s (LBA %d) size=%s (%d sectors)" % (
        number, label, kind, human_size(start * ss), start, human_size(size * ss), size)


def _number_from_node(node, fallback):
    m = re.search(r"(\d+)$", node or "")
    return int(m.group(1)) if m else fallback


def parse_sfdisk_json(text):
    """``sfdisk --json DISK`` -> Table (in sectors; ``sector_size`` None when an older sfdisk does
    not print it: its sectors are then the device's logical sectors)."""
    try:
        data = json.loads(text)["partitiontable"]
    except (ValueError, KeyError, TypeError) as e:
        raise GptLayoutError("cannot parse sfdisk --json output (%s)" % e)
    parts = []
    for i, p in enumerate(data.get("partitions", []), 1):
        parts.append(Existing(
            number=_number_from_node(p.get("node"), i), node=p.get("node"), start=int(p["start"]), size=int(p["size"]),
            type=str(p.get("type", "")).upper(), uuid=p.get("uuid"), name=p.get("name"),
        ))
    return Table(label=data.get("label"), id=data.get("id"), device=data.get("device"),
                 first_lba=data.get("firstlba"), last_lba=data.get("lastlba"),
                 sector_size=int(data["sectorsize"]) if data.get("sectorsize") else None, partitions=parts)


def parse_parted_machine(text):
    """``parted -s -m DISK unit B print`` -> {'disk': {...}, 'partitions': [{number, start, end, size, fs, name,
    flags}]} with byte values as ints (the 'unit B' form). Used to cross-check flags such as boot/esp."""
    disk = None
    parts = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == "BYT;" or not line.endswith(";"):
            continue
        fields = line[:-1].split(":")
        if disk is None:
            if len(fields) < 7:
                continue
            disk = {"path": fields[0], "size": _bytes(fields[1]), "transport": fields[2],
                    "logical_sector": int(fields[3]), "physical_sector": int(fields[4]),
                    "label": fields[5], "model": fields[6], "flags": fields[7] if len(fields) > 7 else ""}
            continue
        if len(fields) < 7:
            continue
        parts.append({"number": int(fields[0]), "start": _bytes(fields[1]), "end": _bytes(fields[2]),
                      "size": _bytes(fields[3]), "fs": fields[4], "name": fields[5],
                      "flags": [f.strip() for f in fields[6].split(",") if f.strip()]})
    return {"disk": disk, "partitions": parts}


def _bytes(field):
    return int(field[:-1]) if field.endswith("B") else int(field)


def compare(plan, table):
    """Whether ``table`` (or None) already is ``plan``.

    Returns ``("empty", [])`` (no table or no partitions: safe to create), ``("same", [])``,
    ``("grown", [note])`` or ``("different", [reasons])``. The last partition, when it is ``100%``,
    matches if it starts where planned and ends within one grain of the last usable LBA (tables made
    by parted or fdisk often round that end down). "grown" is the requested layout written when the
    disk was smaller: the table's own last usable LBA lies before the disk's, and the ``100%``
    partition ends within one grain of it. That is the user's data on a resized disk, not another
    layout, so it counts as in place (nothing is resized).
    """
    if table is None or not table.partitions:
        return "empty", []
    reasons = []
    if table.label != "gpt":
        return "different", ["the disk has a %s partition table, not gpt" % table.label]
    if table.sector_size not in (None, plan.sector_size):
        reasons.append("the table was read with %d-byte sectors, the disk has %d" % (table.sector_size, plan.sector_size))
    have = dict((p.number, p) for p in table.partitions)
    want = dict((p.number, p) for p in plan.partitions)
    grown = None

    def ends_within_a_grain_of(end, last):
        return last - plan.grain.sectors < end <= last
    for number in sorted(set(have) - set(want)):
        reasons.append("partition %d (%r) is not in the requested layout" % (number, have[number].name))
    for number, p in sorted(want.items()):
        e = have.get(number)
        if e is None:
            reasons.append("partition %d (%r) is missing" % (number, p.name))
            continue
        if e.name != p.name:
            reasons.append("partition %d is named %r, requested %r" % (number, e.name, p.name))
        if e.type.upper() != p.type.upper():
            reasons.append("partition %d (%r) has type %s, requested %s"
                           % (number, p.name, TYPE_NAMES.get(e.type.upper(), e.type), TYPE_NAMES.get(p.type, p.type)))
        if e.start != p.start:
            reasons.append("partition %d (%r) starts at LBA %d, planned %d" % (number, p.name, e.start, p.start))
        elif p.requested == REST and number == len(plan.partitions):
            end, planned_end = e.start + e.size - 1, p.start + p.size - 1
            if ends_within_a_grain_of(end, planned_end):
                pass
            elif (table.last_lba is not None and table.last_lba < plan.last_lba
                  and ends_within_a_grain_of(end, table.last_lba)):
                ss = plan.sector_size
                grown = ("the disk grew after this table was written: the table's last usable LBA is %d (%s), "
                         "the disk's is now %d (%s); partition %d (%r, 100%%) keeps its %s and nothing is resized "
                         "(grow the partition and its file system yourself to use the space)"
                         % (table.last_lba, human_size((table.last_lba + 1) * ss), plan.last_lba,
                            human_size((plan.last_lba + 1) * ss), number, p.name, human_size(e.size * ss)))
            else:
                reasons.append("partition %d (%r, 100%%) ends at LBA %d, planned %d (last usable LBA)"
                               % (number, p.name, end, planned_end))
        elif e.size != p.size:
            reasons.append("partition %d (%r) has %d sectors (%s), planned %d (%s)"
                           % (number, p.name, e.size, human_size(e.size * plan.sector_size), p.size,
                              human_size(p.size * plan.sector_size)))
    if reasons:
        return "different", reasons
    return ("grown", [grown]) if grown else ("same", [])
