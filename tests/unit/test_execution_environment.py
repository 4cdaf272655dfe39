# SPDX-License-Identifier: GPL-3.0-or-later
"""execution-environment.yml (ansible-builder v3) and the collection's meta/execution-environment.yml.

The test machines have no container engine, so the image is not built. ``ansible-builder create`` writes the build context (what an
image build would start from) into a temporary directory, from the work tree's definition and a freshly built
artifact, and the context is checked: complete (the collection, its system packages, the tested ansible-core pin)
and minimal (no test or development tool, no Python package the controller does not need at run time).
"""
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
V3_TOP_LEVEL = {"additional_build_files", "additional_build_steps", "build_arg_defaults", "dependencies", "images",
                "options", "version"}
V3_DEPENDENCIES = {"ansible_core", "ansible_runner", "galaxy", "python", "python_interpreter", "system", "exclude"}
# requirements.txt is the development and test toolchain: none of it may reach the image but ansible-core.
DEV_TOOLS = ("pytest", "molecule", "ansible-lint", "antsibull", "libvirt-python", "lxml", "jmespath", "ansible-builder",
             "testinfra", "ansible==")


def _load(*parts):
    with open(os.path.join(REPO, *parts), encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def ee():
    return _load("execution-environment.yml")


@pytest.fixture(scope="module")
def galaxy():
    return _load("galaxy.yml")


@pytest.fixture(scope="module")
def pins():
    """requirements.txt as {normalised name: 'name==version'}."""
    found = {}
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name = re.split(r"[=<>!~\[ ]", line, maxsplit=1)[0]
                found[name.lower().replace("_", "-")] = line
    return found


@pytest.fixture(scope="module")
def context(tmp_path_factory, galaxy):
    """`make ee-context` in a scratch copy: build the artifact, extract it, `ansible-builder create`."""
    pytest.importorskip("ansible_builder", reason="ansible-builder is not installed: the build context is not made")
    work = tmp_path_factory.mktemp("ee")
    shutil.copy(os.path.join(REPO, "execution-environment.yml"), work)
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(work),
                           REPO], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarball = work / ("%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"]))
    collection = work / ".build" / "ee-collection" / "impermanent.nixos"
    collection.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        # our own artifact, just built; the "data" filter where this Python has it (the default from 3.14)
        tar.extractall(collection, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml", "-c",
                           "context"], cwd=work, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No matches" not in proc.stdout + proc.stderr and "does not exist" not in proc.stdout + proc.stderr
    return work / "context"


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _dirs, files in os.walk(root) for f in files)


def test_is_a_v3_definition(ee):
    assert ee["version"] == 3
    assert set(ee) <= V3_TOP_LEVEL, set(ee) - V3_TOP_LEVEL
    assert set(ee["dependencies"]) <= V3_DEPENDENCIES, set(ee["dependencies"]) - V3_DEPENDENCIES
    assert isinstance(ee["images"]["base_image"]["name"], str) and ee["images"]["base_image"]["name"]


def test_ansible_builder_schema_accepts_it(ee):
    schema = pytest.importorskip("ansible_builder.ee_schema",
                                 reason="ansible-builder is not installed: its v3 schema check is skipped")
    schema.validate_schema(dict(ee))


def test_ansible_core_is_the_tested_pin(ee, pins):
    assert ee["dependencies"]["ansible_core"]["package_pip"] == pins["ansible-core"]
    assert re.fullmatch(r"ansible-runner==[0-9.]+", ee["dependencies"]["ansible_runner"]["package_pip"])


def test_python_interpreter_is_new_enough_for_ansible_core(ee):
    interpreter = ee["dependencies"]["python_interpreter"]
    version = re.fullmatch(r"python(3\.\d+)", interpreter["package_system"]).group(1)
    assert interpreter["python_path"] == "/usr/bin/python" + version
    assert tuple(int(x) for x in version.split(".")) >= (3, 12)  # ansible-core 2.20 and newer need Python >= 3.12


def test_no_version_is_written_twice(galaxy):
    """The collection's version lives in galaxy.yml only."""
    with open(os.path.join(REPO, "execution-environment.yml"), encoding="utf-8") as f:
        text = f.read()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert galaxy["version"] not in body


def test_collection_meta_declares_only_system_packages():
    meta = _load("meta", "execution-environment.yml")
    assert meta["version"] == 1
    assert set(meta["dependencies"]) == {"system"}  # the modules need no controller-side Python package
    path = os.path.join(REPO, meta["dependencies"]["system"])
    line_re = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]*( \[[a-z0-9:._ !-]+\])?")
    packages = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                assert line_re.fullmatch(line), "%s:%d: %r" % (path, number, line)
                packages.append(line.split()[0])
    # every play talks SSH: the client must be there on rpm (the base image) and dpkg platforms
    assert sorted(packages) == ["openssh-client", "openssh-clients"]


def test_context_holds_the_artifact_and_nothing_else(context, galaxy):
    files = _files(context)
    collection = "_build/collections/impermanent.nixos/"
    ours = [f for f in files if f.startswith(collection)]
    assert collection + "MANIFEST.json" in ours and collection + "meta/execution-environment.yml" in ours
    assert not [f for f in ours if f[len(collection):].split("/", 1)[0] in ("tests", "molecule", "benchmarks")]
    others = sorted(set(files) - set(ours))
    scripts = [f for f in others if f.startswith("_build/scripts/")]
    assert set(others) - set(scripts) == {"Dockerfile", "_build/requirements.yml"}, others
    assert yaml.safe_load((context / "_build" / "requirements.yml").read_text()) == {
        "collections": [{"name": "collections/impermanent.nixos", "type": "dir"}]}


def test_context_installs_no_dev_tool(context, pins):
    containerfile = (context / "Dockerfile").read_text()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile, re.M).group(1).split()
    assert refs[0] == pins["ansible-core"] and refs[1].startswith("ansible-runner==") and len(refs) == 2, refs
    # no requirements file for pip: nothing besides ansible-core, ansible-runner and what the collections declare
    assert not (context / "_build" / "requirements.txt").exists()
    for tool in DEV_TOOLS:
        assert tool not in containerfile.lower(), tool
