#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Run Molecule scenarios one after the other against libvirt UEFI guests.
#
#   tests/run-molecule.sh                 # every molecule/<name>/molecule.yml except molecule/shared
#   tests/run-molecule.sh default nvme    # just these
#
# Starts libvirtd when needed (scripts/setup-host.sh), builds or reuses the guest image once, then runs
# `molecule test -s NAME` per scenario, stops at the first failure (exit status non-zero) and prints each
# scenario's wall time, and after it a failed scenario's error lines (the end of a CI log is what gets read).
# Each scenario's whole output, the guests' console logs and what the tests keep (the kill chain's runs) go to
# $IMPERMANENT_TEST_LOGS (default .build/test-logs), which outlives Molecule's destroy. Uses the venv's tools
# ($VENV, default .venv) and ANSIBLE_COLLECTIONS_PATH from the environment (`make molecule` points it at the built
# collection); without it, a link farm to the source tree.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
VENV=${VENV:-$REPO/.venv}
export PATH="$VENV/bin:$PATH"
command -v molecule >/dev/null || { echo "run-molecule: molecule not found in $VENV/bin (make venv)" >&2; exit 2; }

if [ -z "${ANSIBLE_COLLECTIONS_PATH:-}" ]; then
  farm=${TMPDIR:-/tmp}/impermanent-nixos-src-$(id -u)
  link=$farm/ansible_collections/impermanent/nixos
  if [ ! -L "$link" ]; then
    mkdir -p "$(dirname "$link")"
    ln -s "$REPO" "$link"
  fi
  export ANSIBLE_COLLECTIONS_PATH=$farm
fi
# The localhost plays set their interpreter themselves (ansible_playbook_python); a global
# ANSIBLE_PYTHON_INTERPRETER (the Makefile exports the venv's python) would be used inside the guests too.
unset ANSIBLE_PYTHON_INTERPRETER
export ANSIBLE_PIPELINING=True
export ANSIBLE_HOST_KEY_CHECKING=False
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-1}
# molecule/mitogen runs under Mitogen's strategy plugins, which live inside the installed mitogen package.
if [ -z "${IMPERMANENT_MITOGEN_STRATEGY_PLUGINS:-}" ]; then
  IMPERMANENT_MITOGEN_STRATEGY_PLUGINS=$("$VENV/bin/python" -c 'import ansible_mitogen, os
print(os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy"))' 2>/dev/null) || true
  export IMPERMANENT_MITOGEN_STRATEGY_PLUGINS
fi

if [ "$#" -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for f in molecule/*/molecule.yml; do
    [ -e "$f" ] || continue
    name=$(basename "$(dirname "$f")")
    [ "$name" = shared ] && continue
    scenarios+=("$name")
  done
fi
if [ "${#scenarios[@]}" -eq 0 ]; then
  echo "run-molecule: no scenario found (molecule/<name>/molecule.yml)" >&2
  exit 2
fi
for s in "${scenarios[@]}"; do
  [ -f "molecule/$s/molecule.yml" ] || { echo "run-molecule: no molecule/$s/molecule.yml" >&2; exit 2; }
  if [ "$s" = mitogen ] && [ ! -d "${IMPERMANENT_MITOGEN_STRATEGY_PLUGINS:-}" ]; then
    echo "run-molecule: molecule/mitogen needs the mitogen package in $VENV (pip install -r requirements.txt)" >&2
    exit 2
  fi
done

export IMPERMANENT_TEST_LOGS=${IMPERMANENT_TEST_LOGS:-$REPO/.build/test-logs}
mkdir -p "$IMPERMANENT_TEST_LOGS"

bash scripts/setup-host.sh
t0=$SECONDS
image=$(bash tests/images/build-guest-image.sh)
echo "run-molecule: guest image $image ($((SECONDS - t0)) s)"

declare -a summary=()
rc=0
failed=
for s in "${scenarios[@]}"; do
  echo "run-molecule: === scenario $s ==="
  t0=$SECONDS
  log=$IMPERMANENT_TEST_LOGS/molecule-$s.log
  touch "$IMPERMANENT_TEST_LOGS/.started-$s"
  if molecule test -s "$s" 2>&1 | tee "$log"; then
    summary+=("$(printf '%-20s passed  %5d s' "$s" $((SECONDS - t0)))")
  else
    rc=$?  # molecule's (pipefail; tee does not fail)
    summary+=("$(printf '%-20s FAILED  %5d s (rc %d)' "$s" $((SECONDS - t0)) "$rc")")
    failed=$s
    break
  fi
done

echo "run-molecule: summary"
printf '  %s\n' "${summary[@]}"
if [ "${#summary[@]}" -lt "${#scenarios[@]}" ]; then
  echo "  not run: ${scenarios[*]:${#summary[@]}}"
fi
if [ -n "$failed" ]; then
  bash tests/molecule-why-failed.sh "$failed" "$IMPERMANENT_TEST_LOGS/molecule-$failed.log" "$IMPERMANENT_TEST_LOGS" \
    "$IMPERMANENT_TEST_LOGS/.started-$failed"
fi
exit "$rc"
