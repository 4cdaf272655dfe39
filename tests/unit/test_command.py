# SPDX-License-Identifier: GPL-3.0-or-later
"""CommandRunner through a real AnsibleModule: arguments reach the program exactly as given, commands is what ran,
and text in results is valid UTF-8 whatever bytes a program printed."""
import json
import os

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.impermanent.nixos.plugins.module_utils._command import (
    CommandError, CommandRunner, safe_result, safe_text,
)


@pytest.fixture
def runner(monkeypatch, tmp_path):
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": {
        "_ansible_tmpdir": str(tmp_path), "_ansible_remote_tmp": str(tmp_path)}})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
    monkeypatch.setenv("HOME", "/home/expanded")
    monkeypatch.setenv("IMPERMANENT_X", "expanded-x")
    return CommandRunner(basic.AnsibleModule(argument_spec={}))


LITERAL = ["https://cache.example.org/$HOME", "${IMPERMANENT_X}", "~", "~/x", "/var/lib/$HOME", "$(id)", "a b",
           "*", "`id`;true"]


def test_arguments_reach_the_program_exactly_as_given(runner):
    printf = runner.find("printf")
    rc, out, _err = runner.run([printf, "%s\\n"] + LITERAL)
    assert rc == 0
    assert out.splitlines() == LITERAL
    assert "/home/expanded" not in out and "expanded-x" not in out


def test_commands_is_exactly_what_ran(runner):
    printf = runner.find("printf")
    runner.run([printf, "%s", "--option", "substituters", "https://cache.example.org/$HOME"])
    assert runner.commands == ["%s %%s --option substituters 'https://cache.example.org/$HOME'" % printf]


def test_a_failure_names_the_literal_command(runner):
    ls = runner.find("ls")
    with pytest.raises(CommandError) as e:
        runner.run([ls, "/nonexistent/$HOME"])
    assert e.value.cmd == "%s '/nonexistent/$HOME'" % ls
    assert "/nonexistent/$HOME" in e.value.stderr and "/home/expanded" not in e.value.stderr


def test_output_that_is_not_utf8_becomes_valid_text_in_a_failure(runner, tmp_path):
    script = tmp_path / "latin1"
    script.write_bytes(b"#!/bin/sh\nprintf '\\351t\\351\\n' >&2\nexit 3\n")
    os.chmod(str(script), 0o755)
    with pytest.raises(CommandError) as e:
        runner.run([str(script)])
    failed = e.value.fail_fields()
    assert failed["stderr"] == "\ufffdt\ufffd\n" and "\ufffdt\ufffd" in failed["msg"]
    json.dumps(failed).encode("utf-8")


def test_safe_text_and_safe_result():
    latin1 = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert safe_text(latin1) == "caf\ufffd"
    assert safe_text(latin1, "backslashreplace") == "caf\\xe9"
    assert safe_text(b"caf\xe9") == "caf\ufffd"
    assert safe_text("caf\u00e9") == "caf\u00e9" and safe_text(3) == 3 and safe_text(None) is None
    result = safe_result({"diff": {"before": latin1, latin1: [latin1, 1, True]}, "changed": False})
    assert result == {"diff": {"before": "caf\ufffd", "caf\ufffd": ["caf\ufffd", 1, True]}, "changed": False}
    assert CommandRunner.quote(["echo", latin1]) == "echo 'caf\\xe9'"


def test_shown_is_what_commands_and_a_failure_list_in_place_of_the_argv_that_runs(runner):
    sh = runner.find("sh")
    secret = ["-c", "exit 0", "github.com=ghp_secret"]
    runner.run([sh] + secret, shown=[sh, "-c", "exit 0", "********"])
    with pytest.raises(CommandError) as e:
        runner.run([sh, "-c", "exit 4", "github.com=ghp_secret"], shown=[sh, "-c", "exit 4", "********"])
    assert runner.commands == ["%s -c 'exit 0' '********'" % sh, "%s -c 'exit 4' '********'" % sh]
    assert e.value.cmd == runner.commands[1] and "ghp_secret" not in str(e.value.fail_fields())


def test_would_run_lists_a_command_without_running_it(runner, tmp_path):
    marker = tmp_path / "made"
    runner.would_run([runner.find("touch"), str(marker)])
    assert runner.commands == ["%s %s" % (runner.find("touch"), marker)] and not marker.exists()
