# SPDX-License-Identifier: GPL-3.0-or-later
"""Partition lists, the sector planner, and the sfdisk/parted parsers fed real captured output (fixtures/gpt)."""
import os

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._alignment import (
    MIB, Topology, explicit_grain, gpt_usable_lbas, optimal_grain, parted_aligned,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._gpt import (
    REST, TYPE_GUIDS, GptLayoutError, compare, describe_plan, describe_table, human_size, parse_parted_machine,
    parse_sfdisk_json, parse_partition_size, parse_specs, plan_layout, render_sfdisk_script, resolve_type,
)

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gpt")
GIB = 1 << 30
TIB = 1 << 40
LAYOUT = [{"name": "esp", "size": "512MiB", "type": "esp"},
          {"name": "swap", "size": "1GiB", "type": "swap"},
          {"name": "nix", "size": "100%", "type": "linux"}]


def fixture(name):
    with open(os.path.join(FIX, name)) as f:
        return f.read()


def table(case):
    return parse_sfdisk_json(fixture(case + ".sfdisk.json"))


def plan_for(items, size, logical=512, physical=None, minimum=None, optimal=0, offset=0, alignment=None):
    physical = physical or logical
    t = Topology(logical, physical, physical if minimum is None else minimum, optimal, offset, size)
    grain = optimal_grain(t) if alignment is None else explicit_grain(t, alignment)
    return t, plan_layout(parse_specs(items), t, grain)


def layout_plan(*args, **kwargs):
    return plan_for(*args, **kwargs)[1]


# -- sizes, types, names ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("512MiB", 512 * MIB), ("8GiB", 8 * GIB), ("1.5GiB", 1536 * MIB), ("4096B", 4096), ("4096", 4096),
    (4096, 4096), ("2TiB", 2 * TIB), ("64KiB", 65536), ("512 MiB", 512 * MIB), ("8gib", 8 * GIB), ("100%", REST),
])
def test_parse_size(text, expected):
    assert parse_partition_size(text) == expected


@pytest.mark.parametrize("text, words", [
    ("0", ["positive"]), (0, ["positive"]), (-5, ["positive"]), ("-1GiB", ["negative"]), ("0MiB", ["positive"]),
    ("8GB", ["ambiguous", "8GiB"]), ("512M", ["ambiguous", "512MiB"]), ("abc", ["not a size"]),
    ("12 parsecs", ["unknown unit"]), ("50%", ["only 100%"]), ("0.1B", ["whole number"]), (True, ["not a size"]),
    ("1,5GiB", ["not a size"]), ("", ["not a size"]),
])
def test_parse_size_errors(text, words):
    with pytest.raises(GptLayoutError) as e:
        parse_partition_size(text)
    for word in words:
        assert word in str(e.value)
    assert repr(text) in str(e.value) or str(text) in str(e.value)


def test_type_guids():
    # UEFI spec / util-linux gpt type list
    assert TYPE_GUIDS == {
        "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
        "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        "luks": "CA7D7CCB-63ED-4C53-861C-1742536059CC",
    }
    assert resolve_type("ESP") == TYPE_GUIDS["esp"]
    assert resolve_type("21686148-6449-6e6f-744e-656564454649") == "21686148-6449-6E6F-744E-656564454649"
    with pytest.raises(GptLayoutError) as e:
        resolve_type("ext4")
    assert "'ext4'" in str(e.value) and "esp, linux, luks, swap" in str(e.value)


@pytest.mark.parametrize("items, words", [
    ([], ["empty"]),
    ([{"name": "a", "size": "100%"}, {"name": "b", "size": "100%"}], ["a, b", "only the last"]),
    ([{"name": "a", "size": "100%"}, {"name": "b", "size": "1GiB"}], ["'a'", "not the last"]),
    ([{"name": "a", "size": "1GiB"}, {"name": "a", "size": "100%"}], ["'a'", "unique"]),
    ([{"name": "a", "size": "1GiB", "type": "ntfs"}], ["'ntfs'", "GPT type GUID"]),
    ([{"name": "a", "size": "lots"}], ["partitions[0] (a) size", "'lots'"]),
    ([{"name": "", "size": "1GiB"}], ["non-empty name"]),
    ([{"name": 'a"b', "size": "1GiB"}], ["quotes"]),
    ([{"name": "x" * 37, "size": "1GiB"}], ["36 characters"]),
    ([{"name": "a"}], ["no size"]),
    (["esp"], ["each entry is a dict"]),
])
def test_parse_specs_errors(items, words):
    with pytest.raises(GptLayoutError) as e:
        parse_specs(items)
    for word in words:
        assert word in str(e.value)


def test_parse_specs_defaults_to_linux():
    assert parse_specs([{"name": "nix", "size": "100%"}])[0].type == TYPE_GUIDS["linux"]


def test_human_size():
    assert [human_size(n) for n in (GIB, 1536 * MIB, 1000, 11273223680)] == ["1GiB", "1536MiB", "1000B", "10.50GiB"]


# -- planning -----------------------------------------------------------------------------------------

def check_plan_invariants(t, plan):
    """Independent of the planner: on the grid, inside the usable area, no overlap, sizes within request."""
    first, last = gpt_usable_lbas(t.sectors, t.logical)
    grain = plan.grain
    prev_end = first - 1
    for p in plan.partitions:
        assert p.start > prev_end
        assert (p.start * t.logical - grain.offset) % grain.size == 0
        assert p.start * t.logical >= MIB or grain.source == "explicit"
        if p.requested != REST:
            assert p.requested <= p.size * t.logical < p.requested + grain.sectors * t.logical
        prev_end = p.start + p.size - 1
        assert prev_end <= last
    if plan.partitions[-1].requested == REST:
        assert prev_end == last


@pytest.mark.parametrize("size, logical", [(12 * GIB, 512), (12 * GIB, 4096), (16 * TIB, 512), (16 * TIB, 4096)])
def test_plan_standard_layout(size, logical):
    t, plan = plan_for(LAYOUT, size, logical)
    mib = MIB // logical
    assert [(p.number, p.name, p.start, p.size) for p in plan.partitions[:2]] == [
        (1, "esp", mib, 512 * mib), (2, "swap", 513 * mib, 1024 * mib)]
    nix = plan.partitions[2]
    assert nix.start == 1537 * mib and nix.start + nix.size - 1 == gpt_usable_lbas(t.sectors, logical)[1]
    assert all(parted_aligned(t, p.start) for p in plan.partitions)
    assert plan.notes == []
    check_plan_invariants(t, plan)


def test_plan_opt_io_768k_rounds_sizes_up_to_3mib():
    """Never less than asked for: 512MiB -> 513MiB, 1GiB -> 1026MiB on a 3MiB grain."""
    t, plan = plan_for(LAYOUT, 12 * GIB, 512, 4096, 4096, 768 * 1024)
    assert plan.grain.size == 3 * MIB
    assert [p.size * 512 // MIB for p in plan.partitions[:2]] == [513, 1026]
    assert [p.start for p in plan.partitions] == [6144, 6144 + 513 * 2048, 6144 + 1539 * 2048]
    assert any("512MiB rounded up to 513MiB" in n for n in plan.notes)
    assert all(parted_aligned(t, p.start) for p in plan.partitions)
    check_plan_invariants(t, plan)


def test_plan_alignment_offset_3584():
    t, plan = plan_for(LAYOUT, 12 * GIB, 512, 4096, 4096, 0, 3584)
    assert [p.start % 2048 for p in plan.partitions] == [7, 7, 7]
    assert all(parted_aligned(t, p.start) for p in plan.partitions)
    check_plan_invariants(t, plan)


def test_plan_explicit_alignment():
    t, plan = plan_for(LAYOUT, 12 * GIB, 512, alignment=4 * MIB)
    assert [p.start * 512 // MIB for p in plan.partitions] == [4, 516, 1540]
    check_plan_invariants(t, plan)


def test_plan_without_rest_leaves_the_end_free():
    t, plan = plan_for([{"name": "a", "size": "1GiB"}], 12 * GIB)
    assert plan.partitions[0].size == 2 * 1024 * 1024
    check_plan_invariants(t, plan)


@pytest.mark.parametrize("items, size, words", [
    (LAYOUT, 3 * MIB, ["'esp'", "does not fit", "3MiB disk"]),
    ([{"name": "nix", "size": "100%"}], MIB, ["too small"]),
    ([{"name": "a", "size": "1MiB"}, {"name": "nix", "size": "100%"}], 3 * MIB, ["'nix'", "less than one alignment grain"]),
    ([{"name": "a", "size": "12GiB"}, {"name": "b", "size": "100%"}], 12 * GIB, ["'a'", "does not fit"]),
    ([{"name": "a", "size": "11GiB"}, {"name": "b", "size": "2GiB"}], 12 * GIB, ["'b'", "does not fit"]),
])
def test_plan_errors(items, size, words):
    with pytest.raises(GptLayoutError) as e:
        plan_for(items, size)
    for word in words:
        assert word in str(e.value)


def test_render_sfdisk_script():
    plan = layout_plan(LAYOUT, 4 * GIB)
    assert render_sfdisk_script(plan) == (
        "label: gpt\nfirst-lba: 34\nlast-lba: 8388574\n\n"
        'start=2048, size=1048576, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"\n'
        'start=1050624, size=2097152, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name="swap"\n'
        'start=3147776, size=5240799, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="nix"\n')


# -- parsers on captured output -----------------------------------------------------------------------

@pytest.mark.parametrize("case, logical", [("ours-512", 512), ("ours-4096", 4096)])
def test_plan_equals_the_captured_table(case, logical):
    """The fixtures were written by capture.sh's own script: the planner must produce exactly that table."""
    tbl = table(case)
    plan = layout_plan(LAYOUT, 4 * GIB, logical)
    assert tbl.label == "gpt" and tbl.sector_size == logical
    assert (tbl.first_lba, tbl.last_lba) == (plan.first_lba, plan.last_lba)
    assert [(e.number, e.name, e.type, e.start, e.size) for e in tbl.partitions] == \
        [(p.number, p.name, p.type, p.start, p.size) for p in plan.partitions]
    assert compare(plan, tbl) == ("same", [])
    assert all(len(e.uuid) == 36 for e in tbl.partitions)


def test_sfdisk_before_2_38_prints_no_sector_size():
    """Older sfdisk prints no "sectorsize" key: the table's sectors are the disk's, so a 4Kn table still matches."""
    import json
    data = json.loads(fixture("ours-4096.sfdisk.json"))
    del data["partitiontable"]["sectorsize"]
    tbl = parse_sfdisk_json(json.dumps(data))
    assert tbl.sector_size is None
    plan = layout_plan(LAYOUT, 4 * GIB, 4096)
    assert compare(plan, tbl) == ("same", [])
    assert "size=512MiB" in describe_table(tbl, 4096)


def test_parse_sfdisk_mbr():
    tbl = table("mbr-512")
    assert tbl.label == "dos" and [(e.number, e.type) for e in tbl.partitions] == [(1, "83"), (2, "82")]
    plan = layout_plan([{"name": "nix", "size": "100%"}], GIB)
    status, reasons = compare(plan, tbl)
    assert status == "different" and "dos partition table" in reasons[0]


def test_compare_other_gpt_layout():
    plan = layout_plan(LAYOUT, 4 * GIB)
    status, reasons = compare(plan, table("other-512"))
    assert status == "different"
    text = "\n".join(reasons)
    assert "named 'root', requested 'esp'" in text and "named 'home', requested 'swap'" in text
    assert "partition 3 ('nix') is missing" in text


def test_compare_rest_partition_ending_within_a_grain():
    """other-512 was made by sfdisk itself, which rounded the last partition's end down: still the same layout."""
    tbl = table("other-512")
    plan = layout_plan([{"name": "root", "size": "2GiB"}, {"name": "home", "size": "100%"}], 4 * GIB)
    assert tbl.partitions[-1].start + tbl.partitions[-1].size - 1 < plan.last_lba
    assert compare(plan, tbl) == ("same", [])


def test_compare_grown_disk_keeps_the_layout():
    """grown-512: our layout written on 4GiB, the disk then grown to 5GiB. The table keeps its old last usable LBA
    (sfdisk warns that the backup header is not at the end) and is still the requested layout, not another one."""
    assert "backup GPT table is not on the end" in fixture("grown-512.sfdisk.stderr")
    tbl = table("grown-512")
    assert tbl.last_lba == table("ours-512").last_lba
    plan = layout_plan(LAYOUT, 5 * GIB)
    assert tbl.last_lba < plan.last_lba
    status, notes = compare(plan, tbl)
    assert status == "grown"
    assert len(notes) == 1
    assert "the disk grew" in notes[0] and "last usable LBA is 8388574 (4.00GiB)" in notes[0]
    assert "partition 3 ('nix', 100%) keeps its" in notes[0] and "nothing is resized" in notes[0]
    assert compare(layout_plan(LAYOUT, 4 * GIB), table("ours-512")) == ("same", [])


def test_compare_grown_disk_with_another_layout_is_different():
    """Growth only excuses the end of the 100% partition: any other difference still refuses."""
    items = [dict(LAYOUT[0]), dict(LAYOUT[1], size="2GiB"), dict(LAYOUT[2])]
    status, reasons = compare(layout_plan(items, 5 * GIB), table("grown-512"))
    assert status == "different" and any("has 2097152 sectors (1GiB), planned 4194304" in r for r in reasons)


def test_compare_rest_partition_ending_short_of_its_own_table_is_different():
    """A 100% partition that stops well before the table's own last usable LBA was made smaller on purpose."""
    import json
    data = json.loads(fixture("grown-512.sfdisk.json"))
    data["partitiontable"]["partitions"][-1]["size"] -= 4096
    status, reasons = compare(layout_plan(LAYOUT, 5 * GIB), parse_sfdisk_json(json.dumps(data)))
    assert status == "different" and "partition 3 ('nix', 100%) ends at LBA" in reasons[0]


def test_compare_detects_small_changes():
    tbl = table("ours-512")
    base = [dict(x) for x in LAYOUT]
    variants = {
        "name": ([dict(base[0], name="boot")] + base[1:], "named 'esp', requested 'boot'"),
        "type": ([base[0], dict(base[1], type="linux")] + base[2:], "has type swap, requested linux"),
        "size": ([base[0], dict(base[1], size="2GiB")] + base[2:], "has 2097152 sectors (1GiB), planned 4194304"),
        "extra": (base[:2] + [dict(base[2], size="1GiB"), {"name": "x", "size": "100%"}], "partition 4 ('x') is missing"),
        "fewer": (base[:2], "partition 3 ('nix') is not in the requested layout"),
    }
    for what, (items, words) in variants.items():
        plan = layout_plan(items, 4 * GIB)
        status, reasons = compare(plan, tbl)
        assert status == "different", what
        assert any(words in r for r in reasons), (what, reasons)


@pytest.mark.parametrize("case", ["empty-512", "empty-4096", "wholefs-512"])
def test_no_table_captured(case):
    assert "does not contain a recognized partition table" in fixture(case + ".sfdisk.stderr")
    plan = layout_plan(LAYOUT, 4 * GIB)
    assert compare(plan, None) == ("empty", [])


def test_describe():
    plan = layout_plan(LAYOUT, 4 * GIB)
    assert describe_plan(plan).splitlines()[0] == "1: 'esp' esp start=1MiB (LBA 2048) size=512MiB (1048576 sectors)"
    assert describe_table(table("mbr-512")).splitlines()[:2] == [
        "label: dos", "1: 83 start=1MiB (LBA 2048) size=100MiB (204800 sectors)"]
    assert describe_table(None) == "(no partition table)"


@pytest.mark.parametrize("case, logical", [("ours-512", 512), ("ours-4096", 4096)])
def test_parse_parted_ours(case, logical):
    parted = parse_parted_machine(fixture(case + ".parted.txt"))
    assert parted["disk"]["label"] == "gpt" and parted["disk"]["logical_sector"] == logical
    assert parted["disk"]["size"] == 4 * GIB
    assert [(p["number"], p["name"], p["flags"]) for p in parted["partitions"]] == [
        (1, "esp", ["boot", "esp"]), (2, "swap", ["swap"]), (3, "nix", [])]
    assert parted["partitions"][0]["start"] == MIB and parted["partitions"][0]["end"] == 513 * MIB - 1
    # the sfdisk and parted views of the same disk agree
    for p, e in zip(parted["partitions"], table(case).partitions):
        assert (p["start"], p["size"]) == (e.start * logical, e.size * logical)


def test_parse_parted_other_tables():
    assert parse_parted_machine(fixture("mbr-512.parted.txt"))["disk"]["label"] == "msdos"
    empty = parse_parted_machine(fixture("empty-512.parted.txt"))
    assert empty["disk"]["label"] == "unknown" and empty["partitions"] == []
    inuse = parse_parted_machine(fixture("inuse-512.parted.txt"))
    assert [p["fs"] for p in inuse["partitions"]] == ["", "linux-swap(v1)", "ext4"]


# -- the module's result rows -------------------------------------------------------------------------

def test_result_partitions_paths_and_by_id():
    from ansible_collections.impermanent.nixos.plugins.module_utils._step_gpt_partition import Disk, result_partitions
    t, plan = plan_for(LAYOUT, 4 * GIB)
    planned = result_partitions(Disk("/dev/disk/by-id/virtio-nixdisk", "/dev/vda", "vda", t), plan, None)
    assert [(p["path"], p["by_id_path"], p["partuuid"], p["aligned"]) for p in planned] == [
        ("/dev/vda%d" % n, "/dev/disk/by-id/virtio-nixdisk-part%d" % n, None, True) for n in (1, 2, 3)]
    assert (planned[0]["start"], planned[0]["end"], planned[0]["size"]) == (MIB, 513 * MIB - 1, 512 * MIB)
    tbl = table("ours-512")
    written = result_partitions(Disk("/dev/nvme0n1", "/dev/nvme0n1", "nvme0n1", t), plan, tbl)
    assert [p["path"] for p in written] == ["/dev/nvme0n1p1", "/dev/nvme0n1p2", "/dev/nvme0n1p3"]
    assert [p["partuuid"] for p in written] == [e.uuid.lower() for e in tbl.partitions]
    assert "by_id_path" not in written[0]


def test_conflict_message_names_disk_content_and_override():
    from ansible_collections.impermanent.nixos.plugins.module_utils._step_gpt_partition import Disk, describe_conflict
    t, plan = plan_for(LAYOUT, 4 * GIB)
    disk = Disk("/dev/disk/by-id/virtio-x", "/dev/vda", "vda", t)
    tbl = table("other-512")
    msg = describe_conflict(disk, tbl, None, compare(plan, tbl)[1], plan)
    for words in ("/dev/disk/by-id/virtio-x (/dev/vda)", "'root'", "'home'", "requested 'esp'", "force=true",
                  "Nothing was written"):
        assert words in msg
    msg = describe_conflict(disk, None, "a whole-disk ext4 signature (filesystem)", ["no partition table"], plan)
    assert "whole-disk ext4 signature" in msg and "force=true" in msg


@pytest.mark.parametrize("name, words", [
    ("nix\U0001F600", ["U+1F600", "sfdisk cannot store", "empty name"]),
    ("\U00010348", ["U+10348"]),
    ("a\ud800b", ["U+D800"]),
    ("a\x85b", ["control characters"]),
    ("\u540d" * 37, ["36 characters", "it has 37"]),
    ("\U0001F600" * 18, ["U+1F600"]),  # 36 UTF-16 code units, yet sfdisk writes none of them
])
def test_names_sfdisk_cannot_store_are_refused_before_writing(name, words):
    with pytest.raises(GptLayoutError) as e:
        parse_specs([{"name": name, "size": "1GiB"}])
    for word in words:
        assert word in str(e.value)


@pytest.mark.parametrize("name", ["\u540d" * 36, "\u00e9" * 36, "x,y", " lead", "a=b", "a\ufffeb", "\uffff"])
def test_names_sfdisk_stores_as_given_are_accepted(name):
    """Checked against sfdisk 2.38: each of these is read back from the table exactly as written."""
    assert parse_specs([{"name": name, "size": "1GiB"}])[0].name == name


@pytest.mark.parametrize("value", ["00000000-0000-0000-0000-000000000000", " 00000000-0000-0000-0000-000000000000"])
def test_the_unused_entry_type_guid_is_refused(value):
    with pytest.raises(GptLayoutError) as e:
        parse_specs([{"name": "a", "size": "1GiB", "type": value}])
    assert "unused GPT entry" in str(e.value) and "partitions[0] (a) type" in str(e.value)


@pytest.mark.parametrize("value", ["0FC63DAF-8483-4772-8E79-3D69D8477DE", "0FC63DAF-8483-4772-8E79-3D69D8477DE4X",
                                   "0FC63DAF84834772-8E79-3D69D8477DE4", "{0FC63DAF-8483-4772-8E79-3D69D8477DE4}"])
def test_malformed_type_guids_are_refused(value):
    with pytest.raises(GptLayoutError) as e:
        parse_specs([{"name": "a", "size": "1GiB", "type": value}])
    assert "not a known partition type" in str(e.value)
