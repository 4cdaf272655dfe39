# SPDX-License-Identifier: GPL-3.0-or-later
"""The run harness through a real AnsibleModule: what a body returns or raises becomes the module's JSON result."""
import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError, Refused
from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module

SECRET = "correct horse battery staple"


def module(monkeypatch, tmp_path, check_mode=False, diff=False, **params):
    args = dict(params, _ansible_tmpdir=str(tmp_path), _ansible_remote_tmp=str(tmp_path),
                _ansible_check_mode=check_mode, _ansible_diff=diff)
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
    spec = dict((name, dict(type="raw", no_log=name == "passphrase")) for name in params)
    return basic.AnsibleModule(argument_spec=spec, supports_check_mode=True)


def returned(capsys, mod, body, **kwargs):
    with pytest.raises(SystemExit):
        run_module(mod, body, **kwargs)
    result = json.loads(capsys.readouterr().out)
    result.pop("invocation", None)
    return result


def test_success_returns_the_body_result_and_the_commands_that_ran(monkeypatch, tmp_path, capsys):
    def body(run):
        assert run.check_mode is False and run.params["device"] == "/dev/vdb"
        run.runner.run([run.runner.find("true"), "x y"])
        run.runner.run([run.runner.find("true"), "probe"], record=False)
        run.warn("the disk grew")
        return dict(changed=True, device="/dev/vdb")

    mod = module(monkeypatch, tmp_path, device="/dev/vdb")
    warned = []
    monkeypatch.setattr(mod, "warn", warned.append)
    result = returned(capsys, mod, body)
    true = result["commands"][0].split()[0]
    assert result["commands"] == ["%s 'x y'" % true]
    assert result["changed"] is True and result["device"] == "/dev/vdb" and "failed" not in result
    assert warned == ["the disk grew"]


def test_check_mode_records_what_would_run_and_runs_nothing(monkeypatch, tmp_path, capsys):
    marker = tmp_path / "written"

    def body(run):
        assert run.check_mode is True
        argv = [run.runner.find("touch"), str(marker)]
        if run.check_mode:
            run.runner.would_run(argv)
        else:
            run.runner.run(argv)
        return dict(changed=True)

    result = returned(capsys, module(monkeypatch, tmp_path, check_mode=True), body)
    assert result["commands"] == ["%s %s" % (result["commands"][0].split()[0], marker)]
    assert not marker.exists()


def test_diff_mode_and_diff_field(monkeypatch, tmp_path, capsys):
    def body(run):
        assert run.diff_mode is True
        return dict(changed=True, diff=run.diff("a\n", "b\n", "/etc/x (before)", "/etc/x (after)"))

    result = returned(capsys, module(monkeypatch, tmp_path, diff=True), body, commands=False)
    assert result["diff"] == {"before": "a\n", "after": "b\n", "before_header": "/etc/x (before)",
                              "after_header": "/etc/x (after)"}
    assert "commands" not in result


def test_a_module_error_fails_with_the_fields_gathered_so_far(monkeypatch, tmp_path, capsys):
    def body(run):
        run.result.update(changed=False, path="/mnt/x")
        raise ModuleError("path is not absolute", hint="use /mnt")

    result = returned(capsys, module(monkeypatch, tmp_path), body, failed=dict(rc=None))
    result.pop("warnings", None)  # Ansible's, from modules other tests ran in this process
    assert result == {"failed": True, "msg": "path is not absolute", "changed": False, "path": "/mnt/x",
                      "hint": "use /mnt", "rc": None, "commands": []}


def test_a_refusal_fails_with_refused_and_the_failed_fields(monkeypatch, tmp_path, capsys):
    def body(run):
        raise Refused("/dev/sda is the disk the running system lives on; nothing was written.", "system_disk")

    result = returned(capsys, module(monkeypatch, tmp_path, device="/dev/sda"), body,
                      failed=dict(device="/dev/sda"))
    assert result["failed"] is True and result["refused"] == "system_disk" and result["device"] == "/dev/sda"
    assert result["msg"].startswith("/dev/sda is the disk")


def test_a_command_error_fails_with_rc_stdout_stderr_cmd_and_no_secret(monkeypatch, tmp_path, capsys):
    def body(run):
        run.result["opened"] = False
        sh = run.runner.find("sh")
        run.runner.run([sh, "-c", "read key; echo out; echo err >&2; exit 3"], data=SECRET, what="unlocking")

    result = returned(capsys, module(monkeypatch, tmp_path, passphrase=SECRET), body)
    assert result["failed"] is True and result["rc"] == 3 and result["opened"] is False
    assert result["stdout"] == "out\n" and result["stderr"] == "err\n"
    assert result["msg"] == "unlocking failed (rc=3): err"
    assert result["cmd"].endswith("-c 'read key; echo out; echo err >&2; exit 3'")
    assert result["commands"] == [result["cmd"]]
    assert SECRET not in json.dumps(result)


def test_a_command_error_field_from_the_body_wins(monkeypatch, tmp_path, capsys):
    def body(run):
        run.result["cmd"] = ["nixos-install", "--flake", "/f#h"]
        raise CommandError("nixos-install failed", rc=1, cmd="nixos-install --flake /f#h",
                           log_tail=["error: x"])

    result = returned(capsys, module(monkeypatch, tmp_path), body)
    assert result["cmd"] == "nixos-install --flake /f#h" and result["log_tail"] == ["error: x"]


def test_text_that_is_not_utf8_is_returned_as_valid_text(monkeypatch, tmp_path, capsys):
    latin1 = b"caf\xe9".decode("utf-8", "surrogateescape")

    def body(run):
        return dict(changed=False, before=latin1)

    assert returned(capsys, module(monkeypatch, tmp_path), body)["before"] == "caf\ufffd"


def test_any_other_exception_is_a_bug_and_propagates(monkeypatch, tmp_path):
    def body(run):
        raise KeyError("params")

    with pytest.raises(KeyError):
        run_module(module(monkeypatch, tmp_path), body)
