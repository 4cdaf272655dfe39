# SPDX-License-Identifier: GPL-3.0-or-later
"""tmpfs_root on this host: a tmpfs, a loop ext4 as nix (and one standing in for the ESP: vfat mounts do not work
here, the real vfat /boot is covered by the Molecule scenario), bind mounts and a loop swap under a scratch root."""
import json
import os
import subprocess
import uuid

import pytest

from conftest import mountinfo, run_module, run_playbook, unmount_below

MODULE = "impermanent.nixos.tmpfs_root"
DISK = 64 << 20


def findmnt(target):
    proc = subprocess.run(["findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN", "--mountpoint", target],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return []
    return json.loads(proc.stdout)["filesystems"]


def active_swaps():
    with open("/proc/swaps") as f:
        return [line.split()[0] for line in f.readlines()[1:]]


class Layout:
    def __init__(self, root, nix, boot, swap, swap_label):
        self.root, self.nix, self.boot, self.swap, self.swap_label = root, nix, boot, swap, swap_label

    def args(self, **kw):
        out = dict(root=self.root, nix_device=self.nix, boot_device=self.boot, boot_options=["nodev", "noexec"],
                   swap_device="LABEL=" + self.swap_label, size="64m")
        out.update(kw)
        return out


@pytest.fixture
def layout(loopdisk, tmp_path):
    root = str(tmp_path / "new root")
    nix, other, boot, swap = (loopdisk(DISK).device for _ in range(4))
    label = "impswap%s" % uuid.uuid4().hex[:8]
    subprocess.run(["mkfs.ext4", "-q", "-L", "nixos", nix], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "other", other], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "boot", boot], check=True)
    subprocess.run(["mkswap", "-q", "-L", label, swap], check=True)
    lay = Layout(root, nix, boot, swap, label)
    lay.other = other
    yield lay
    # always leave the host clean, whatever the test did
    subprocess.run(["swapoff", swap], capture_output=True, check=False)
    unmount_below(root)  # fails when something stays mounted there


def test_mounted_rerun_and_unmounted(layout):
    root = layout.root
    rc, res = run_module(MODULE, layout.args())
    assert rc == 0, res
    assert res["changed"] is True

    top = findmnt(root)
    assert len(top) == 1 and top[0]["fstype"] == "tmpfs"
    assert "mode=755" in top[0]["options"] and "size=65536k" in top[0]["options"]
    assert oct(os.stat(root).st_mode & 0o7777) == "0o755"
    nix = findmnt(root + "/nix")
    assert [m["source"] for m in nix] == [layout.nix]
    boot = findmnt(root + "/boot")
    assert [m["source"] for m in boot] == [layout.boot]
    assert "nodev" in boot[0]["options"] and "noexec" in boot[0]["options"]
    for p in ("etc/nixos", "var/log"):
        bind = findmnt("%s/%s" % (root, p))
        assert [m["source"] for m in bind] == ["%s[/persist/%s]" % (layout.nix, p)]
        assert bind[0]["maj:min"] == nix[0]["maj:min"]
    assert layout.swap in active_swaps()

    assert set(res["created_dirs"]) == set([root] + ["%s/%s" % (root, d) for d in (
        "boot", "nix", "etc/nixos", "var/log", "nix/persist/etc/nixos", "nix/persist/var/log")])
    assert [m["target"] for m in res["mounts"]] == [root, root + "/boot", root + "/etc/nixos", root + "/nix",
                                                    root + "/var/log"]
    assert res["commands"][0] == "mount -t tmpfs -o size=64m,mode=755 tmpfs '%s'" % root
    assert res["commands"][-1] == "swapon LABEL=%s" % layout.swap_label

    # a file written through the bind lands on the nix file system
    with open(os.path.join(root, "etc/nixos/configuration.nix"), "w") as f:
        f.write("{ }\n")
    assert os.path.exists(os.path.join(root, "nix/persist/etc/nixos/configuration.nix"))

    before = mountinfo()  # the session's whole mount table: exact in its own namespace (conftest)
    rc, res = run_module(MODULE, layout.args())
    assert rc == 0, res
    assert res["changed"] is False and res["commands"] == [] and res["created_dirs"] == []
    assert mountinfo() == before  # nothing stacked, nothing remounted, nothing mounted elsewhere

    rc, res = run_module(MODULE, layout.args(state="unmounted"))
    assert rc == 0, res
    assert res["changed"] is True
    assert [c.split()[0] for c in res["commands"]] == ["swapoff"] + ["umount"] * 5
    assert mountinfo(below=root) == []
    assert layout.swap not in active_swaps()
    assert res["mounts"] == []

    rc, res = run_module(MODULE, layout.args(state="unmounted"))
    assert rc == 0, res
    assert res["changed"] is False and res["commands"] == []


def test_playbook_second_run_changes_nothing(layout):
    extra = dict(root=layout.root, nix_device=layout.nix)
    first = run_playbook("tmpfs_layout.yml", extra)
    assert first.rc == 0 and first.changed == 1, first.stdout[-3000:]
    before = mountinfo()
    second = run_playbook("tmpfs_layout.yml", extra)
    assert second.rc == 0 and second.changed == 0, second.stdout[-3000:]
    assert mountinfo() == before
    assert len(mountinfo(below=layout.root)) == 4  # tmpfs, nix, two binds: no boot_device given, nothing on boot
    third = run_playbook("tmpfs_layout.yml", dict(extra, state="unmounted"))
    assert third.rc == 0 and third.changed == 1
    assert mountinfo(below=layout.root) == []


def test_check_mode_on_a_fresh_root_mounts_nothing(layout):
    before = mountinfo()
    rc, res = run_module(MODULE, layout.args(), check=True)
    assert rc == 0, res
    assert res["changed"] is True
    assert [c.split()[0] for c in res["commands"]] == ["mount"] * 5 + ["swapon"]
    assert mountinfo() == before
    assert not os.path.exists(layout.root)
    assert layout.swap not in active_swaps()
    assert layout.root + "/nix/persist/var/log" in res["created_dirs"]


def test_wrong_nix_device_is_refused(layout):
    rc, res = run_module(MODULE, layout.args(swap_device=None))
    assert rc == 0, res
    before = mountinfo()
    rc, res = run_module(MODULE, layout.args(swap_device=None, nix_device=layout.other))
    assert rc != 0
    assert "%s/nix is already mounted from %s" % (layout.root, layout.nix) in res["msg"]
    assert "nix_device=%s" % layout.other in res["msg"]
    assert res["commands"] == []
    assert mountinfo() == before


def test_size_change_remounts_and_mode_is_not_fought(layout):
    rc, res = run_module(MODULE, layout.args(swap_device=None))
    assert rc == 0, res
    etc_nixos = os.path.join(layout.root, "etc/nixos")
    os.chmod(etc_nixos, 0o777)  # what the flake role does while installing
    rc, res = run_module(MODULE, layout.args(swap_device=None, size="128m"))
    assert rc == 0, res
    assert res["changed"] is True
    assert res["commands"] == ["mount -o remount,size=128m '%s'" % layout.root]
    assert "size=131072k" in findmnt(layout.root)[0]["options"]
    assert len(findmnt(layout.root)) == 1
    assert os.stat(etc_nixos).st_mode & 0o7777 == 0o777
    # the root directory's mode is enforced, with chmod: the kernel ignores mode= on remount
    os.chmod(layout.root, 0o700)
    rc, res = run_module(MODULE, layout.args(swap_device=None, size="128m"))
    assert rc == 0 and res["commands"] == ["chmod 755 '%s'" % layout.root]
    assert os.stat(layout.root).st_mode & 0o7777 == 0o755
    assert os.stat(etc_nixos).st_mode & 0o7777 == 0o777


def test_stacked_mount_on_nix_is_not_stacked_again_and_is_torn_down(layout):
    rc, res = run_module(MODULE, layout.args(swap_device=None, boot_device=None))
    assert rc == 0, res
    nix = layout.root + "/nix"
    subprocess.run(["mount", "--bind", nix, nix], check=True)  # someone stacked the same fs again
    before = mountinfo()
    rc, res = run_module(MODULE, layout.args(swap_device=None, boot_device=None))
    assert rc == 0, res
    assert res["changed"] is False and any("stacked" in w for w in res.get("warnings", []))
    assert mountinfo() == before
    rc, res = run_module(MODULE, layout.args(swap_device=None, boot_device=None, state="unmounted"))
    assert rc == 0, res
    assert res["commands"].count("umount '%s'" % nix) == 2
    assert mountinfo(below=layout.root) == []
