# SPDX-License-Identifier: GPL-3.0-or-later
"""Parsing /proc/self/mountinfo and /proc/swaps, and resolving the mount tree; fed real captures."""
import os

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._mountinfo import (
    MountInfoError, MountTable, parse_mountinfo, parse_mountinfo_line, parse_swaps, unescape)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "mountinfo")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def devices():
    out = {}
    for line in fixture("devices.txt").splitlines():
        key, _sep, value = line.partition("=")
        out[key] = value
    return out


ROOT = devices()["root"]
SCRATCH = devices()["scratch"]


def test_root_has_a_space_and_is_unescaped():
    assert " " in ROOT
    table = MountTable.from_text(fixture("full.txt"))
    assert table.visible(ROOT).fstype == "tmpfs"
    assert "\\040" in fixture("full.txt")


def test_parse_full_line_fields():
    mounts = parse_mountinfo(fixture("full.txt"))
    tmpfs = [m for m in mounts if m.target == ROOT][0]
    assert tmpfs.fstype == "tmpfs" and tmpfs.source == "tmpfs"
    assert tmpfs.option("mode") == "755"
    assert tmpfs.option("size").endswith("k")
    assert tmpfs.mount_options == ["rw", "relatime"]
    bind = [m for m in mounts if m.target == ROOT + "/etc/nixos"][0]
    assert bind.root == "/persist/etc/nixos"
    assert bind.describe_source() == "/dev/loop0[/persist/etc/nixos]"
    assert bind.devno == (7, 0)
    assert bind.as_dict()["device"] == "7:0"


@pytest.mark.parametrize("escaped,plain", [
    ("/a\\040b", "/a b"),
    ("/tab\\011x", "/tab\tx"),
    ("/nl\\012x", "/nl\nx"),
    ("/back\\134slash", "/back\\slash"),
    ("/plain", "/plain"),
    ("/caf\\303\\251", "/caf\u00e9"),
])
def test_unescape(escaped, plain):
    assert unescape(escaped) == plain


def test_optional_fields_and_bad_lines():
    m = parse_mountinfo_line("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue")
    assert m.optional == ["master:1", "shared:7"]
    assert m.root == "/mnt1" and m.target == "/mnt2" and m.super_options == ["rw", "errors=continue"]
    assert m.option("errors") == "continue" and m.option("rw") is True and m.option("size") is None
    with pytest.raises(MountInfoError):
        parse_mountinfo_line("36 35 98:0 /mnt1 /mnt2 rw,noatime ext3 /dev/root rw")
    with pytest.raises(MountInfoError):
        parse_mountinfo_line("x 35 98:0 /mnt1 /mnt2 rw,noatime - ext3 /dev/root rw")


def test_empty_has_nothing_below_scratch():
    table = MountTable.from_text(fixture("empty.txt"))
    assert table.visible(ROOT) is None
    assert table.below(SCRATCH) == []
    assert table.containing(ROOT).target == "/"


def test_full_layout_resolution():
    table = MountTable.from_text(fixture("full.txt"))
    below = [m.target for m in table.below(ROOT)]
    assert sorted(below) == sorted([ROOT + "/nix", ROOT + "/boot", ROOT + "/etc/nixos", ROOT + "/var/log"])
    assert table.containing(ROOT + "/etc/nixos/configuration.nix").root == "/persist/etc/nixos"
    assert table.containing(ROOT + "/usr").target == ROOT


def test_stacked_same_device_stack_has_two_entries():
    table = MountTable.from_text(fixture("stacked_same.txt"))
    stack = table.stack(ROOT + "/nix")
    assert [m.mount_id for m in stack] == [47, 51]
    assert table.visible(ROOT + "/nix").mount_id == 51


def test_stacked_other_device_visible_is_the_top():
    table = MountTable.from_text(fixture("stacked.txt"))
    assert table.visible(ROOT + "/nix").devno == (7, 1)
    assert len(table.stack(ROOT + "/nix")) == 2


def test_hidden_mount_below_a_later_tmpfs_is_not_visible():
    text = fixture("hidden.txt")
    table = MountTable.from_text(text)
    assert ROOT + "/nix" in [m.target for m in parse_mountinfo(text)]
    assert table.visible(ROOT).fstype == "tmpfs"
    assert table.visible(ROOT + "/nix") is None
    assert table.stack(ROOT + "/nix") == []
    assert table.below(ROOT) == []


def test_swaps_real_capture():
    entries = parse_swaps(fixture("swaps_active.txt"))
    assert entries == [dict(filename=devices()["swap"].split()[0], type="partition", size_kib=65532, used_kib=0,
                            priority=-2)]


def test_swaps_escaped_and_deleted_names():
    text = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
            "/swap\\040file                          file\t\t1048572\t\t0\t\t-2\n"
            "/old\\040swap (deleted)                 file\t\t1024\t\t0\t\t-3\n")
    names = [e["filename"] for e in parse_swaps(text)]
    assert names == ["/swap file", "/old swap"]
    assert parse_swaps("Filename\tType\tSize\tUsed\tPriority\n") == []
