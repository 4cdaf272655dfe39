# SPDX-License-Identifier: GPL-3.0-or-later
"""The disk role shows, in check mode, the mkfs commands community.general.filesystem would run for devices that do
not exist yet (roles/disk/vars/main.yml, disk_mkfs_argv). That table restates how community.general.filesystem
builds its command (``[MKFS] + MKFS_FORCE_FLAGS + opts.split() + [dev]``); this test reads the installed
community.general and fails when the two disagree, so the plan cannot silently drift from what a real run does."""
import os

import pytest
import yaml

filesystem = pytest.importorskip("ansible_collections.community.general.plugins.modules.filesystem")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def role_file(*parts):
    with open(os.path.join(REPO, "roles", "disk", *parts), encoding="utf-8") as f:
        return yaml.safe_load(f)


class _FakeFilesystem(object):
    """Records the command Filesystem.create would run, instead of running it."""

    check_mode = False

    def __init__(self):
        self.ran = []

    def get_bin_path(self, name, required=False):
        return name

    def run_command(self, cmd, check_rc=False, **_kw):
        self.ran.append(cmd)
        return 0, "", ""


MKFS_ARGV = role_file("vars", "main.yml")["disk_mkfs_argv"]


@pytest.mark.parametrize("fstype", sorted(MKFS_ARGV))
def test_plan_argv_is_what_community_general_runs(fstype):
    module = _FakeFilesystem()
    klass = filesystem.FILESYSTEMS[fstype]
    klass(module).create(opts=["-L", "lbl"], dev="/dev/x")
    assert module.ran == [MKFS_ARGV[fstype] + ["-L", "lbl", "/dev/x"]]


def test_every_fstype_the_role_creates_is_in_the_table():
    tasks = open(os.path.join(REPO, "roles", "disk", "tasks", "main.yml"), encoding="utf-8").read()
    for fstype in ("vfat", "swap", "ext4"):
        assert "'fstype': '%s'" % fstype in tasks
        assert fstype in MKFS_ARGV
