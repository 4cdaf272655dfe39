# SPDX-License-Identifier: GPL-3.0-or-later
"""benchmarks/bench_provision.py without a guest: the report's RATIO and MODULE CALLS lines on fabricated timings,
the module-call count, and the bench_task_actions callback on a controller-only playbook."""
import argparse
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import bench_provision as bp  # noqa: E402


def run(wall, changed=None, calls=None, profile=(("a task", 1.0),), controller_calls=None):
    rec = {"wall": wall, "rc": 0, "load": 1.0, "log": "x.log", "profile": list(profile), "module_calls": calls,
           "controller_module_calls": controller_calls}
    if changed is not None:
        rec["changed"] = changed
    return rec


def bench(tmp_path, results):
    b = bp.Bench(argparse.Namespace(keep_logs=str(tmp_path)))
    b.results = results
    return b


def seed_runs():
    return [dict(run(w), steps=[("parted", 2.0)]) for w in (12.0, 10.0, 11.0)]


def test_report_prints_the_ratio_and_module_call_lines(tmp_path, capsys):
    b = bench(tmp_path, {
        bp.SEED: seed_runs(),
        "provision.yml": [run(w, 7, 18, controller_calls=7) for w in (66.0, 64.0, 65.0)],
        "provision.yml rerun": [run(w, 0, 13, controller_calls=6) for w in (33.0, 31.0, 32.0)],
        "provision.yml mitogen": [run(w, 7, 18) for w in (20.0, 18.0, 19.0)],
        "provision.yml mitogen rerun": [run(w, 0, 13) for w in (8.0, 9.0, 8.5)],
        "provision, pipelining off": [run(w, 7, 18) for w in (90.0, 91.0, 92.0)],
    })
    b.report("a test machine")
    lines = capsys.readouterr().out.splitlines()
    # medians: seed 11, provision 65, rerun 32, mitogen 19, mitogen rerun 8.5
    assert "RATIO provision.yml / seed script = 5.91" in lines
    assert "RATIO provision.yml rerun / seed script = 2.91" in lines
    assert "RATIO provision.yml mitogen / seed script = 1.73" in lines
    assert "RATIO provision.yml mitogen rerun / seed script = 0.77" in lines
    assert "MODULE CALLS first run = 18, rerun = 13" in lines
    assert "  (delegated to the controller, not counted above: first run = 7, rerun = 6)" in lines
    assert ("GOALS (x seed script) provision.yml <= 3.0: NOT met; provision.yml rerun <= 1.0: NOT met; "
            "provision.yml mitogen <= 1.3: NOT met; provision.yml mitogen rerun <= 0.7: NOT met; "
            "module calls first run <= 8: NOT met; module calls rerun <= 2: NOT met") in lines
    assert any(line.startswith("RATIO provision.yml mitogen ") and line.endswith("/ provision.yml = 0.29")
               for line in lines), lines
    assert not any("WARNING" in line for line in lines)
    # the report is kept next to the logs, and results.json reads back into the same report
    assert (tmp_path / "report.txt").read_text().splitlines() == lines
    again = bench(tmp_path, json.loads((tmp_path / "results.json").read_text())["results"])
    again.report("a test machine")
    assert capsys.readouterr().out.splitlines() == lines


def test_report_without_mitogen_or_call_counts(tmp_path, capsys):
    b = bench(tmp_path, {
        bp.SEED: seed_runs(),
        "provision.yml": [run(w, 7) for w in (66.0, 64.0, 65.0)],
        "provision.yml rerun": [run(w, 1) for w in (13.0, 11.0, 10.0)],
    })
    b.report("a test machine")
    lines = capsys.readouterr().out.splitlines()
    assert "RATIO provision.yml rerun / seed script = 1.00" in lines
    assert ("GOALS (x seed script) provision.yml <= 3.0: NOT met; provision.yml rerun <= 1.0: met; "
            "module calls first run <= 8: n/a; module calls rerun <= 2: n/a") in lines
    assert "MODULE CALLS first run = n/a, rerun = n/a" in lines  # results.json of a run before the count existed
    assert not any("provision.yml mitogen" in line or "under Mitogen" in line for line in lines)
    assert "WARNING: provision.yml rerun was not idempotent (changed=[1, 1, 1])" in lines


def test_report_prints_the_floors_from_the_probes(tmp_path, capsys):
    b = bench(tmp_path, {
        bp.SEED: seed_runs(),
        "provision.yml": [run(w, 7, 1) for w in (25.0, 24.0, 26.0)],
        "provision.yml rerun": [run(w, 0, 1) for w in (9.0, 9.0, 9.0)],
        "provision.yml mitogen": [run(w, 7, 1) for w in (25.0, 25.0, 25.0)],
        "provision.yml mitogen rerun": [run(w, 0, 1) for w in (10.0, 10.0, 10.0)],
        bp.SSH_TRUE: [run(w) for w in (1.0, 1.0, 1.0)],
        bp.ONE_MODULE: [run(w) for w in (2.0, 3.0, 2.5)],
        bp.ONE_MODULE_MITOGEN: [run(w) for w in (4.4, 4.3, 4.5)],
    })
    b.report("a test machine")
    lines = capsys.readouterr().out.splitlines()
    # seed 11, ssh true 1: first run (probe + 10) / 11, rerun probe / 11; only the Mitogen first run's floor is
    # above its goal (14.4 / 11 = 1.31 > 1.3)
    assert ("FLOORS (x seed script; first run: 1-ping playbook + seed script - ssh true; rerun: 1-ping playbook) "
            "provision.yml >= 1.14; provision.yml rerun >= 0.23; "
            "provision.yml mitogen >= 1.31 (above its goal 1.3); provision.yml mitogen rerun >= 0.40") in lines


def test_report_without_probes_prints_no_floors(tmp_path, capsys):
    b = bench(tmp_path, {bp.SEED: seed_runs(), "provision.yml": [run(w, 7, 1) for w in (25.0, 24.0, 26.0)]})
    b.report("a test machine")
    assert not any(line.startswith("FLOORS") for line in capsys.readouterr().out.splitlines())


def test_module_calls_counts_target_modules_per_item():
    rows = [
        {"task": "probe", "action": "ansible.builtin.raw", "status": "ok"},
        {"task": "facts", "action": "ansible.builtin.set_fact", "status": "ok"},
        {"task": "check", "action": "assert", "status": "ok"},
        {"task": "args", "action": "ansible.builtin.validate_argument_spec", "status": "ok"},
        {"task": "part", "action": "impermanent.nixos.gpt_partition", "status": "changed"},
        {"task": "mkfs", "action": "community.general.filesystem", "status": "changed"},
        {"task": "mkfs", "action": "community.general.filesystem", "status": "ok"},
        {"task": "mkfs", "action": "community.general.filesystem", "status": "skipped"},
        {"task": "look", "action": "ansible.legacy.stat", "status": "skipped"},
        {"task": "gen", "action": "ansible.builtin.command", "status": "failed"},
        {"task": "down", "action": "ansible.builtin.command", "status": "unreachable"},
        {"task": "keys", "action": "ansible.builtin.command", "status": "changed", "delegated_to": "localhost"},
        {"task": "keys", "action": "ansible.builtin.set_fact", "status": "ok", "delegated_to": "localhost"},
    ]
    assert bp.module_calls(rows) == 4
    assert bp.module_calls(rows, delegated=True) == 1


def test_callback_records_actions_and_items(tmp_path):
    playbook = tmp_path / "p.yml"
    playbook.write_text("""\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: A fact
      ansible.builtin.set_fact:
        x: 1
    - name: A loop
      ansible.builtin.command: "true"
      loop: [1, 2, 3]
      when: item != 2
    - name: Never
      ansible.builtin.command: "true"
      when: false
    - name: Raw
      ansible.builtin.raw: "true"
    - name: Delegated
      ansible.builtin.command: "true"
      delegate_to: localhost
""")
    out = tmp_path / "actions.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CALLBACK_PLUGINS=bp.CALLBACK_PLUGINS, ANSIBLE_CALLBACKS_ENABLED="bench_task_actions",
               BENCH_TASK_ACTIONS=str(out), ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="0")
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(ansible_playbook):
        pytest.skip("no ansible-playbook next to %s" % sys.executable)
    proc = subprocess.run([ansible_playbook, "-i", "localhost,", str(playbook)], env=env, capture_output=True,
                          text=True, check=False, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())
    assert [(r["task"], r["action"], r["status"], r["delegated_to"]) for r in rows] == [
        ("A fact", "ansible.builtin.set_fact", "ok", None),
        ("A loop", "ansible.builtin.command", "changed", None),
        ("A loop", "ansible.builtin.command", "skipped", None),
        ("A loop", "ansible.builtin.command", "changed", None),
        ("Never", "ansible.builtin.command", "skipped", None),
        ("Raw", "ansible.builtin.raw", "changed", None),
        ("Delegated", "ansible.builtin.command", "changed", "localhost"),
    ]
    assert bp.module_calls(rows) == 2 and bp.module_calls(rows, delegated=True) == 1
