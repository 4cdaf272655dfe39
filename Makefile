# SPDX-License-Identifier: GPL-3.0-or-later
# impermanent.nixos — `make demo` and `make test` are the two entry points (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
VENV        := $(CURDIR)/.venv
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

.PHONY: help setup doctor host venv build ee-context lint sanity unit integration eval molecule molecule-all resume-soak test test-fast demo bench clean

help:
	@echo "make demo       provision a throwaway local UEFI VM end to end and show the layout"
	@echo "make test       set up and run every test layer (lint, sanity, unit, integration, eval, molecule)"
	@echo "make molecule-all  every Molecule scenario (make test runs default, fleet and reinstall)"
	@echo "make test-fast  unit + integration + eval only"
	@echo "make eval       evaluate every configuration the collection writes against NixOS option declarations"
	@echo "make doctor     check every precondition the tests rely on (make setup runs it)"
	@echo "make bench      benchmarks (ratios against the seed's commands)"

# setup makes this machine ready for every layer; doctor then names any precondition still missing.
setup: host venv
	bash scripts/doctor.sh

doctor:
	bash scripts/doctor.sh

host:
	bash scripts/setup-host.sh

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt
	$(PYTHON_BASE) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

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

lint: build
	$(BIN)/ansible-lint --offline
	$(BIN)/antsibull-changelog lint

# The full ansible-test sanity (every test that runs without containers) on an extracted copy of the artifact; the
# compile and import tests on every target Python installed (3.8 or newer, tests/config.yml). See the script.
sanity: build host
	bash scripts/sanity.sh $(TARBALL)

unit: build
	$(BIN)/pytest -q tests/unit

integration: build host
	$(BIN)/pytest -q tests/integration

# Every configuration the collection writes (starter variants x layouts, the check-mode plan's version, the files a
# previous Molecule run brought back), evaluated by real nixpkgs when at hand, else by the vendored offline kit
# tests/nix-eval; prints the oracle and the number of configurations evaluated (tests/eval/test_nix_eval.py).
eval: build host
	$(BIN)/pytest -q -rs tests/eval

# `make test` runs the scenarios that fit CI's time budget (about 70 minutes on 2 cores under TCG): default, fleet
# (virtio + LUKS and NVMe in one run) and reinstall. `make molecule-all` runs every scenario, adding nvme, topology,
# resume (the kill chain, the longest) and mitogen; any list: `make molecule MOLECULE_SCENARIOS="resume"`.
MOLECULE_SCENARIOS ?= default fleet reinstall
molecule: build host
	bash tests/run-molecule.sh $(MOLECULE_SCENARIOS)

molecule-all: build host
	bash tests/run-molecule.sh

# The resume kill chain RESUME_CHAINS times in a row against one guest (tests/resume/soak.sh): the flake hunt.
RESUME_CHAINS ?= 30
resume-soak: build host
	bash tests/resume/soak.sh $(RESUME_CHAINS)

test-fast: setup unit integration eval

test: setup lint sanity unit integration eval molecule

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
