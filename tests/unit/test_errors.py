# SPDX-License-Identifier: GPL-3.0-or-later
"""The one error base: every error a module raises for a person to fix is a ModuleError, interlocks are Refused,
and the errors callers catch as ValueError still are ValueErrors."""
import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils import (
    _alignment, _blockdev, _command, _files, _flake, _gpt, _hwconfig, _identity, _layout, _luks, _mountinfo,
    _nixfile, _paths, _persist, _step_gpt_partition,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError, Refused

VALUE_ERRORS = [
    _alignment.AlignmentError, _blockdev.BlockDeviceError, _files.FilesError, _flake.FlakeRefError,
    _gpt.GptLayoutError, _identity.IdentityError, _mountinfo.MountInfoError, _nixfile.NixSyntaxError,
    _paths.PathError, _persist.ExcludeError,
]
OTHER_ERRORS = [
    _command.CommandError, _hwconfig.HwconfigError, _hwconfig.SwapLookupError, _layout.MountLayoutError,
    _luks.LuksError,
]
REFUSALS = [_step_gpt_partition.DiskRefused, _luks.LuksRefused]


@pytest.mark.parametrize("cls", VALUE_ERRORS + OTHER_ERRORS + REFUSALS, ids=lambda c: c.__name__)
def test_every_error_is_a_module_error_with_its_message(cls):
    args = ("the disk is busy; close it first", "in_use") if cls in REFUSALS else ("the disk is busy; close it first",)
    error = cls(*args)
    assert isinstance(error, ModuleError)
    assert str(error) == error.msg == "the disk is busy; close it first"
    assert error.fail_fields()["msg"] == "the disk is busy; close it first"


@pytest.mark.parametrize("cls", VALUE_ERRORS, ids=lambda c: c.__name__)
def test_errors_callers_catch_as_value_error_still_are(cls):
    with pytest.raises(ValueError):
        raise cls("bad value")


@pytest.mark.parametrize("cls", REFUSALS, ids=lambda c: c.__name__)
def test_refusals_are_refused(cls):
    assert issubclass(cls, Refused)


def test_result_fields_are_merged_with_msg():
    error = ModuleError("root is not empty", path="/mnt", changed=False)
    assert error.fail_fields() == {"msg": "root is not empty", "path": "/mnt", "changed": False}
    error.msg = "root /mnt is not empty"
    assert str(error) == "root /mnt is not empty" and error.fail_fields()["msg"] == "root /mnt is not empty"


def test_a_refusal_returns_its_reason_as_refused():
    assert Refused("no", "system_disk", device="/dev/sda").fail_fields() == {
        "msg": "no", "refused": "system_disk", "device": "/dev/sda"}
    assert "refused" not in Refused("no").fail_fields()
    assert _step_gpt_partition.DiskRefused("no", "identity").fail_fields()["refused"] == "identity"


def test_a_command_error_returns_rc_stdout_stderr_cmd_and_valid_text():
    error = _command.CommandError("mkfs failed", rc=1, stdout="out", stderr=b"caf\xe9".decode("utf-8", "surrogateescape"),
                                  cmd="mkfs.ext4 /dev/vda3", log_tail=["x"])
    assert error.fail_fields() == {"msg": "mkfs failed", "rc": 1, "stdout": "out", "stderr": "caf\ufffd",
                                   "cmd": "mkfs.ext4 /dev/vda3", "log_tail": ["x"]}


def test_nix_syntax_error_keeps_its_position():
    error = _nixfile.NixSyntaxError("unexpected character", "a\nbc", 3)
    assert (error.line, error.column) == (2, 2) and str(error) == "unexpected character at line 2, column 2"
