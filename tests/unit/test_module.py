# SPDX-License-Identifier: GPL-3.0-or-later
"""The run harness through a real AnsibleModule: what a body returns or raises becomes the module's JSON result."""
import json
import os

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError, Refused
from ansible_collections.impermanent.nixos.plugins.module_utils import _runlock
from ansible_collections.impermanent.nixos.plugins.module_utils._module import run_module

SECRET = "correct horse battery staple"


@pytest.fixture(autouse=True)
def run_lock(monkeypatch, tmp_path):
    """The run lock in the test's own directory, not /run."""
    path = str(tmp_path / "run.lock")
    monkeypatch.setattr(_runlock, "RUN_LOCK", path)
    return path


def module(monkeypatch, tmp_path, check_mode=False, diff=False, writes=True, **params):
    """A module with ``params`` (all of type raw); one that ``writes`` has the run lock's option, lock_timeout 0."""
    if writes:
        params.setdefault("lock_timeout", 0)
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


def test_a_writing_module_runs_its_body_holding_the_run_lock_and_lets_go(monkeypatch, tmp_path, capsys, run_lock):
    seen = {}

    def body(run):
        with pytest.raises(_runlock.RunLockBusy):
            _runlock.acquire(True, 0, "a plan beside it")
        with open(run_lock) as f:
            seen["holder"] = f.read()
        return dict(changed=False)

    returned(capsys, module(monkeypatch, tmp_path), body)
    assert "(pid %d, since" % os.getpid() in seen["holder"]
    _runlock.acquire(False, 0, "the next module").release()


def test_check_mode_holds_a_shared_lock(monkeypatch, tmp_path, capsys, run_lock):
    open(run_lock, "w").close()

    def body(run):
        _runlock.acquire(True, 0, "another plan").release()
        with pytest.raises(_runlock.RunLockBusy):
            _runlock.acquire(False, 0, "a writer")
        return dict(changed=True)

    assert returned(capsys, module(monkeypatch, tmp_path, check_mode=True), body)["changed"] is True


def test_a_busy_lock_fails_before_the_body_reads_anything(monkeypatch, tmp_path, capsys):
    other = _runlock.acquire(False, 0, "impermanent.nixos.install_plan")
    called = []

    def body(run):
        called.append(True)
        return dict(changed=True)

    result = returned(capsys, module(monkeypatch, tmp_path), body, failed=dict(device="/dev/vdb"))
    other.release()
    assert called == []
    assert result["failed"] is True and result["refused"] == "busy" and result["device"] == "/dev/vdb"
    assert result["lock_holder"].startswith("impermanent.nixos.install_plan (pid ")
    assert result["msg"].startswith("another run is working on this host: impermanent.nixos.install_plan")
    assert result["commands"] == []


def test_a_module_that_only_reads_takes_no_lock(monkeypatch, tmp_path, capsys):
    other = _runlock.acquire(False, 0, "impermanent.nixos.install_plan")

    def body(run):
        return dict(changed=False, read=True)

    mod = module(monkeypatch, tmp_path, writes=False)
    assert returned(capsys, mod, body)["read"] is True
    other.release()


def test_a_body_that_fails_lets_go_of_the_lock(monkeypatch, tmp_path, capsys):
    def body(run):
        raise ModuleError("no")

    assert returned(capsys, module(monkeypatch, tmp_path), body)["msg"] == "no"
    _runlock.acquire(False, 0, "the next module").release()
