# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/provision.yml read as data: the rules about strategies that no single run shows.

Under Mitogen (README.md "Optional: Mitogen") every task, `raw` included, runs in a Python process on the target.
The play that looks for Python, and installs it on a live ISO that has none, must therefore run with the linear
strategy whatever ansible.cfg configures; the install itself must keep the configured strategy (Mitogen's speed-up
applies there)."""
import os

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(REPO, "playbooks", "provision.yml")


def plays():
    with open(PLAYBOOK) as f:
        return yaml.safe_load(f)


def tasks_of(play):
    """Every task of a play, the tasks inside blocks included."""
    todo = list(play.get("tasks", [])) + list(play.get("pre_tasks", [])) + list(play.get("post_tasks", []))
    while todo:
        task = todo.pop()
        todo.extend(task.get("block", []) + task.get("rescue", []) + task.get("always", []))
        yield task


def uses(task, action):
    return any(key in task for key in (action, "ansible.builtin." + action, "ansible.legacy." + action))


def test_every_play_with_a_raw_task_runs_with_the_linear_strategy():
    raw_plays = [p for p in plays() if any(uses(t, "raw") for t in tasks_of(p))]
    assert raw_plays, "provision.yml has no raw task: this test no longer guards anything, remove it"
    for play in raw_plays:
        assert play.get("strategy") == "linear", (
            "play %r runs raw tasks (before Python is known) but not with strategy: linear; under Mitogen they "
            "would need Python on the target" % play["name"])


def test_plays_without_raw_tasks_keep_the_configured_strategy():
    others = [p for p in plays() if not any(uses(t, "raw") for t in tasks_of(p))]
    assert others, "provision.yml has no play without raw tasks"
    for play in others:
        assert "strategy" not in play, (
            "play %r sets its strategy: the install must run under the one ansible.cfg configures (Mitogen's "
            "mitogen_linear, for example)" % play["name"])
