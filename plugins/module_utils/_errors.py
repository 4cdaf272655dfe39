# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The one error base of this collection's modules.

Every exception a module raises for something a person must fix derives from :class:`ModuleError`: the message
names the value and the fix, and ``result`` holds fields the failed task returns beside ``msg`` (merged into
``fail_json`` by :func:`._module.run_module`). :class:`Refused` marks the interlocks: a refusal to touch a disk,
a device or a path that must not be touched, whatever the options say; its ``reason`` is returned as ``refused``
when given.

Errors that callers (or the pure code's own tests) catch as ``ValueError`` keep ``ValueError`` as a second base.
"""

from __future__ import annotations


class ModuleError(Exception):
    """Something a person must fix; ``msg`` says what and how, ``result`` holds extra fields of the failed task."""

    def __init__(self, msg="", **result):
        super().__init__(msg)
        self.msg = msg if isinstance(msg, str) else str(msg)
        self.result = result

    def __str__(self):
        # msg may be reworded after the error was raised (a caller that knows more explains it better)
        return self.msg

    def fail_fields(self):
        """The fields of the failed task: ``result``, then ``msg``."""
        fields = dict(self.result)
        fields["msg"] = self.msg
        return fields


class Refused(ModuleError):
    """An interlock: the module refuses to touch something, whatever the options say. Nothing was written.

    ``reason`` (a short word such as ``system_disk`` or ``in_use``) is returned as ``refused`` when given.
    """

    def __init__(self, msg="", reason=None, **result):
        if reason is not None:
            result["refused"] = reason
        super().__init__(msg, **result)
        self.reason = reason
