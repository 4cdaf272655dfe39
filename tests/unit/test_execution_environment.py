# SPDX-License-Identifier: GPL-3.0-or-later
"""execution-environment.yml (ansible-builder v3) and bindep.txt, checked against the project's own files.

No container engine here, so the EE is not built: these tests hold its definition to the v3 format and keep it
in step with requirements.txt and galaxy.yml (pins, the collection tarball name, the collection dependencies).
When ansible-builder is importable, its own v3 JSON schema validates the file too.
"""
import os
import re

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V3_TOP_LEVEL = {"additional_build_files", "additional_build_steps", "build_arg_defaults", "dependencies", "images",
                "options", "version"}
V3_DEPENDENCIES = {"ansible_core", "ansible_runner", "galaxy", "python", "python_interpreter", "system", "exclude"}


def _load(name):
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
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
                name = re.split(r"[=<>!~\[ ]", line, 1)[0]
                found[name.lower().replace("_", "-")] = line
    return found


def _tarball(galaxy):
    return "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"])


def test_is_a_v3_definition(ee):
    assert ee["version"] == 3
    assert set(ee) <= V3_TOP_LEVEL, set(ee) - V3_TOP_LEVEL
    assert set(ee["dependencies"]) <= V3_DEPENDENCIES, set(ee["dependencies"]) - V3_DEPENDENCIES
    assert isinstance(ee["images"]["base_image"]["name"], str) and ee["images"]["base_image"]["name"]


def test_ansible_core_is_the_tested_pin(ee, pins):
    assert ee["dependencies"]["ansible_core"]["package_pip"] == pins["ansible-core"]
    assert re.fullmatch(r"ansible-runner==[0-9.]+", ee["dependencies"]["ansible_runner"]["package_pip"])


def test_python_interpreter_is_new_enough_for_ansible_core(ee):
    interpreter = ee["dependencies"]["python_interpreter"]
    version = re.fullmatch(r"python(3\.\d+)", interpreter["package_system"]).group(1)
    assert interpreter["python_path"] == "/usr/bin/python" + version
    assert tuple(int(x) for x in version.split(".")) >= (3, 11)  # ansible-core 2.19 needs Python >= 3.11


def test_python_dependencies_are_pinned_as_in_requirements(ee, pins):
    python = ee["dependencies"]["python"]
    assert python, "the controller needs jmespath (community.general.json_query)"
    for requirement in python:
        name = re.split(r"[=<>!~\[ ]", requirement, 1)[0].lower().replace("_", "-")
        assert pins.get(name) == requirement, "%s: requirements.txt has %r" % (requirement, pins.get(name))
    for test_only in ("pytest", "molecule", "ansible-lint", "pytest-testinfra", "antsibull-changelog"):
        assert not any(r.lower().startswith(test_only + "=") for r in python), test_only


def test_collection_tarball_matches_galaxy_yml(ee, galaxy):
    tarball = _tarball(galaxy)
    files = ee["additional_build_files"]
    assert {"src": ".build/" + tarball, "dest": "collections"} in files
    collections = ee["dependencies"]["galaxy"]["collections"]
    assert {"name": "collections/" + tarball, "type": "file"} in collections


def test_collection_dependencies_match_galaxy_yml(ee, galaxy):
    listed = {c["name"]: c.get("version") for c in ee["dependencies"]["galaxy"]["collections"]
              if c.get("type") != "file"}
    assert listed == galaxy["dependencies"]


def test_bindep_file_exists_and_parses(ee):
    path = os.path.join(REPO, ee["dependencies"]["system"])
    line_re = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]*( \[[a-z0-9:._ !-]+\])?")
    packages = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                assert line_re.fullmatch(line), "bindep.txt:%d: %r" % (number, line)
                packages.append(line.split()[0])
    # every play talks SSH: the client must be there on rpm (the base image) and dpkg platforms
    assert "openssh-clients" in packages and "openssh-client" in packages


def test_ansible_builder_schema_accepts_it(ee):
    schema = pytest.importorskip("ansible_builder.ee_schema",
                                 reason="ansible-builder is not installed: its v3 schema check is skipped")
    schema.validate_schema(dict(ee))
