# SPDX-License-Identifier: GPL-3.0-or-later
"""Properties of the alignment grain and the GPT sector planner, for random disk sizes, sector sizes, topologies
and partition lists (Hypothesis; the profile in tests/conftest.py keeps the examples fixed and bounded).

The expected numbers are computed here from the GPT layout itself (a 16 KiB entry array after LBA 1 and before the
backup header), not with the helpers of the code under test.
"""
from hypothesis import assume, event, example, given, strategies as st

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._alignment import (
    MAX_LCM_GRAIN, MIB, AlignmentError, Topology, explicit_grain, optimal_grain, parted_aligned,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._gpt import (
    REST, TYPE_GUIDS, GptLayoutError, Spec, Table, Existing, compare, plan_layout,
)

KIB = 1 << 10
GIB = 1 << 30
ARRAY_BYTES = 128 * 128  # 128 entries of 128 bytes


@st.composite
def topologies(draw, min_bytes=64 * KIB, max_bytes=1 << 44):
    """What sysfs may report for a disk: sane values most of the time, odd ones (USB bridges, stacked devices,
    512e drives jumpered for XP, sizes that are not whole sectors) some of the time."""
    logical = draw(st.sampled_from([512, 4096]))
    physical = draw(st.sampled_from([logical, 4096, 8192, 3 * logical] if logical == 512 else [4096, 8192, 16384]))
    minimum = draw(st.sampled_from([0, physical, 64 * KIB, 3 * physical, 1536]))
    optimal = draw(st.sampled_from([0, 0, 64 * KIB, MIB, 4 * MIB, 3 * MIB, 33553920, 768 * KIB, 3 * 65536]))
    offset = draw(st.sampled_from([0, 0, -1, 3584, 512, 4096, 100]))
    size = draw(st.one_of(st.integers(min_bytes, max_bytes),  # biased to the small end: layouts that do not fit
                          st.integers(max(min_bytes, 64 * GIB), max_bytes)))
    return Topology(logical, physical, minimum, optimal, offset, size)


SIZES = st.one_of(
    st.integers(1, 4096).map(lambda n: n * MIB),        # the usual: whole MiB
    st.integers(1, 64).map(lambda n: n * GIB),
    st.integers(1, 1 << 34),                            # any byte count
    st.integers(1, 100000).map(lambda n: n * 512),      # whole 512-byte sectors
)


@st.composite
def spec_lists(draw):
    n = draw(st.integers(1, 6))
    sizes = [draw(SIZES) for _ in range(n)]
    if draw(st.booleans()):
        sizes[-1] = REST
    types = list(TYPE_GUIDS.values())
    return [Spec("p%d" % i, size, draw(st.sampled_from(types))) for i, size in enumerate(sizes)]


def expected_usable(topo):
    """(first, last) usable LBA of a GPT with a 128-entry array, from the on-disk layout."""
    ss = topo.logical
    total = topo.size // ss
    array = ARRAY_BYTES // ss
    return 1 + 1 + array, total - 1 - array - 1


def grain_for(topo, alignment):
    return optimal_grain(topo) if alignment is None else explicit_grain(topo, alignment)


def model(specs, topo, grain):
    """Independent model of the plan: [(start, size)] in sectors, or None when the layout does not fit."""
    ss = topo.logical
    g = grain.size // ss
    off = (grain.offset // ss) % g
    first, last = expected_usable(topo)
    start = first + (off - first) % g
    out = []
    for spec in specs:
        if spec.size == REST:
            size = last - start + 1
            if size < g:
                return None
        else:
            sectors = -(-spec.size // ss)
            size = -(-sectors // g) * g
            if start + size - 1 > last:
                return None
        if start > last:
            return None
        out.append((start, size))
        start += size
    return out


ALIGNMENTS = st.one_of(st.none(), st.sampled_from([4096, 65536, MIB, 2 * MIB, 8 * MIB]))


@given(topo=topologies(), specs=spec_lists(), alignment=ALIGNMENTS)
@example(topo=Topology(512, 4096, 4096, 33553920, 0, 20 * GIB),
         specs=[Spec("esp", 512 * MIB, TYPE_GUIDS["esp"]), Spec("nix", REST, TYPE_GUIDS["linux"])], alignment=None)
@example(topo=Topology(512, 512, 512, 0, 3584, 8 * GIB),
         specs=[Spec("a", 1, TYPE_GUIDS["linux"]), Spec("b", REST, TYPE_GUIDS["linux"])], alignment=None)
def test_plan_is_aligned_exact_disjoint_and_inside_the_usable_lbas(topo, specs, alignment):
    """For any topology, partition list and alignment: the plan fails (GptLayoutError) exactly when the independent
    model says the list does not fit; otherwise every partition starts on the grain, has the smallest whole number
    of grains that holds its requested bytes (the 100% one ends at the last usable LBA), follows the previous one
    without a gap or an overlap, and lies inside the usable LBAs of the GPT; the plan reads back as "same"."""
    grain = grain_for(topo, alignment)
    ss = topo.logical
    want = model(specs, topo, grain)
    try:
        plan = plan_layout(specs, topo, grain)
    except GptLayoutError as e:
        assert want is None, "refused although it fits: %s" % e
        event("refused: does not fit")
        return
    event("planned, grain %s" % ("1MiB" if grain.size == MIB else "other"))
    assert want is not None, "planned although it does not fit"
    first, last = expected_usable(topo)
    assert (plan.first_lba, plan.last_lba) == (first, last)
    assert [(p.start, p.size) for p in plan.partitions] == want
    assert [(p.number, p.name, p.type, p.requested) for p in plan.partitions] == \
        [(i, s.name, s.type, s.size) for i, s in enumerate(specs, 1)]
    prev_end = first - 1
    for p, spec in zip(plan.partitions, specs):
        assert (p.start * ss - grain.offset) % grain.size == 0, "start off the grain"
        assert p.start > prev_end, "overlap"
        assert p.start >= first and p.start + p.size - 1 <= last, "outside the usable LBAs"
        if spec.size == REST:
            assert p.start + p.size - 1 == last
            assert p.size * ss >= grain.size
        else:
            assert p.size * ss >= spec.size, "less than asked for"
            assert p.size * ss % grain.size == 0, "not whole grains"
            assert p.size * ss - grain.size < spec.size, "more than one grain too much"
            if spec.size % grain.size == 0:
                assert p.size * ss == spec.size, "a whole number of grains is not exact"
        prev_end = p.start + p.size - 1
    if alignment is None and not grain.notes:
        assert all(parted_aligned(topo, p.start) for p in plan.partitions), "parted align-check optimal disagrees"
    assert compare(plan, as_table(plan)) == ("same", [])


def as_table(plan, last_lba=None):
    """The plan as `sfdisk --json` reports it once written."""
    parts = [Existing(p.number, "/dev/x%d" % p.number, p.start, p.size, p.type, None, p.name)
             for p in plan.partitions]
    return Table("gpt", None, "/dev/x", plan.first_lba, plan.last_lba if last_lba is None else last_lba,
                 plan.sector_size, parts)


@given(topo=topologies(min_bytes=2 * GIB, max_bytes=1 << 42), growth=st.integers(0, 1 << 40),
       specs=spec_lists())
def test_a_grown_disk_keeps_its_table(topo, growth, specs):
    """The table planned for a disk, compared with the plan for the same disk grown by any number of bytes, is
    "same" when nothing but the 100% partition's end could differ by less than a grain, "grown" (with a note)
    when the 100% partition ends a grain or more before the new last usable LBA, and never "different"."""
    grain = optimal_grain(topo)
    try:
        small = plan_layout(specs, topo, grain)
    except GptLayoutError:
        assume(False)
    big_topo = topo._replace(size=topo.size + growth)
    big = plan_layout(specs, big_topo, optimal_grain(big_topo))
    state, notes = compare(big, as_table(small))
    moved = big.last_lba - small.last_lba
    if specs[-1].size == REST and moved >= grain.size // topo.logical:
        assert state == "grown" and len(notes) == 1 and "grew" in notes[0]
    else:
        assert (state, notes) == ("same", [])


@given(topo=topologies())
def test_the_optimal_grain_honours_every_plausible_io_size(topo):
    """The optimal grain is at least 1 MiB and a multiple of the logical sector, of the physical block and
    minimum_io_size when they are multiples of the sector, and of optimal_io_size when it is plausible (a multiple of
    all three); a multiple of 1 MiB too unless that would exceed MAX_LCM_GRAIN. The offset is whole sectors, below
    one grain. Every ignored value is named in a note."""
    grain = optimal_grain(topo)
    ss = topo.logical
    physical = topo.physical if topo.physical % ss == 0 else ss
    minimum = topo.minimum_io if topo.minimum_io and topo.minimum_io % ss == 0 else 0
    optimal = topo.optimal_io
    plausible = optimal and all(optimal % unit == 0 for unit in (ss, physical, minimum) if unit)
    assert grain.size >= MIB
    for unit in (ss, physical, minimum, optimal if plausible else 0):
        if unit:
            assert grain.size % unit == 0, unit
    assert grain.size % MIB == 0 or any("over %dMiB" % (MAX_LCM_GRAIN // MIB) in n for n in grain.notes)
    assert 0 <= grain.offset < grain.size and grain.offset % ss == 0
    ignored = []
    if physical != topo.physical:
        ignored.append(topo.physical)
    if topo.minimum_io and not minimum:
        ignored.append(topo.minimum_io)
    if optimal and not plausible:
        ignored.append(optimal)
    for value in ignored:
        assert any(str(value) in n for n in grain.notes), value


@given(logical=st.sampled_from([512, 4096]), alignment=st.one_of(st.integers(-1, 1 << 30),
                                                                 st.integers(0, 24).map(lambda k: 1 << k)))
def test_an_explicit_alignment_is_a_power_of_two_multiple_of_the_sector(logical, alignment):
    """alignment=N is accepted exactly when N is the sector size times a power of two; the grain is then N."""
    topo = Topology(logical, logical, logical, 0, 0, 1 << 40)
    if alignment >= logical and alignment % logical == 0 and (alignment // logical) & (alignment // logical - 1) == 0:
        assert explicit_grain(topo, alignment).size == alignment
    else:
        with pytest.raises(AlignmentError, match=str(alignment)):
            explicit_grain(topo, alignment)
