# SPDX-License-Identifier: GPL-3.0-or-later
"""Properties of the two size grammars: gpt_partition's partition sizes (`_gpt.parse_partition_size`, what sfdisk and
parted read) and tmpfs_root's ``size=`` (`_layout.parse_tmpfs_size`, what the kernel's memparse reads), for generated
numbers and unit spellings (Hypothesis, profile in tests/conftest.py).

A partition size is accepted only when it means the same to every tool that reads the spelling. How sfdisk and parted
read a unit suffix is modelled below; each rule was checked by writing a partition with that suffix into a disk image
with sfdisk (util-linux 2.38.1) and parted 3.5 and reading the table back.
"""
import re
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import example, given, strategies as st

from ansible_collections.impermanent.nixos.plugins.module_utils import _layout
from ansible_collections.impermanent.nixos.plugins.module_utils._gpt import (
    REST, GptLayoutError, human_size, parse_partition_size,
)

POWERS = "KMGTPEZY"
SECTOR = 512
OTHER_UNIT = "another unit"  # the tool reads the number in sectors or in its default unit, not in bytes of a suffix


def sfdisk_bytes(number, suffix):
    """What sfdisk's ``size=`` (util-linux strtosize) makes of NUMBER SUFFIX: bytes, OTHER_UNIT, or None (error).

    One letter of KMGTPEZY (either case) is a power of 1024, the letter followed by ``iB``/``ib`` too, followed by
    ``B``/``b`` a power of 1000; no suffix counts sectors; anything else (``B`` alone, ``KIB``) is an error."""
    if suffix == "":
        return OTHER_UNIT
    letter, rest = suffix[0].upper(), suffix[1:]
    if letter not in POWERS:
        return None
    power = POWERS.index(letter) + 1
    if rest in ("", "iB", "ib"):
        return number * 1024 ** power
    if rest in ("B", "b"):
        return number * 1000 ** power
    return None


def parted_bytes(number, suffix):
    """What parted's unit parsing (parse_unit_suffix) makes of NUMBER SUFFIX: bytes or OTHER_UNIT.

    Case-insensitive; a second letter ``i`` makes k/m/g/t a power of 1024 (other letters fall back to the default
    unit, MB); otherwise only the first letter counts: ``b`` bytes, k/m/g/t powers of 1000, ``s`` sectors, anything
    else (``P``, ``PB``, no suffix) the default unit."""
    low = suffix.lower()
    if len(low) > 1 and low[1] == "i":
        if low[0] in "kmgt":
            return number * 1024 ** ("kmgt".index(low[0]) + 1)
        return OTHER_UNIT
    if low[:1] == "b":
        return number
    if low[:1] and low[0] in "kmgt":
        return number * 1000 ** ("kmgt".index(low[0]) + 1)
    return OTHER_UNIT


SPELLINGS = sorted(a + b + c for a in "bBkKmMgGtTpPeEsSx" for b in ("", "i", "I") for c in ("", "b", "B"))
SUFFIXES = st.sampled_from(SPELLINGS)
#: the spellings both tools read, as different amounts
DISAGREEING = [u for u in SPELLINGS if sfdisk_bytes(1, u) is not None and sfdisk_bytes(1, u) != parted_bytes(1, u)]
#: positive numbers with a finite decimal expansion: 7, 0.25, 1.5, 1234.567
NUMBERS = st.builds(lambda m, e: Fraction(m, 10 ** e), st.integers(1, 10 ** 7), st.integers(0, 3))


def decimal_text(value):
    """A Fraction with a finite decimal expansion as plain digits (no exponent), else None."""
    with localcontext() as ctx:
        ctx.prec = 400
        d = Decimal(value.numerator) / Decimal(value.denominator)
    if Fraction(d) != value:
        return None
    return format(d, "f")


@given(number=NUMBERS, suffix=SUFFIXES)
@example(number=Fraction(1), suffix="PiB")   # was accepted as 2**50 bytes; parted reads 1PiB as 1 MB
@example(number=Fraction(8), suffix="GB")
@example(number=Fraction(3, 2), suffix="GiB")
def test_a_size_is_accepted_only_when_sfdisk_and_parted_agree_with_it(number, suffix):
    """For any positive number and unit spelling: when parse_partition_size accepts it, the bytes are what every tool that
    knows the spelling reads (sfdisk or parted may reject a spelling, never read it as another amount); when sfdisk
    and parted both read it and disagree, parse_partition_size rejects it and names it."""
    text = decimal_text(number) + suffix
    tools = {"sfdisk": sfdisk_bytes(number, suffix), "parted": parted_bytes(number, suffix)}
    try:
        value = parse_partition_size(text)
    except GptLayoutError as e:
        assert repr(text) in str(e)
        return
    assert type(value) is int
    for tool, read in tools.items():
        assert read is None or read == value, "%s reads %r as %s, parse_partition_size as %d" % (tool, text, read, value)
    known = [read for read in tools.values() if read is not None]
    assert known, "no tool reads %r" % text


@given(number=NUMBERS, suffix=st.sampled_from(DISAGREEING))
def test_spellings_sfdisk_and_parted_read_differently_are_rejected(number, suffix):
    """The other direction: sfdisk and parted both read it, with different results => GptLayoutError."""
    text = decimal_text(number)
    assert sfdisk_bytes(number, suffix) != parted_bytes(number, suffix)
    with pytest.raises(GptLayoutError):
        parse_partition_size(text + suffix)


UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


@given(n=st.integers(1, 1 << 50), unit=st.sampled_from(sorted(UNITS)), space=st.sampled_from(["", " "]),
       case=st.sampled_from([str, str.lower]))
def test_exact_decimal_round_trip(n, unit, space, case):
    """Any byte count written as the exact decimal number of any IEC unit (``1.5GiB``, ``0.001953125MiB``, the
    unit in lower case or after a blank) parses back to that byte count; bare digits and ints are bytes."""
    text = decimal_text(Fraction(n, UNITS[unit]))
    assert parse_partition_size(text + space + case(unit)) == n
    assert parse_partition_size(str(n)) == n
    assert parse_partition_size(n) == n


@given(n=st.one_of(st.integers(1, 1023),
                   st.builds(lambda k, unit: k * unit, st.integers(1, 1023), st.sampled_from(sorted(UNITS.values())))))
def test_human_size_round_trip(n):
    """human_size's exact form (bytes below 1KiB, whole KiB/MiB/GiB/TiB below 1PiB) parses back to the same bytes."""
    shown = human_size(n)
    assert "." not in shown
    assert parse_partition_size(shown) == n


@given(number=st.builds(lambda m, e: Fraction(m, 10 ** e), st.integers(1, 10 ** 9), st.integers(0, 9)),
       unit=st.sampled_from(sorted(UNITS)))
def test_fractions_of_a_byte_and_non_positive_sizes_are_rejected(number, unit):
    """A size that is not a whole number of bytes is rejected; so are 0, negative numbers and booleans."""
    text = decimal_text(number)
    if (number * UNITS[unit]).denominator != 1:
        with pytest.raises(GptLayoutError, match="whole number of bytes"):
            parse_partition_size(text + unit)
    else:
        assert parse_partition_size(text + unit) == number * UNITS[unit]
    for bad in ("-" + text + unit, "0" + unit, -int(number) - 1, 0, True, False):
        with pytest.raises(GptLayoutError):
            parse_partition_size(bad)


@given(text=st.text(max_size=12))
@example(text="100%")
@example(text="50%")
@example(text="\u0663MiB")  # was read as 3MiB
def test_any_text_is_a_size_or_a_layout_error(text):
    """Arbitrary text gives bytes (a positive int), REST for exactly ``100%``, or a GptLayoutError: nothing else."""
    try:
        value = parse_partition_size(text)
    except GptLayoutError:
        return
    if text.strip() == "100%":
        assert value == REST
    else:
        assert type(value) is int and value > 0
        assert re.match(r"[0-9]", text.strip()), "accepted digits that are not ASCII: %r" % text


SHIFTS = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}


@given(n=st.integers(0, 1 << 40), suffix=st.sampled_from(sorted(SHIFTS)), upper=st.booleans())
def test_tmpfs_size_reads_like_the_kernels_memparse(n, suffix, upper):
    """tmpfs ``size=N<suffix>`` is N << 10*k for k, m, g, t, p, e in either case, as the kernel's memparse reads
    it; ``N%`` (N >= 1) is a share of RAM; and size_kib is the byte count rounded up to whole 4 KiB pages."""
    text = "%d%s" % (n, suffix.upper() if upper else suffix)
    assert _layout.parse_tmpfs_size(text) == ("bytes", n << SHIFTS[suffix])
    assert _layout.size_kib(text, memtotal_kib=1) == -(-(n << SHIFTS[suffix]) // 4096) * 4
    if n >= 1:
        assert _layout.parse_tmpfs_size("%d%%" % n) == ("percent", n)


@given(text=st.text(max_size=10))
@example(text="1.5G")
@example(text="-1k")
@example(text="0%")
@example(text="\u0663k")  # ARABIC-INDIC DIGIT THREE: was read as 3k (Python's int() reads it, memparse does not)
def test_tmpfs_size_rejects_what_memparse_would_misread(text):
    """Anything but digits with one optional k/m/g/t/p/e or % suffix (after stripping blanks) is a MountLayoutError:
    memparse would stop at a decimal point or a sign and read a different size."""
    stripped = text.strip()
    body, suffix = (stripped[:-1], stripped[-1:]) if stripped[-1:].lower() in "kmgtpe%" else (stripped, "")
    well_formed = body.isascii() and body.isdigit() and not (suffix == "%" and int(body) < 1)
    if well_formed:
        assert _layout.parse_tmpfs_size(text)[0] == ("percent" if suffix == "%" else "bytes")
    else:
        with pytest.raises(_layout.MountLayoutError):
            _layout.parse_tmpfs_size(text)


@given(n=st.integers(1, 1 << 30), suffix=st.sampled_from("kmgtpeKMGTPE"))
def test_the_two_grammars_differ_on_a_one_letter_unit(n, suffix):
    """``2G`` is 2 GiB to the kernel (a tmpfs size) and ambiguous to sfdisk and parted (a partition size): the
    grammars stay apart, each named after what reads it."""
    text = "%d%s" % (n, suffix)
    assert _layout.parse_tmpfs_size(text) == ("bytes", n << SHIFTS[suffix.lower()])
    with pytest.raises(GptLayoutError):
        parse_partition_size(text)
