#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Why a Molecule scenario failed, in a few lines, for the end of a CI log (tests/run-molecule.sh calls it after its
# summary):
#
#   tests/molecule-why-failed.sh SCENARIO LOG LOGS_DIR SINCE
#
# prints the last error lines of LOG (Ansible's fatal/failed/[ERROR] lines and pytest's FAILED/E lines, each with
# the line after it, which Molecule's wrapping often continues into; ANSI colours and Molecule's border removed),
# then the first lines of every failure.txt under LOGS_DIR newer than the file SINCE (what a test wrote about its
# own failure, e.g. the resume kill chain).
set -uo pipefail
scenario=$1 log=$2 logs=$3 since=$4
echo "run-molecule: why $scenario failed (its whole output: $log)"
sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^ *│ \{0,1\}//' "$log" |
  grep -E -A1 '^(fatal:|failed:|\[ERROR\]|FAILED|E  +)' | grep -v '^--$' |
  tail -n 8 | cut -c1-300 | sed 's/^/  | /'
find "$logs" -name failure.txt -newer "$since" -print0 | sort -z | while IFS= read -r -d '' f; do
  echo "  $f:"
  head -n 6 "$f" | cut -c1-300 | sed 's/^/  | /'
done
exit 0
