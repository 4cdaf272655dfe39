# SPDX-License-Identifier: GPL-3.0-or-later
"""hwconfig_patch planning: every fixture shape is patched, then checked by evaluating it with nix-instantiate."""
import collections
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils import _hwconfig as hw
from ansible_collections.impermanent.nixos.plugins.module_utils import _nixfile as nix
from ansible_collections.impermanent.nixos.plugins.module_utils import _step_hwconfig_patch as module

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "hwconfig")
ROOT = ["defaults", "size=25%", "mode=755"]
BOOT = ["umask=0077"]
SWAP_UUID = "/dev/disk/by-uuid/0b7a0c3e-62a4-4c8e-9a51-7f3e2d1c9b84"
PARTUUIDS = {
    SWAP_UUID: "9e4c1b2a-3d5f-4e6a-8b7c-1d2e3f4a5b6c",
    "/dev/disk/by-uuid/6d2f9a41-8e3b-4c7d-a1f0-5b6c7d8e9f01": "3c4d5e6f-7a8b-4c9d-8e0f-2a3b4c5d6e7f",
    "/dev/vda2": "5e6f7a8b-9c0d-4e1f-8a2b-4c5d6e7f8091",
    "/dev/vda3": "4d5e6f7a-8b9c-4d0e-9f1a-3b4c5d6e7f80",
    "/dev/disk/by-label/swap": "6f7a8b9c-0d1e-4f2a-9b3c-5d6e7f809102",
}
# fixture -> number of swap entries
GOOD = {
    "ngc_current.nix": 1, "ngc_luks_old.nix": 1, "ngc_no_swap.nix": 0, "oneline.nix": 1, "nested.nix": 1,
    "split_attrpath.nix": 1, "multi_swap.nix": 4, "swap_partuuid.nix": 3, "swap_label.nix": 1,
    "options_present.nix": 0, "mkwrappers.nix": 1, "comments.nix": 1, "nixfmt.nix": 1, "let_with.nix": 1,
}
LOOKED_UP = []


def resolve(device):
    LOOKED_UP.append(device)
    if device not in PARTUUIDS:
        raise hw.SwapLookupError("no block device %s" % device)
    return PARTUUIDS[device]


def fixture_text(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return f.read()


def nix_instantiate():
    path = shutil.which("nix-instantiate")
    if path is None:
        pytest.fail("nix-instantiate is a test dependency (Debian package nix-bin) and is not on PATH")
    return path


# stand-ins for the module arguments and lib's priority wrappers (the test machines have no nixpkgs)
EVAL_ARGS = ('{ config = { hardware.enableRedistributableFirmware = true; }; '
             'lib = { mkDefault = x: x; mkForce = x: x; mkOverride = p: x: x; }; pkgs = {}; modulesPath = "/m"; }')


def evaluate_all(directory, texts):
    """Each file's attributes (minus imports), evaluated by Nix in one nix-instantiate run."""
    paths = []
    for i, text in enumerate(texts):
        path = os.path.join(str(directory), "eval-%d.nix" % i)
        with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            f.write(text)
        paths.append(path)
    expr = 'map (p: removeAttrs (import p %s) [ "imports" ]) [ %s ]' % (EVAL_ARGS, " ".join(paths))
    proc = subprocess.run([nix_instantiate(), "--eval", "--strict", "--json", "-E", expr],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def evaluate(tmp_path, text, name="hw.nix"):
    """The file's attributes (minus imports), evaluated by Nix with stand-ins for lib's priority wrappers."""
    directory = tmp_path / name
    directory.mkdir()
    return evaluate_all(directory, [text])[0]


def patch(text, **kw):
    kw.setdefault("swap_random_encryption", True)
    kw.setdefault("resolve_partuuid", resolve)
    return hw.plan_patch(text, "hw.nix", **kw)


def check_merged(before, after, wanted):
    """after has every wanted option, one value per wanted key, and keeps the other options of before."""
    for opt in wanted:
        assert opt in after
        if "=" in opt:
            key = opt.split("=", 1)[0] + "="
            assert [o for o in after if o.startswith(key)] == [opt]
    wanted_keys = {o.split("=", 1)[0] + "=" for o in wanted if "=" in o}
    kept = [o for o in before if not any(o.startswith(k) for k in wanted_keys)]
    assert collections.Counter(kept) <= collections.Counter(after)
    assert len(after) == len(kept) + len([o for o in wanted if o not in kept])


@pytest.mark.parametrize("name", sorted(GOOD))
def test_fixture_patch_is_semantically_right(name, tmp_path):
    text = fixture_text(name)
    plan = patch(text)
    assert plan.changed
    old = evaluate(tmp_path, text, "before.nix")
    new = evaluate(tmp_path, plan.after, "after.nix")

    check_merged(old["fileSystems"]["/"].get("options", []), new["fileSystems"]["/"]["options"], ROOT)
    check_merged(old["fileSystems"]["/boot"].get("options", []), new["fileSystems"]["/boot"]["options"], BOOT)
    assert new["fileSystems"]["/"]["fsType"] == "tmpfs"

    swaps_old, swaps_new = old.get("swapDevices", []), new.get("swapDevices", [])
    assert len(swaps_new) == len(swaps_old) == GOOD[name]
    for before, after in zip(swaps_old, swaps_new):
        device = before.get("device") or "/dev/disk/by-label/" + before["label"]
        expected = device if device.startswith(hw.BY_PARTUUID) else hw.BY_PARTUUID + PARTUUIDS[device]
        assert after["device"] == expected
        assert after["randomEncryption"] is True or after["randomEncryption"]["enable"] is True
        extra_before = dict(before["randomEncryption"]) if isinstance(before.get("randomEncryption"), dict) else {}
        extra_before.pop("enable", None)
        extra_after = dict(after["randomEncryption"]) if isinstance(after["randomEncryption"], dict) else {}
        extra_after.pop("enable", None)
        assert extra_after == extra_before
        strip = ("device", "label", "randomEncryption")
        assert {k: v for k, v in after.items() if k not in strip} == {k: v for k, v in before.items() if k not in strip}

    # nothing else moved: the other mounts, LUKS, kernel modules, networking, platform ...
    for tree in (old, new):
        tree["fileSystems"]["/"].pop("options", None)
        tree["fileSystems"]["/boot"].pop("options", None)
        tree.pop("swapDevices", None)
    assert new == old


@pytest.mark.parametrize("name", sorted(GOOD))
def test_patch_twice_is_patch_once(name):
    once = patch(fixture_text(name)).after
    del LOOKED_UP[:]
    twice = patch(once)
    assert not twice.changed and twice.after == once
    assert LOOKED_UP == []  # by-partuuid entries need no lookup


@pytest.mark.parametrize("name", sorted(GOOD))
def test_comments_and_untouched_lines_survive(name):
    text = fixture_text(name)
    after = patch(text).after
    comments = [t.text for t in nix.tokenize(text, trivia=True) if t.kind == "comment"]
    assert comments == [t.text for t in nix.tokenize(after, trivia=True) if t.kind == "comment"]
    # every line of the input is still there unless it held an edited value
    edited = ("options", "label = ", "randomEncryption", "by-partuuid/", '"fmask', '"dmask', '"size', '"umask',
              '"mode') + tuple(PARTUUIDS)
    after_lines = after.splitlines()

    def kept(line):
        # a one-line attribute set that got a binding appended still starts the same way
        head = line.rstrip().rstrip(";").rstrip().rstrip("}").rstrip()
        return line in after_lines or any(a.startswith(head) and len(head) > 20 for a in after_lines)

    missing = [ln for ln in text.splitlines() if not kept(ln) and not any(e in ln for e in edited)]
    assert missing == []


def test_ngc_current_exact_result():
    after = patch(fixture_text("ngc_current.nix")).after
    assert ('  fileSystems."/" =\n    { device = "none";\n      fsType = "tmpfs";\n'
            '      options = [ "defaults" "size=25%" "mode=755" ];\n    };\n') in after
    assert '      options = [ "fmask=0077" "dmask=0077" "umask=0077" ];\n' in after
    assert ('  swapDevices =\n    [ { device = "/dev/disk/by-partuuid/9e4c1b2a-3d5f-4e6a-8b7c-1d2e3f4a5b6c"; '
            'randomEncryption.enable = true; }\n    ];\n') in after
    assert len(after.splitlines()) == len(fixture_text("ngc_current.nix").splitlines()) + 1


def test_layout_follows_the_neighbours():
    nixfmt = patch(fixture_text("nixfmt.nix")).after
    assert '    fsType = "tmpfs";\n    options = [ "defaults" "size=25%" "mode=755" ];\n  };' in nixfmt
    assert '      "dmask=0077"\n      "umask=0077"\n    ];' in nixfmt
    assert ('      device = "/dev/disk/by-partuuid/9e4c1b2a-3d5f-4e6a-8b7c-1d2e3f4a5b6c";\n'
            '      randomEncryption.enable = true;\n    }') in nixfmt
    comments = patch(fixture_text("comments.nix")).after
    assert ('fsType = "tmpfs"; # { not a brace } ; "not a string"\n'
            '      options = [ "defaults" "size=25%" "mode=755" ];\n') in comments
    assert '"dmask=0077" # directories\n        "umask=0077"\n      ];' in comments
    split = patch(fixture_text("split_attrpath.nix")).after
    assert ('  fileSystems."/boot".fsType = "vfat";\n  fileSystems."/boot".options = [ "umask=0077" ];\n') in split
    assert 'fileSystems."/".options = [ "size=25%" "defaults" "mode=755" ];' in split


def test_existing_options_are_merged_not_duplicated():
    plan = patch(fixture_text("options_present.nix"))
    assert plan.patched["root"] == {"mountpoint": "/", "changed": True,
                                    "options_before": ["size=50%", "noatime", "mode=0700", "size=2G"],
                                    "options_after": ["size=25%", "noatime", "mode=755", "defaults"]}
    assert plan.patched["boot"]["options_after"] == ["umask=0077", "fmask=0077", "dmask=0077", "noauto"]
    assert '"noatime" ]' in plan.after.split('fileSystems."/nix"')[1]  # other mounts untouched


def test_patched_report_and_partuuid_entries_need_no_lookup():
    del LOOKED_UP[:]
    plan = patch(fixture_text("swap_partuuid.nix"))
    assert LOOKED_UP == []
    assert [s["random_encryption"] for s in plan.patched["swap"]] == ["added", "added", "enabled"]
    assert plan.patched["root"]["changed"] is False
    assert "enable = true; };" in plan.after


def test_swap_untouched_without_random_encryption():
    text = fixture_text("ngc_current.nix")
    plan = patch(text, swap_random_encryption=False, resolve_partuuid=None)
    assert SWAP_UUID in plan.after and "randomEncryption" not in plan.after and plan.patched["swap"] == []


def test_unknown_swap_uuid_fails_naming_it():
    text = fixture_text("ngc_current.nix").replace("0b7a0c3e-62a4", "deadbeef-62a4")
    with pytest.raises(hw.SwapLookupError) as e:
        patch(text)
    assert "deadbeef-62a4-4c8e-9a51-7f3e2d1c9b84" in str(e.value)


def test_crlf_file_keeps_crlf(tmp_path):
    text = fixture_text("ngc_current.nix").replace("\n", "\r\n")
    after = patch(text).after
    assert "\n" not in after.replace("\r\n", "")
    assert evaluate(tmp_path, after)["fileSystems"]["/"]["options"] == ROOT


def test_empty_option_lists_change_nothing_but_still_require_tmpfs():
    text = fixture_text("ngc_current.nix")
    plan = patch(text, root_options=[], boot_options=[], swap_random_encryption=False)
    assert not plan.changed and plan.after == text
    with pytest.raises(hw.HwconfigError, match="not a tmpfs"):
        patch(fixture_text("fail_root_ext4.nix"), root_options=[], boot_options=[])


def test_no_boot_is_fine_when_boot_options_are_empty():
    plan = patch(fixture_text("fail_no_boot.nix"), boot_options=[])
    assert plan.patched["boot"] is None and '"mode=755" ];' in plan.after


@pytest.mark.parametrize("name, kw, expected", [
    ("fail_root_ext4.nix", {}, 'fileSystems."/" has fsType = "ext4" (hw.nix line 9), not fsType = "tmpfs"'),
    ("fail_root_ext4.nix", {}, "before running nixos-generate-config"),
    ("fail_no_root.nix", {}, 'hw.nix has no fileSystems."/"'),
    ("fail_unbalanced.nix", {}, "a '{' is never closed, probably the one at line 5"),
    ("fail_no_boot.nix", {}, 'hw.nix has no fileSystems."/boot"'),
    ("fail_options_expr.nix", {}, 'fileSystems."/".options is not a list literal (hw.nix line 8'),
    ("ngc_current.nix", {"boot_mountpoint": "/nix"}, 'fileSystems."/nix" has fsType = "ext4"'),
    ("ngc_current.nix", {"root_options": ["size=1G", "size=2G"]}, "root_options asks for both"),
])
def test_files_it_cannot_patch_fail_clearly(name, kw, expected):
    with pytest.raises(hw.HwconfigError) as e:
        patch(fixture_text(name), **kw)
    assert expected in str(e.value)


@pytest.mark.parametrize("text, expected", [
    ("{ lib, ... }: lib.mkMerge [ ]", "does not evaluate to an attribute set"),
    ('{ x, ... }: { inherit (x) fileSystems; }', "fileSystems is defined by an expression"),
    ('{ x, ... }: { fileSystems."/" = x.root; }', 'fileSystems."/" is defined by an expression'),
    ('{ ... }: { fileSystems."/" = { fsType = "tmpfs"; }; fileSystems."/boot" = { fsType = "vfat"; }; '
     'swapDevices = [ x ]; }', "swapDevices entry at line 1 is not an attribute set literal"),
])
def test_opaque_definitions_fail_clearly(text, expected):
    with pytest.raises(hw.HwconfigError) as e:
        patch(text)
    assert expected in str(e.value)


# -- the module's blkid lookup, fed blkid output ---------------------------------------------------------

class FakeRunner:
    def __init__(self, outputs):
        self.outputs = outputs
        self.ran = []

    def find(self, name, required=True):
        return "/usr/sbin/" + name

    def run(self, argv, check_rc=True, record=True, **kw):
        self.ran.append(argv)
        return self.outputs[tuple(argv[1:])]


def blkid_fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return f.read()


def test_lookup_finds_the_partuuid_of_a_swap_partition():
    runner = FakeRunner({
        ("-o", "device", "-t", "UUID=0b7a0c3e-62a4-4c8e-9a51-7f3e2d1c9b84"): (0, "/dev/vda2\n", ""),
        ("-p", "-o", "export", "/dev/vda2"): (0, blkid_fixture("blkid_swap_partition.txt"), ""),
    })
    assert module.PartuuidLookup(runner)(SWAP_UUID) == "9e4c1b2a-3d5f-4e6a-8b7c-1d2e3f4a5b6c"


def test_lookup_refuses_a_whole_disk_swap_and_a_missing_uuid():
    runner = FakeRunner({
        ("-o", "device", "-t", "UUID=0b7a0c3e-62a4-4c8e-9a51-7f3e2d1c9b84"): (0, "/dev/loop0\n", ""),
        ("-p", "-o", "export", "/dev/loop0"): (0, blkid_fixture("blkid_swap_whole_disk.txt"), ""),
        ("-o", "device", "-t", "UUID=00000000-0000-4000-8000-000000000000"): (2, "", ""),
    })
    with pytest.raises(hw.SwapLookupError, match="is not a partition"):
        module.PartuuidLookup(runner)(SWAP_UUID)
    with pytest.raises(hw.SwapLookupError, match="no block device with UUID 00000000-0000-4000-8000-000000000000"):
        module.PartuuidLookup(runner)("/dev/disk/by-uuid/00000000-0000-4000-8000-000000000000")


def test_lookup_refuses_a_partition_that_is_not_swap():
    runner = FakeRunner({
        ("-o", "device", "-t", "LABEL=swap"): (0, "/dev/vda3\n", ""),
        ("-p", "-o", "export", "/dev/vda3"): (
            0, blkid_fixture("blkid_swap_partition.txt").replace("TYPE=swap", "TYPE=ext4"), ""),
    })
    with pytest.raises(hw.SwapLookupError, match="holds ext4, not a swap area"):
        module.PartuuidLookup(runner)("/dev/disk/by-label/swap")


# -- the check-mode stand-in (the file does not exist before the disk is set up) --------------------------------
def test_stand_in_patches_like_a_generated_file(tmp_path):
    """The stand-in is a valid hardware-configuration.nix in the generator's layout, and the patch makes the same
    edits on it as on a file nixos-generate-config wrote (ngc_current.nix), apart from values that do not exist
    yet (placeholders) and the fmask/dmask a current generator writes for /boot."""
    text, resolve_placeholder = hw.stand_in(boot_device="/dev/vdz1", swap_devices=["/dev/vdz2"])
    assert text.startswith("# STAND-IN, check mode:")
    plan = hw.plan_patch(text, "hw.nix", swap_random_encryption=True, resolve_partuuid=resolve_placeholder)
    got = evaluate(tmp_path, plan.after)
    assert got["fileSystems"]["/"] == {"device": "none", "fsType": "tmpfs", "options": ROOT}
    assert got["fileSystems"]["/boot"] == {"device": "/dev/disk/by-uuid/<UUID of the FAT file system on /dev/vdz1>",
                                           "fsType": "vfat", "options": BOOT}
    assert got["swapDevices"] == [{"device": "/dev/disk/by-partuuid/<PARTUUID of /dev/vdz2>",
                                   "randomEncryption": {"enable": True}}]

    real = patch(fixture_text("ngc_current.nix"))
    real_got = evaluate(tmp_path, real.after, "real.nix")
    assert real_got["fileSystems"]["/"]["options"] == got["fileSystems"]["/"]["options"]
    assert set(got["fileSystems"]["/boot"]["options"]) <= set(real_got["fileSystems"]["/boot"]["options"])
    assert [sorted(s) for s in real_got["swapDevices"]] == [sorted(s) for s in got["swapDevices"]]
    assert plan.patched["root"] == real.patched["root"]
    assert [s["random_encryption"] for s in plan.patched["swap"]] == [s["random_encryption"] for s in real.patched["swap"]]


def test_stand_in_without_swap_or_boot():
    text, resolve_placeholder = hw.stand_in(swap_devices=[])
    assert "swapDevices = [ ];" in text
    plan = hw.plan_patch(text, "hw.nix", boot_options=[], swap_random_encryption=True,
                         resolve_partuuid=resolve_placeholder)
    assert plan.patched["swap"] == [] and plan.patched["boot"] is None
    with pytest.raises(hw.HwconfigError, match="no fileSystems"):
        hw.plan_patch(text, "hw.nix", resolve_partuuid=resolve_placeholder)  # /boot options but no ESP
    with pytest.raises(hw.SwapLookupError):
        resolve_placeholder("/dev/disk/by-uuid/0b7a0c3e-62a4-4c8e-9a51-7f3e2d1c9b84")


def test_stand_in_with_two_swap_devices_parses():
    text, resolve_placeholder = hw.stand_in(boot_device="/dev/vdz1", swap_devices=["/dev/vdz2", "/dev/vdy2"])
    plan = hw.plan_patch(text, "hw.nix", swap_random_encryption=True, resolve_partuuid=resolve_placeholder)
    assert [s["device_after"] for s in plan.patched["swap"]] == [
        "/dev/disk/by-partuuid/<PARTUUID of /dev/vdz2>", "/dev/disk/by-partuuid/<PARTUUID of /dev/vdy2>"]
