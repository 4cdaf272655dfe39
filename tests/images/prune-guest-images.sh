#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Remove old guest images from the cache, keeping the KEEP most recently built ones (default 2: the one just
# built and the one before it, which a checkout of an older commit may still want).
#
#   tests/images/prune-guest-images.sh CACHE_ROOT [KEEP]
#
# Only complete images (guest-<key>/ with .complete) count and are removed; unfinished builds are
# build-guest-image.sh's to clean. A running guest keeps its overlay's backing file open, so removing its
# image does not disturb it; a new guest from that older checkout would build the image again.
set -euo pipefail

cache_root=${1:?usage: prune-guest-images.sh CACHE_ROOT [KEEP]}
keep=${2:-2}
[[ "$keep" =~ ^[1-9][0-9]*$ ]] || { echo "prune-guest-images: KEEP must be a whole number >= 1, not '$keep'" >&2; exit 2; }

# newest first by the time .complete was written (the end of the build)
mapfile -t images < <(
  for done_marker in "$cache_root"/guest-*/.complete; do
    [ -f "$done_marker" ] && printf '%s %s\n' "$(stat -c %Y "$done_marker")" "${done_marker%/.complete}"
  done | sort -rn -k1,1 | cut -d' ' -f2-
)
for old in "${images[@]:keep}"; do
  printf 'prune-guest-images: removing %s\n' "$old" >&2
  rm -rf --one-file-system "$old"
done
