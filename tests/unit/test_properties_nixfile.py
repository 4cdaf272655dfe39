# SPDX-License-Identifier: GPL-3.0-or-later
"""Properties of the Nix writer and of the hardware-configuration.nix patch, for generated files (Hypothesis,
profile in tests/conftest.py).

The generated files are what nixos-generate-config writes and what people make of it: every way to define
``fileSystems."/"`` and ``fileSystems."/boot"`` (a set per mount point, one ``fileSystems = { ... }``, attribute
paths field by field), existing options with repeated keys, wrappers (``lib.mkDefault``, parentheses), zero to
three swap devices with and without ``randomEncryption``, unrelated attributes holding any text, ``#`` and ``/* */``
comments, tabs, CRLF line breaks, everything on one line. Evaluating needs ``nix-instantiate`` (Debian package
nix-bin, a test dependency); each example evaluates its files in one run, and the number of examples is bounded.
"""
import json
import shutil
import subprocess
import tempfile

import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from test_hwconfig_patch import BOOT, PARTUUIDS, ROOT, check_merged, evaluate_all, resolve  # tests/unit
from ansible_collections.impermanent.nixos.plugins.module_utils import _hwconfig as hw
from ansible_collections.impermanent.nixos.plugins.module_utils import _nixfile as nix
from ansible_collections.impermanent.nixos.plugins.filter.nix_string import nix_string as nix_string_filter

needs_nix = pytest.mark.skipif(shutil.which("nix-instantiate") is None,
                               reason="nix-instantiate (Debian package nix-bin) is not installed: cannot evaluate")
# a nix-instantiate run costs ~50 ms: the properties that evaluate run a fifth of the profile's examples
EVALUATING = settings(max_examples=max(10, settings.default.max_examples // 5),
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# generating a file costs ~20 ms: a third of the profile's examples
GENERATED = settings(max_examples=max(10, settings.default.max_examples // 3),
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Nix strings hold any Unicode text but NUL
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=20)
SPICY = st.sampled_from(["${x}", "$${", "\\${", "''", "\"", "\\", "\r\n", "\t", "#", "/*", "*/", "$", "{", "é"])
STRINGS = st.lists(st.one_of(TEXT, SPICY), max_size=4).map("".join)


def nix_eval_json(expr):
    proc = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr], capture_output=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    return json.loads(proc.stdout)


@needs_nix
@settings(max_examples=max(5, settings.default.max_examples // 10))  # up to 24 literals per nix-instantiate run
@given(values=st.lists(STRINGS, min_size=1, max_size=12))
@example(values=["${", "$${x}", "\\${", "a\\", "''${"])
def test_string_literals_evaluate_to_their_text(values):
    """nix_string (the hwconfig patch, persist_audit's snippet) and the nix_string filter (the templates) write a
    literal that Nix evaluates to exactly the text, whatever it holds: quotes, backslashes, ``${``, ``$${``, line
    breaks, any Unicode."""
    got = nix_eval_json("[ %s ]" % " ".join(f(v) for v in values for f in (nix.nix_string, nix_string_filter)))
    assert got == [v for v in values for _ in (0, 1)]


# -- generated hardware-configuration.nix ---------------------------------------------------------------------
ROOT_OPTS = ["defaults", "size=50%", "size=2G", "mode=755", "mode=0700", "noatime", "size=25%", "nr_inodes=1m"]
BOOT_OPTS = ["fmask=0077", "dmask=0077", "umask=0022", "umask=0077", "noatime"]
SWAP_EXTRAS = ["", "", 'randomEncryption = { cipher = "aes-xts-plain64"; }', "randomEncryption.enable = false",
               "priority = 5"]
SWAP_DEVICES = sorted(PARTUUIDS) + ["/dev/disk/by-partuuid/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"]


class Writer:
    """Lays out bindings the way the drawn style says: indentation, line break, one line, comments."""

    def __init__(self, draw):
        self.draw = draw
        self.oneline = draw(st.integers(0, 9)) == 0
        self.nl = " " if self.oneline else draw(st.sampled_from(["\n", "\n", "\r\n"]))
        self.indent = "" if self.oneline else draw(st.sampled_from(["  ", "    ", "\t"]))

    def comment(self):
        kind = self.draw(st.sampled_from(["", "", "", "hash", "block"]))
        body = self.draw(st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=10)).replace("*/", "")
        if kind == "hash" and not self.oneline:
            return "# %s%s" % (body, self.nl)
        if kind == "block" or kind == "hash":
            return "/* %s */ " % body.replace("/*", "")
        return ""

    def wrap(self, value):
        how = self.draw(st.sampled_from(["", "", "mkDefault", "mkForce", "paren"]))
        if how == "paren":
            return "(%s)" % value
        if how:
            return "lib.%s %s" % (how, value)
        return value

    def attrset(self, bindings, depth):
        pad = self.indent * (depth + 1)
        inner = "".join("%s%s%s;%s" % (pad, self.comment(), b, self.nl) for b in bindings)
        return "{%s%s%s}" % (self.nl, inner, self.indent * depth)


def str_list(w, items):
    return w.wrap("[ %s ]" % " ".join(nix.nix_string(i) for i in items))


@st.composite
def mount_fields(draw, w, mountpoint):
    fields = [("device", nix.nix_string("none" if mountpoint == "/" else "/dev/disk/by-uuid/3A1B-9C2D")),
              ("fsType", nix.nix_string("tmpfs" if mountpoint == "/" else "vfat"))]
    opts = draw(st.one_of(st.none(), st.lists(st.sampled_from(ROOT_OPTS if mountpoint == "/" else BOOT_OPTS),
                                              max_size=4)))
    if opts is not None:
        fields.append(("options", str_list(w, opts)))
    if draw(st.booleans()):
        fields.append(("neededForBoot", "true"))
    return draw(st.permutations(fields))


@st.composite
def hwconfigs(draw):
    """(text, swap devices) of a generated hardware-configuration.nix."""
    w = Writer(draw)
    style = draw(st.sampled_from(["per-mount", "one-set", "paths"]))
    body = []
    others = draw(st.lists(st.tuples(st.lists(st.sampled_from(["a", "b", "c"]), max_size=2), st.one_of(
        STRINGS.map(nix.nix_string), st.integers(0, 99).map(str), st.sampled_from(["true", "false"]),
        st.lists(STRINGS, max_size=3).map(lambda v: "[ %s ]" % " ".join(nix.nix_string(s) for s in v)),
    )), max_size=4))
    for i, (path, value) in enumerate(others):
        body.append((".".join(["other%d" % i] + path), w.wrap(value) if value[0] != "[" else value))
    mounts = {mp: draw(mount_fields(w, mp)) for mp in ("/", "/boot")}
    mounts["/nix"] = [("device", '"/dev/disk/by-label/nix"'), ("fsType", '"ext4"')]
    if style == "one-set":
        sets = ["%s = %s" % (nix.nix_string(mp), w.attrset(["%s = %s" % f for f in fields], 2))
                for mp, fields in mounts.items()]
        body.append(("fileSystems", w.attrset(sets, 1)))
    else:
        for mp, fields in mounts.items():
            key = "fileSystems.%s" % nix.nix_string(mp)
            if style == "paths" and mp != "/nix":
                body.extend(("%s.%s" % (key, name), value) for name, value in fields)
            else:
                body.append((key, w.attrset(["%s = %s" % f for f in fields], 1)))
    swaps = draw(st.lists(st.sampled_from(SWAP_DEVICES), max_size=3))
    entries = []
    for device in swaps:
        extra = draw(st.sampled_from(SWAP_EXTRAS))
        entries.append(w.attrset(["device = %s" % nix.nix_string(device)] + ([extra] if extra else []), 2))
    body.append(("swapDevices", "[ %s ]" % " ".join(entries)))
    body = draw(st.permutations(body))
    header = "# Do not modify this file!%s{ config, lib, pkgs, modulesPath, ... }:%s%s" % (
        w.nl if not w.oneline else "\n", w.nl, w.nl)
    imports = 'imports = [ (modulesPath + "/installer/scan/not-detected.nix") ]'
    text = header + w.attrset([imports] + ["%s = %s" % b for b in body], 0) + w.nl
    return text, swaps


def patch(text):
    return hw.plan_patch(text, "hw.nix", swap_random_encryption=True, resolve_partuuid=resolve)


@GENERATED
@given(generated=hwconfigs())
def test_patching_twice_is_patching_once(generated):
    """For any generated file: the patch applies, and patching its result changes nothing (patch o patch = patch)."""
    text, _swaps = generated
    once = patch(text)
    twice = patch(once.after)
    event("the file needed a change" if once.changed else "the file was patched already")
    assert not twice.changed and twice.after == once.after


@needs_nix
@EVALUATING
@given(generated=hwconfigs())
def test_the_patched_file_evaluates_and_changes_only_what_it_must(generated):
    """For any generated file, the patched text parses and evaluates with nix-instantiate; the root and /boot
    options hold the requested ones (one value per requested key) and keep every other option; each swap device
    becomes its by-partuuid path with random encryption enabled and keeps its other fields; every other attribute
    evaluates to what it was before."""
    text, swaps = generated
    plan = patch(text)
    with tempfile.TemporaryDirectory(prefix="hwconfig-props-") as directory:
        old, new = evaluate_all(directory, [text, plan.after])
    check_merged(old["fileSystems"]["/"].get("options", []), new["fileSystems"]["/"]["options"], ROOT)
    check_merged(old["fileSystems"]["/boot"].get("options", []), new["fileSystems"]["/boot"]["options"], BOOT)
    assert len(new["swapDevices"]) == len(old["swapDevices"]) == len(swaps)
    for device, before, after in zip(swaps, old["swapDevices"], new["swapDevices"]):
        assert after["device"] == (device if device.startswith(hw.BY_PARTUUID) else
                                   hw.BY_PARTUUID + PARTUUIDS[device])
        encryption = after["randomEncryption"]
        assert encryption is True or encryption["enable"] is True
        if isinstance(before.get("randomEncryption"), dict):
            assert {k: v for k, v in encryption.items() if k != "enable"} == \
                {k: v for k, v in before["randomEncryption"].items() if k != "enable"}
        assert {k: v for k, v in after.items() if k not in ("device", "randomEncryption")} == \
            {k: v for k, v in before.items() if k not in ("device", "randomEncryption")}
    for tree in (old, new):
        tree["fileSystems"]["/"].pop("options", None)
        tree["fileSystems"]["/boot"].pop("options", None)
        tree.pop("swapDevices")
    assert new == old


def _mutations(draw, text):
    """Delete, duplicate or insert a few characters of text."""
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 8)))
        how = draw(st.sampled_from(["delete", "duplicate", "insert"]))
        if how == "delete":
            text = text[:i] + text[j:]
        elif how == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i] + draw(st.sampled_from(list("{}[]();=\".$'#/*\\\n:@?") + ["${", "''", "in", "let"])) \
                + text[i:]
    return text


@st.composite
def damaged(draw):
    return _mutations(draw, draw(hwconfigs())[0])


NESTED = ["[" * 2000, "(" * 2000 + "1", "{ a = " * 1000, "x: " * 2000, "-" * 3000 + "1", "!" * 3000 + "true"]


@GENERATED
@given(text=st.one_of(st.text(max_size=200),
                      st.binary(max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape")),
                      damaged()))
@example(text=NESTED[0])  # each of these raised RecursionError (a crash with a traceback) before
@example(text=NESTED[1])
@example(text=NESTED[2])
@example(text=NESTED[3])
@example(text=NESTED[4])
@example(text=NESTED[5])
def test_any_bytes_give_a_patch_or_a_clear_error(text):
    """Whatever the file holds (any text, bytes that are not UTF-8 as the module reads them, a generated file with
    characters deleted, doubled or inserted, nesting thousands deep), the patch either applies (and then patching
    again changes nothing) or raises HwconfigError: never another exception."""
    try:
        plan = patch(text)
    except hw.HwconfigError as e:
        event("HwconfigError")
        assert str(e)
        return
    event("patched")
    assert not patch(plan.after).changed
