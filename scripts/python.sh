# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash
# Finding real Python interpreters by version; sourced by scripts/venv.sh, scripts/sanity.sh and scripts/doctor.sh.
#
# A pyenv shim `pythonX.Y` on PATH fails for every version that is not pyenv's global one, so the shims are never
# used: an interpreter is looked up on PATH without them, then among pyenv's installed versions (`pyenv root`, else
# $PYENV_ROOT, else $HOME/.pyenv), newest patch release first.

# PATH without pyenv's shims.
python_clean_path() {
    tr ':' '\n' <<<"$PATH" | grep -v '/shims$' | paste -sd: -
}

# python_find X.Y: print the path of a working pythonX.Y outside any venv, or return 1.
python_find() {
    local version=$1 root candidate
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    while read -r candidate; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done < <(PATH=$(python_clean_path) command -v "python$version"
             printf '%s\n' "$root/versions/$version".*/bin/"python$version" | sort -rV)
    return 1
}

# python_version PYTHON: print its X.Y.
python_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}
