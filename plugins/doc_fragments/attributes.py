# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The attributes every impermanent.nixos module shares (extends_documentation_fragment: impermanent.nixos.attributes).

A module still states its own O(check_mode) details and its O(diff_mode) support next to this.
"""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target, if not
      supported the action will be skipped.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff
      mode.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: linux
notes:
  - The module runs on the target with its Python (3.8 or newer, standard library only), usually the NixOS live
    system booted for the install; run it as root (C(become)).
"""
