# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Install plan filters: install_plan_text (documented in install_plan_text.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.impermanent.nixos.plugins.module_utils._plan_text import plan_lines


def install_plan_text(result, steps, diff=False):
    """``plan | install_plan_text(steps)``: the lines of an install_plan result, in install order."""
    if not isinstance(result, dict) or not isinstance(steps, list):
        raise AnsibleFilterError("install_plan_text: give the registered result of impermanent.nixos.install_plan "
                                 "and, as the argument, the steps it was given")
    try:
        return plan_lines(steps, result, diff=bool(diff))
    except (KeyError, TypeError) as e:
        raise AnsibleFilterError("install_plan_text: not an install_plan result (%s)" % e)


class FilterModule(object):
    def filters(self):
        return {"install_plan_text": install_plan_text}
