# SPDX-License-Identifier: GPL-3.0-or-later
"""The one Plan/Step type tmpfs_root and luks_open share."""
from ansible_collections.impermanent.nixos.plugins.module_utils._layout import MountPlan
from ansible_collections.impermanent.nixos.plugins.module_utils._luks import LuksPlan, LuksStep
from ansible_collections.impermanent.nixos.plugins.module_utils._plan import Plan, Step


def test_a_plan_is_changed_by_a_step_that_writes_only():
    plan = Plan()
    assert plan.changed is False
    plan.add("verify", why="check the key", writes=False)
    assert plan.changed is False and plan.kinds == ["verify"]
    plan.add("open", "/dev/vda3", ["cryptsetup", "open"], why="map it")
    assert plan.changed is True and plan.kinds == ["verify", "open"]


def test_a_step_as_a_result():
    assert Step("mkdir", "/mnt/nix", why="mount point").as_dict() == {
        "kind": "mkdir", "target": "/mnt/nix", "why": "mount point"}
    assert Step("mount", "/mnt", ["mount", "-t", "tmpfs", "tmpfs", "/mnt"]).as_dict()["argv"][-1] == "/mnt"


def test_the_modules_plans_are_plans():
    mounts, luks = MountPlan(), LuksPlan()
    assert isinstance(mounts, Plan) and mounts.expected == [] and mounts.warnings == []
    luks.add("verify", "check mode: test the key")
    assert isinstance(luks.steps[0], LuksStep) and luks.changed is False and luks.formats is False
    luks.add("format", "blank device")
    assert luks.changed is True and luks.formats is True
