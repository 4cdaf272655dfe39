#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# `make sanity`: the full `ansible-test sanity` (every test that runs without containers) on the built artifact.
#
#   bash scripts/sanity.sh .build/impermanent-nixos-<version>.tar.gz [ansible-test sanity options]
#   VENV=.venv-oldest bash scripts/sanity.sh ...   # `make sanity-oldest`: that venv's ansible-test and Python
#
# - ansible-test lists files with git when it runs inside a work tree (where .build is ignored), so the tarball is
#   extracted into a temporary ansible_collections/impermanent/nixos outside it: what is tested is what ships.
#   The artifact carries no tests/: ansible-test's own configuration (tests/config.yml, tests/sanity/) is copied
#   in from the work tree.
# - ansible-test downloads a pip bootstrap script from a host outside the package index; it gets
#   scripts/ansible-test-get-pip.py instead (ensurepip + the package index).
# - The compile and import tests run on every Python that tests/config.yml admits for the modules (>= 3.8) and that
#   is installed; the controller-only tests on the venv's Python. ansible-test looks up `pythonX.Y` on PATH, and a
#   pyenv shim there fails for a version that is not pyenv's global one: the interpreters are resolved here (PATH,
#   then pyenv's versions: scripts/python.sh) and linked into one directory that comes first on PATH, and pyenv's
#   shims are left out.
#   The summary names the Pythons used; one that is not installed is skipped by ansible-test with a warning.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/python.sh
source "$REPO/scripts/python.sh"
BIN=${VENV:-$REPO/.venv}/bin
TARBALL=$(realpath "$1")
shift

site=$("$BIN/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
pip_version=$(sed -n "s/^ *pip='\(.*\)',/\1/p" "$site/_internal/python_requirements.py")
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
[ -s "$cache/get_pip_${pip_version//./_}.py" ] || cp "$REPO/scripts/ansible-test-get-pip.py" "$cache/get_pip_${pip_version//./_}.py"

command -v shellcheck >/dev/null || { echo "sanity: shellcheck is missing; run make host" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# PATH without pyenv's shims, then the interpreters that really run.
clean_path=$(python_clean_path)
mkdir -p "$tmp/bin"
found=()
for version in 3.8 3.9 3.10 3.11 3.12 3.13 3.14; do
    if candidate=$(python_find "$version"); then
        ln -s "$candidate" "$tmp/bin/python$version"
        found+=("$version")
    fi
done
# The controller is the venv's Python, whatever else is installed.
controller=$(python_version "$BIN/python")
ln -sf "$BIN/python" "$tmp/bin/python$controller"

collection=$tmp/ansible_collections/impermanent/nixos
mkdir -p "$collection"
tar -xzf "$TARBALL" -C "$collection"
mkdir -p "$collection/tests"
cp "$REPO/tests/config.yml" "$collection/tests/"
[ ! -d "$REPO/tests/sanity" ] || cp -r "$REPO/tests/sanity" "$collection/tests/"
cd "$collection"
echo "sanity: $(basename "$TARBALL") with ansible-core $("$BIN/python" -c 'from ansible.release import __version__; print(__version__)') on Python $controller; Pythons found for the compile/import tests: ${found[*]:-none}"
start=$(date +%s)
PATH=$tmp/bin:$BIN:$clean_path "$BIN/ansible-test" sanity --color no "$@"
echo "sanity: passed in $(( $(date +%s) - start ))s"
