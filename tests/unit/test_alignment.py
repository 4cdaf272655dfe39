# SPDX-License-Identifier: GPL-3.0-or-later
"""Alignment maths, checked against an independent brute force and against libparted's rule as read from its source."""
import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._alignment import (
    MIB, AlignmentError, Topology, align_up, explicit_grain, gpt_usable_lbas, optimal_grain, parted_aligned,
    parted_optimal_alignment,
)

KIB = 1024
GIB = 1 << 30
TIB = 1 << 40


def topo(logical=512, physical=None, minimum=None, optimal=0, offset=0, size=12 * GIB):
    physical = physical or logical
    return Topology(logical, physical, physical if minimum is None else minimum, optimal, offset, size)


# name: (topology, expected grain bytes, expected offset bytes, expected first start LBA)
CASES = {
    "512": (topo(512), MIB, 0, 2048),
    "512e": (topo(512, 4096), MIB, 0, 2048),
    "4Kn": (topo(4096), MIB, 0, 256),
    "opt_io 768KiB": (topo(512, 4096, 4096, 768 * KIB), 3 * MIB, 0, 6144),
    "alignment_offset 3584": (topo(512, 4096, 4096, 0, 3584), MIB, 3584, 2048 + 7),
    "opt_io 768KiB + offset 3584": (topo(512, 4096, 4096, 768 * KIB, 3584), 3 * MIB, 3584, 6144 + 7),
    "raid 4MiB stripe": (topo(512, 4096, 512 * KIB, 4 * MIB), 4 * MIB, 0, 8192),
    "raid5 3x512KiB": (topo(512, 512, 512 * KIB, 1536 * KIB), 3 * MIB, 0, 6144),
    "raid 7x64KiB": (topo(512, 512, 64 * KIB, 448 * KIB), 7 * MIB, 0, 14336),
    "min_io 6144 no opt": (topo(512, 512, 6144, 0), 3 * MIB, 0, 6144),
    "4Kn opt 1MiB": (topo(4096, 4096, 4096, MIB), MIB, 0, 256),
    "usb bridge opt 33553920": (topo(512, 4096, 4096, 33553920), MIB, 0, 2048),
    "16TiB 512": (topo(512, size=16 * TIB), MIB, 0, 2048),
    "16TiB 4Kn": (topo(4096, size=16 * TIB), MIB, 0, 256),
}


def sane_constraints(t):
    """The I/O sizes a start has to honour, chosen independently of the module's code."""
    out = [MIB, t.logical, t.physical]
    if t.minimum_io:
        out.append(t.minimum_io)
    if t.optimal_io and t.optimal_io % t.physical == 0 and t.optimal_io % (t.minimum_io or 1) == 0:
        out.append(t.optimal_io)
    return out


def brute_first_start(t):
    """Walk LBAs from the first usable one until every constraint holds (no lcm, no modular tricks)."""
    lba = gpt_usable_lbas(t.sectors, t.logical)[0]
    while True:
        if all((lba * t.logical - t.alignment_offset) % c == 0 for c in sane_constraints(t)):
            return lba
        lba += 1


def grid(t):
    """The module's grain for ``t`` and the first partition start it gives."""
    g = optimal_grain(t)
    return g, align_up(gpt_usable_lbas(t.sectors, t.logical)[0], g)


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimal_grain_table(name):
    t, grain_bytes, offset, first_start = CASES[name]
    g, start = grid(t)
    assert (g.size, g.offset, start) == (grain_bytes, offset, first_start)


@pytest.mark.parametrize("name", sorted(CASES))
def test_first_start_matches_brute_force(name):
    t = CASES[name][0]
    assert grid(t)[1] == brute_first_start(t)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_grid_point_honours_every_constraint(name):
    t = CASES[name][0]
    g, start = grid(t)
    for k in range(50):
        lba = start + k * g.sectors
        assert all((lba * t.logical - t.alignment_offset) % c == 0 for c in sane_constraints(t)), lba
        assert g.size >= MIB


# libparted's linux_get_optimum_alignment, worked out by hand for each case: (offset, grain) in sectors.
PARTED = {
    "512": (0, 2048),
    "512e": (0, 2048),
    "4Kn": (0, 256),
    "opt_io 768KiB": (0, 1536),  # 1MiB % 768KiB != 0 -> optimal_io_size itself
    "alignment_offset 3584": (7, 2048),
    "opt_io 768KiB + offset 3584": (7, 1536),
    "raid 4MiB stripe": (0, 8192),
    "raid5 3x512KiB": (0, 3072),
    "raid 7x64KiB": (0, 896),
    "min_io 6144 no opt": (0, 12),  # no optimal_io_size, 1MiB % 6144 != 0 -> minimum alignment
    "4Kn opt 1MiB": (0, 256),
    "usb bridge opt 33553920": (0, 65535),
    "16TiB 512": (0, 2048),
    "16TiB 4Kn": (0, 256),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_parted_rule(name):
    assert parted_optimal_alignment(CASES[name][0]) == PARTED[name]


@pytest.mark.parametrize("name", sorted(set(CASES) - {"usb bridge opt 33553920"}))
def test_our_starts_pass_parted_align_check(name):
    t = CASES[name][0]
    g, start = grid(t)
    for k in range(20):
        assert parted_aligned(t, start + k * g.sectors)


def test_bogus_optimal_io_is_ignored_with_a_note():
    t = CASES["usb bridge opt 33553920"][0]
    g = optimal_grain(t)
    assert g.size == MIB
    assert "33553920" in g.notes[0] and "physical block" in g.notes[0]
    # parted trusts the value: it calls the 1MiB start unaligned; we report that honestly
    assert not parted_aligned(t, 2048)
    assert parted_aligned(t, 65535)


def test_parted_rule_rejects_what_it_should():
    assert not parted_aligned(topo(512), 2047)
    assert not parted_aligned(topo(512, 4096, 4096, 0, 3584), 2048)
    assert parted_aligned(topo(512, 4096, 4096, 0, 3584), 2048 + 7)
    assert not parted_aligned(topo(512, 4096, 4096, 768 * KIB), 2048)


def test_lcm_cap_falls_back_to_a_multiple_of_the_io_size():
    # plausible but awkward: a multiple of the physical block with a large odd factor
    t = topo(512, 4096, 4096, 65535 * 4096)
    g = optimal_grain(t)
    assert g.size == 65535 * 4096
    assert "smallest multiple" in g.notes[-1]
    assert parted_aligned(t, align_up(34, g))


def test_negative_alignment_offset_reads_as_zero():
    g = optimal_grain(topo(512, 4096, 4096, 0, -1))
    assert g.offset == 0 and "alignment_offset=-1" in g.notes[0]


def test_offset_not_a_sector_multiple_is_truncated():
    g = optimal_grain(topo(512, 4096, 4096, 0, 3600))
    assert g.offset == 3584


@pytest.mark.parametrize("alignment, logical, ok", [
    (MIB, 512, True), (4096, 512, True), (512, 512, True), (4 * MIB, 4096, True),
    (3 * MIB, 512, False), (768 * KIB, 512, False), (1000, 512, False), (2048, 4096, False), (0, 512, False),
    (-MIB, 512, False),
])
def test_explicit_alignment(alignment, logical, ok):
    t = topo(logical)
    if ok:
        g = explicit_grain(t, alignment)
        assert g.size == alignment and g.source == "explicit"
    else:
        with pytest.raises(AlignmentError) as e:
            explicit_grain(t, alignment)
        assert str(alignment) in str(e.value) and "power-of-two multiple" in str(e.value)


def test_explicit_alignment_below_physical_block_warns():
    g = explicit_grain(topo(512, 4096), 512)
    assert "physical block" in g.notes[0]


@pytest.mark.parametrize("total, ss, expected", [
    (8388608, 512, (34, 8388574)),  # fixtures/gpt/ours-512.sfdisk.json: firstlba 34, lastlba 8388574
    (1048576, 4096, (6, 1048570)),  # fixtures/gpt/ours-4096.sfdisk.json: firstlba 6, lastlba 1048570
    (16 * TIB // 512, 512, (34, 16 * TIB // 512 - 34)),
])
def test_gpt_usable_lbas(total, ss, expected):
    assert gpt_usable_lbas(total, ss) == expected


def test_bad_sector_size_is_refused():
    with pytest.raises(AlignmentError):
        optimal_grain(topo(520))
