#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Check every precondition the test layers rely on, and name what is missing.
#
#   scripts/doctor.sh          # `make doctor`; `make setup` runs it last
#
# Each check prints one line, `ok` or `MISSING`, with what to do. Exit status 1 when anything is missing, so that a
# gap on a new machine fails here in seconds instead of deep inside a test. Needs root (loop devices, mounts, Nix's
# store). Environment: VENV (default .venv), OLDEST_VENV (default .venv-oldest); SETUP_LIBVIRT=0 skips the libvirtd
# check, as it skips starting it.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
OLDEST_VENV=${OLDEST_VENV:-$REPO/.venv-oldest}
missing=0
scratch=$(mktemp -d)
loop=""
cleanup() {
  mountpoint -q "$scratch/mnt" 2>/dev/null && umount "$scratch/mnt"
  [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
  rm -rf "$scratch"
}
trap cleanup EXIT

ok() { printf 'doctor: ok       %s\n' "$1"; }
gap() { printf 'doctor: MISSING  %s -- %s\n' "$1" "$2"; missing=$((missing + 1)); }

[ "$(id -u)" = 0 ] || { gap "root" "the integration and Molecule layers need root: run as root"; exit 1; }

# Commands, each with the Debian package that brings it (scripts/setup-host.sh installs them all).
while read -r cmd pkg; do
  if command -v "$cmd" >/dev/null 2>&1; then ok "command $cmd"; else gap "command $cmd" "apt-get install $pkg (make setup)"; fi
done <<'EOF'
losetup util-linux
partx util-linux
sfdisk fdisk
blkid util-linux
lsblk util-linux
wipefs util-linux
findmnt util-linux
parted parted
sgdisk gdisk
cryptsetup cryptsetup
mkfs.ext4 e2fsprogs
mkfs.vfat dosfstools
mkswap util-linux
rsync rsync
git git
nix-instantiate nix-bin
nix-build nix-bin
qemu-system-x86_64 qemu-system-x86
qemu-img qemu-utils
virsh libvirt-clients
libvirtd libvirt-daemon-system
mmdebstrap mmdebstrap
xorriso xorriso
ssh openssh-client
ssh-keygen openssh-client
shellcheck shellcheck
virt-xml-validate libvirt-clients
xmllint libxml2-utils
EOF

for f in /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd; do
  if [ -r "$f" ]; then ok "UEFI firmware $f"; else gap "UEFI firmware $f" "apt-get install ovmf (make setup)"; fi
done

# Nix: run as root it builds as a member of the nixbld group, and prints a warning before every message without it.
if members=$(getent group nixbld | cut -d: -f4) && [ -n "$members" ]; then
  ok "group nixbld with build users ($members)"
else
  gap "group nixbld with members" "Nix builds as root need build users: run scripts/setup-host.sh (make setup)"
fi
if command -v nix-build >/dev/null 2>&1; then
  cat >"$scratch/doctor.nix" <<'NIX'
derivation {
  name = "impermanent-nixos-doctor";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo ok > $out" ];
}
NIX
  # As the live ISO test builds its nixpkgs double: with the host's /bin/sh, so outside Nix's sandbox.
  if out=$(nix-build "$scratch/doctor.nix" --no-out-link --option substituters '' --option sandbox false \
           2>"$scratch/nix.err") &&
     [ "$(cat "$out" 2>/dev/null)" = ok ]; then
    if grep -aq '^warning:' "$scratch/nix.err"; then
      gap "nix-build without warnings" "$(grep -a -m1 '^warning:' "$scratch/nix.err")"
    else
      ok "nix-build of a trivial derivation"
    fi
  else
    gap "nix-build of a trivial derivation" \
      "$(grep -a -m1 '^error:' "$scratch/nix.err" || grep -a -m1 '^warning:' "$scratch/nix.err" || tail -n1 "$scratch/nix.err")"
  fi
fi

# Loop devices with partition nodes: some kernels skip the partition scan at attach, so the tests run partx -a.
if [ -e /dev/loop-control ] && command -v losetup >/dev/null 2>&1; then
  truncate -s 8M "$scratch/disk.img"
  if loop=$(losetup -f --show -P "$scratch/disk.img" 2>"$scratch/loop.err"); then
    printf 'label: gpt\n,4M\n' | sfdisk -q "$loop" >/dev/null 2>&1
    partx -a "$loop" >/dev/null 2>&1 || partx -u "$loop" >/dev/null 2>&1
    if [ -b "${loop}p1" ]; then ok "loop device with partition nodes (${loop}p1)"; else
      gap "partition nodes on loop devices" "${loop}p1 did not appear after sfdisk and partx -a"
    fi
  else
    gap "a free loop device" "losetup -f failed: $(head -n1 "$scratch/loop.err")"
  fi
else
  gap "loop devices" "/dev/loop-control is missing: load the loop module (modprobe loop)"
fi

mkdir -p "$scratch/mnt"
if mount -t tmpfs -o size=1m tmpfs "$scratch/mnt" 2>/dev/null; then ok "tmpfs mounts"; else
  gap "tmpfs mounts" "mount -t tmpfs failed: the integration layer mounts tmpfs and bind mounts"
fi

if [ "${SETUP_LIBVIRT:-1}" = 1 ]; then
  if virsh -c qemu:///system version >/dev/null 2>&1; then ok "libvirtd answers on qemu:///system"; else
    gap "libvirtd answering on qemu:///system" "start it: scripts/setup-host.sh (virtlogd -d; libvirtd -d)"
  fi
fi

# The two controller toolchains (Makefile: venv, venv-oldest), each with its ansible-core on a Python it supports,
# the collections the tests use and its tools. ansible-core 2.20 and newer need Python >= 3.12, 2.19 >= 3.11.
check_venv() {
  local venv=$1 target=$2 core_prefix=$3 min_python=$4 tools=$5 core python collections c tool
  if [ ! -x "$venv/bin/ansible-playbook" ]; then gap "venv $venv" "make $target"; return; fi
  core=$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)' 2>/dev/null)
  python=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
  if [[ "$core" == "$core_prefix".* ]] &&
     "$venv/bin/python" -c "import sys; sys.exit(sys.version_info[:2] < ($min_python))" 2>/dev/null; then
    ok "venv $venv: ansible-core $core on Python $python"
  else
    gap "venv $venv with ansible-core $core_prefix on Python >= ${min_python/, /.}" \
      "it has ansible-core ${core:-none} on Python ${python:-none}: rm -rf $venv; make $target"
  fi
  collections=$("$venv/bin/ansible-galaxy" collection list 2>/dev/null)
  for c in community.general community.libvirt ansible.posix; do
    if grep -q "^$c " <<<"$collections"; then ok "$target: collection $c"; else
      gap "$target: collection $c" "it comes with the ansible package: make $target"
    fi
  done
  for tool in $tools; do
    if [ -x "$venv/bin/$tool" ]; then ok "$target: tool $tool"; else gap "$target: tool $tool" "make $target"; fi
  done
  if "$venv/bin/python" -c 'import libvirt' 2>/dev/null; then ok "$target: libvirt-python"; else
    gap "$target: libvirt-python" "make $target (needs pkg-config, libvirt-dev, gcc)"
  fi
}
pinned_core() { sed -n 's/^ansible-core==\([0-9]*\.[0-9]*\)\..*/\1/p' "$REPO/$1"; }
check_venv "$VENV" venv "$(pinned_core requirements.txt)" "3, 12" "molecule pytest ansible-lint ansible-test antsibull-changelog"
check_venv "$OLDEST_VENV" venv-oldest "$(pinned_core requirements-oldest.txt)" "3, 11" "pytest ansible-test"

if [ "$missing" -gt 0 ]; then
  printf 'doctor: %d precondition(s) missing; see the MISSING lines above\n' "$missing"
  exit 1
fi
echo "doctor: every precondition holds"
