# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Plan the impermanent-layout edits of a hardware-configuration.nix (install step 8).

Pure code on top of :mod:`_nixfile`: :func:`plan_patch` takes the file's text and returns the patched
text as a set of splices, so every byte that is not edited -- comments, layout, other attributes -- stays
as it was. The only outside knowledge, the PARTUUID of a swap device, comes from a function handed in
(the module resolves it with blkid on the target; the tests feed a mapping).

Edits:
  * ``fileSystems."/"`` (must be a tmpfs) gets ``root_options`` merged into its ``options``;
  * ``fileSystems."<boot_mountpoint>"`` (vfat) gets ``boot_options`` merged into its ``options``;
  * with ``swap_random_encryption``, each ``swapDevices`` entry gets ``device = "/dev/disk/by-partuuid/…"``
    and ``randomEncryption.enable = true``.

Merging options: a requested ``key=value`` option replaces the existing option(s) with the same key
(``size=50%`` becomes ``size=25%``; extra duplicates of that key are dropped); a requested plain option
(``defaults``) is added when missing; everything else already in the list is kept, in place. For the vfat
``/boot`` a current nixos-generate-config writes ``fmask=0077`` and ``dmask=0077``; those have other keys
than ``umask`` and are kept next to the added ``umask=0077`` (all three are valid vfat options and agree).
"""

from __future__ import annotations

import textwrap

from ansible_collections.impermanent.nixos.plugins.module_utils._nixfile import (
    AttrSet,
    Inherit,
    Leaf,
    List,
    NixSyntaxError,
    Paren,
    Let,
    With,
    Function,
    apply_edits,
    end_of_line_comment,
    indent_of,
    line_break,
    nix_string,
    parse,
    string_value,
    unwrap,
)
from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

DEFAULT_ROOT_OPTIONS = ["defaults", "size=25%", "mode=755"]
DEFAULT_BOOT_OPTIONS = ["umask=0077"]
BOOT_FS_TYPES = ("vfat", "msdos", "exfat")
BY_PARTUUID = "/dev/disk/by-partuuid/"


class HwconfigError(ModuleError):
    """The file cannot be patched; the message names the file and what is missing or wrong."""


class SwapLookupError(HwconfigError):
    """The PARTUUID of a swap device could not be found."""


def _line(text, pos):
    return text.count("\n", 0, pos) + 1


def _fmt_path(names):
    out = []
    for name in names:
        if name is None:
            out.append("${…}")
        elif name.replace("_", "a").replace("-", "a").replace("'", "a").isalnum() and not name[0].isdigit():
            out.append(name)
        else:
            out.append(nix_string(name))
    return ".".join(out)


class _Def:
    """One binding seen from the top-level attribute set: ``full`` is its whole attribute path."""

    __slots__ = ("full", "binding", "prefix_len", "container")

    def __init__(self, full, binding, prefix_len, container):
        self.full = full
        self.binding = binding
        self.prefix_len = prefix_len
        self.container = container

    @property
    def value(self):
        return None if isinstance(self.binding, Inherit) else self.binding.value


def _collect(attrset, prefix=()):
    """Flatten nested attribute sets: yield a _Def for every binding, then descend into attrset values."""
    for entry in attrset.entries:
        if isinstance(entry, Inherit):
            for key in entry.names:
                yield _Def(list(prefix) + [key.name], entry, len(prefix), attrset)
            continue
        full = list(prefix) + entry.names
        yield _Def(full, entry, len(prefix), attrset)
        inner = unwrap(entry.value)
        if isinstance(inner, AttrSet) and None not in full:
            yield from _collect(inner, full)


def top_attrset(tree):
    """The attribute set a module file evaluates to, through its function header, let, with and wrappers."""
    node = tree
    while True:
        node = unwrap(node)
        if isinstance(node, Function):
            node = node.body
        elif isinstance(node, (Let, With)):
            node = node.body
        elif isinstance(node, Paren):
            node = node.expr
        else:
            return node if isinstance(node, AttrSet) else None


class _EditPlanner:
    """Parses the file, finds the definitions the patch touches and plans the text edits (``edits``); writes
    nothing."""

    def __init__(self, text, name, resolve_partuuid):
        self.text = text
        self.name = name
        self.resolve = resolve_partuuid
        self.edits = []
        self.nl = line_break(text)
        try:
            tree = parse(text)
        except NixSyntaxError as e:
            raise HwconfigError("%s is not valid Nix (or uses syntax this module does not understand): %s" % (name, e))
        self.top = top_attrset(tree)
        if self.top is None:
            raise HwconfigError("%s does not evaluate to an attribute set of NixOS options (expected "
                                "`{ config, lib, ... }: { ... }` as nixos-generate-config writes it)" % name)
        self.defs = list(_collect(self.top))

    def where(self, node):
        return "%s line %d" % (self.name, _line(self.text, node.start))

    # -- fileSystems -------------------------------------------------------------------------------
    def mount(self, mountpoint):
        """Definitions of fileSystems.<mountpoint>: (entry attrsets, {field: [_Def]}, all defs); fails on opaque ones."""
        target = ["fileSystems", mountpoint]
        label = "fileSystems.%s" % nix_string(mountpoint)
        entries, fields, found = [], {}, []
        for d in self.defs:
            if d.full[:2] == target[:len(d.full)] and len(d.full) <= 2:
                value = d.value
                inner = unwrap(value) if value is not None else None
                if not isinstance(inner, AttrSet):
                    raise HwconfigError(
                        "%s: %s is defined by an expression this module cannot edit (%s: `%s`); write it as an "
                        "attribute set literal" % (self.name, _fmt_path(d.full), self.where(d.binding),
                                                   self.text[d.binding.start:d.binding.end]))
                if len(d.full) == 2:
                    entries.append((d, inner))
                    found.append(d)
            elif d.full[:2] == target:
                found.append(d)
                if len(d.full) == 3:
                    fields.setdefault(d.full[2], []).append(d)
        if not found:
            return None
        return label, entries, fields, found

    def field_string(self, label, fields, field):
        defs = fields.get(field, [])
        if not defs:
            return None, None
        value = string_value(defs[-1].value) if defs[-1].value is not None else None
        if value is None:
            raise HwconfigError("%s: %s.%s is not a plain string (%s)" % (self.name, label, field, self.where(defs[-1].binding)))
        return value, defs[-1]

    def patch_mount_options(self, mountpoint, wanted, what):
        info = self.mount(mountpoint)
        label, entries, fields, found = info
        option_defs = fields.get("options", [])
        if len(option_defs) > 1:
            raise HwconfigError("%s: %s.options is defined more than once (%s and %s)" % (
                self.name, label, self.where(option_defs[0].binding), self.where(option_defs[1].binding)))
        result = {"mountpoint": mountpoint, "options_before": None, "options_after": list(wanted), "changed": False}
        if option_defs:
            lst = unwrap(option_defs[0].value)
            if not isinstance(lst, List):
                raise HwconfigError("%s: %s.options is not a list literal (%s: `%s`); cannot merge %s options into it" % (
                    self.name, label, self.where(option_defs[0].binding),
                    self.text[option_defs[0].binding.start:option_defs[0].binding.end], what))
            before, after, edits = merge_list(self.text, lst, wanted, self.nl)
            result.update(options_before=before, options_after=after, changed=bool(edits))
            self.edits.extend(edits)
            return result
        new_list = "[ %s ]" % " ".join(nix_string(o) for o in wanted)
        if entries:
            d, attrset = entries[0]
            self.edits.append(insert_binding(self.text, attrset, "options = %s;" % new_list, self.nl))
        else:
            anchor = max(found, key=lambda x: x.binding.end)
            keys = anchor.binding.keys
            mp_index = 1 - anchor.prefix_len
            prefix = self.text[keys[0].start:keys[mp_index].end]
            self.edits.append(insert_binding(self.text, anchor.container, "%s.options = %s;" % (prefix, new_list),
                                             self.nl, anchor=anchor.binding))
        result["changed"] = True
        return result

    # -- swapDevices --------------------------------------------------------------------------------
    def patch_swap(self):
        done = []
        defs = [d for d in self.defs if d.full[0] == "swapDevices"]
        for d in defs:
            if len(d.full) > 1 or d.value is None or not isinstance(unwrap(d.value), List):
                raise HwconfigError("%s: swapDevices is defined by an expression this module cannot edit (%s: `%s`); "
                                    "write it as a list literal" % (self.name, self.where(d.binding),
                                                                    self.text[d.binding.start:d.binding.end]))
            for item in unwrap(d.value).items:
                entry = unwrap(item)
                if not isinstance(entry, AttrSet):
                    raise HwconfigError("%s: the swapDevices entry at line %d is not an attribute set literal: `%s`" % (
                        self.name, _line(self.text, item.start), self.text[item.start:item.end]))
                done.append(self.patch_swap_entry(entry))
        return done

    def patch_swap_entry(self, entry):
        fields = {}
        for d in _collect(entry):
            fields.setdefault(tuple(d.full), d)
        where = "the swapDevices entry at %s" % self.where(entry)
        info = {"device_before": None, "device_after": None, "random_encryption": "present"}
        dev_def = fields.get(("device",))
        label_def = fields.get(("label",))
        if dev_def is not None:
            node = unwrap(dev_def.value)
            device = string_value(node)
            if device is None:
                raise HwconfigError("%s: the device of %s is not a plain string: `%s`" % (
                    self.name, where, self.text[node.start:node.end]))
            info["device_before"] = device
            if device.startswith(BY_PARTUUID):
                info["device_after"] = device
            else:
                new = BY_PARTUUID + self._partuuid(device, where)
                self.edits.append((node.start, node.end, nix_string(new)))
                info["device_after"] = new
        elif label_def is not None:
            label = string_value(label_def.value)
            if label is None:
                raise HwconfigError("%s: the label of %s is not a plain string" % (self.name, where))
            device = "/dev/disk/by-label/" + label
            info["device_before"] = device
            new = BY_PARTUUID + self._partuuid(device, where)
            # random encryption re-creates the swap area at every boot, so the label would not survive
            b = label_def.binding
            self.edits.append((b.start, b.end, "device = %s;" % nix_string(new)))
            info["device_after"] = new
        else:
            raise HwconfigError("%s: %s has neither `device` nor `label`" % (self.name, where))

        enable = fields.get(("randomEncryption", "enable"))
        whole = fields.get(("randomEncryption",))
        if enable is not None:
            self._force_true(enable.value, info)
        elif whole is not None:
            inner = unwrap(whole.value)
            if isinstance(inner, AttrSet):
                self.edits.append(insert_binding(self.text, inner, "enable = true;", self.nl))
                info["random_encryption"] = "added"
            else:
                self._force_true(whole.value, info)
        else:
            self.edits.append(insert_binding(self.text, entry, "randomEncryption.enable = true;", self.nl))
            info["random_encryption"] = "added"
        return info

    def _force_true(self, value, info):
        node = unwrap(value)
        if isinstance(node, Leaf) and node.kind == "ident" and node.text == "true":
            return
        self.edits.append((node.start, node.end, "true"))
        info["random_encryption"] = "enabled"

    def _partuuid(self, device, where):
        partuuid = self.resolve(device)
        if not partuuid:
            raise SwapLookupError("%s: no PARTUUID found for swap device %s (%s)" % (self.name, device, where))
        return partuuid


def _check_wanted(options, param):
    keys = {}
    for opt in options:
        if not isinstance(opt, str) or not opt or any(c.isspace() for c in opt):
            raise HwconfigError("%s: %r is not a mount option" % (param, opt))
        if "=" in opt:
            key = opt.split("=", 1)[0]
            if key in keys:
                raise HwconfigError("%s asks for both %r and %r; give one value per option" % (param, keys[key], opt))
            keys[key] = opt


def merge_list(text, lst, wanted, nl="\n"):
    """Merge the option strings ``wanted`` into the list node ``lst``; return (before, after, edits)."""
    items = list(lst.items)
    values = [it.value if isinstance(it, Leaf) and it.kind == "string" else None for it in items]
    shown = [v if v is not None else text[it.start:it.end] for v, it in zip(values, items)]
    after = list(shown)
    replace, remove, append = {}, set(), []
    for opt in wanted:
        if "=" not in opt:
            if opt not in values:
                append.append(opt)
            continue
        key = opt.split("=", 1)[0] + "="
        same = [i for i, v in enumerate(values) if v is not None and v.startswith(key)]
        if not same:
            append.append(opt)
            continue
        keep = next((i for i in same if values[i] == opt), same[0])
        if values[keep] != opt:
            replace[keep] = opt
        remove.update(i for i in same if i != keep)
    edits = []
    for i, opt in replace.items():
        edits.append((items[i].start, items[i].end, nix_string(opt)))
        after[i] = opt
    for i in remove:
        prev_end = items[i - 1].end if i else lst.start + 1
        ws_start = items[i].start
        while ws_start > prev_end and text[ws_start - 1] in " \t\r\n":
            ws_start -= 1
        edits.append((ws_start, items[i].end, ""))
    after = [v for i, v in enumerate(after) if i not in remove] + append
    if append:
        new = [nix_string(o) for o in append]
        if items:
            last = items[-1]
            prev_end = items[-2].end if len(items) > 1 else lst.start + 1
            if "\n" in text[prev_end:last.start]:
                # one item per line: the new ones go on lines of their own, after any trailing comment
                sep = nl + indent_of(text, last.start)
                pos = end_of_line_comment(text, last.end)
            else:
                sep, pos = " ", last.end
            edits.append((pos, pos, "".join(sep + n for n in new)))
        else:
            inner = text[lst.start + 1:lst.end - 1]
            if inner.strip() == "":
                edits.append((lst.start + 1, lst.end - 1, " %s " % " ".join(new)))
            else:
                edits.append((lst.start + 1, lst.start + 1, " " + " ".join(new)))
    return shown, after, edits


def insert_binding(text, attrset, binding_text, nl="\n", anchor=None):
    """An edit that adds ``binding_text`` to ``attrset`` after ``anchor`` (default: its last entry), laid out
    like its neighbours: on a new line with the same indentation in a multi-line set, inline otherwise."""
    entries = attrset.entries
    if anchor is None:
        anchor = entries[-1] if entries else None
    if anchor is None:
        inner = text[attrset.lbrace + 1:attrset.rbrace]
        if inner.strip() == "":
            return (attrset.lbrace + 1, attrset.rbrace, " %s " % binding_text)
        return (attrset.lbrace + 1, attrset.lbrace + 1, " " + binding_text)
    idx = entries.index(anchor)
    prev_end = entries[idx - 1].end if idx else attrset.lbrace + 1
    multiline = "\n" in text[prev_end:anchor.start] or "\n" in text[anchor.end:attrset.rbrace]
    if multiline:
        pos = end_of_line_comment(text, anchor.end)
        return (pos, pos, nl + indent_of(text, anchor.start) + binding_text)
    return (anchor.end, anchor.end, " " + binding_text)


def _no_lookup(device):
    raise HwconfigError("internal error: a second planning pass wanted to look up %s" % device)


class PatchPlan:
    def __init__(self, before, after, patched):
        self.before = before
        self.after = after
        self.patched = patched

    @property
    def changed(self):
        return self.before != self.after


def plan_patch(text, name="hardware-configuration.nix", root_options=None, boot_options=None,
               boot_mountpoint="/boot", swap_random_encryption=False, resolve_partuuid=None, _verify=True):
    """Plan the step-8 edits of ``text``; returns a :class:`PatchPlan`; raises :class:`HwconfigError`.

    ``resolve_partuuid(device)`` returns the PARTUUID of a swap device path (``/dev/disk/by-uuid/…``,
    ``/dev/disk/by-label/…``, ``/dev/vda2`` …) or raises :class:`SwapLookupError`.
    """
    root_options = list(DEFAULT_ROOT_OPTIONS if root_options is None else root_options)
    boot_options = list(DEFAULT_BOOT_OPTIONS if boot_options is None else boot_options)
    _check_wanted(root_options, "root_options")
    _check_wanted(boot_options, "boot_options")
    planner = _EditPlanner(text, name, resolve_partuuid or _no_lookup)
    patched = {"root": None, "boot": None, "swap": []}

    root = planner.mount("/")
    if root is None:
        raise HwconfigError('%s has no fileSystems."/": mount the tmpfs root (impermanent.nixos.tmpfs_root) before '
                            "running nixos-generate-config, then run it again" % name)
    fstype, fsdef = planner.field_string(root[0], root[2], "fsType")
    if fstype != "tmpfs":
        raise HwconfigError(
            '%s: fileSystems."/" has %s, not fsType = "tmpfs": the root is not a tmpfs. Mount the tmpfs root '
            "(impermanent.nixos.tmpfs_root) before running nixos-generate-config, then run it again" % (
                name, "no fsType" if fstype is None else "fsType = %s (%s)" % (nix_string(fstype),
                                                                               planner.where(fsdef.binding))))
    if root_options:
        patched["root"] = planner.patch_mount_options("/", root_options, "root")

    if boot_options:
        boot = planner.mount(boot_mountpoint)
        if boot is None:
            raise HwconfigError(
                "%s has no fileSystems.%s: mount the EFI system partition on <root>%s before running "
                "nixos-generate-config, or set boot_options to [] to leave it alone" % (
                    name, nix_string(boot_mountpoint), boot_mountpoint))
        fstype, fsdef = planner.field_string(boot[0], boot[2], "fsType")
        if fstype is not None and fstype not in BOOT_FS_TYPES:
            raise HwconfigError(
                "%s: fileSystems.%s has fsType = %s (%s), but boot_options %s are FAT options; set boot_options "
                "to [] for a non-FAT %s" % (name, nix_string(boot_mountpoint), nix_string(fstype),
                                            planner.where(fsdef.binding), boot_options, boot_mountpoint))
        patched["boot"] = planner.patch_mount_options(boot_mountpoint, boot_options, "boot")

    if swap_random_encryption:
        patched["swap"] = planner.patch_swap()

    try:
        after = apply_edits(text, planner.edits)
    except ValueError as e:
        raise HwconfigError("%s: internal error, conflicting edits (%s)" % (name, e))
    if _verify and after != text:
        # the result must parse and be a fixed point: patching it again changes nothing
        try:
            again = plan_patch(after, name, root_options, boot_options, boot_mountpoint, swap_random_encryption,
                               _no_lookup, _verify=False)
        except HwconfigError as e:
            raise HwconfigError("%s: internal error, the patched text does not re-plan cleanly: %s" % (name, e))
        if again.changed:
            raise HwconfigError("%s: internal error, the patch is not idempotent" % name)
    return PatchPlan(text, after, patched)


# -- check mode before the disk exists -------------------------------------------------------------------------
STAND_IN_NOTE = (
    "STAND-IN, check mode: nixos-generate-config has not written this file yet (it runs once the disk is "
    "partitioned and mounted, which check mode does not do). It holds only the entries the patch edits, in the "
    "generator's layout; <...> are values that do not exist yet. The real file has more entries, and may already "
    "have options (a current release writes fmask/dmask for the ESP), which the patch keeps.")


def _uuid_placeholder(what, device):
    return "/dev/disk/by-uuid/<UUID of the %s on %s>" % (what, device)


def stand_in(boot_mountpoint="/boot", boot_device=None, swap_devices=()):
    """A stand-in for the hardware-configuration.nix that nixos-generate-config would write for the layout:
    a tmpfs ``fileSystems."/"``, a vfat ``fileSystems.BOOT`` (when ``boot_device``) and one ``swapDevices`` entry per
    swap device, as by-uuid paths whose UUIDs do not exist yet. Returns ``(text, resolve_partuuid)``: the resolver
    answers a placeholder PARTUUID for each stand-in swap path, so :func:`plan_patch` runs unchanged on it.
    """
    lines = ["# " + line for line in textwrap.wrap(STAND_IN_NOTE, 110)]
    lines += ["{ config, lib, pkgs, modulesPath, ... }:", "", "{",
              '  fileSystems."/" =', '    { device = "none";', '      fsType = "tmpfs";', "    };", ""]
    if boot_device:
        lines += ["  fileSystems.%s =" % nix_string(boot_mountpoint),
                  "    { device = %s;" % nix_string(_uuid_placeholder("FAT file system", boot_device)),
                  '      fsType = "vfat";', "    };", ""]
    partuuids = {}
    if swap_devices:
        entries = []
        for device in swap_devices:
            path = _uuid_placeholder("swap area", device)
            partuuids[path] = "<PARTUUID of %s>" % device
            entries.append("{ device = %s; }" % nix_string(path))
        lines += ["  swapDevices =", "    [ " + entries[0]] + ["      " + e for e in entries[1:]] + ["    ];"]
    else:
        lines += ["  swapDevices = [ ];"]
    lines += ["}", ""]

    def resolve(device):
        if device not in partuuids:
            raise SwapLookupError("stand-in: no placeholder for swap device %s" % device)
        return partuuids[device]

    return "\n".join(lines), resolve
