# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/molecule-why-failed.sh on Molecule output as Molecule writes it (ANSI colours, the "│" border, lines
wrapped at the terminal width)."""
import os
import subprocess

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "molecule-why-failed.sh")
BORDER = "  \x1b[2m\x1b[32m\u2502\x1b[0m "

# The end of a verify step that failed (from a real run of molecule/reinstall, shortened).
VERIFY = """\
../default/tests/test_install.py ..F..............
>       assert 0 <= unused_tail < max(g, MiB), unused_tail
E       AssertionError: 1073741824
E       assert 1073741824 < 1048576
../default/tests/test_install.py:153: AssertionError
=========================== short test summary info
  ============================
FAILED
  ../default/tests/test_install.py::test_partition_sizes[ansible://impermane
  nt-mol-reinstall]
================= 1 failed, 28 passed, 1 deselected in 30.18s
"""
# A side_effect task that failed.
FATAL = """\
TASK [Run the kill chain against the guest (several minutes)]
\x1b[0;31mfatal: [localhost]: FAILED! => {"changed": true, "cmd": ["python3", "kill_chain.py"], "rc": 1,\x1b[0m
  "stderr": "kill_chain: the run resuming from the kill at task 15 failed (rc=2)"}
PLAY RECAP
"""
MOLECULE = "CRITICAL Verifier tests failed\nERROR    Molecule executed 1 scenario (1 failed)\n"


def molecule_log(path, text):
    path.write_text("".join(BORDER + line + "\n" for line in text.splitlines()) + MOLECULE, encoding="utf-8")
    return path


def why(tmp_path, log, since):
    proc = subprocess.run(["bash", SCRIPT, "demo", str(log), str(tmp_path), str(since)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_pytest_failure_shows_the_failed_test_and_the_assertion(tmp_path):
    since = tmp_path / ".started"
    since.touch()
    lines = why(tmp_path, molecule_log(tmp_path / "m.log", VERIFY), since)
    assert lines[0] == "run-molecule: why demo failed (its whole output: %s)" % (tmp_path / "m.log")
    assert lines[1:] == [
        "  | E       AssertionError: 1073741824",
        "  | E       assert 1073741824 < 1048576",
        "  | ../default/tests/test_install.py:153: AssertionError",
        "  | FAILED",
        "  |   ../default/tests/test_install.py::test_partition_sizes[ansible://impermane",
    ]


def test_ansible_failure_shows_the_fatal_line_and_its_continuation(tmp_path):
    since = tmp_path / ".started"
    since.touch()
    lines = why(tmp_path, molecule_log(tmp_path / "m.log", FATAL), since)
    assert lines[1].startswith('  | fatal: [localhost]: FAILED! => {"changed": true')
    assert "\x1b" not in lines[1] and "\u2502" not in lines[1]
    assert lines[2] == '  |   "stderr": "kill_chain: the run resuming from the kill at task 15 failed (rc=2)"}'
    assert len(lines) == 3


def test_failure_txt_written_during_the_scenario_is_shown_and_an_older_one_is_not(tmp_path):
    old = tmp_path / "old-chain"
    old.mkdir()
    (old / "failure.txt").write_text("kill_chain: from an earlier scenario\n")
    os.utime(old / "failure.txt", (1000, 1000))
    since = tmp_path / ".started"
    since.touch()
    os.utime(since, (2000, 2000))
    new = tmp_path / "resume-kill-chain"
    new.mkdir()
    (new / "failure.txt").write_text("".join("line %d\n" % i for i in range(1, 10)))
    lines = why(tmp_path, molecule_log(tmp_path / "m.log", FATAL), since)
    assert "  %s:" % (new / "failure.txt") in lines
    shown = lines[lines.index("  %s:" % (new / "failure.txt")) + 1:]
    assert shown == ["  | line %d" % i for i in range(1, 7)]
    assert not any("earlier scenario" in line for line in lines)


def test_a_log_without_errors_gives_only_the_heading(tmp_path):
    since = tmp_path / ".started"
    since.touch()
    log = molecule_log(tmp_path / "m.log", "TASK [x]\nok: [h]\n")
    assert why(tmp_path, log, since) == ["run-molecule: why demo failed (its whole output: %s)" % log]
