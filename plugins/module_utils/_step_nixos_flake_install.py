# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""The body of the impermanent.nixos.nixos_flake_install module: the planner that reads the target and the
flake, the writer of the starter flake, the executor that stages, evaluates the toplevel and runs ``nixos-install``,
and the body that ties them together, kept here so that install_plan can run it too.
"""

from __future__ import annotations

import os
import shlex
import stat

from ansible_collections.impermanent.nixos.plugins.module_utils._command import CommandError
from ansible_collections.impermanent.nixos.plugins.module_utils._files import Wanted, write_file
from ansible_collections.impermanent.nixos.plugins.module_utils import _flake as flake
from ansible_collections.impermanent.nixos.plugins.module_utils._paths import PathError, resolve_beneath, within

PROFILE = "nix/var/nix/profiles/system"
#: the flake directory's mode while nixos-install runs, and after it (open_flake_dir)
OPEN_MODE = "0777"
CLOSED_MODE = "0755"


class InstallPlan(object):
    """What the run must do: nothing (skipped_reason), or stage ``staged`` in ``repo_top`` then run ``argv``."""

    def __init__(self, host):
        self.host = host
        self.skipped_reason = None
        self.repo_top = None
        self.staged = []
        self.argv = None
        self.eval_argv = None
        self.nix_config = None
        self.warnings = []
        #: the flake directory whose mode is opened while installing (open_flake_dir), or None
        self.open_dir = None
        #: whether the flake (directory, git repository, flake.nix, host) was checked
        self.flake_checked = False


class InstallPlanner(object):
    """Reads the target and decides; raises CommandError for anything the user must fix first."""

    def __init__(self, module, runner, pending=False):
        self.module = module
        self.runner = runner
        self.params = module.params
        #: check mode: the flake is not yet as the install will see it (a root install_plan forecasts, or a starter that
        #: would be written first)
        self.pending = pending

    def git(self, directory, *args):
        return [self.runner.find("git"), "-C", directory, "-c", "safe.directory=*"] + list(args)

    def plan(self):
        p = self.params
        try:
            ref = flake.parse_flake_ref(p["flake"])
            host = flake.resolve_host(ref, p["host"])
        except flake.FlakeRefError as e:
            raise CommandError(str(e))
        result = InstallPlan(host)
        root = p["root"].rstrip("/") or "/"
        profile = os.path.join(root, PROFILE)
        # the directories on the way; the profile itself is a link into the target's store, only looked at
        self.beneath(root, os.path.dirname(profile), "nixos-install writes the system there")
        if p["open_flake_dir"]:
            result.open_dir = self.flake_dir_to_open(ref, root)
        if os.path.lexists(profile) and not p["reinstall"]:
            result.skipped_reason = (
                "%s exists (NixOS is already installed); set reinstall=true to install again" % profile)
            return result
        if self.module.check_mode and self.pending:
            result.warnings.append(
                "check mode: %s and the flake are not yet as the earlier steps would leave them, so the flake "
                "(directory, git repository, flake.nix, host %r) was not checked and the files to stage were not "
                "listed; %s does not exist now (a nix file system that is only mounted later in the run was not "
                "looked at)" % (root, host, profile))
        else:
            self.check_target(ref, host, root, result)
            result.flake_checked = True
        result.argv = flake.install_argv(
            self.runner.find("nixos-install"), ref, host, root, p["no_root_passwd"], p["extra_args"])
        result.nix_config = flake.merge_nix_config(os.environ.get("NIX_CONFIG"))
        self.plan_gate(ref, host, result)
        return result

    def plan_gate(self, ref, host, result):
        """The pre-install evaluation (``nix eval`` of the toplevel's drvPath), or a warning why check mode
        cannot run it yet."""
        if self.module.check_mode and (self.pending or result.staged):
            result.warnings.append(
                "check mode: the configuration was not evaluated (nix eval of nixosConfigurations.%s's toplevel): "
                "%s; the real run evaluates it before nixos-install" % (
                    host, "the flake is not there yet" if self.pending else
                    "files it needs are not staged yet (%s)" % ", ".join(result.staged)))
            return
        nix = self.runner.find("nix", required=False)
        if nix is None:
            raise CommandError(
                "nix is not on the target's PATH, so the configuration cannot be evaluated before nixos-install "
                "(which needs nix as well): run from a NixOS live system, or put nix on the PATH")
        result.eval_argv = flake.eval_argv(nix, ref, host, self.params["extra_args"])

    @staticmethod
    def below_root(ref, root):
        """A flake directory on the target, below ``root`` (the flake role's ``ROOT/etc/nixos``)."""
        return ref.local and root != "/" and within(ref.directory, root)

    def flake_dir_to_open(self, ref, root):
        if not self.below_root(ref, root):
            raise CommandError(
                "open_flake_dir changes the mode of a flake directory below root %s, and flake=%s is not one: "
                "set open_flake_dir=false, or install from a directory below root" % (root, self.params["flake"]))
        self.beneath(root, ref.directory, "its mode is changed while nixos-install runs")
        return ref.directory

    @staticmethod
    def beneath(root, path, why):
        """Refuse ``path`` below ``root`` when a link on the way leads out of ``root``."""
        try:
            resolve_beneath(root, path)
        except PathError as e:
            raise CommandError("%s (%s); nothing was run." % (e, why))

    def check_target(self, ref, host, root, result):
        if not os.path.isdir(root):
            raise CommandError("root %s is not a directory: mount the target file systems there first" % root)
        inside = self.below_root(ref, root)
        if inside:
            self.beneath(root, ref.flake_dir, "the flake below root is staged with git add and installed from")
        if ref.local:
            self.check_local_flake(ref, host, result)
        if inside and result.repo_top and not within(os.path.realpath(result.repo_top), os.path.realpath(root)):
            raise CommandError(
                "the flake %s lies below root %s, but its git repository is %s, outside root: git add would write "
                "there and the install would use its files. Run `git init` in the flake directory (or move the "
                "repository below %s); nothing was run." % (ref.directory, root, result.repo_top, root))
        if self.params["stage"] and result.repo_top:
            result.staged = self.untracked_sources(ref, result.repo_top)

    def check_local_flake(self, ref, host, result):
        if not os.path.isdir(ref.directory):
            raise CommandError("flake directory %s does not exist on the target (flake=%s)" % (
                ref.directory, self.params["flake"]))
        if ref.uses_git:
            result.repo_top = self.repo_top(ref)
        flake_nix = os.path.join(ref.flake_dir, "flake.nix")
        if not os.path.isfile(flake_nix):
            raise CommandError("%s has no flake.nix: point flake at the directory that holds it%s" % (
                ref.flake_dir, " (or add ?dir=SUBDIR to the ref)" if ref.kind != flake.KIND_DIR else ""))
        with open(flake_nix, "r", errors="replace") as f:
            found = flake.host_in_flake(f.read(), host)
        if found == flake.HOST_ABSENT:
            raise CommandError(
                "host %r does not appear in %s: nixos-install would fail to find nixosConfigurations.%s. "
                "Check the name (the check is textual: the name must appear in flake.nix)" % (host, flake_nix, host))
        if found == flake.HOST_MENTIONED:
            result.warnings.append(
                "%r appears in %s but not as nixosConfigurations.%s or '%s = ...' under nixosConfigurations; "
                "assuming it is generated there (the check is textual)" % (host, flake_nix, host, host))

    def repo_top(self, ref):
        dotgit = os.path.exists(os.path.join(ref.directory, ".git"))
        git = self.runner.find("git", required=dotgit)
        explain = (
            "%s is not in a git repository. A flake directory is expected to be a git checkout (Nix then installs "
            "what git tracks); run `git init && git add -A` there, or use flake=path:%s to install the directory "
            "as it is, without git" % (ref.directory, ref.directory))
        if git is None:
            raise CommandError(explain + " (git is not installed on the target either)")
        rc, out, err = self.runner.run(self.git(ref.directory, "rev-parse", "--show-toplevel"),
                                       check_rc=False, record=False)
        if rc != 0:
            if dotgit:
                raise CommandError("git cannot read the repository in %s: %s" % (ref.directory, err.strip()),
                                   rc=rc, stdout=out, stderr=err)
            raise CommandError(explain, rc=rc, stdout=out, stderr=err)
        return out.strip()

    def untracked_sources(self, ref, repo_top):
        argv = [self.runner.find("git"), "--no-optional-locks"] + self.git(ref.flake_dir)[1:] + [
            "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", "."]
        _rc, out, _err = self.runner.run(argv, record=False, what="git status")
        prefix = os.path.relpath(os.path.realpath(ref.flake_dir), os.path.realpath(repo_top))
        try:
            entries = flake.parse_porcelain_z(out)
        except ValueError as e:
            raise CommandError(str(e), stdout=out)
        return flake.files_to_stage(entries, "" if prefix == "." else prefix)


class StarterWriter(object):
    """Writes the starter flake (the starter option) into a local flake directory: reads, plans
    (:func:`._flake.plan_starter`), then writes; in check mode only reads and plans."""

    def __init__(self, module, runner, planner):
        self.module = module
        self.runner = runner
        self.planner = planner

    def directory(self, ref, root):
        if not ref.local or ref.kind != flake.KIND_DIR:
            raise CommandError("starter writes into a flake directory on the target, and flake=%s is not one: "
                               "give the directory (such as /mnt/etc/nixos), or leave starter out"
                               % self.module.params["flake"])
        if self.planner.below_root(ref, root):
            self.planner.beneath(root, ref.directory, "the starter flake is written there")
        return ref.directory

    def read(self, directory, files):
        existing = {}
        for name in set([flake.STARTER_MARKER] + [f["name"] for f in files]):
            path = os.path.join(directory, name)
            if os.path.islink(path):
                raise CommandError("%s is a symbolic link; the starter flake writes plain files: remove the link "
                                   "(nothing was written)" % path)
            try:
                with open(path, "rb") as f:
                    existing[name] = f.read().decode("utf-8", "surrogateescape")
            except FileNotFoundError:
                existing[name] = None
            except OSError as e:
                raise CommandError("cannot read %s: %s; nothing was written" % (path, e.strerror or e))
        return existing

    def apply(self, ref, root, starter):
        directory = self.directory(ref, root)
        flake.check_starter_names(starter["files"])
        missing = not os.path.isdir(directory)
        if missing:
            if not self.module.check_mode:
                raise CommandError("flake directory %s does not exist on the target; mount the layout first (the "
                                   "layout role bind-mounts it), or create it" % directory)
            existing, has_git = {}, False
        else:
            existing = self.read(directory, starter["files"])
            has_git = os.path.lexists(os.path.join(directory, ".git"))
        plan = flake.plan_starter(starter["files"], existing, has_git, starter["overwrite"], starter["git_init"])
        if not self.module.check_mode:
            for name, _before, content in plan.writes:
                self.write(os.path.join(directory, name), content)
        if plan.git_init:
            argv = self.planner.git(directory, "init", "--quiet")
            if self.module.check_mode:
                self.runner.would_run(argv)
            else:
                self.runner.run(argv, what="git init")
        return plan, missing

    @staticmethod
    def write(path, content):
        """``content`` to ``path`` atomically, mode 0644, owned by the user the module runs as (persist_files'
        write: a temporary file in the directory, mode set first, renamed over the old one)."""
        try:
            write_file(Wanted(path, "file", 0o644, os.geteuid(), os.getegid(),
                              content.encode("utf-8", "surrogateescape")))
        except OSError as e:
            raise CommandError("could not write %s: %s" % (path, e.strerror or e))


class InstallExecutor(object):
    """Stages, evaluates the toplevel (the pre-install gate), then runs nixos-install; in check mode it records
    what it would run and evaluates only when nothing needs staging first."""

    def __init__(self, module, runner, planner):
        self.module = module
        self.runner = runner
        self.planner = planner

    def execute(self, plan):
        stage_argv = None
        if plan.staged:
            stage_argv = self.planner.git(plan.repo_top, "add", "--") + plan.staged
        shown = flake.redact_argv(plan.argv)
        if self.module.check_mode:
            if stage_argv:
                self.runner.would_run(stage_argv)
            if plan.open_dir:
                self.set_mode(plan.open_dir, OPEN_MODE)
            self.runner.would_run(shown)
            if plan.open_dir:
                self.runner.would_run(self.chmod_argv(plan.open_dir, CLOSED_MODE))
            return self.evaluate(plan), None
        if stage_argv:
            self.runner.run(stage_argv, what="git add")
        drv_path = self.evaluate(plan)
        if plan.open_dir:
            self.set_mode(plan.open_dir, OPEN_MODE)
        try:
            rc, out, err = self.runner.run(plan.argv, check_rc=False, shown=shown,
                                           environ={"NIX_CONFIG": plan.nix_config})
        finally:
            if plan.open_dir:
                self.set_mode(plan.open_dir, CLOSED_MODE)
        tail = flake.log_tail(out, err)
        if rc != 0:
            _rel, hint = flake.missing_source_hint(err, plan.repo_top)
            msg = "nixos-install failed (rc=%s)." % rc
            if hint:
                msg += " " + hint
            msg += "\nLast lines of its output:\n" + "\n".join(tail)
            raise CommandError(msg, rc=rc, stdout=out, stderr=err, cmd=self.runner.quote(shown))
        return drv_path, tail

    def chmod_argv(self, directory, mode):
        return [self.runner.find("chmod"), mode, directory]

    def set_mode(self, directory, mode):
        """``chmod MODE DIRECTORY`` unless the directory has that mode already (or, in check mode, would run it)."""
        try:
            if stat.S_IMODE(os.stat(directory).st_mode) == int(mode, 8):
                return
        except FileNotFoundError:
            if not self.module.check_mode:
                raise CommandError("flake directory %s does not exist on the target" % directory)
        if self.module.check_mode:
            self.runner.would_run(self.chmod_argv(directory, mode))
        else:
            self.runner.run(self.chmod_argv(directory, mode), what="chmod")

    def evaluate(self, plan):
        """The pre-install gate: evaluate the toplevel nixos-install would build; stop with Nix's error."""
        if plan.eval_argv is None:
            return None
        shown = flake.redact_argv(plan.eval_argv)
        rc, out, err = self.runner.run(plan.eval_argv, check_rc=False, record=False,
                                       environ={"NIX_CONFIG": plan.nix_config})
        if rc == 0:
            return out.strip()
        _rel, hint = flake.missing_source_hint(err, plan.repo_top)
        msg = ("The configuration nixosConfigurations.%s does not evaluate, so nixos-install was not run and "
               "nothing was installed (nix eval rc=%s)." % (plan.host, rc))
        if hint:
            msg += " " + hint
        msg += "\nNix says:\n" + "\n".join(flake.log_tail("", err))
        raise CommandError(msg, rc=rc, stdout=out, stderr=err, cmd=self.runner.quote(shown))


def install(run):
    """The module's body (see _module.run_module)."""
    result = run.result
    result.update(changed=False, staged=[], skipped_reason=None, host=run.params["host"], drv_path=None,
                  eval_cmd=None, starter_written=[], flake_checked=False)
    planner = InstallPlanner(run.module, run.runner, pending=run.params["root"] in run.pending_roots)
    executor = InstallExecutor(run.module, run.runner, planner)
    plan = None
    try:
        starter = write_starter(run, planner)
        plan = planner.plan()
        result["host"] = plan.host
        for warning in plan.warnings:
            run.warn(warning)
        if plan.skipped_reason:
            result["skipped_reason"] = plan.skipped_reason
            if plan.open_dir:
                # an interrupted earlier run may have left it open
                executor.set_mode(plan.open_dir, CLOSED_MODE)
            result["changed"] = bool(run.runner.commands) or bool(starter and starter.writes)
            return result
        result["cmd"] = flake.redact_argv(plan.argv)
        result["staged"] = plan.staged
        result["flake_checked"] = plan.flake_checked
        if plan.eval_argv:
            result["eval_cmd"] = flake.redact_argv(plan.eval_argv)
        result["drv_path"], tail = executor.execute(plan)
    except CommandError as e:
        explain_failure(e, plan, result)
        raise
    result["changed"] = True
    if tail is not None:
        result["log_tail"] = tail
    return result


def write_starter(run, planner):
    """The starter option: write the files and git init before the install is planned; in check mode, a starter
    that would change the directory makes the flake pending (it is not yet what nixos-install will see)."""
    starter = run.params["starter"]
    if starter is None:
        return None
    try:
        ref = flake.parse_flake_ref(run.params["flake"])
    except flake.FlakeRefError as e:
        raise CommandError(str(e))
    root = run.params["root"].rstrip("/") or "/"
    plan, missing = StarterWriter(run.module, run.runner, planner).apply(ref, root, starter)
    run.result["starter_written"] = plan.names
    if run.diff_mode and plan.writes:
        run.result["diff"] = [run.diff(before or "", content, os.path.join(ref.directory, name)
                                       + ("" if before is not None else " (new)"))
                              for name, before, content in plan.writes]
    if run.check_mode and (plan.changed or missing):
        planner.pending = True
    return plan


def explain_failure(error, plan, result):
    """A failed command's ``cmd`` as a list (the redacted argv), and the last lines of its output when it was
    nixos-install or the evaluation."""
    error.result["cmd"] = shlex.split(error.cmd) if error.cmd else result.get("cmd")
    ran = [flake.redact_argv(a) for a in (plan.argv, plan.eval_argv) if a] if plan is not None else []
    if error.result["cmd"] in ran:
        error.result["log_tail"] = error.result["stdout_lines"] = flake.log_tail(error.stdout, error.stderr)


#: what main() passes to AnsibleModule
MODULE_SPEC = dict(
    argument_spec=dict(
        flake=dict(type="str", required=True),
        host=dict(type="str"),
        root=dict(type="path", default="/mnt"),
        no_root_passwd=dict(type="bool", default=True, no_log=False),
        stage=dict(type="bool", default=True),
        extra_args=dict(type="list", elements="str", default=[]),
        reinstall=dict(type="bool", default=False),
        open_flake_dir=dict(type="bool", default=False),
        starter=dict(type="dict", options=dict(
            files=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                content=dict(type="str", required=True),
            )),
            overwrite=dict(type="bool", default=False),
            git_init=dict(type="bool", default=True),
        )),
    ),
    supports_check_mode=True,
)


#: the body as _module.run_module calls it
run_step = install


def failed_fields(params):
    """The fields only a failed run returns: none."""
    return None
