# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Running commands from a module: C locale, a record of what ran, failures a person can act on.

Every module of this collection shells out through :class:`CommandRunner` so that
  * parsed output is always in the C locale (``LC_ALL=C``),
  * the module can return the exact commands it ran (or, in check mode, would run),
  * secrets go on stdin (``data=``) and never into argv or the returned command list,
  * every argument reaches the program exactly as given: no shell, and none of ``run_command``'s expansion of
    ``$VAR``, ``${VAR}`` or ``~`` (``expand_user_and_vars=False``), so ``commands`` is exactly what ran,
  * text that goes into a result is valid UTF-8 whatever bytes a program printed (:func:`safe_text`).
"""

from __future__ import annotations

import shlex

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

C_LOCALE = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": "C"}


def safe_text(value, errors="replace"):
    """``value`` as text Ansible can return: bytes that are not UTF-8 (kept as lone surrogates by a
    ``surrogateescape`` decode, or given as bytes) become U+FFFD (``errors="backslashreplace"``: ``\\xNN``).
    Anything but text and bytes is returned as it is."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", errors)
    return value


def safe_result(value):
    """A result (dicts, lists, tuples of text and scalars) with every string made valid UTF-8 (:func:`safe_text`),
    keys included."""
    if isinstance(value, dict):
        return dict((safe_result(k), safe_result(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [safe_result(v) for v in value]
    return safe_text(value)


class CommandError(ModuleError):
    """A command failed (or a precondition of one is missing); carries what fail_json needs: ``msg``, ``rc``,
    ``stdout``, ``stderr`` and ``cmd`` (the shell-quoted argv: secrets go on stdin, never into it), then any
    ``result`` fields."""

    def __init__(self, msg, rc=None, stdout="", stderr="", cmd=None, **result):
        super().__init__(msg, **result)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.cmd = cmd

    def fail_fields(self):
        fields = dict(msg=self.msg, rc=self.rc, stdout=self.stdout, stderr=self.stderr, cmd=self.cmd)
        fields.update(self.result)
        return safe_result(fields)


class CommandRunner:
    """Thin wrapper over AnsibleModule.run_command; the only way this collection's modules run a program.

    ``commands`` lists, as shell-quoted strings, every command that changed (or in check mode
    would change) something: :meth:`run` lists what it runs, :meth:`would_run` what check mode skips.
    Read-only probes are run with ``record=False``. argv goes to the
    program literally: ``run_command`` would otherwise expand ``$VAR``, ``${VAR}`` and ``~`` in
    every argument, so what ran would differ from what ``commands`` shows.
    """

    def __init__(self, module):
        self.module = module
        self.commands = []

    @staticmethod
    def quote(argv):
        """argv as one shell-quoted line (a byte that is not UTF-8 shows as ``\\xNN``)."""
        return safe_text(" ".join(shlex.quote(str(a)) for a in argv), "backslashreplace")

    def find(self, name, required=True):
        path = self.module.get_bin_path(name, required=False, opt_dirs=["/sbin", "/usr/sbin", "/usr/local/sbin"])
        if path is None and required:
            raise CommandError("Required command %r was not found on the target's PATH; install it on the live system." % name)
        return path

    def run(self, argv, data=None, check_rc=True, record=True, environ=None, binary_data=False, what=None,
            shown=None):
        """Run argv (a list), return (rc, stdout, stderr). Raises CommandError when check_rc and rc != 0.

        ``record``: list it in ``commands`` (a read-only probe is run with ``record=False``). ``shown``: the argv
        to list (and to name in a failure) instead of ``argv``, for a command whose arguments must be masked; the
        one that runs is ``argv``."""
        argv = [str(a) for a in argv]
        env = dict(C_LOCALE)
        if environ:
            env.update(environ)
        quoted = self.quote(argv if shown is None else shown)
        if record:
            self.commands.append(quoted)
        rc, out, err = self.module.run_command(argv, data=data, environ_update=env, binary_data=binary_data,
                                               use_unsafe_shell=False, expand_user_and_vars=False)
        if check_rc and rc != 0:
            what = what or argv[0]
            raise CommandError(
                "%s failed (rc=%s): %s" % (what, rc, (err or out).strip() or "no output"),
                rc=rc, stdout=out, stderr=err, cmd=quoted,
            )
        return rc, out, err

    def would_run(self, argv):
        """Check mode: list a command in ``commands`` without running it (a command that really runs goes through
        :meth:`run`, which lists it)."""
        self.commands.append(self.quote([str(a) for a in argv]))
