# SPDX-License-Identifier: GPL-3.0-or-later
"""The tmpfs_root planner, fed real mountinfo captures (tests/unit/fixtures/mountinfo, see its README)."""
import os
import re

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._layout import (
    PENDING, Facts, MountLayoutError, LayoutPlanner, Spec, mounted_size_kib, parse_tmpfs_size, size_kib)
from ansible_collections.impermanent.nixos.plugins.module_utils._mountinfo import MountTable

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "mountinfo")


def _devices():
    out = {}
    with open(os.path.join(FIXTURES, "devices.txt")) as f:
        for line in f.read().splitlines():
            key, _sep, value = line.partition("=")
            out[key] = value
    return out


DEV = _devices()
ROOT = DEV["root"]
MEM = int(DEV["memtotal_kb"])


def _devno(key):
    path, hexdev = DEV[key].split()
    major, minor = hexdev.split(":")
    return path, (int(major, 16), int(minor, 16))


NIX, NIX_NO = _devno("nix")
OTHER, OTHER_NO = _devno("other")
BOOT, BOOT_NO = _devno("boot")
SWAP, SWAP_NO = _devno("swap")
ALL_DIRS = [ROOT, ROOT + "/boot", ROOT + "/nix", ROOT + "/etc/nixos", ROOT + "/var/log",
            ROOT + "/nix/persist/etc/nixos", ROOT + "/nix/persist/var/log"]


def table(name):
    with open(os.path.join(FIXTURES, name + ".txt")) as f:
        return MountTable.from_text(f.read())


def facts(name, dirs=ALL_DIRS, mode=0o755, swaps=()):
    return Facts(table(name), devno={NIX: NIX_NO, OTHER: OTHER_NO, BOOT: BOOT_NO, SWAP: SWAP_NO}, swaps=swaps,
                 memtotal_kib=MEM, page_size=int(DEV["page_size"]), dirs=dirs, modes={ROOT: mode})


def spec(**kw):
    args = dict(root=ROOT, nix_device=NIX, boot_device=BOOT, boot_options=[])
    args.update(kw)
    return Spec(**args)


def plan(name, spec_kw=None, **facts_kw):
    return LayoutPlanner(spec(**(spec_kw or {})), facts(name, **facts_kw)).plan()


def argvs(p):
    return [s.argv for s in p.steps if s.argv]


# -- sizes ------------------------------------------------------------------------------------------------------
def test_size_parsing_and_kernel_rounding():
    assert parse_tmpfs_size("25%") == ("percent", 25)
    assert parse_tmpfs_size("2G") == ("bytes", 2 << 30)
    assert parse_tmpfs_size("512m") == ("bytes", 512 << 20)
    assert size_kib("2G", MEM) == 2097152
    assert size_kib("512m", MEM) == 524288
    assert size_kib("1000", MEM) == 4  # rounded up to one 4 KiB page
    for bad in ("25 %", "-1", "2GB", "", "0%", "x"):
        with pytest.raises(MountLayoutError):
            parse_tmpfs_size(bad)


def test_percent_size_matches_what_the_kernel_showed():
    root = table("full").visible(ROOT)
    assert root.option("size") == "%dk" % size_kib("25%", MEM)
    assert mounted_size_kib(root, MEM) == size_kib("25%", MEM)


def test_default_size_is_not_shown_by_the_kernel():
    t = MountTable.from_text("1 0 254:0 / / rw - ext4 /dev/vda rw\n2 1 0:40 / /mnt rw - tmpfs tmpfs rw,mode=755\n")
    assert mounted_size_kib(t.visible("/mnt"), MEM) == size_kib("50%", MEM)


# -- mounted ----------------------------------------------------------------------------------------------------
def test_empty_plans_the_whole_layout_in_order():
    p = plan("empty", dirs=[])
    kinds = [(s.kind, s.target) for s in p.steps]
    assert kinds == [
        ("mkdir", ROOT),
        ("mount", ROOT),
        ("mkdir", ROOT + "/boot"), ("mkdir", ROOT + "/nix"),
        ("mkdir", ROOT + "/etc/nixos"), ("mkdir", ROOT + "/var/log"),
        ("mount", ROOT + "/boot"),
        ("mount", ROOT + "/nix"),
        ("mkdir", ROOT + "/nix/persist/etc/nixos"), ("mkdir", ROOT + "/nix/persist/var/log"),
        ("bind", ROOT + "/etc/nixos"), ("bind", ROOT + "/var/log"),
    ]
    assert argvs(p) == [
        ["mount", "-t", "tmpfs", "-o", "size=25%,mode=755", "tmpfs", ROOT],
        ["mount", BOOT, ROOT + "/boot"],
        ["mount", NIX, ROOT + "/nix"],
        ["mount", "--bind", ROOT + "/nix/persist/etc/nixos", ROOT + "/etc/nixos"],
        ["mount", "--bind", ROOT + "/nix/persist/var/log", ROOT + "/var/log"],
    ]
    assert [s.conditional for s in p.steps if s.kind == "mkdir"][-2:] == [True, True]


def test_boot_options_and_no_boot_device():
    p = plan("empty", spec_kw=dict(boot_options=["umask=0077"]))
    assert ["mount", "-o", "umask=0077", BOOT, ROOT + "/boot"] in argvs(p)
    p = plan("empty", spec_kw=dict(boot_device=None))
    assert not [a for a in argvs(p) if ROOT + "/boot" in a]
    assert ("mkdir", ROOT + "/boot") in [(s.kind, s.target) for s in p.steps]


def test_full_is_a_no_op():
    p = plan("full")
    assert p.steps == [] and not p.changed and p.warnings == []


def test_full_with_other_mode_chmods_but_does_not_remount():
    p = plan("full", mode=0o700)
    assert argvs(p) == [["chmod", "755", ROOT]]


def test_full_with_other_size_remounts_size_only():
    p = plan("full", spec_kw=dict(size="2G"))
    assert argvs(p) == [["mount", "-o", "remount,size=2G", ROOT]]


def test_full_missing_persist_dir_on_nix_is_created():
    dirs = [d for d in ALL_DIRS if d != ROOT + "/nix/persist/var/log"]
    p = plan("full", dirs=dirs)
    assert [(s.kind, s.target, s.conditional) for s in p.steps] == [("mkdir", ROOT + "/nix/persist/var/log", False)]


def test_partial_adds_boot_and_binds_only():
    p = plan("partial")
    assert argvs(p) == [
        ["mount", BOOT, ROOT + "/boot"],
        ["mount", "--bind", ROOT + "/nix/persist/etc/nixos", ROOT + "/etc/nixos"],
        ["mount", "--bind", ROOT + "/nix/persist/var/log", ROOT + "/var/log"],
    ]


def test_wrong_device_on_nix_fails_and_names_both():
    with pytest.raises(MountLayoutError) as e:
        plan("wrong_device")
    assert ROOT + "/nix" in str(e.value) and OTHER in str(e.value) and NIX in str(e.value)


def test_wrong_boot_device_fails():
    with pytest.raises(MountLayoutError, match="boot_device"):
        plan("full", spec_kw=dict(boot_device=OTHER))


def test_stacked_wrong_top_fails():
    with pytest.raises(MountLayoutError, match="already mounted from /dev/loop1"):
        plan("stacked")


def test_stacked_right_top_is_accepted_with_a_warning():
    p = plan("stacked_same")
    assert p.steps == []
    assert p.warnings and "stacked" in p.warnings[0]


def test_bind_of_wrong_directory_fails():
    # full layout, but asked to persist under another dir: the existing binds point elsewhere
    with pytest.raises(MountLayoutError, match="bind mount of"):
        plan("full", spec_kw=dict(persist_dir="/nix/state"))


def test_hidden_mount_is_ignored_and_nix_is_mounted_on_the_tmpfs():
    p = plan("hidden", mode=0o700)
    assert argvs(p)[:3] == [
        ["mount", "-o", "remount,size=25%", ROOT],
        ["chmod", "755", ROOT],
        ["mount", BOOT, ROOT + "/boot"],
    ]
    assert ["mount", NIX, ROOT + "/nix"] in argvs(p)


def hand_facts(below_root):
    """A hand-written table: the host's / and one ext4 mount at ROOT + below_root."""
    text = "27 1 254:0 / / rw - ext4 /dev/vda rw\n46 27 7:1 / %s%s rw - ext4 /dev/loop1 rw\n" % (
        ROOT.replace(" ", "\\040"), below_root)
    return Facts(MountTable.from_text(text), devno={NIX: NIX_NO, BOOT: BOOT_NO}, memtotal_kib=MEM)


def test_mounts_below_an_unmounted_root_are_refused():
    # an ext4 mounted on the host fs under ROOT, no tmpfs: mounting one would hide it
    with pytest.raises(MountLayoutError, match="has mounts below it"):
        LayoutPlanner(spec(), hand_facts("/nix")).plan()


def test_root_that_is_not_a_tmpfs_is_refused():
    with pytest.raises(MountLayoutError, match="not a tmpfs"):
        LayoutPlanner(spec(), hand_facts("")).plan()


def test_swap_on_only_when_not_active():
    p = plan("full", spec_kw=dict(swap_device=SWAP))
    assert argvs(p) == [["swapon", SWAP]]
    p = plan("full", spec_kw=dict(swap_device=SWAP), swaps={SWAP_NO})
    assert p.steps == []


def pending_facts(name, devices, dirs=()):
    """Check mode over a disk the disk role would partition: the devices map to PENDING (not looked up)."""
    return Facts(table(name), devno=dict((d, PENDING) for d in devices), memtotal_kib=MEM,
                 page_size=int(DEV["page_size"]), dirs=dirs)


def test_pending_devices_are_planned_as_fresh_mounts_and_swapon():
    new_boot, new_nix, new_swap = "/dev/vdz1", "/dev/mapper/crypted", "/dev/vdz2"
    p = LayoutPlanner(spec(boot_device=new_boot, nix_device=new_nix, swap_device=new_swap,
                           boot_options=["umask=0077"]),
                      pending_facts("empty", [new_boot, new_nix, new_swap])).plan()
    assert argvs(p) == [
        ["mount", "-t", "tmpfs", "-o", "size=25%,mode=755", "tmpfs", ROOT],
        ["mount", "-o", "umask=0077", new_boot, ROOT + "/boot"],
        ["mount", new_nix, ROOT + "/nix"],
        ["mount", "--bind", ROOT + "/nix/persist/etc/nixos", ROOT + "/etc/nixos"],
        ["mount", "--bind", ROOT + "/nix/persist/var/log", ROOT + "/var/log"],
        ["swapon", new_swap],
    ]
    assert [m["source"] for m in p.expected] == ["tmpfs", new_boot, new_nix, new_nix + "[/persist/etc/nixos]",
                                                 new_nix + "[/persist/var/log]"]


def test_pending_device_cannot_be_what_is_already_mounted():
    """A mount already on ROOT/nix cannot come from a device that does not exist yet."""
    with pytest.raises(MountLayoutError, match="not created yet") as e:
        LayoutPlanner(spec(nix_device="/dev/mapper/crypted", boot_device=None),
                      pending_facts("full", ["/dev/mapper/crypted"], ALL_DIRS)).plan()
    assert ROOT + "/nix" in str(e.value)


def test_unresolvable_devices_fail():
    with pytest.raises(MountLayoutError, match="nix_device"):
        plan("empty", spec_kw=dict(nix_device="/dev/nonexistent"))
    with pytest.raises(MountLayoutError, match="swap_device"):
        plan("full", spec_kw=dict(swap_device="LABEL=nope"))


@pytest.mark.parametrize("kw,match", [
    (dict(root="/"), "other than /"),
    (dict(root="relative"), "absolute"),
    (dict(persist=["/nix/store"]), "lies on /nix"),
    (dict(persist=["/boot/x"]), "lies on /boot"),
    (dict(persist=["etc"]), "absolute"),
    (dict(persist=["/"]), "absolute"),
    (dict(persist=["/var/lib", "/var/lib/nixos"]), "inside"),
    (dict(persist=["/var/log", "/var/log/"]), "twice"),
    (dict(persist_dir="/persist"), "below it"),
    (dict(mode="u=rwx"), "octal"),
    (dict(mode="888"), "octal"),
    (dict(nix_device=None), "nix_device is required"),
])
def test_spec_validation(kw, match):
    with pytest.raises(MountLayoutError, match=match):
        spec(**kw)


def test_mode_accepts_four_digits():
    assert spec(mode="0755").mode == 0o755
    assert spec(mode="1755").mode == 0o1755


def test_mode_1777_is_refused_because_mountinfo_would_not_show_it():
    # the kernel omits mode= for 1777, so the module's own tmpfs would look like /dev/shm on the next run
    with pytest.raises(MountLayoutError, match="kernel's default"):
        spec(mode="1777")


# -- unmounted --------------------------------------------------------------------------------------------------
def unplan(name, **kw):
    args = dict(root=ROOT, state="unmounted")
    args.update(kw)
    return LayoutPlanner(Spec(**args), facts(name)).plan()


def test_unmount_full_in_reverse_order_with_swapoff():
    p = LayoutPlanner(Spec(root=ROOT, state="unmounted", swap_device=SWAP), facts("full", swaps={SWAP_NO})).plan()
    assert argvs(p) == [
        ["swapoff", SWAP],
        ["umount", ROOT + "/var/log"],
        ["umount", ROOT + "/etc/nixos"],
        ["umount", ROOT + "/boot"],
        ["umount", ROOT + "/nix"],
        ["umount", ROOT],
    ]


def test_unmount_empty_is_a_no_op():
    assert unplan("empty").steps == []


def test_unmount_stacked_unmounts_every_layer():
    p = unplan("stacked_same")
    assert argvs(p).count(["umount", ROOT + "/nix"]) == 2


def test_unmount_refuses_foreign_mounts_below_root():
    # persist list without /var/log: the /var/log bind is not ours to remove
    with pytest.raises(MountLayoutError, match="did not make"):
        unplan("full", persist=["/etc/nixos"])


def test_unmount_refuses_a_root_that_is_not_tmpfs():
    with pytest.raises(MountLayoutError, match="refusing to unmount"):
        LayoutPlanner(Spec(root=ROOT, state="unmounted"), hand_facts("")).plan()


# -- which roots are acceptable: absent, an empty directory, or a tmpfs this module mounted -----------------------
def root_facts(root_line, extra=""):
    """A hand-written table: the host's /, ``root_line`` (a mount on ROOT) and ``extra`` lines."""
    text = "27 1 254:0 / / rw - ext4 /dev/vda rw\n" + root_line % ROOT.replace(" ", "\\040") + "\n" + extra
    return Facts(MountTable.from_text(text), devno={NIX: NIX_NO, BOOT: BOOT_NO}, memtotal_kib=MEM,
                 dirs=ALL_DIRS, modes={ROOT: 0o755})


OURS = "46 27 0:41 / %s rw,relatime - tmpfs tmpfs rw,size=25600k,mode=755"


def test_our_tmpfs_is_accepted():
    p = LayoutPlanner(spec(size="25m"), root_facts(OURS)).plan()
    assert [s.kind for s in p.steps if s.kind in ("remount", "chmod")] == []


@pytest.mark.parametrize("line, why", [
    ("46 27 0:41 / %s rw,nosuid,nodev - tmpfs tmpfs rw,size=25600k,mode=755", "mounted nosuid,nodev"),
    ("46 27 0:41 / %s rw,relatime - tmpfs tmpfs rw,size=25600k", "kernel's default 1777"),
    ("46 27 0:41 / %s rw,relatime - tmpfs none rw,size=25600k,mode=755", "its source is 'none'"),
    ("46 27 0:41 / %s rw,relatime - tmpfs tmpfs rw,size=25600k,mode=700,uid=1000,gid=100", "uid=1000,gid=100"),
    ("46 27 0:41 / %s ro,relatime - tmpfs tmpfs ro,size=25600k,mode=755", "mounted ro"),
])
def test_a_tmpfs_this_module_did_not_mount_is_refused(line, why):
    with pytest.raises(MountLayoutError, match="did not mount: .*%s" % re.escape(why)):
        LayoutPlanner(spec(size="25m"), root_facts(line)).plan()


def test_a_tmpfs_an_overlay_uses_is_refused():
    # a live ISO's /nix/.rw-store: a plain tmpfs, but the upper layer of the /nix/store overlay
    overlay = "60 27 0:50 / /nix/store rw - overlay overlay rw,lowerdir=/iso,upperdir=%s/store,workdir=%s/work\n" % (
        ROOT, ROOT)
    with pytest.raises(MountLayoutError, match="the overlay mount on /nix/store uses a directory on it"):
        LayoutPlanner(spec(size="25m"), root_facts(OURS, overlay)).plan()


def test_a_tmpfs_with_other_mounts_below_it_is_refused():
    below = "47 46 7:1 / %s/srv rw - ext4 /dev/loop1 rw\n" % ROOT.replace(" ", "\\040")
    with pytest.raises(MountLayoutError, match="other file systems are mounted below it .*/srv"):
        LayoutPlanner(spec(size="25m"), root_facts(OURS, below)).plan()


def test_a_non_empty_directory_is_refused_an_empty_one_is_not():
    empty = Facts(table("empty"), devno={NIX: NIX_NO, BOOT: BOOT_NO}, memtotal_kib=MEM, dirs=[ROOT])
    assert LayoutPlanner(spec(), empty).plan().steps[0].kind == "mount"
    full = Facts(table("empty"), devno={NIX: NIX_NO, BOOT: BOOT_NO}, memtotal_kib=MEM, dirs=[ROOT],
                 root_entries=["etc", "home", "a", "b", "c", "d"])
    with pytest.raises(MountLayoutError, match=r"is not empty \(a, b, c, d, etc, ...\)"):
        LayoutPlanner(spec(), full).plan()
