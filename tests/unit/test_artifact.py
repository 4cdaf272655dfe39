# SPDX-License-Identifier: GPL-3.0-or-later
"""The built collection tarball holds only what a user runs and reads, and installs offline with its dependencies.

The tarball is built here from the work tree (``ansible-galaxy collection build``, as ``make build`` does) into a
temporary directory, so the test checks the current galaxy.yml and never a stale ``.build`` artifact.
"""
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

# Top-level entries a user needs: the collection's metadata (galaxy.yml becomes MANIFEST.json and FILES.json),
# the content (meta, plugins, roles, playbooks), the documentation (docs, examples, README.md, changelogs) and the
# licence. examples/ holds the fleet inventory that README.md walks a user through.
ALLOWED_TOP = {"MANIFEST.json", "FILES.json", "README.md", "COPYING", "meta", "plugins", "roles", "playbooks", "docs",
               "examples", "changelogs"}
# Never in an artifact, wherever they are: caches, VCS and editor files, build output.
FORBIDDEN_PARTS = re.compile(r"(^|/)(__pycache__|\.[^/]+|[^/]+\.pyc|[^/]+\.tar\.gz)(/|$)")


def _galaxy():
    with open(os.path.join(REPO, "galaxy.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifact")
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path",
                           str(out), REPO], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    galaxy = _galaxy()
    path = out / ("%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"]))
    assert path.is_file(), sorted(os.listdir(out))
    return path


@pytest.fixture(scope="module")
def members(tarball):
    with tarfile.open(tarball) as tar:
        return [m.name for m in tar.getmembers()]


def test_only_user_files_are_shipped(members):
    outside = sorted(name for name in members if name.split("/", 1)[0] not in ALLOWED_TOP)
    assert not outside, "not for users, add it to build_ignore in galaxy.yml: %s" % outside
    junk = sorted(name for name in members if FORBIDDEN_PARTS.search(name))
    assert not junk, junk


def test_everything_a_user_runs_is_shipped(members):
    # The allow-list is also what must be there: a too greedy build_ignore would ship a broken collection.
    # A module ships with its body: gpt_partition.py holds only its documentation and main().
    tops = {name.split("/", 1)[0] for name in members}
    assert tops == ALLOWED_TOP, tops ^ ALLOWED_TOP
    for name in ("meta/runtime.yml", "meta/execution-environment.yml", "meta/ee-bindep.txt",
                 "plugins/modules/gpt_partition.py", "plugins/module_utils/_step_gpt_partition.py",
                 "plugins/module_utils/_command.py",
                 "plugins/doc_fragments/attributes.py", "playbooks/provision.yml", "roles/disk/tasks/main.yml",
                 "changelogs/changelog.yaml", "examples/inventory/hosts.yml"):
        assert name in members, name
    for role in os.listdir(os.path.join(REPO, "roles")):
        assert "roles/%s/meta/argument_specs.yml" % role in members, role


def test_files_json_lists_exactly_the_members(tarball, members):
    with tarfile.open(tarball) as tar:
        files = json.load(tar.extractfile("FILES.json"))
    listed = {entry["name"] for entry in files["files"] if entry["name"] != "."}
    assert listed == set(members) - {"MANIFEST.json", "FILES.json"}


def test_manifest_has_the_runtime_dependencies_and_no_placeholder(tarball):
    with tarfile.open(tarball) as tar:
        info = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
    assert info["dependencies"] == _galaxy()["dependencies"]
    assert "ansible.posix" not in info["dependencies"]  # only the tests use it (the json callback)
    text = json.dumps(info)
    assert "example.invalid" not in text and "maintainers" not in text, text


def test_installs_offline_with_the_bundled_dependencies(tarball, tmp_path):
    """The dependencies come from the collections of the `ansible` package installed next to ansible-core."""
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "-p",
                           str(tmp_path), str(tarball)], capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ansible_collections" / "impermanent" / "nixos" / "MANIFEST.json").is_file()
    for dependency in _galaxy()["dependencies"]:
        assert re.search(r"'%s:[0-9.]+' is already installed" % re.escape(dependency), proc.stdout), proc.stdout
