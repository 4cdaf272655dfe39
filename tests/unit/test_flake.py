# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for plugins/module_utils/_flake.py (pure helpers of nixos_flake_install)."""
import os

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils import _flake as flake

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "flake")


def fixture_bytes(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


# ---------------------------------------------------------------- flake refs


@pytest.mark.parametrize("text, kind, ref, attr, directory, flake_dir", [
    ("/mnt/etc/nixos", flake.KIND_DIR, "/mnt/etc/nixos", None, "/mnt/etc/nixos", "/mnt/etc/nixos"),
    ("/mnt/etc/nixos/#laptop", flake.KIND_DIR, "/mnt/etc/nixos", "laptop", "/mnt/etc/nixos", "/mnt/etc/nixos"),
    ("git+file:///mnt/etc/nixos#box", flake.KIND_GIT_FILE, "git+file:///mnt/etc/nixos", "box", "/mnt/etc/nixos",
     "/mnt/etc/nixos"),
    ("git+file:///srv/cfg?dir=hosts/box#box", flake.KIND_GIT_FILE, "git+file:///srv/cfg?dir=hosts/box", "box",
     "/srv/cfg", "/srv/cfg/hosts/box"),
    ("git+file://localhost/srv/cfg", flake.KIND_GIT_FILE, "git+file://localhost/srv/cfg", None, "/srv/cfg",
     "/srv/cfg"),
    ("path:/mnt/etc/nixos#vm", flake.KIND_PATH, "path:/mnt/etc/nixos", "vm", "/mnt/etc/nixos", "/mnt/etc/nixos"),
    ("path:/my%20flake", flake.KIND_PATH, "path:/my%20flake", None, "/my flake", "/my flake"),
    ("github:me/dotfiles#laptop", flake.KIND_REMOTE, "github:me/dotfiles", "laptop", None, None),
    ("git+https://example.org/cfg.git?ref=main#srv1", flake.KIND_REMOTE, "git+https://example.org/cfg.git?ref=main",
     "srv1", None, None),
])
def test_parse_flake_ref(text, kind, ref, attr, directory, flake_dir):
    parsed = flake.parse_flake_ref(text)
    assert (parsed.kind, parsed.ref, parsed.attr, parsed.directory, parsed.flake_dir) == (
        kind, ref, attr, directory, flake_dir)
    assert parsed.local == (kind != flake.KIND_REMOTE)
    assert parsed.uses_git == (kind in (flake.KIND_DIR, flake.KIND_GIT_FILE))


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("etc/nixos", "neither an absolute directory"),
    ("./nixos#box", "relative"),
    (".#box", "relative"),
    ("git+file:mnt/x", r"git\+file:///absolute"),
    ("path:relative/dir", "absolute directory"),
    ("file:///mnt/etc/nixos", r"use git\+file"),
    ('/mnt/etc/nixos#a"b', "unusable #fragment"),
])
def test_parse_flake_ref_rejects(text, needle):
    with pytest.raises(flake.FlakeRefError, match=needle):
        flake.parse_flake_ref(text)


def test_resolve_host_from_option_or_fragment():
    assert flake.resolve_host(flake.parse_flake_ref("/f"), "testhost") == "testhost"
    assert flake.resolve_host(flake.parse_flake_ref("/f#box-1.lan"), None) == "box-1.lan"
    assert flake.resolve_host(flake.parse_flake_ref("/f#box"), "box") == "box"


@pytest.mark.parametrize("ref, host, needle", [
    ("/f#a", "b", "disagrees"),
    ("/f", None, "give host"),
    ("/f", "-bad", "not a usable"),
    ("/f", "has space", "not a usable"),
    ("/f", "a/b", "not a usable"),
    ("/f", "x" * 64, "not a usable"),
])
def test_resolve_host_rejects(ref, host, needle):
    with pytest.raises(flake.FlakeRefError, match=needle):
        flake.resolve_host(flake.parse_flake_ref(ref), host)


# ---------------------------------------------------------------- git status --porcelain=v1 -z


def test_parse_porcelain_real_capture():
    # captured with `git status --porcelain=v1 -z --untracked-files=all` (git 2.39) in a repo with a rename,
    # a deletion, a staged-then-modified file, untracked files in sub-directories and a name with a space
    entries = flake.parse_porcelain_z(fixture_bytes("porcelain-v1-z.bin"))
    assert entries == [
        (" M", "flake.lock", None),
        (" D", "gone.nix", None),
        ("R ", "new-name.nix", "old-name.nix"),
        (" M", "nixos/configuration.nix", None),
        ("AM", "staged.nix", None),
        ("??", ".gitignore", None),
        ("??", "hosts/box/my host.nix", None),
        ("??", "nixos/hardware-configuration.nix", None),
        ("??", "notes.txt", None),
    ]


def test_files_to_stage_from_real_capture():
    entries = flake.parse_porcelain_z(fixture_bytes("porcelain-v1-z.bin"))
    assert flake.files_to_stage(entries) == [
        "flake.lock", "hosts/box/my host.nix", "nixos/configuration.nix", "nixos/hardware-configuration.nix",
        "staged.nix"]
    assert flake.files_to_stage(entries, "nixos") == ["nixos/configuration.nix", "nixos/hardware-configuration.nix"]
    assert flake.files_to_stage(entries, "/hosts/") == ["hosts/box/my host.nix"]


def test_files_to_stage_leaves_conflicts_and_ignored_alone():
    entries = flake.parse_porcelain_z("UU a.nix\0AA b.nix\0!! c.nix\0 D d.nix\0MM e.nix\0?? f.nixx\0")
    assert flake.files_to_stage(entries) == ["e.nix"]


def test_parse_porcelain_empty_and_malformed():
    assert flake.parse_porcelain_z(b"") == []
    with pytest.raises(ValueError):
        flake.parse_porcelain_z("garbage\0")
    with pytest.raises(ValueError, match="source path"):
        flake.parse_porcelain_z("R  new.nix\0")


# ---------------------------------------------------------------- host in flake.nix

FLAKE_ATTRPATH = """{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";
  outputs = { self, nixpkgs, ... }: {
    nixosConfigurations.testhost = nixpkgs.lib.nixosSystem { modules = [ ./configuration.nix ]; };
    nixosConfigurations."web.lan" = nixpkgs.lib.nixosSystem { };
  };
}
"""

FLAKE_SET = """{
  outputs = { nixpkgs, ... }: {
    nixosConfigurations = {
      # old-box = nixpkgs.lib.nixosSystem { };
      laptop = nixpkgs.lib.nixosSystem { };
      "vm-1" = nixpkgs.lib.nixosSystem { };
    };
  };
}
"""

FLAKE_GENERATED = """{
  outputs = { nixpkgs, ... }: {
    nixosConfigurations = nixpkgs.lib.genAttrs [ "alpha" "beta" ] (name: nixpkgs.lib.nixosSystem { });
    /* retired: gamma */
    description = "laptop2 is not a host";
  };
}
"""


@pytest.mark.parametrize("text, host, expected", [
    (FLAKE_ATTRPATH, "testhost", flake.HOST_DEFINED),
    (FLAKE_ATTRPATH, "web.lan", flake.HOST_DEFINED),
    (FLAKE_ATTRPATH, "test", flake.HOST_ABSENT),
    (FLAKE_ATTRPATH, "nixpkgs", flake.HOST_MENTIONED),
    (FLAKE_SET, "laptop", flake.HOST_DEFINED),
    (FLAKE_SET, "vm-1", flake.HOST_DEFINED),
    (FLAKE_SET, "old-box", flake.HOST_ABSENT),  # only in a comment
    (FLAKE_SET, "vm", flake.HOST_ABSENT),
    (FLAKE_GENERATED, "alpha", flake.HOST_MENTIONED),
    (FLAKE_GENERATED, "gamma", flake.HOST_ABSENT),
    (FLAKE_GENERATED, "laptop", flake.HOST_ABSENT),  # "laptop2" is a different word
    ("{ outputs = _: { }; }", "any", flake.HOST_ABSENT),
])
def test_host_in_flake(text, host, expected):
    assert flake.host_in_flake(text, host) == expected


def test_strip_nix_comments_keeps_strings():
    text = 'a = "x # not a comment"; # comment\nb = /* gone */ "y\\" /* kept */";'
    assert flake.strip_nix_comments(text) == 'a = "x # not a comment"; \nb =  "y\\" /* kept */";'


# ---------------------------------------------------------------- NIX_CONFIG, argv, output


@pytest.mark.parametrize("existing, expected", [
    (None, "experimental-features = nix-command flakes"),
    ("", "experimental-features = nix-command flakes"),
    ("max-jobs = 4", "max-jobs = 4\nexperimental-features = nix-command flakes"),
    ("experimental-features = ca-derivations\nmax-jobs = 4",
     "experimental-features = ca-derivations nix-command flakes\nmax-jobs = 4"),
    ("experimental-features = flakes", "experimental-features = flakes nix-command"),
    ("extra-experimental-features = nix-command flakes", "extra-experimental-features = nix-command flakes"),
    ("extra-experimental-features = flakes\nsubstituters = https://c",
     "extra-experimental-features = flakes\nsubstituters = https://c\nexperimental-features = nix-command flakes"),
])
def test_merge_nix_config(existing, expected):
    assert flake.merge_nix_config(existing) == expected


def test_install_argv_and_redaction():
    ref = flake.parse_flake_ref("/mnt/etc/nixos#box")
    argv = flake.install_argv("/bin/nixos-install", ref, "box", "/mnt", True,
                              ["--no-bootloader", "--option", "access-tokens", "github.com=SECRET"])
    assert argv == ["/bin/nixos-install", "--flake", "/mnt/etc/nixos#box", "--root", "/mnt", "--no-root-passwd",
                    "--no-bootloader", "--option", "access-tokens", "github.com=SECRET"]
    shown = flake.redact_argv(argv)
    assert "github.com=SECRET" not in shown and shown[-1] == "********"
    assert argv[-1] == "github.com=SECRET"  # the argv that runs is untouched
    remote = flake.parse_flake_ref("git+file:///srv/cfg?dir=hosts#x")
    assert flake.install_argv("nixos-install", remote, "x", "/target", False) == [
        "nixos-install", "--flake", "git+file:///srv/cfg?dir=hosts#x", "--root", "/target"]


def test_eval_argv_passes_only_what_changes_the_evaluation():
    ref = flake.parse_flake_ref("git+file:///mnt/etc/nixos?dir=hosts")
    argv = flake.eval_argv("/bin/nix", ref, "box.lan", [
        "--no-bootloader", "--option", "access-tokens", "github.com=SECRET", "--impure", "--max-jobs", "4",
        "--override-input", "nixpkgs", "path:/srv/nixpkgs", "--show-trace", "--no-root-passwd"])
    assert argv == [
        "/bin/nix", "eval", "--raw", "--no-write-lock-file",
        'git+file:///mnt/etc/nixos?dir=hosts#nixosConfigurations."box.lan".config.system.build.toplevel.drvPath',
        "--option", "access-tokens", "github.com=SECRET", "--impure",
        "--override-input", "nixpkgs", "path:/srv/nixpkgs", "--show-trace"]
    assert flake.redact_argv(argv)[7] == "********"
    plain = flake.parse_flake_ref("/mnt/etc/nixos#x")
    assert flake.eval_argv("nix", plain, "x") == [
        "nix", "eval", "--raw", "--no-write-lock-file",
        '/mnt/etc/nixos#nixosConfigurations."x".config.system.build.toplevel.drvPath']


def test_log_tail():
    out = "\n".join("out %d" % i for i in range(100))
    assert flake.log_tail(out, "error: boom\n") == ["out %d" % i for i in range(41, 100)] + ["error: boom"]
    assert flake.log_tail("", "") == []
    assert flake.log_tail("a\nb", None, lines=5) == ["a", "b"]


def test_missing_source_hint():
    err = ("warning: Git tree '/mnt/etc/nixos' is dirty\n"
           "error: getting status of '/mnt/nix/store/f45s9mdc667mq9s9y5paxx8cvfxqvkw2-source/nixos/"
           "hardware-configuration.nix': No such file or directory\n")
    rel, hint = flake.missing_source_hint(err, "/mnt/etc/nixos")
    assert rel == "nixos/hardware-configuration.nix"
    assert "git add nixos/hardware-configuration.nix" in hint and "/mnt/etc/nixos/nixos/hardware" in hint
    assert flake.missing_source_hint("error: something else", "/x") == (None, None)
    assert flake.missing_source_hint("error: getting status of '/etc/x.nix': No such file or directory") == (
        None, None)


# ---------------------------------------------------------------------------------------------- the starter flake

STARTER_FILES = [{"name": "flake.nix", "content": "{ outputs = _: { }; }\n"},
                 {"name": "configuration.nix", "content": "{ ... }: { }\n"}]


def test_starter_on_a_generated_directory_writes_both_replacing_the_generators_configuration():
    plan = flake.plan_starter(STARTER_FILES, {"flake.nix": None, "configuration.nix": "{ generated }\n"}, False)
    assert plan.names == ["flake.nix", "configuration.nix"] and plan.git_init and plan.changed
    assert plan.writes[1] == ("configuration.nix", "{ generated }\n", "{ ... }: { }\n")


def test_starter_leaves_an_existing_flake_alone_unless_overwrite():
    existing = {"flake.nix": "{ mine }\n", "configuration.nix": "{ mine }\n"}
    plan = flake.plan_starter(STARTER_FILES, existing, True)
    assert plan.writes == [] and not plan.git_init and not plan.changed
    over = flake.plan_starter(STARTER_FILES, dict(existing, **{"flake.nix": STARTER_FILES[0]["content"]}), True,
                              overwrite=True)
    assert over.names == ["configuration.nix"]


def test_starter_git_init_only_without_git_and_when_asked():
    existing = {"flake.nix": STARTER_FILES[0]["content"], "configuration.nix": STARTER_FILES[1]["content"]}
    assert flake.plan_starter(STARTER_FILES, existing, False).git_init
    assert not flake.plan_starter(STARTER_FILES, existing, False, git_init=False).changed


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/flake.nix", "x\0y", None, 3])
def test_starter_names_are_plain_file_names(name):
    with pytest.raises(flake.FlakeRefError) as e:
        flake.plan_starter([{"name": name, "content": ""}], {}, False)
    assert "give a file name in the flake directory" in str(e.value)


def test_starter_name_given_twice_is_refused():
    with pytest.raises(flake.FlakeRefError) as e:
        flake.plan_starter(STARTER_FILES + [STARTER_FILES[0]], {}, False)
    assert "flake.nix is given twice" in str(e.value)
