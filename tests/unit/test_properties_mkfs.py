# SPDX-License-Identifier: GPL-3.0-or-later
"""The filesystems planner (Hypothesis, profile in tests/conftest.py): a write only ever goes to a blank device
nothing uses, and the plan fails exactly when one entry cannot be carried out.

Each example is one to four entries, each device in one situation drawn from: blank, a new partition (only its
table entry), the wanted type, another type, LUKS, a partition table, signatures blkid cannot tell apart, blank but
in use, a kept type in use, another type in use, on the running system's disk, missing; in check mode or not.
"""
from hypothesis import given, strategies as st

from ansible_collections.impermanent.nixos.plugins.module_utils import _mkfs as mkfs

FRESH = {}  # what content_signature makes of a new partition's PART_ENTRY_* lines (tests/unit/test_mkfs.py)
OTHER = {"vfat": "ext4", "swap": "vfat", "ext4": "swap"}
USED = ["/dev/loop9 (a loop device backed by it) is built on it"]


def situation(kind, fstype):
    """(DeviceFacts without identity, whether an entry in it can be carried out in a real run)."""
    own = {"TYPE": fstype, "LABEL": "old", "USAGE": "filesystem" if fstype != "swap" else "other"}
    other = {"TYPE": OTHER[fstype], "USAGE": "filesystem"}
    return {
        "blank": (dict(), True),
        "fresh": (dict(signature=FRESH), True),
        "own": (dict(signature=own), True),
        "own_in_use": (dict(signature=own, users=USED), True),
        "other": (dict(signature=other), False),
        "luks": (dict(signature={"TYPE": "crypto_LUKS", "USAGE": "crypto"}), False),
        "table": (dict(signature={"PTTYPE": "gpt"}), False),
        "ambivalent": (dict(signature=own, ambivalent="ambivalent result"), False),
        "blank_in_use": (dict(users=USED), False),
        "other_in_use": (dict(signature=other, users=USED), False),
        "system": (dict(system="/ is mounted from it"), False),
        "missing": (dict(exists=False), None),  # fine in check mode only
    }[kind]


@st.composite
def cases(draw):
    check_mode = draw(st.booleans())
    entries, facts, ok = [], {}, True
    for i in range(draw(st.integers(1, 4))):
        device = "/dev/vd%s" % "abcd"[i]
        fstype = draw(st.sampled_from(mkfs.FSTYPES))
        kind = draw(st.sampled_from(["blank", "fresh", "own", "own_in_use", "other", "luks", "table", "ambivalent",
                                     "blank_in_use", "other_in_use", "system", "missing"]))
        kw, fine = situation(kind, fstype)
        facts[device] = mkfs.DeviceFacts(identity=(8, i), **kw)
        entries.append(dict(device=device, fstype=fstype, label=draw(st.sampled_from([None, "lbl"]))))
        ok = ok and (check_mode if fine is None else fine)
    return entries, facts, check_mode, ok


@given(cases())
def test_writes_go_only_to_blank_unused_devices_and_refusals_exactly_when_due(case):
    entries, facts, check_mode, ok = case
    wanted = mkfs.parse_wanted(entries)
    try:
        plan = mkfs.plan(wanted, facts, check_mode=check_mode)
    except mkfs.MkfsError:
        assert not ok, "refused although every entry can be carried out"
        return
    assert ok, "planned although an entry cannot be carried out"
    assert len(plan.steps) == len(entries) == len(plan.entries)
    for want, step, entry in zip(wanted, plan.steps, plan.entries):
        fact = facts[want.device]
        assert step.target == entry["device"] == want.device and entry["action"] == step.kind
        if step.kind == "create":
            assert step.writes and step.argv == mkfs.mkfs_argv(want.fstype, want.device, want.label)
            if fact.exists:
                assert not (fact.signature or fact.ambivalent or fact.users or fact.system)
            else:
                assert check_mode
        else:
            assert step.kind == "keep" and not step.writes
            assert fact.exists and fact.signature.get("TYPE") == want.fstype and not fact.ambivalent
