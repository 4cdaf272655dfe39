#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Create a venv from a pinned requirements file, on the first Python found among the versions named.
#
#   bash scripts/venv.sh .venv requirements.txt 3.13 3.12            # `make venv`: the newest toolchain
#   bash scripts/venv.sh .venv-oldest requirements-oldest.txt 3.11    # `make venv-oldest`: the oldest ansible-core
#
# The interpreter: $PYTHON_BASE when set, else pythonX.Y on PATH (pyenv's shims left out), else pyenv's installed
# versions (scripts/python.sh). Nothing found: exit 1 with what to install. A venv made with another Python is
# created anew; the venv's .stamp is written last, so an interrupted install runs again.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/python.sh
source "$REPO/scripts/python.sh"

venv=$1
requirements=$2
shift 2
versions=("$@")

python=${PYTHON_BASE:-}
if [ -z "$python" ]; then
    for version in "${versions[@]}"; do
        python=$(python_find "$version") && break
        python=
    done
fi
if [ -z "$python" ]; then
    wanted=$(printf 'python%s or ' "${versions[@]}")
    {
        echo "venv: $venv needs ${wanted% or } ($requirements), and none was found:"
        echo "venv:   not on PATH, nor among pyenv's versions ($(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")/versions)."
        echo "venv: Install one, e.g. \`pyenv install ${versions[0]}\`, or your distribution's python${versions[0]} with its venv"
        echo "venv:   module (Debian: apt-get install python${versions[0]}-venv), or name one: make PYTHON_BASE=/path/to/python${versions[0]} ..."
    } >&2
    exit 1
fi
version=$(python_version "$python")
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "venv: $python has no venv/ensurepip module: install it (Debian: apt-get install python$version-venv)" >&2
    exit 1
fi

if [ -e "$venv/bin/python" ] && [ "$(python_version "$venv/bin/python" 2>/dev/null)" != "$version" ]; then
    echo "venv: $venv was made with another Python; making it anew with $python"
    rm -rf "$venv"
fi
[ ! -L "$venv" ] || rm "$venv"   # a link to a venv elsewhere: this one is the work tree's own
echo "venv: $venv on $python (Python $version) from $requirements"
rm -f "$venv/.stamp"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
touch "$venv/.stamp"
