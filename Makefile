# SPDX-License-Identifier: GPL-3.0-or-later
# impermanent.nixos — `make demo` and `make test` are the two entry points (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Two controller toolchains (README.md "Supported versions", docs/development.md "Toolchain"): the newest ansible-core
# in .venv (requirements.txt) runs every layer; the oldest supported one in .venv-oldest (requirements-oldest.txt)
# runs sanity, unit and integration again. scripts/venv.sh finds each Python (PATH, then pyenv's versions);
# PYTHON_BASE / OLDEST_PYTHON_BASE name one instead.
PYTHON_VERSIONS        ?= 3.13 3.12
OLDEST_PYTHON_VERSIONS ?= 3.11
PYTHON_BASE            ?=
OLDEST_PYTHON_BASE     ?=
VENV        := $(CURDIR)/.venv
OLDEST_VENV := $(CURDIR)/.venv-oldest
PY          := $(VENV)/bin/python
BIN         := $(VENV)/bin
BUILD       := $(CURDIR)/.build
COLLECTIONS := $(BUILD)/collections
INSTALLED   := $(COLLECTIONS)/ansible_collections/impermanent/nixos
VERSION     := $(shell sed -n 's/^version: *//p' galaxy.yml)
TARBALL     := $(BUILD)/impermanent-nixos-$(VERSION).tar.gz

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_PYTHON_INTERPRETER := $(PY)
export IMPERMANENT_COLLECTIONS_PATH := $(COLLECTIONS)
export PATH := $(BIN):$(PATH)

.PHONY: help setup doctor host venv venv-oldest build build-oldest sanity-oldest unit-oldest integration-oldest test-oldest ee-context lint sanity unit integration eval molecule molecule-all resume-soak test test-fast demo bench clean

help:
	@echo "make demo       provision a throwaway local UEFI VM end to end and show the layout"
	@echo "make test       set up and run every test layer (lint, sanity, unit, integration, eval, molecule) and the demo"
	@echo "make molecule-all  every Molecule scenario (make test runs default, fleet, reinstall, resume and mitogen)"
	@echo "make test-fast  unit + integration + eval only"
	@echo "make test-oldest  sanity, unit and integration on the oldest supported ansible-core (.venv-oldest)"
	@echo "make eval       evaluate every configuration the collection writes against NixOS option declarations"
	@echo "make doctor     check every precondition the tests rely on (make setup runs it)"
	@echo "make bench      benchmarks (ratios against the seed's commands)"

# setup makes this machine ready for every layer; doctor then names any precondition still missing.
setup: host venv venv-oldest
	bash scripts/doctor.sh

doctor:
	bash scripts/doctor.sh

host:
	bash scripts/setup-host.sh

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt
	PYTHON_BASE="$(PYTHON_BASE)" bash scripts/venv.sh $(VENV) requirements.txt $(PYTHON_VERSIONS)

venv-oldest: $(OLDEST_VENV)/.stamp

$(OLDEST_VENV)/.stamp: requirements-oldest.txt
	PYTHON_BASE="$(OLDEST_PYTHON_BASE)" bash scripts/venv.sh $(OLDEST_VENV) requirements-oldest.txt $(OLDEST_PYTHON_VERSIONS)

# Build the artifact and install it: every test layer past unit runs the installed collection by FQCN.
build: venv
	rm -rf $(BUILD)/*.tar.gz $(INSTALLED)
	mkdir -p $(BUILD)
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD) .
	$(BIN)/ansible-galaxy collection install --force --no-deps -p $(COLLECTIONS) $(TARBALL)

# The execution environment's build context (execution-environment.yml) in .build/ee, from the built artifact.
# Building the image needs a container engine: `podman build -t impermanent-nixos-ee:$(VERSION) .build/ee`.
ee-context: build
	rm -rf $(BUILD)/ee $(BUILD)/ee-collection
	mkdir -p $(BUILD)/ee-collection/impermanent.nixos
	tar -xzf $(TARBALL) -C $(BUILD)/ee-collection/impermanent.nixos
	$(BIN)/ansible-builder create -f execution-environment.yml -c $(BUILD)/ee

# ANSIBLE_HOME of its own: ansible-lint searches ANSIBLE_HOME/collections (default ~/.ansible) before
# ANSIBLE_COLLECTIONS_PATH, so a copy of this collection installed there by anything else would be linted against.
lint: build
	ANSIBLE_HOME=$(BUILD)/lint-ansible-home $(BIN)/ansible-lint --offline
	$(BIN)/antsibull-changelog lint

# The full ansible-test sanity (every test that runs without containers) on an extracted copy of the artifact; the
# compile and import tests on every target Python installed (3.8 or newer, tests/config.yml). See the script.
sanity: build host
	bash scripts/sanity.sh $(TARBALL)

unit: build
	$(BIN)/pytest -q tests/unit

integration: build host
	$(BIN)/pytest -q tests/integration

# The oldest supported ansible-core (.venv-oldest, requirements-oldest.txt): the artifact `make build` made,
# installed by that ansible-galaxy into .build/collections-oldest, through sanity, unit and the integration files in
# OLDEST_INTEGRATION (every module and role; docs/development.md "Toolchain" says why not all of them and what each
# costs). `make test` runs these three after the newest toolchain's layers.
OLDEST_COLLECTIONS := $(BUILD)/collections-oldest
OLDEST_ENV := PATH=$(OLDEST_VENV)/bin:$$PATH ANSIBLE_PYTHON_INTERPRETER=$(OLDEST_VENV)/bin/python \
	ANSIBLE_COLLECTIONS_PATH=$(OLDEST_COLLECTIONS) IMPERMANENT_COLLECTIONS_PATH=$(OLDEST_COLLECTIONS)
OLDEST_INTEGRATION ?= $(addprefix tests/integration/, \
	test_persist_audit.py test_hwconfig_patch.py test_disk_interlock.py test_tmpfs_root.py test_luks_open.py \
	test_nixos_flake_install.py test_secrets.py test_flake_starter.py test_libvirt_vm_xml.py test_persist_files.py \
	test_filesystems.py test_install_plan.py test_provision_plan.py \
	test_provision_check.py::test_check_diff_on_a_blank_disk_shows_the_plan_and_writes_nothing \
	test_gpt_partition.py::test_layout_created_aligned_and_idempotent \
	test_identity_role.py::test_identity_refuses_a_bad_hash_or_key_naming_it_but_not_the_secret \
	test_live_iso.py::test_minimal_iso_nix_evaluates_to_what_was_asked test_live_iso.py::test_check_mode_writes_nothing)

build-oldest: build venv-oldest
	rm -rf $(OLDEST_COLLECTIONS)
	$(OLDEST_VENV)/bin/ansible-galaxy collection install --force --no-deps -p $(OLDEST_COLLECTIONS) $(TARBALL)

sanity-oldest: build-oldest host
	VENV=$(OLDEST_VENV) bash scripts/sanity.sh $(TARBALL)

unit-oldest: build-oldest
	$(OLDEST_ENV) $(OLDEST_VENV)/bin/pytest -q tests/unit

integration-oldest: build-oldest host
	$(OLDEST_ENV) $(OLDEST_VENV)/bin/pytest -q $(OLDEST_INTEGRATION)

test-oldest: sanity-oldest unit-oldest integration-oldest

# Every configuration the collection writes (starter variants x layouts, the check-mode plan's version, the files a
# previous Molecule run brought back), evaluated by real nixpkgs when at hand, else by the vendored offline kit
# tests/nix-eval; prints the oracle and the number of configurations evaluated (tests/eval/test_nix_eval.py).
eval: build host
	$(BIN)/pytest -q -rs tests/eval

# `make test` runs the scenarios that fit CI's time budget (about 70 minutes on 2 cores under TCG): default, fleet
# (virtio + LUKS and NVMe in one run), reinstall, resume (the kill chain) and mitogen. `make molecule-all` runs every
# scenario, adding nvme and topology; any list: `make molecule MOLECULE_SCENARIOS="resume"`.
MOLECULE_SCENARIOS ?= default fleet reinstall resume mitogen
molecule: build host
	bash tests/run-molecule.sh $(MOLECULE_SCENARIOS)

molecule-all: build host
	bash tests/run-molecule.sh

# The resume kill chain RESUME_CHAINS times in a row against one guest (tests/resume/soak.sh): the flake hunt.
RESUME_CHAINS ?= 30
resume-soak: build host
	bash tests/resume/soak.sh $(RESUME_CHAINS)

test-fast: setup unit integration eval

# The demo last: it is the README's other command, and nothing else runs playbooks/demo.yml.
test: setup lint sanity unit integration eval test-oldest molecule demo

demo: setup build
	bash scripts/demo.sh

# Benchmarks print ratios measured side by side in one run (see BENCHMARKS.md). bench_provision boots a TCG guest
# (30-50 min at --repeat 3 on a 2-CPU host); BENCH_PROVISION_ARGS passes its flags, e.g. "--repeat 1 --variants ''".
BENCH_PROVISION_ARGS ?=
bench: setup build
	$(PY) benchmarks/bench_persist_audit.py
	$(PY) benchmarks/bench_provision.py $(BENCH_PROVISION_ARGS)

clean:
	rm -rf $(BUILD)
