# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Nix filters: nix_string (documented in nix_string.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

# One implementation of Nix string quoting for the collection (persist_audit's snippets use it too).
from ansible_collections.impermanent.nixos.plugins.module_utils._nixfile import nix_string as _nix_string


def nix_string(value):
    """``'a"b${c}' | nix_string`` -> ``"a\\"b\\${c}"``: a double-quoted Nix string literal that reads back as value."""
    if value is None or isinstance(value, (dict, list, tuple, set)):
        raise AnsibleFilterError("nix_string: expected a string, number or boolean, got %s %r"
                                 % (type(value).__name__, value))
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value)
    if "\0" in text:
        raise AnsibleFilterError("nix_string: a Nix string cannot hold a NUL character (in %r)" % (text,))
    return _nix_string(text)


class FilterModule(object):
    def filters(self):
        return {"nix_string": nix_string}
