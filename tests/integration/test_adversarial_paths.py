# SPDX-License-Identifier: GPL-3.0-or-later
"""Paths that try to lead the modules out of the target root, and roots that are not theirs to take.

Each case drives an installed module through `ansible localhost -m ...` like the other integration tests and
asserts the refusal (its message names the link, the file or the mount) and that what must not change did not:
the session's mount table (all of it: conftest gives the session a mount namespace of its own), the files
outside the root (they stand in for the live system), the bytes of the nix disk. Every mount a case makes, or a
module wrongly makes, is unmounted by a finalizer.
"""
import hashlib
import os
import stat
import subprocess
import uuid

import pytest

from conftest import LoopDisk, mount_point, mountinfo, run_module, unmount_below
from test_hwconfig_patch import PARTUUID_SWAP
from test_nixos_flake_install import FLAKE_NIX, git, install, scratch  # noqa: F401 (scratch is a fixture)
from test_persist_audit import DEFAULT_EXCLUDES, TYPE_CLASH_FULL, paths, rsync_answer, tree  # noqa: F401

TMPFS_ROOT = "impermanent.nixos.tmpfs_root"
HWCONFIG = "impermanent.nixos.hwconfig_patch"
AUDIT = "impermanent.nixos.persist_audit"


# -- what must not change -----------------------------------------------------------------------------------------
def snapshot(top):
    """Every entry below ``top`` (links not followed): type, mode, link target or content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = "link:" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            else:
                what = "dir" if stat.S_ISDIR(st.st_mode) else "other"
            out[os.path.relpath(path, top)] = (stat.S_IMODE(st.st_mode), what)
    return out


def disk_digest(device):
    subprocess.run(["sync"], check=False)
    h = hashlib.sha256()
    with open(device, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- tmpfs_root ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nix_device(tmp_path_factory):
    """One ext4 loop disk for every tmpfs_root case (each uses its own persist_dir on it)."""
    if os.geteuid() != 0:
        pytest.fail("the integration layer needs root and loop devices")
    disk = LoopDisk(tmp_path_factory.mktemp("adversarial") / "nix.img", 64 << 20)
    # no lazy initialisation: nothing but the module may write to the disk while a case compares its bytes
    subprocess.run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-L", "advnix",
                    disk.device], check=True)
    yield disk.device
    disk.detach()


class TemporaryMount:
    """``with TemporaryMount(device, path) as path``: the device mounted there for the block, unmounted after it."""

    def __init__(self, device, path):
        self.device, self.path = device, path

    def __enter__(self):
        os.makedirs(self.path, exist_ok=True)
        subprocess.run(["mount", self.device, self.path], check=True)
        return self.path

    def __exit__(self, *exc):
        subprocess.run(["umount", self.path], check=True)


class Arena:
    """A scratch directory with ROOT (absent until a case makes it) and LIVE, which stands in for the live system."""

    def __init__(self, base, nix):
        self.base = str(base)
        self.root = os.path.join(self.base, "root")
        self.live = os.path.join(self.base, "live")
        self.nix = nix
        self.on_nix = "adv-%s" % uuid.uuid4().hex[:8]   # PERSIST_DIR on the nix file system
        self.persist_dir = "/nix/" + self.on_nix
        for d in ("var/log", "etc/nixos", "var/lib/nixos"):
            os.makedirs(os.path.join(self.live, d))
        with open(os.path.join(self.live, "var/log/messages"), "w") as f:
            f.write("the live system's log\n")

    def args(self, **kw):
        out = dict(root=self.root, nix_device=self.nix, persist_dir=self.persist_dir, persist=["/etc/nixos"],
                   size="16m")
        out.update(kw)
        return out

    def run(self, check=False, **kw):
        return run_module(TMPFS_ROOT, self.args(**kw), check=check)

    def state(self):
        """The session's whole mount table (exact: it has a mount namespace of its own, see conftest), so that a
        mount a module makes anywhere, not only below the arena, is a change; and the live stand-in's files."""
        return mountinfo(), snapshot(self.live)


@pytest.fixture
def arena(tmp_path, nix_device):
    a = Arena(tmp_path, nix_device)
    yield a
    unmount_below(a.base)  # every mount a case made, or a module wrongly made; fails when one stays


def mounted_layout(arena):
    rc, res = arena.run()
    assert rc == 0 and res["changed"], res
    return res


def refused(arena, fragments, check_too=True, times=2, **kw):
    """Run (check mode first when ``check_too``, then ``times`` real runs): each fails with every fragment in
    its message and leaves the mount table and the live stand-in as they were."""
    before = arena.state()
    runs = ([True] if check_too else []) + [False] * times
    for check in runs:
        rc, res = arena.run(check=check, **kw)
        assert rc != 0 and res.get("failed"), (check, res)
        for fragment in fragments:
            assert fragment in res["msg"], (check, fragment, res["msg"])
        assert arena.state() == before, "check mode" if check else "real run"
    return res


LINKS_OUT = {
    "absolute": lambda a: a.live + "/var",
    "relative": lambda a: "../live/var",
    "dotdot-through-a-directory": lambda a: "etc/../../live/var",
}


@pytest.mark.parametrize("kind", sorted(LINKS_OUT))
def test_persist_path_through_a_link_out_of_root_is_refused_and_nothing_stacks(arena, kind):
    # the case: ROOT/var replaced by a link to a directory outside ROOT, then persist /var/log
    mounted_layout(arena)
    target = LINKS_OUT[kind](arena)
    os.symlink(target, os.path.join(arena.root, "var"))
    res = refused(arena, ["%s/var is a symbolic link to %s" % (arena.root, target)],
                  persist=["/etc/nixos", "/var/log"])
    assert "messages" in os.listdir(os.path.join(arena.live, "var/log"))
    assert res["commands"] == []


def test_chain_of_links_that_leaves_root_on_the_second_hop_is_refused(arena):
    mounted_layout(arena)
    os.symlink("hop", os.path.join(arena.root, "var"))                   # inside
    os.symlink(arena.live + "/var", os.path.join(arena.root, "hop"))     # then out
    # the link that leads out is named
    refused(arena, ["%s/hop is a symbolic link to %s/var, which is outside" % (arena.root, arena.live)],
            persist=["/etc/nixos", "/var/log"])


def test_link_that_stays_inside_root_is_refused_too(arena):
    # a mount through it would land on ROOT/elsewhere/log; the next run would not find it and stack another one
    mounted_layout(arena)
    os.makedirs(os.path.join(arena.root, "elsewhere/log"))
    os.symlink("elsewhere", os.path.join(arena.root, "var"))
    refused(arena, ["%s/var is a symbolic link to elsewhere" % arena.root, "real directories"],
            persist=["/etc/nixos", "/var/log"])


def test_link_loop_is_refused(arena):
    mounted_layout(arena)
    os.symlink("var2", os.path.join(arena.root, "var"))
    os.symlink("var", os.path.join(arena.root, "var2"))
    refused(arena, ["%s/var/log: too many levels of symbolic links" % arena.root],
            persist=["/etc/nixos", "/var/log"])


def test_persisted_directory_linked_to_the_live_system_is_refused(arena):
    # ROOT/PERSIST_DIR/var/lib/nixos -> the live system's: the bind would come from the live root disk
    mounted_layout(arena)
    source = os.path.join(arena.root, arena.persist_dir.lstrip("/"), "var/lib/nixos")
    os.makedirs(os.path.dirname(source))
    os.symlink(os.path.join(arena.live, "var/lib/nixos"), source)
    try:
        refused(arena, ["%s is a symbolic link to %s/var/lib/nixos" % (source, arena.live)],
                persist=["/etc/nixos", "/var/lib/nixos"])
        assert not os.path.exists(os.path.join(arena.root, "var/lib/nixos"))
    finally:
        os.unlink(source)  # on the shared nix disk


def test_link_on_the_nix_disk_is_refused_right_after_mounting_it(arena):
    # a fresh install onto a nix file system that already holds PERSIST_DIR/etc/nixos as a link to the live
    # system: invisible until nix is mounted, so the check runs again before anything is created or bound there
    with TemporaryMount(arena.nix, os.path.join(arena.base, "nixfs")) as nixfs:
        os.makedirs(os.path.join(nixfs, arena.on_nix, "etc"))
        os.symlink(os.path.join(arena.live, "etc/nixos"),
                   os.path.join(nixfs, arena.on_nix, "etc/nixos"))
    source = os.path.join(arena.root, arena.persist_dir.lstrip("/"), "etc/nixos")
    live = snapshot(arena.live)
    rc, res = arena.run()
    assert rc != 0, res
    assert "%s is a symbolic link to %s/etc/nixos, which is outside %s" % (source, arena.live, arena.root) \
        in res["msg"] and "Stopped before this step" in res["msg"], res["msg"]
    assert res["commands"][-1] == "mount %s %s/nix" % (arena.nix, arena.root)    # no bind, no mkdir after it
    assert [mount_point(line) for line in mountinfo(below=arena.base)] == [arena.root, arena.root + "/nix"]
    assert snapshot(arena.live) == live
    with TemporaryMount(arena.nix, os.path.join(arena.base, "nixfs")) as nixfs:
        os.unlink(os.path.join(nixfs, arena.on_nix, "etc/nixos"))


def test_persist_dir_linked_out_of_root_is_refused(arena):
    mounted_layout(arena)
    link = os.path.join(arena.root, "nix", "adv-link-%s" % uuid.uuid4().hex[:6])
    os.symlink(arena.live, link)
    try:
        refused(arena, ["%s is a symbolic link to %s, which is outside" % (link, arena.live)],
                persist_dir="/nix/" + os.path.basename(link))
        assert snapshot(arena.live).keys() == {"var", "var/log", "var/log/messages", "etc", "etc/nixos", "var/lib",
                                              "var/lib/nixos"}
    finally:
        os.unlink(link)


def test_a_file_where_a_mount_point_must_be_fails_in_check_mode_too(arena):
    mounted_layout(arena)
    with open(os.path.join(arena.root, "var"), "w") as f:
        f.write("not a directory\n")
    refused(arena, ["%s/var is not a directory (it is a regular file)" % arena.root],
            persist=["/etc/nixos", "/var/log"])
    with open(os.path.join(arena.root, "var")) as f:
        assert f.read() == "not a directory\n"


def test_root_that_is_a_regular_file_fails_in_check_mode_too(arena):
    with open(arena.root, "w") as f:
        f.write("keep me\n")
    digest = disk_digest(arena.nix)
    refused(arena, ["root: %s exists and is not a directory" % arena.root])
    with open(arena.root) as f:
        assert f.read() == "keep me\n"
    assert disk_digest(arena.nix) == digest


def test_root_below_a_regular_file_fails_in_check_mode_too(arena):
    with open(arena.root, "w") as f:
        f.write("keep me\n")
    below = os.path.join(arena.root, "sub")
    refused(arena, ["%s cannot be created: %s is not a directory" % (below, arena.root)], root=below)


def test_non_empty_directory_root_is_refused(arena):
    os.makedirs(os.path.join(arena.root, "home/user"))
    with open(os.path.join(arena.root, "home/user/notes"), "w") as f:
        f.write("mine\n")
    digest = disk_digest(arena.nix)
    before = snapshot(arena.root)
    refused(arena, ["%s is not empty (home)" % arena.root, "a tmpfs mounted over it would hide"])
    assert snapshot(arena.root) == before
    assert disk_digest(arena.nix) == digest


def test_root_given_as_a_link_to_a_non_empty_directory_is_refused(arena):
    link = os.path.join(arena.base, "root-link")
    os.symlink(arena.live, link)
    refused(arena, ["%s is not empty (etc, var)" % arena.live], root=link)


def test_dev_shm_is_refused_in_check_mode(nix_device):
    # the case, in check mode only: the real /dev/shm of the host running the tests
    if not os.path.ismount("/dev/shm"):
        pytest.skip("this host has no /dev/shm mount")
    before = (mountinfo(), stat.S_IMODE(os.stat("/dev/shm").st_mode))
    rc, res = run_module(TMPFS_ROOT, dict(root="/dev/shm", nix_device=nix_device, size="16m"), check=True)
    assert rc != 0 and "/dev/shm is a tmpfs that this module did not mount" in res["msg"], res
    assert res["commands"] == []
    assert (mountinfo(), stat.S_IMODE(os.stat("/dev/shm").st_mode)) == before


FOREIGN_TMPFS = {
    # name: (source, mount options, what the message says)
    "like /dev/shm (mode 1777)": ("tmpfs", "size=16m", "its mode is the kernel's default 1777"),
    "like /run (nosuid,nodev)": ("tmpfs", "nosuid,nodev,size=16m,mode=755", "it is mounted nosuid,nodev"),
    "like /run/user (uid, gid)": ("tmpfs", "size=16m,mode=700,uid=1000,gid=100",
                                  "it has options the module never sets (uid=1000,gid=100)"),
    "mounted by hand (source none)": ("none", "size=16m,mode=755", "its source is 'none'"),
    "read-only": ("tmpfs", "ro,size=16m,mode=755", "it is mounted ro"),
    "noexec": ("tmpfs", "noexec,size=16m,mode=755", "it is mounted noexec"),
}


@pytest.mark.parametrize("name", sorted(FOREIGN_TMPFS))
def test_tmpfs_this_module_did_not_mount_is_refused(arena, name):
    source, options, why = FOREIGN_TMPFS[name]
    os.makedirs(arena.root)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, source, arena.root], check=True)
    mode = stat.S_IMODE(os.stat(arena.root).st_mode)
    refused(arena, ["%s is a tmpfs that this module did not mount: %s" % (arena.root, why)], size="32m")
    assert stat.S_IMODE(os.stat(arena.root).st_mode) == mode     # no chmod
    assert os.listdir(arena.root) == []                           # no directory created on it


def test_tmpfs_with_another_file_system_below_it_is_refused(arena):
    os.makedirs(arena.root)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=755", "tmpfs", arena.root], check=True)
    os.makedirs(os.path.join(arena.root, "srv"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", os.path.join(arena.root, "srv")], check=True)
    refused(arena, ["other file systems are mounted below it (%s/srv)" % arena.root])
    assert os.listdir(arena.root) == ["srv"]


def test_tmpfs_an_overlay_uses_is_refused(arena):
    # a live ISO's /nix/.rw-store: a tmpfs that holds the upper layer of the /nix/store overlay
    os.makedirs(arena.root)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=755", "tmpfs", arena.root], check=True)
    for d in ("store", "work"):
        os.makedirs(os.path.join(arena.root, d))
    lower, merged = os.path.join(arena.base, "lower"), os.path.join(arena.base, "merged")
    os.makedirs(lower)
    os.makedirs(merged)
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=%s,upperdir=%s/store,workdir=%s/work"
                           % (lower, arena.root, arena.root), merged], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip("this host cannot mount an overlay file system: %s" % proc.stderr.strip())
    refused(arena, ["the overlay mount on %s uses a directory on it" % merged])


def test_mode_1777_is_refused_before_anything_is_made(arena):
    refused(arena, ["mode='1777' is the kernel's default"], mode="1777")
    assert not os.path.exists(arena.root)


def test_our_own_layout_is_still_accepted_and_unchanged_on_a_rerun(arena):
    # the control case: the rules above must not refuse what the module itself made
    mounted_layout(arena)
    before = arena.state()
    rc, res = arena.run()
    assert rc == 0 and res["changed"] is False and res["commands"] == [], res
    assert arena.state() == before
    rc, res = arena.run(state="unmounted")
    assert rc == 0 and res["changed"] is True, res
    assert mountinfo(below=arena.root) == []


# -- persist_audit: root or persist given as a link, the way rsync follows it -------------------------------------
def audit_matches_rsync(root, persist, direction="both"):
    rc, res = run_module(AUDIT, dict(root=os.fsdecode(root), persist=os.fsdecode(persist), direction=direction))
    assert rc == 0, res
    forward = rsync_answer(root, persist, DEFAULT_EXCLUDES) | {b"/" + TYPE_CLASH_FULL}
    assert paths(res["unpersisted"]) | paths(res["differing"]) == forward
    if direction == "both":
        assert paths(res["orphaned"]) | paths(res["orphaned_differing"]) == rsync_answer(persist, root,
                                                                                          DEFAULT_EXCLUDES)
    return res


@pytest.mark.parametrize("which", ["root", "persist", "both"])
def test_audit_follows_a_top_level_link_like_rsync(tree, which):
    root, persist = tree.root, tree.persist
    if which in ("root", "both"):
        root = os.path.join(tree.base, b"root-link")
        os.symlink(tree.root, root)
    if which in ("persist", "both"):
        persist = os.path.join(tree.base, b"persist-link")
        os.symlink(os.path.relpath(tree.persist, tree.base), persist)   # relative: resolved from the link's dir
    res = audit_matches_rsync(root, persist)
    unpersisted = set(r["path"] for r in res["unpersisted"])
    # what persist holds is not reported as missing; the top directory is compared as a directory
    assert "/etc/nixos-like/configuration.nix" not in unpersisted and "/etc/machine-id" in unpersisted
    assert [r for r in res["differing"] if r["path"] == "/"][0]["reasons"] != ["type"]
    # links below the top are still never followed
    assert "/etc/link-to-id" not in unpersisted


def test_audit_through_a_chain_of_links_and_the_snippet_name(tmp_path):
    real = tmp_path / "sys"
    for rel in ("etc/machine-id", "nix/persist/etc/kept"):   # one file missing from persist, one only there
        (real / rel).parent.mkdir(parents=True, exist_ok=True)
        (real / rel).write_text(rel)
    (tmp_path / "hop").symlink_to(real)
    (tmp_path / "mnt").symlink_to("hop")
    rc, res = run_module(AUDIT, dict(root=str(tmp_path / "mnt"), persist=str(real / "nix" / "persist"),
                                     direction="both", exclude=[]))
    assert rc == 0, res
    assert [r["path"] for r in res["unpersisted"]] == ["/etc/machine-id"]
    assert [r["path"] for r in res["orphaned"]] == ["/etc/kept"]
    assert res["not_walked"] == ["/nix/persist"]
    # persist lies inside the root the link leads to: named as the booted system sees it
    assert res["suggested_snippet"].startswith('environment.persistence."/nix/persist" = {')


def test_audit_of_a_dangling_link_names_it(tmp_path):
    (tmp_path / "root").symlink_to(tmp_path / "gone")
    rc, res = run_module(AUDIT, dict(root=str(tmp_path / "root"), persist=str(tmp_path)))
    assert rc != 0 and "root %r is not a directory" % str(tmp_path / "root") in res["msg"], res


# -- hwconfig_patch: the file below root, and everything on the way to it, stays below root -----------------------
@pytest.fixture
def hw(tmp_path):
    root, live = tmp_path / "root", tmp_path / "live"
    (root / "etc" / "nixos").mkdir(parents=True)
    (live / "etc" / "nixos").mkdir(parents=True)
    (live / "etc" / "nixos" / "hardware-configuration.nix").write_text(PARTUUID_SWAP, encoding="utf-8")
    return root, live


def hw_refused(root, live, path, fragment):
    before = snapshot(str(root)), snapshot(str(live))
    for check in (True, False):
        rc, res = run_module(HWCONFIG, {"path": str(path), "root": str(root)}, check=check)
        assert rc != 0 and fragment in res["msg"], (check, res)
        assert "was not written" in res["msg"] and res["changed"] is False
        assert (snapshot(str(root)), snapshot(str(live))) == before


def test_hwconfig_file_linked_to_the_live_system_is_refused(hw):
    root, live = hw
    link = root / "etc" / "nixos" / "hardware-configuration.nix"
    link.symlink_to(live / "etc" / "nixos" / "hardware-configuration.nix")
    hw_refused(root, live, link, "%s is a symbolic link to %s/etc/nixos/hardware-configuration.nix, which is "
                                 "outside %s" % (link, live, root))


def test_hwconfig_directory_linked_out_of_root_is_refused(hw):
    root, live = hw
    os.rmdir(root / "etc" / "nixos")
    (root / "etc" / "nixos").symlink_to("../../live/etc/nixos")
    hw_refused(root, live, root / "etc/nixos/hardware-configuration.nix",
               "%s/etc/nixos is a symbolic link to ../../live/etc/nixos, which leads out of %s" % (root, root))


def test_hwconfig_path_outside_root_is_refused(hw):
    root, live = hw
    hw_refused(root, live, live / "etc/nixos/hardware-configuration.nix", "is not below %s" % root)


def test_hwconfig_path_climbing_out_with_dotdot_is_refused(hw):
    root, live = hw
    hw_refused(root, live, "%s/etc/../../live/etc/nixos/hardware-configuration.nix" % root, "is not below %s" % root)


def test_hwconfig_link_loop_is_refused(hw):
    root, live = hw
    (root / "etc" / "a").symlink_to("b")
    (root / "etc" / "b").symlink_to("a")
    hw_refused(root, live, root / "etc/a/hardware-configuration.nix", "too many levels of symbolic links")


def test_hwconfig_link_inside_root_is_followed(hw):
    root, live = hw
    real = root / "nix" / "persist" / "etc" / "nixos" / "hardware-configuration.nix"
    real.parent.mkdir(parents=True)
    real.write_text(PARTUUID_SWAP, encoding="utf-8")
    link = root / "etc" / "nixos" / "hardware-configuration.nix"
    link.symlink_to("../../nix/persist/etc/nixos/hardware-configuration.nix")
    live_before = snapshot(str(live))
    rc, res = run_module(HWCONFIG, {"path": str(link), "root": str(root), "backup": False})
    assert rc == 0 and res["changed"], res
    assert link.is_symlink() and '"mode=755" ];' in real.read_text(encoding="utf-8")
    assert snapshot(str(live)) == live_before


# -- nixos_flake_install: the profile and a flake below root are reached without leaving it -------------------------
def test_nix_linked_to_the_live_system_is_refused_not_taken_for_an_installed_system(scratch):  # noqa: F811
    s = scratch()
    live_nix = os.path.join(s.base, "live-nix")
    os.makedirs(os.path.join(live_nix, "var/nix/profiles"))
    os.symlink("/nix/store/0000000000000000000000000000000-nixos-system",
               os.path.join(live_nix, "var/nix/profiles/system"))
    os.symlink(live_nix, os.path.join(s.root, "nix"))
    for check in (True, False):
        rc, res = install(s, check=check)
        assert rc != 0, res
        assert "%s/nix is a symbolic link to %s, which is outside %s" % (s.root, live_nix, s.root) in res["msg"]
        assert res.get("skipped_reason") is None
    assert s.calls() == [] and s.tracked() == ["configuration.nix", "flake.nix"]


def test_flake_below_root_linked_to_a_repository_outside_is_refused(scratch):  # noqa: F811
    s = scratch()
    os.makedirs(os.path.join(s.root, "etc"))
    link = os.path.join(s.root, "etc/nixos")
    os.symlink(s.flake, link)
    for flake in (link, "git+file://" + link):
        for check in (True, False):
            rc, res = install(s, check=check, flake=flake)
            assert rc != 0, res
            assert "%s is a symbolic link to %s, which is outside %s" % (link, s.flake, s.root) in res["msg"]
            assert res["staged"] == [] and res["commands"] == []
    assert s.calls() == [] and s.tracked() == ["configuration.nix", "flake.nix"]   # nothing staged out there


def test_flake_below_root_in_a_repository_outside_root_is_refused(scratch):  # noqa: F811
    s = scratch()
    git(s.base, "init", "-q", "-b", "main")          # the live system's repository around ROOT
    flake = os.path.join(s.root, "etc/nixos")
    os.makedirs(flake)
    with open(os.path.join(flake, "flake.nix"), "w") as f:
        f.write(FLAKE_NIX)
    for check in (True, False):
        rc, res = install(s, check=check, flake=flake)
        assert rc != 0, res
        assert "its git repository is %s, outside root" % os.path.realpath(s.base) in res["msg"], res["msg"]
    assert git(s.base, "ls-files") == ""                # nothing staged in the outer repository
    assert s.calls() == []
