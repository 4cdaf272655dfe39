# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures for the host integration layer: a mount namespace of its own, loop disks, ansible-playbook runs.

Every test drives the installed collection by FQCN through ``ansible-playbook`` (or ``ansible``) on
localhost, exactly as a user would, and reads results from the ``ansible.posix.json`` callback.

The session runs in a private copy of the host's mount namespace (``pytest_configure`` below): ansible and the
modules inherit it, so they mount where the tests look, the mounts of other processes on the host never show up in
``/proc/self/mountinfo`` here, and nothing mounted here shows up on the host. Loop devices, swap, device-mapper and
sysfs are not per namespace: tests filter those to their own devices.
"""
import ctypes
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils._mountinfo import lines, parse_mountinfo_line

MOUNTINFO = "/proc/self/mountinfo"
CLONE_NEWNS = 0x00020000  # <sched.h>
MS_REC = 0x4000  # <sys/mount.h>
MS_PRIVATE = 1 << 18
# the mount namespace this session made for itself, once it is in it
OWN_NAMESPACE = []
# a descriptor of the namespace the session started in (the host's), for tests of the namespace itself
HOST_NAMESPACE_FD = []


def _mount_namespace():
    return os.readlink("/proc/self/ns/mnt")


def enter_private_mount_namespace():
    """Move this process into a new mount namespace (a copy of the current one) and make every mount in it
    private, so that no mount or unmount propagates in or out. Only the calling thread moves: the process must
    have no other thread yet (at pytest_configure it has none)."""
    threads = os.listdir("/proc/self/task")
    if len(threads) != 1:
        raise OSError(errno.EINVAL, "the process has %d threads: only one would change mount namespace" % len(threads))
    host = _mount_namespace()
    host_fd = os.open("/proc/self/ns/mnt", os.O_RDONLY)  # not inherited unless passed on (pass_fds)
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(os, "unshare"):  # Python 3.12
        os.unshare(os.CLONE_NEWNS)
    elif libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "unshare(CLONE_NEWNS): %s" % os.strerror(err))
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "mount --make-rprivate /: %s" % os.strerror(err))
    own = _mount_namespace()
    if own == host:
        raise OSError(errno.EINVAL, "still in the mount namespace %s after unshare" % host)
    shared = [line for line in _read_mountinfo() if " shared:" in line.split(" - ")[0]]
    if shared:
        raise OSError(errno.EINVAL, "mounts still shared with the host after --make-rprivate: %s" % shared)
    OWN_NAMESPACE.append(own)
    HOST_NAMESPACE_FD.append(host_fd)


def pytest_configure(config):
    """The whole session, and every ansible run it starts, in a mount namespace of its own (see the module's
    docstring). Without root the tests that mount fail with their own message, and whole-table reads with
    mountinfo()'s."""
    if os.geteuid() != 0 or OWN_NAMESPACE:
        return
    try:
        enter_private_mount_namespace()
    except OSError as e:
        raise pytest.UsageError("the integration layer runs in a mount namespace of its own and could not make one "
                                "(it needs root with CAP_SYS_ADMIN): %s" % e)


# -- the mount table ------------------------------------------------------------------------------------------------
def _read_mountinfo():
    with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return [line for line in lines(f.read()) if line.strip()]


def devno(device):
    """``"major:minor"`` of a block device path (or the string itself when it is one already); None when absent."""
    if ":" in device and not device.startswith("/"):
        return device
    try:
        rdev = os.stat(device).st_rdev
    except OSError:
        return None
    return "%d:%d" % (os.major(rdev), os.minor(rdev))


def mount_point(line):
    """The mount point of a mountinfo line, the kernel's octal escapes undone."""
    return parse_mountinfo_line(line).target


def mountinfo(below=None, devices=None):
    """Lines of this session's mount table (/proc/self/mountinfo, in the kernel's order, ids included, so that an
    unmount and mount again is a change too).

    With ``below`` (a path) or ``devices`` (paths or "major:minor"), only the mounts a test owns: those whose mount
    point is ``below`` or under it, and those of a file system on one of ``devices``. With neither, the whole table:
    exact only because the session has a mount namespace of its own, which this asserts."""
    table = _read_mountinfo()
    if below is None and devices is None:
        assert OWN_NAMESPACE and _mount_namespace() == OWN_NAMESPACE[0], \
            "the whole mount table is only this session's in its own mount namespace (see pytest_configure)"
        return table
    top = os.path.normpath(os.path.abspath(str(below))) if below is not None else None  # links not followed
    numbers = set(filter(None, (devno(str(d)) for d in devices or ())))
    out = []
    for line in table:
        mount = parse_mountinfo_line(line)
        if top is not None and (mount.target == top or mount.target.startswith(top.rstrip("/") + "/")):
            out.append(line)
        elif "%d:%d" % mount.devno in numbers:
            out.append(line)
    return out


def unmount(points):
    """Unmount the mount points in ``points``, deepest first (one named twice, for two stacked mounts, twice)."""
    for point in sorted(points, key=lambda p: (p.count("/"), len(p)), reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)


def unmount_below(path):
    """Unmount everything at or below ``path``, deepest first; returns the mount points that were unmounted and
    fails when something stays mounted there."""
    done = []
    for _ in range(20):
        points = [mount_point(line) for line in mountinfo(below=path)]
        if not points:
            return done
        done += points
        unmount(points)
    raise AssertionError("mounts left below %s: %s" % (path, mountinfo(below=path)))


HERE = os.path.dirname(os.path.abspath(__file__))
PLAYBOOKS = os.path.join(HERE, "playbooks")


def _env():
    env = dict(os.environ)
    env.setdefault("ANSIBLE_PYTHON_INTERPRETER", sys.executable)
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    env["ANSIBLE_LOCALHOST_WARNING"] = "false"
    env["ANSIBLE_INVENTORY_UNPARSED_WARNING"] = "false"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_RETRY_FILES_ENABLED"] = "false"
    return env


class PlaybookResult:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        try:
            self.data = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            self.data = {"plays": [], "stats": {}}

    @property
    def stats(self):
        return self.data.get("stats", {}).get("localhost", {})

    @property
    def changed(self):
        return self.stats.get("changed", 0)

    @property
    def failed(self):
        return self.stats.get("failures", 0) + self.stats.get("unreachable", 0)

    def task(self, name):
        """The localhost result of the (last) task called ``name``."""
        found = None
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                if task["task"]["name"] == name:
                    found = task["hosts"].get("localhost")
        if found is None:
            raise KeyError("no task %r in playbook output:\n%s\n%s" % (name, self.stdout[-3000:], self.stderr[-3000:]))
        return found


def run_playbook(playbook, extra_vars=None, check=False, diff=False):
    """ansible-playbook PLAYBOOK against localhost; returns a PlaybookResult."""
    path = playbook if os.path.isabs(playbook) else os.path.join(PLAYBOOKS, playbook)
    argv = ["ansible-playbook", "-i", "localhost,", "-c", "local", path]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), check=False)
    return PlaybookResult(proc)


def run_tasks(path, tasks, play_vars=None):
    """ansible-playbook on localhost for one play of ``tasks`` (written as JSON to ``path``); a PlaybookResult."""
    play = {"name": "Test play", "hosts": "localhost", "gather_facts": False, "tasks": tasks}
    if play_vars:
        play["vars"] = play_vars
    with open(path, "w", encoding="utf-8") as f:
        json.dump([play], f)
    return run_playbook(str(path))


LIBVIRT_URI = "qemu:///system"
# where impermanent.nixos.libvirt_vm keeps a guest's files (its default libvirt_vm_images_dir)
LIBVIRT_IMAGES_DIR = "/var/lib/libvirt/images/impermanent-nixos"


def virsh(*args):
    return subprocess.run(["virsh", "-c", LIBVIRT_URI] + list(args), capture_output=True, text=True, check=False)


def require_libvirt():
    if os.geteuid() != 0 or virsh("version").returncode != 0:
        pytest.fail("needs root and a running libvirtd: run scripts/setup-host.sh")


def remove_guest(name):
    """Power off and undefine the domain ``name`` with its NVRAM, and remove the role's directory of it."""
    if name in virsh("list", "--all", "--name").stdout.split():
        virsh("destroy", name)
        virsh("undefine", "--nvram", name)
    shutil.rmtree(os.path.join(LIBVIRT_IMAGES_DIR, "vms", name), ignore_errors=True)


def run_module(module, args, check=False, extra_env=None):
    """One module call, the way `ansible localhost -m impermanent.nixos.X -a ...` does it; returns (rc, result)."""
    argv = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", module, "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    env = _env()
    env.update(extra_env or {})
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    data = PlaybookResult(proc).data
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            return proc.returncode, task["hosts"]["localhost"]
    raise AssertionError("no result from %s:\n%s\n%s" % (module, proc.stdout, proc.stderr))


def sha256_of(path, offset=0, length=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        remaining = length
        while True:
            chunk = f.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
                if remaining <= 0:
                    break
    return h.hexdigest()


class LoopDisk:
    """A sparse image attached with ``losetup -P`` (optionally with 4096-byte sectors)."""

    def __init__(self, image, size, sector_size=512):
        self.image = str(image)
        with open(self.image, "wb") as f:
            f.truncate(size)
        argv = ["losetup", "-f", "--show", "-P"]
        if sector_size != 512:
            argv += ["--sector-size", str(sector_size)]
        self.device = subprocess.run(argv + [self.image], capture_output=True, text=True, check=True).stdout.strip()
        self.size = size
        self.sector_size = sector_size

    def digest(self):
        """Hash of every byte of the disk (the images are small and sparse)."""
        subprocess.run(["sync"], check=False)
        return sha256_of(self.device)

    def detach(self):
        subprocess.run(["losetup", "-d", self.device], check=False)


def _can_loop():
    return os.geteuid() == 0 and shutil.which("losetup") is not None and os.path.exists("/dev/loop-control")


@pytest.fixture
def loopdisk(tmp_path):
    """Factory: loopdisk(size_bytes, sector_size=512) -> LoopDisk, detached at teardown."""
    if not _can_loop():
        pytest.fail("the integration layer needs root and loop devices (losetup, /dev/loop-control)")
    disks = []

    def make(size, sector_size=512):
        disk = LoopDisk(tmp_path / ("disk%d.img" % len(disks)), size, sector_size)
        disks.append(disk)
        return disk

    yield make
    for disk in disks:
        disk.detach()
