# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""Pure helpers for a flake-based ``nixos-install``: no I/O, only text in and data out.

* :func:`parse_flake_ref` splits ``DIR#HOST``, ``path:DIR#HOST``, ``git+file:///DIR?dir=SUB#HOST`` or a remote
  ref into what the module needs to check locally;
* :func:`parse_porcelain_z` reads ``git status --porcelain=v1 -z`` and :func:`files_to_stage` picks what a flake
  would otherwise not see;
* :func:`host_in_flake` is the cheap textual check that ``nixosConfigurations.HOST`` is defined (see its limits);
* :func:`merge_nix_config`, :func:`install_argv`, :func:`log_tail` and :func:`missing_source_hint` shape the run
  and its failure report.
"""

from __future__ import annotations

import posixpath
import re

from urllib.parse import parse_qs, unquote

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

# A nixosConfigurations name: a hostname-like identifier. Letters, digits, '-', '_' and '.', starting with a
# letter or digit, at most 63 characters (a DNS label). nixos-install quotes it as nixosConfigurations."HOST",
# so dots are fine; '#', '"', spaces and '/' are not.
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# Flake ref schemes that point at a directory of the target, and what the module can check there.
KIND_DIR = "dir"          # a plain path: Nix uses git+file when the path is in a git repo
KIND_PATH = "path"        # path:DIR: every file is copied, git plays no part
KIND_GIT_FILE = "git+file"  # git+file://DIR: only files git tracks (or has staged) are visible
KIND_REMOTE = "remote"    # github:, git+https:, tarball… nothing to check or stage on the target

FLAKE_FEATURES = ("nix-command", "flakes")

# nix: error: getting status of '/mnt/nix/store/<hash>-source/nixos/hardware-configuration.nix': No such file or directory
MISSING_SOURCE_RE = re.compile(
    r"getting status of '(?P<path>[^']*/nix/store/[0-9a-z]{32}-source(?:/(?P<rel>[^']*))?)': No such file or directory"
)


class FlakeRefError(ModuleError, ValueError):
    """A flake reference or host name the module cannot use; the message says what to fix."""


class FlakeRef(object):
    """What a flake reference means on the target.

    ``ref`` is the reference without its ``#fragment`` (what goes before ``#HOST`` on the command line),
    ``attr`` the fragment or None, ``kind`` one of the KIND_* constants, ``directory`` the local directory the
    reference points at (None for a remote ref) and ``flake_dir`` where its flake.nix is (``?dir=`` applied).
    """

    def __init__(self, ref, attr, kind, directory=None, subdir=""):
        self.ref = ref
        self.attr = attr
        self.kind = kind
        self.directory = directory
        self.subdir = subdir
        self.flake_dir = posixpath.join(directory, subdir) if directory and subdir else directory

    @property
    def local(self):
        return self.kind != KIND_REMOTE

    @property
    def uses_git(self):
        """True when Nix will only see files that git tracks (plain paths are checked for a repo separately)."""
        return self.kind in (KIND_DIR, KIND_GIT_FILE)

    def __repr__(self):  # pragma: no cover - debugging aid
        return "FlakeRef(%r, attr=%r, kind=%r, flake_dir=%r)" % (self.ref, self.attr, self.kind, self.flake_dir)


def _split_fragment(text):
    if "#" in text:
        ref, attr = text.split("#", 1)
        return ref, attr
    return text, None


def _local_url(rest, scheme):
    """``rest`` is what follows ``scheme:``; returns (directory, subdir) for a file-system URL."""
    path, _sep, query = rest.partition("?")
    if scheme == "git+file":
        if not path.startswith("//"):
            raise FlakeRefError("git+file flake ref %r must look like git+file:///absolute/dir" % (scheme + ":" + rest))
        path = path[2:]
        if path.startswith("localhost/"):
            path = path[len("localhost"):]
    elif path.startswith("//"):
        path = path[2:]
    path = unquote(path)
    if not path.startswith("/"):
        raise FlakeRefError("flake ref %r must name an absolute directory on the target" % (scheme + ":" + rest))
    subdir = parse_qs(query).get("dir", [""])[0].strip("/")
    return posixpath.normpath(path), subdir


def parse_flake_ref(text):
    """Parse the ``flake`` option. Raises FlakeRefError for refs the module cannot use."""
    text = (text or "").strip()
    if not text:
        raise FlakeRefError("flake must be a directory on the target or a flake reference, got an empty value")
    ref, attr = _split_fragment(text)
    if attr is not None and ('"' in attr or "#" in attr):
        raise FlakeRefError("flake ref %r has an unusable #fragment %r" % (text, attr))
    if ref.startswith("/") or ref.startswith("./") or ref.startswith("../") or ref in (".", ".."):
        if not ref.startswith("/"):
            raise FlakeRefError(
                "flake %r is relative; give the absolute directory on the target (the module does not run in it)" % text)
        return FlakeRef(posixpath.normpath(ref), attr or None, KIND_DIR, posixpath.normpath(ref))
    scheme, sep, rest = ref.partition(":")
    if not sep:
        raise FlakeRefError(
            "flake %r is neither an absolute directory nor a flake reference (path:, git+file:, github:, …)" % text)
    if scheme == "path":
        directory, subdir = _local_url(rest, scheme)
        return FlakeRef(ref, attr or None, KIND_PATH, directory, subdir)
    if scheme == "git+file":
        directory, subdir = _local_url(rest, scheme)
        return FlakeRef(ref, attr or None, KIND_GIT_FILE, directory, subdir)
    if scheme == "file":
        raise FlakeRefError("flake ref %r: use git+file:// for a git checkout or path: for a plain directory" % text)
    return FlakeRef(ref, attr or None, KIND_REMOTE)


def resolve_host(flake_ref, host):
    """The nixosConfigurations name to install: ``host`` or the ref's fragment (they must agree)."""
    fragment = flake_ref.attr
    if host and fragment and host != fragment:
        raise FlakeRefError("host=%r disagrees with the flake ref's #%s; give the name once" % (host, fragment))
    name = host or fragment
    if not name:
        raise FlakeRefError("give host (the nixosConfigurations name), or append #HOST to flake")
    if not HOST_RE.match(name):
        raise FlakeRefError(
            "host %r is not a usable nixosConfigurations name: use letters, digits, '-', '_' or '.', "
            "starting with a letter or digit, at most 63 characters" % name)
    return name


def parse_porcelain_z(data):
    """Parse ``git status --porcelain=v1 -z`` output into a list of (XY, path, orig_path_or_None).

    Paths are relative to the repository's top level (porcelain output is, whatever the cwd). In -z mode a
    rename or copy is ``XY new NUL old NUL``; nothing is quoted.
    """
    if isinstance(data, bytes):
        data = data.decode("utf-8", "surrogateescape")
    fields = data.split("\0")
    entries = []
    i = 0
    while i < len(fields):
        field = fields[i]
        i += 1
        if not field:
            continue
        if len(field) < 4 or field[2] != " ":
            raise ValueError("unexpected git status --porcelain=v1 -z entry: %r" % field)
        xy, path = field[:2], field[3:]
        orig = None
        if "R" in xy or "C" in xy:
            if i >= len(fields) or not fields[i]:
                raise ValueError("git status rename entry %r lacks its source path" % field)
            orig = fields[i]
            i += 1
        entries.append((xy, path, orig))
    return entries


def wants_staging(path):
    """Files a flake evaluation reads: Nix sources and the lock file."""
    base = posixpath.basename(path)
    return path.endswith(".nix") or base == "flake.lock"


def files_to_stage(entries, prefix=""):
    """From parsed porcelain entries, the paths to ``git add`` so that the flake sees them.

    Untracked (``??``) and modified-in-worktree (Y = M or T) ``*.nix`` files and ``flake.lock``, limited to
    ``prefix`` (the flake directory relative to the repository top level, '' for all). Deleted, ignored (``!!``)
    and conflicted files are left alone: they need a person.
    """
    prefix = prefix.strip("/")
    chosen = []
    for xy, path, _orig in entries:
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            continue
        if not wants_staging(path):
            continue
        conflicted = "U" in xy or xy in ("AA", "DD")
        if xy == "??" or (xy[1] in ("M", "T") and not conflicted):
            chosen.append(path)
    return sorted(set(chosen))


def strip_nix_comments(text):
    """Drop ``# …`` and ``/* … */`` comments, leaving strings alone (good enough for the textual host check)."""
    out = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == '"':
            in_string = True
            out.append(c)
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


HOST_DEFINED = "defined"
HOST_MENTIONED = "mentioned"
HOST_ABSENT = "absent"


def host_in_flake(flake_nix_text, host):
    """Cheap, textual: is ``nixosConfigurations.HOST`` defined in this flake.nix?

    Returns HOST_DEFINED when ``nixosConfigurations.HOST``/``nixosConfigurations."HOST"`` appears, or when
    ``HOST =``/``"HOST" =`` appears after ``nixosConfigurations``; HOST_MENTIONED when the name appears only in
    some other form (a ``genAttrs [ "HOST" ]`` list, a ``mkHost "HOST"`` call); HOST_ABSENT when it does not appear
    at all (comments ignored). Limits: it does not evaluate Nix (there is no nixpkgs to evaluate a NixOS system
    against), so names built from strings, read from directories (``builtins.readDir ./hosts``) or defined in an
    imported file other than flake.nix are not seen.
    """
    text = strip_nix_comments(flake_nix_text)
    name = re.escape(host)
    word = r"(?<![A-Za-z0-9_'-])"
    end = r"(?![A-Za-z0-9_'-])"
    quoted_or_bare = r'(?:"%s"|%s%s%s)' % (name, word, name, end)
    if re.search(r"nixosConfigurations\s*\.\s*" + quoted_or_bare, text):
        return HOST_DEFINED
    at = text.find("nixosConfigurations")
    if at >= 0 and re.search(quoted_or_bare + r"\s*=(?!=)", text[at:]):
        return HOST_DEFINED
    if re.search(quoted_or_bare, text):
        return HOST_MENTIONED
    return HOST_ABSENT


def merge_nix_config(existing):
    """NIX_CONFIG with ``nix-command`` and ``flakes`` enabled, keeping every other line of ``existing``.

    An ``experimental-features`` line gets the missing features appended; without one, a line is added. An
    ``extra-experimental-features`` line counts too: features it lists are not repeated.
    """
    lines = (existing or "").splitlines()
    enabled = set()
    main_index = None
    for index, line in enumerate(lines):
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep:
            continue
        if key in ("experimental-features", "extra-experimental-features"):
            enabled.update(value.split())
            if key == "experimental-features":
                main_index = index
    missing = [f for f in FLAKE_FEATURES if f not in enabled]
    if not missing:
        return "\n".join(lines)
    if main_index is None:
        lines.append("experimental-features = " + " ".join(FLAKE_FEATURES))
    else:
        lines[main_index] = lines[main_index].rstrip() + " " + " ".join(missing)
    return "\n".join(lines)


def install_argv(binary, flake_ref, host, root, no_root_passwd=True, extra_args=None):
    """``nixos-install --flake REF#HOST --root ROOT [--no-root-passwd] [extra…]``."""
    argv = [binary, "--flake", "%s#%s" % (flake_ref.ref, host), "--root", root]
    if no_root_passwd:
        argv.append("--no-root-passwd")
    argv.extend(str(a) for a in (extra_args or []))
    return argv


# nixos-install arguments that change what the flake evaluates to, so the pre-install evaluation passes them on:
# name -> how many values follow it.
EVAL_PASSED_ARGS = {"--option": 2, "--override-input": 2, "--impure": 0, "--show-trace": 0, "--offline": 0}


def toplevel_attr(host):
    """The attribute nixos-install builds: ``nixosConfigurations."HOST".config.system.build.toplevel``."""
    return 'nixosConfigurations."%s".config.system.build.toplevel' % host


def eval_argv(binary, flake_ref, host, extra_args=None):
    """``nix eval --raw --no-write-lock-file REF#nixosConfigurations."HOST".config.system.build.toplevel.drvPath``
    plus the nixos-install ``extra_args`` that matter to the evaluation (EVAL_PASSED_ARGS). Evaluation only: the
    .drv path is computed, nothing is built, and no flake.lock is written into the flake."""
    argv = [binary, "eval", "--raw", "--no-write-lock-file",
            "%s#%s.drvPath" % (flake_ref.ref, toplevel_attr(host))]
    extra = [str(a) for a in (extra_args or [])]
    i = 0
    while i < len(extra):
        width = EVAL_PASSED_ARGS.get(extra[i])
        if width is None:
            i += 1
            continue
        argv.extend(extra[i:i + 1 + width])
        i += 1 + width
    return argv


SECRET_OPTIONS = ("access-tokens", "netrc-file")


def redact_argv(argv):
    """argv fit for a result: the value of ``--option access-tokens VALUE`` (and similar) is masked."""
    shown = list(argv)
    for i, arg in enumerate(shown):
        if arg in ("--option", "--extra-option") and i + 2 < len(shown) and shown[i + 1] in SECRET_OPTIONS:
            shown[i + 2] = "********"
    return shown


def log_tail(stdout, stderr, lines=60):
    """The last ``lines`` lines of stdout followed by stderr (Nix prints its error last, on stderr)."""
    combined = (stdout or "").splitlines() + (stderr or "").splitlines()
    return combined[-lines:] if lines else combined


def missing_source_hint(stderr, repo_top=None):
    """When Nix could not see a source file, the relative path and a hint naming it; else (None, None)."""
    match = MISSING_SOURCE_RE.search(stderr or "")
    if not match:
        return None, None
    rel = match.group("rel") or ""
    where = posixpath.join(repo_top, rel) if repo_top and rel else rel or match.group("path")
    hint = (
        "Nix could not find %s in the flake's source: a flake in a git repository only sees files git tracks. "
        "Run `git add %s` in %s (or set stage: true so this module stages untracked *.nix files), then retry."
        % (where, rel or "<file>", repo_top or "the flake's repository")
    )
    return rel, hint


# ---------------------------------------------------------------------------------------------- the starter flake

#: what decides whether the starter is written: a flake directory without it has no flake yet
STARTER_MARKER = "flake.nix"


class StarterPlan(object):
    """The starter files to write into the flake directory, in order: ``(name, before, content)`` with ``before``
    the file's text now (None when missing); and whether to ``git init`` the directory."""

    def __init__(self):
        self.writes = []
        self.git_init = False

    @property
    def names(self):
        return [name for name, _before, _content in self.writes]

    @property
    def changed(self):
        return bool(self.writes) or self.git_init


def check_starter_names(files):
    """Each starter file is one plain name in the flake directory (no ``/``, not ``.``/``..``, no NUL), once."""
    seen = set()
    for i, entry in enumerate(files):
        name = entry.get("name")
        if (not isinstance(name, str) or not name or "/" in name or "\0" in name or name in (".", "..")):
            raise FlakeRefError("starter.files[%d].name=%r: give a file name in the flake directory, such as "
                                "flake.nix (no '/')." % (i, name))
        if name in seen:
            raise FlakeRefError("starter.files: %s is given twice; give each file once." % name)
        seen.add(name)


def plan_starter(files, existing, has_git, overwrite=False, git_init=True):
    """What writing the starter does to a flake directory. ``files``: ``[{name, content}]``; ``existing``: each
    name's current text, or None when missing. Without ``overwrite`` nothing is written once the directory has a
    flake.nix (the user's flake, or an earlier run's starter the user may have edited); otherwise every file whose
    text differs is (re)written, so the configuration.nix nixos-generate-config left there is replaced. Pure."""
    check_starter_names(files)
    plan = StarterPlan()
    if overwrite or existing.get(STARTER_MARKER) is None:
        plan.writes = [(f["name"], existing.get(f["name"]), f["content"]) for f in files
                       if existing.get(f["name"]) != f["content"]]
    plan.git_init = bool(git_init) and not has_git
    return plan
