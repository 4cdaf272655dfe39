#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Run the resume kill chain (tests/resume/kill_chain.py) N times in a row against one molecule/resume guest:
#
#   make resume-soak RESUME_CHAINS=30
#   tests/resume/soak.sh 30
#
# Creates and prepares the guest once, then runs `molecule side-effect -s resume` N times. Each chain starts from a
# blank disk (kill_chain.py wipes it) and a new controller-side identity (the scenario's identity directory and
# known_hosts are removed first), as in a full scenario run. Stops at the first chain that fails. Each chain's logs
# go to $IMPERMANENT_TEST_LOGS/resume-soak/chain-NN (per-run ansible-playbook output, the kill switch's log, the
# report, failure.txt); the summary line says how many chains passed in a row. Destroys the guest at the end
# (RESUME_SOAK_KEEP=1 keeps it).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
chains=${1:-${RESUME_CHAINS:-30}}
case $chains in ''|*[!0-9]*) echo "soak: the number of chains must be a whole number, not '$chains'" >&2; exit 2;; esac
VENV=${VENV:-$REPO/.venv}
export PATH="$VENV/bin:$PATH"
: "${ANSIBLE_COLLECTIONS_PATH:?soak: set ANSIBLE_COLLECTIONS_PATH to the built collection (make resume-soak does)}"
unset ANSIBLE_PYTHON_INTERPRETER
export ANSIBLE_PIPELINING=True ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_FORCE_COLOR=0
logs=${IMPERMANENT_TEST_LOGS:-$REPO/.build/test-logs}/resume-soak
rm -rf "$logs"
mkdir -p "$logs"
# Molecule's state for these guests (identity_dir and known_hosts in molecule/resume/molecule.yml live there too).
ephemeral=$REPO/.build/molecule-soak/resume
export MOLECULE_EPHEMERAL_DIRECTORY=$ephemeral
mkdir -p "$ephemeral"

bash scripts/setup-host.sh
bash tests/images/build-guest-image.sh >/dev/null
cleanup() {
  if [ "${RESUME_SOAK_KEEP:-0}" != 1 ]; then
    molecule destroy -s resume >"$logs/destroy.log" 2>&1 || true
  fi
}
trap cleanup EXIT

t0=$SECONDS
molecule destroy -s resume >"$logs/destroy-before.log" 2>&1 || true
molecule create -s resume >"$logs/create.log" 2>&1
molecule prepare -s resume >"$logs/prepare.log" 2>&1
echo "soak: guest ready in $((SECONDS - t0)) s; $chains chains; logs in ${logs#"$REPO"/}"

passed=0
for i in $(seq 1 "$chains"); do
  dir=$logs/chain-$(printf '%02d' "$i")
  mkdir -p "$dir"
  rm -rf "$ephemeral/identity" "$ephemeral/known_hosts"
  t=$SECONDS
  if IMPERMANENT_TEST_LOGS=$dir molecule side-effect -s resume >"$dir/molecule.log" 2>&1; then
    passed=$((passed + 1))
    echo "soak: chain $i passed in $((SECONDS - t)) s: $(grep -h -o 'kill_chain: [0-9]* task-boundary[^"]*' "$dir/molecule.log" | tail -n 1)"
  else
    echo "soak: chain $i FAILED after $((SECONDS - t)) s; $passed passed in a row before it"
    [ -f "$dir/resume-kill-chain/failure.txt" ] && head -n 40 "$dir/resume-kill-chain/failure.txt"
    exit 1
  fi
done
echo "soak: $passed of $chains chains passed in a row in $((SECONDS - t0)) s"
