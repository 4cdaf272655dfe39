# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Partition alignment maths for GPT disks. Pure: no I/O, every number comes in as an argument.

Vocabulary (all sizes in bytes unless a name says ``sectors``):

* *logical sector* (``ss``): the unit of LBAs, 512 or 4096.
* *grain*: partition starts are ``offset + k * grain``; every size we hand out (except the last
  ``100%`` partition's) is a multiple of the grain, so the next start stays on the grid.
* *offset*: the kernel's ``alignment_offset``: the first naturally aligned byte of the disk
  (non-zero e.g. for 512e drives jumpered for Windows XP: 3584 bytes, LBA 7).

How ``alignment: optimal`` picks the grain (:func:`optimal_grain`)::

    grain  = lcm(1 MiB, logical, physical, minimum_io_size [, optimal_io_size])
    offset = alignment_offset rounded down to a logical sector, modulo grain
    start  = the smallest LBA >= first usable LBA with start * ss ≡ offset (mod grain)

``optimal_io_size`` only takes part when it is plausible (a multiple of the logical and
physical sector and of ``minimum_io_size``); USB bridges that report 33553920 (65535 * 512)
would otherwise blow the lcm up to 64 GiB. Because the grain is a common multiple of every
I/O constraint and of 1 MiB, the starts also satisfy libparted's own "optimal" rule (see
:func:`parted_optimal_alignment`) whenever the device reports sane values: that is what
``parted DISK align-check optimal N`` checks.
"""

from __future__ import annotations

from collections import namedtuple

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
#: libparted's PED_DEFAULT_ALIGNMENT and our floor for the grain.
DEFAULT_ALIGNMENT = MIB
#: lcm() of odd I/O sizes can explode (two plausible values with few common factors);
#: beyond this we fall back to the smallest multiple of the I/O constraints >= 1 MiB.
MAX_LCM_GRAIN = 256 * MIB
#: A GPT holds 128 entries of 128 bytes: 16 KiB after the header, mirrored at the end of the disk.
GPT_ENTRIES = 128
GPT_ENTRY_SIZE = 128


class AlignmentError(ModuleError, ValueError):
    """A topology or alignment request that cannot be honoured; the message says what to do."""


class Topology(namedtuple("Topology", "logical physical minimum_io optimal_io alignment_offset size")):
    """What the kernel says about a disk (sysfs ``queue/*``, ``alignment_offset``, size in bytes)."""

    __slots__ = ()

    @property
    def sectors(self):
        return self.size // self.logical


class Grain(namedtuple("Grain", "size offset sector_size source notes")):
    """The alignment grid: starts are ``offset + k * size`` bytes. ``notes`` explain ignored inputs."""

    __slots__ = ()

    @property
    def sectors(self):
        return self.size // self.sector_size

    @property
    def offset_sectors(self):
        return self.offset // self.sector_size


def gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def lcm(*values):
    result = 1
    for v in values:
        result = result * v // gcd(result, v)
    return result


def is_power_of_two(n):
    return n > 0 and n & (n - 1) == 0


def _check_sector(topo):
    ss = topo.logical
    if not is_power_of_two(ss) or ss < 512:
        raise AlignmentError(
            "the disk reports a logical sector size of %r bytes; expected a power of two >= 512" % (ss,))
    if topo.size < ss:
        raise AlignmentError("the disk reports a size of %r bytes, smaller than one sector" % (topo.size,))
    return ss


def _offset(topo, grain, notes):
    """alignment_offset as libblkid and libparted use it: -1 (misaligned stack) counts as 0,
    and it is taken in whole logical sectors."""
    off = topo.alignment_offset or 0
    if off < 0:
        notes.append("the kernel reports alignment_offset=%d (stacked device with no common alignment); "
                     "using 0 like libblkid does" % off)
        off = 0
    if off % topo.logical:
        notes.append("alignment_offset=%d is not a multiple of the %d-byte sector; using %d"
                     % (off, topo.logical, off - off % topo.logical))
        off -= off % topo.logical
    return off % grain


def optimal_grain(topo):
    """The grid for ``alignment: optimal`` (see the module docstring for the formula)."""
    ss = _check_sector(topo)
    notes = []
    physical = topo.physical or ss
    if physical % ss:
        notes.append("ignored physical_block_size=%d: not a multiple of the %d-byte logical sector" % (physical, ss))
        physical = ss
    io = [ss, physical]
    minimum = topo.minimum_io or 0
    if minimum:
        if minimum % ss:
            notes.append("ignored minimum_io_size=%d: not a multiple of the %d-byte logical sector" % (minimum, ss))
            minimum = 0
        else:
            io.append(minimum)
    optimal = topo.optimal_io or 0
    if optimal:
        bad = [what for what, unit in (("logical sector", ss), ("physical block", physical),
                                       ("minimum_io_size", minimum)) if unit and optimal % unit]
        if bad:
            notes.append("ignored optimal_io_size=%d: not a multiple of the %s (bogus value, common on USB "
                         "bridges); `parted align-check optimal` trusts it and may call these partitions "
                         "unaligned" % (optimal, " and ".join(bad)))
            optimal = 0
        else:
            io.append(optimal)
    io_grain = lcm(*io)
    grain = lcm(DEFAULT_ALIGNMENT, io_grain)
    if grain > MAX_LCM_GRAIN:
        grain = io_grain * -(-DEFAULT_ALIGNMENT // io_grain)
        notes.append("lcm(1MiB, I/O sizes) is over %dMiB; using %d bytes (the smallest multiple of the I/O "
                     "sizes >= 1MiB)" % (MAX_LCM_GRAIN // MIB, grain))
    return Grain(grain, _offset(topo, grain, notes), ss, "optimal", tuple(notes))


def explicit_grain(topo, alignment):
    """The grid for ``alignment: <bytes>``: must be a power-of-two multiple of the logical sector."""
    ss = _check_sector(topo)
    if isinstance(alignment, bool) or not isinstance(alignment, int):
        raise AlignmentError("alignment=%r is not a byte count" % (alignment,))
    if alignment < ss or alignment % ss or not is_power_of_two(alignment // ss):
        raise AlignmentError(
            "alignment=%r is not a power-of-two multiple of the disk's %d-byte logical sector; use e.g. "
            "1048576 (1MiB) or alignment=optimal" % (alignment, ss))
    notes = []
    if alignment % (topo.physical or ss):
        notes.append("alignment=%d is not a multiple of the %d-byte physical block: partitions may start "
                     "inside a physical block" % (alignment, topo.physical))
    return Grain(alignment, _offset(topo, alignment, notes), ss, "explicit", tuple(notes))


def gpt_usable_lbas(total_sectors, sector_size, entries=GPT_ENTRIES, entry_size=GPT_ENTRY_SIZE):
    """(first, last) usable LBA of a GPT with ``entries`` entries.

    Front: protective MBR (LBA 0), header (LBA 1), entry array. Back: entry array, then the backup
    header in the last LBA. 512-byte sectors: 34 and total-34; 4096-byte sectors: 6 and total-6.
    """
    array = -(-entries * entry_size // sector_size)
    return 2 + array, total_sectors - 2 - array


def align_up(lba, grain):
    """The smallest LBA >= ``lba`` on the grid of ``grain``."""
    return lba + (grain.offset_sectors - lba) % grain.sectors


def round_up_to_grain(sectors, grain):
    """At least ``sectors``, a whole number of grains: a partition never gets less than was asked for."""
    return sectors + (-sectors) % grain.sectors


def parted_optimal_alignment(topo):
    """(offset, grain) in sectors that libparted (Linux, built with libblkid) uses for ``optimal``.

    A reading of ``linux_get_optimum_alignment``/``linux_get_minimum_alignment`` (parted >= 3.2):

    * 1 MiB grain when neither I/O size is set, or every I/O size that is set divides 1 MiB;
    * else, with no optimal_io_size, the minimum alignment: minimum_io_size (physical block if 0);
    * else optimal_io_size.

    The offset is alignment_offset / sector size (a negative value reads as 0, as libblkid
    reports it), reduced modulo the grain. ``align-check`` then tests ``start % grain == offset``.
    Returns None when libparted would apply no constraint (a grain below one sector).
    """
    ss = topo.logical
    opt = topo.optimal_io or 0
    minimum = topo.minimum_io or 0

    def divides(v):
        return v and DEFAULT_ALIGNMENT % v == 0

    if (not opt and not minimum) or (divides(opt) and divides(minimum)) \
            or (not minimum and divides(opt)) or (not opt and divides(minimum)):
        grain = DEFAULT_ALIGNMENT // ss
    elif not opt:
        grain = minimum // ss
    else:
        grain = opt // ss
    if grain <= 0:
        return None
    offset = max(topo.alignment_offset or 0, 0) // ss
    return offset % grain, grain


def parted_aligned(topo, start_lba):
    """What ``parted DISK align-check optimal N`` answers for a partition starting at ``start_lba``."""
    rule = parted_optimal_alignment(topo)
    if rule is None:
        return True
    offset, grain = rule
    return start_lba % grain == offset
