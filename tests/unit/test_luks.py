# SPDX-License-Identifier: GPL-3.0-or-later
"""cryptsetup/blkid parsers (real captures, see fixtures/luks/README.md), argv builders and the luks_open planner."""
import os

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils import _luks as luks
from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import (
    content_signature, describe_signature, parse_blkid_export,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "luks")
DEVICE = "/dev/vda3"


def read(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def captured(name):
    """(rc, stdout, stderr) of a probe captured by capture.sh."""
    return int(read(name + ".rc")), read(name + ".stdout"), read(name + ".stderr")


# -- luksDump ---------------------------------------------------------------------------------------------------
def test_dump_luks2_pbkdf2():
    info = luks.parse_luks_dump(read("luksdump_luks2_pbkdf2.txt"))
    assert info["version"] == 2
    assert info["label"] == "nixos-crypt"
    assert info["subsystem"] is None
    assert info["cipher"] == "aes-xts-plain64"
    assert info["uuid"] == parse_blkid_export(captured("blkid_luks2")[1])["UUID"]
    assert info["keyslots"] == [dict(slot=0, pbkdf="pbkdf2", iterations=1000, time_cost=None, memory=None,
                                     threads=None)]


def test_dump_luks2_argon2id():
    info = luks.parse_luks_dump(read("luksdump_luks2_argon2id.txt"))
    assert info["version"] == 2 and info["label"] is None
    slot = info["keyslots"][0]
    assert slot["pbkdf"] == "argon2id" and slot["memory"] == 32768 and slot["threads"] == 1
    assert slot["time_cost"] >= 4 and slot["iterations"] is None
    assert len(info["keyslots"]) == 1  # the digest section's "0: pbkdf2" is not a key slot


def test_dump_luks1():
    info = luks.parse_luks_dump(read("luksdump_luks1.txt"))
    assert info["version"] == 1 and info["label"] is None
    assert info["cipher"] == "aes-xts-plain64"
    assert info["uuid"].count("-") == 4
    assert info["keyslots"] == [dict(slot=0, pbkdf="pbkdf2", iterations=1000, time_cost=None, memory=None,
                                     threads=None)]


def test_dump_of_something_else_is_an_error():
    with pytest.raises(luks.LuksError):
        luks.parse_luks_dump("Device /dev/loop4 is not a valid LUKS device.\n")


# -- status -------------------------------------------------------------------------------------------------------
def test_status_without_device_mapper_real_capture():
    st = luks.parse_status(*captured("status_no_dm"))
    assert st["active"] is False and st["dm_available"] is False


def test_status_inactive():
    st = luks.parse_status(*captured("status_inactive"))
    assert st["active"] is False and st["dm_available"] is True


def test_status_active():
    st = luks.parse_status(*captured("status_active"))
    assert st["active"] and st["in_use"]
    assert st["type"] == "LUKS2" and st["device"] == "/dev/vda3" and st["loop"] is None
    assert st["cipher"] == "aes-xts-plain64" and st["mode"] == "read/write"


def test_status_active_on_a_loop_file():
    st = luks.parse_status(*captured("status_active_loop"))
    assert st["active"] and not st["in_use"]
    assert st["type"] == "LUKS1" and st["device"] == "/dev/loop7" and st["loop"] == "/var/tmp/nix disk.img"


def test_status_other_failure_is_an_error():
    with pytest.raises(luks.LuksError, match="rc=1"):
        luks.parse_status(1, "", "Device crypted not found.\n")


# -- blkid --------------------------------------------------------------------------------------------------------
def test_blkid_real_captures():
    rc, out, _err = captured("blkid_ext4")
    assert rc == 0
    probe = parse_blkid_export(out)
    assert probe["TYPE"] == "ext4" and probe["LABEL"] == "nixos"
    assert describe_signature(probe).startswith("an ext4 file system (LABEL=nixos, UUID=")
    rc, out, _err = captured("blkid_blank")
    assert rc == 2 and parse_blkid_export(out) == {}
    assert int(read("isluks_blank.rc")) == 1


def test_fresh_partition_is_blank():
    """blkid -p on a blank GPT partition prints its table entry (PART_ENTRY_*), which is not content."""
    rc, out, _err = captured("blkid_fresh_partition")
    probe = parse_blkid_export(out)
    assert rc == 0 and probe["PART_ENTRY_NAME"] == "nix"
    assert content_signature(probe) == {}
    ext4 = content_signature(parse_blkid_export(captured("blkid_ext4")[1]))
    assert ext4["TYPE"] == "ext4" and ext4["LABEL"] == "nixos"


def test_describe_partition_table():
    assert describe_signature({"PTTYPE": "gpt", "PTUUID": "x"}) == "a gpt partition table"


# -- options and argv ---------------------------------------------------------------------------------------------
def test_format_argv_test_pbkdf_and_secret_on_stdin_only():
    key = luks.Key(passphrase="correct horse")
    opts = luks.FormatOptions(pbkdf="pbkdf2", pbkdf_force_iterations=1000, label="nix")
    argv = luks.format_argv("cryptsetup", DEVICE, opts, key)
    assert argv == ["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", "--label", "nix", "--key-file=-", DEVICE]
    assert key.data == "correct horse"
    for builder in (luks.open_argv("cryptsetup", DEVICE, "crypted", key), luks.test_key_argv("cryptsetup", DEVICE, key),
                    argv):
        assert not any("horse" in a for a in builder)
        assert "--key-file=-" in builder


def test_keyfile_argv_and_no_stdin():
    key = luks.Key(keyfile="/root/k")
    assert luks.open_argv("cryptsetup", DEVICE, "crypted", key) == [
        "cryptsetup", "open", "--type", "luks", "--key-file=/root/k", DEVICE, "crypted"]
    assert key.data is None


def test_format_defaults():
    assert luks.FormatOptions().argv() == ["--type", "luks2", "--pbkdf", "argon2id"]
    assert luks.FormatOptions(luks_type="luks1").argv() == ["--type", "luks1", "--pbkdf", "pbkdf2"]
    assert luks.FormatOptions(pbkdf_memory=65536, pbkdf_parallel=2, iter_time=500).argv() == [
        "--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "65536", "--pbkdf-parallel", "2",
        "--iter-time", "500"]


@pytest.mark.parametrize("kw,match", [
    (dict(luks_type="luks1", pbkdf="argon2id"), "only pbkdf=pbkdf2"),
    (dict(luks_type="luks1", label="x"), "LUKS2 feature"),
    (dict(pbkdf="pbkdf2", pbkdf_memory=1024), "argon2 only"),
    (dict(iter_time=100, pbkdf_force_iterations=1000), "exclude each other"),
    (dict(pbkdf_force_iterations=0), "positive"),
    (dict(pbkdf="scrypt"), "use one of"),
])
def test_format_option_errors(kw, match):
    with pytest.raises(luks.LuksError, match=match):
        luks.FormatOptions(**kw)


@pytest.mark.parametrize("kw", [dict(passphrase="a", keyfile="/k"), dict(passphrase=""), dict(passphrase="a\nb")])
def test_key_errors(kw):
    with pytest.raises(luks.LuksError):
        luks.Key(**kw)


# -- planner -----------------------------------------------------------------------------------------------------
INACTIVE = luks.parse_status(*captured("status_inactive"))
ACTIVE = luks.parse_status(*captured("status_active"))
EXT4 = parse_blkid_export(captured("blkid_ext4")[1])
DUMP1 = luks.parse_luks_dump(read("luksdump_luks1.txt"))
DUMP2 = luks.parse_luks_dump(read("luksdump_luks2_pbkdf2.txt"))


def planner(state="opened", fmt=False, key=None, options=None, check_mode=False, device=DEVICE, name="crypted",
            **facts):
    facts.setdefault("status", INACTIVE)
    request = luks.LuksRequest(device, name, state, fmt, key if key is not None else luks.Key(passphrase="pw"),
                               options or luks.FormatOptions())
    return luks.LuksPlanner(request, luks.LuksFacts(**facts), check_mode=check_mode)


def test_blank_with_format_formats_then_opens():
    p = planner(fmt=True).plan()
    assert p.kinds == ["format", "open"] and p.changed and p.formats


def test_blank_without_format_tells_to_set_format():
    with pytest.raises(luks.LuksError, match="Set format=true"):
        planner().plan()


def test_blank_without_key_fails():
    with pytest.raises(luks.LuksError, match="passphrase or a keyfile"):
        planner(fmt=True, key=luks.Key()).plan()


def test_existing_luks_is_never_reformatted():
    p = planner(fmt=True, is_luks=True, dump=DUMP2).plan()
    assert p.kinds == ["open"] and not p.formats


def test_existing_luks_type_and_label_mismatch_warns():
    p = planner(fmt=True, is_luks=True, dump=DUMP1, options=luks.FormatOptions(label="new")).plan()
    assert p.kinds == ["open"]
    assert any("LUKS1 header" in w for w in p.warnings) and any("label" in w for w in p.warnings)


def test_filesystem_is_refused_even_with_format():
    with pytest.raises(luks.LuksError, match="holds an ext4 file system") as e:
        planner(fmt=True, probe=EXT4).plan()
    assert "wipefs -a %s" % DEVICE in str(e.value)


def test_already_open_on_this_device_is_a_no_op_without_key():
    p = planner(status=ACTIVE, status_matches=True, key=luks.Key(), is_luks=True).plan()
    assert p.steps == [] and not p.changed


def test_open_on_another_device_fails():
    with pytest.raises(luks.LuksError, match="already open on /dev/vda3, not on /dev/sdb2"):
        planner(status=ACTIVE, status_matches=False, device="/dev/sdb2").plan()


def test_active_non_luks_mapping_fails():
    plain = dict(ACTIVE, type="PLAIN")
    with pytest.raises(luks.LuksError, match="not LUKS"):
        planner(status=plain, status_matches=True).plan()


def test_check_mode_tests_the_key_before_a_planned_open():
    p = planner(is_luks=True, check_mode=True).plan()
    assert p.kinds == ["verify", "open"]
    assert [s.writes for s in p.steps] == [False, True]


def test_missing_device_fails():
    with pytest.raises(luks.LuksError, match="does not exist"):
        planner(device_exists=False).plan()


def test_pending_device_is_planned_as_blank_format_then_open_without_a_key_test():
    """Check mode over a partition gpt_partition would write (blank, --wipe-partitions): planned, not probed."""
    p = planner(fmt=True, check_mode=True, device_exists=False, pending=True).plan()
    assert p.kinds == ["format", "open"] and p.formats


def test_pending_device_without_format_still_says_to_set_format():
    with pytest.raises(luks.LuksError, match="Set format=true"):
        planner(check_mode=True, device_exists=False, pending=True).plan()


def test_pending_device_name_open_elsewhere_fails():
    with pytest.raises(luks.LuksError, match="already open on /dev/vda3, not on /dev/sdb3"):
        planner(fmt=True, check_mode=True, device="/dev/sdb3", device_exists=False, pending=True,
                status=ACTIVE).plan()


def test_closed_closes_an_open_mapping():
    p = planner(state="closed", status=ACTIVE, status_matches=True, device=None).plan()
    assert p.kinds == ["close"]


def test_closed_refuses_a_mapping_on_another_device():
    with pytest.raises(luks.LuksError, match="refusing to close"):
        planner(state="closed", status=ACTIVE, status_matches=False).plan()


def test_closed_and_inactive_is_a_no_op():
    assert planner(state="closed", device=None).plan().steps == []


def test_closed_with_format_formats_a_blank_device():
    assert planner(state="closed", fmt=True).plan().kinds == ["format"]


def test_closed_with_format_on_existing_luks_only_verifies_the_key():
    p = planner(state="closed", fmt=True, is_luks=True, dump=DUMP2).plan()
    assert p.kinds == ["verify"] and not p.changed
    assert planner(state="closed", fmt=True, is_luks=True, key=luks.Key()).plan().kinds == []


@pytest.mark.parametrize("name", ["", "a/b", "-x", "x" * 128, "with space"])
def test_bad_names(name):
    with pytest.raises(luks.LuksError, match="device-mapper name"):
        planner(name=name).plan()


# -- a luksFormat killed half-way (real capture) ------------------------------------------------------------------
INTERRUPTED = luks.parse_luks_dump(read("luksdump_luks2_interrupted.txt"))


def test_interrupted_format_dump_has_a_header_but_no_key_slot():
    assert INTERRUPTED["version"] == 2 and INTERRUPTED["uuid"] and INTERRUPTED["keyslots"] == []


def test_header_without_key_slot_is_formatted_again_with_a_warning():
    p = planner(fmt=True, is_luks=True, dump=INTERRUPTED).plan()
    assert p.kinds == ["format", "open"]
    assert any("without any key slot" in w for w in p.warnings)


def test_header_without_key_slot_needs_format_true():
    with pytest.raises(luks.LuksError, match="without any key slot.*Set format=true"):
        planner(is_luks=True, dump=INTERRUPTED).plan()


def test_header_without_key_slot_in_check_mode_plans_format_without_testing_the_key():
    p = planner(fmt=True, is_luks=True, dump=INTERRUPTED, check_mode=True).plan()
    assert p.kinds == ["format", "open"]
    closed = planner(state="closed", fmt=True, is_luks=True, dump=INTERRUPTED, check_mode=True).plan()
    assert closed.kinds == ["format"]


def test_a_header_with_a_key_slot_is_still_never_formatted():
    for dump in (DUMP1, DUMP2):
        assert not planner(fmt=True, is_luks=True, dump=dump).plan().formats
