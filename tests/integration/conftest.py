# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures for the host integration layer: loop disks and ansible-playbook runs.

Every test drives the installed collection by FQCN through ``ansible-playbook`` (or ``ansible``) on
localhost, exactly as a user would, and reads results from the ``ansible.posix.json`` callback.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

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
