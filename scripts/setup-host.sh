#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Install what the test layers need on a fresh Debian machine, create Nix's build users and start libvirtd.
# Idempotent: skips apt when every package is present, users that exist and daemons already running.
# scripts/doctor.sh (run by `make setup`) then checks every precondition the tests rely on.
set -euo pipefail

APT_PACKAGES=(
  parted cryptsetup dosfstools gdisk fdisk e2fsprogs util-linux rsync git nix-bin
  qemu-system-x86 qemu-utils ovmf libvirt-daemon-system libvirt-clients passt mmdebstrap openssh-client
  # to build libvirt-python (requirements.txt) for community.libvirt.virt in the venv
  pkg-config libvirt-dev gcc
  # the system Python's venv module, for .venv-oldest (requirements-oldest.txt; .venv's Python 3.12+ comes from PATH
  # or pyenv, see scripts/venv.sh)
  python3-venv
  # to make the small ISO that tests/integration/test_vm_playbook.py boots playbooks/vm.yml from
  xorriso
  # ansible-test sanity's shellcheck test (make sanity)
  shellcheck
  # xmllint, which virt-xml-validate runs (tests/integration/test_libvirt_vm_xml.py validates the domain XML)
  libxml2-utils
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup-host: installing ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then echo "setup-host: must run as root to install packages" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Nix build users. Run as root, nix-build builds as a member of `build-users-group` (default `nixbld`) and stops when
# that group does not exist. Debian's nix-bin creates none: its recommended nix-setup-systemd does, but it expects
# systemd as PID 1. We create the group and users the way Nix's multi-user install does, rather than a nix.conf with
# an empty build-users-group, so that builds keep running unprivileged in Nix's sandbox, as on a NixOS machine.
NIX_BUILD_USERS=${NIX_BUILD_USERS:-4}
if ! getent group nixbld >/dev/null; then
  echo "setup-host: creating the nixbld group"
  groupadd --system nixbld
fi
for i in $(seq 1 "$NIX_BUILD_USERS"); do
  id "nixbld$i" >/dev/null 2>&1 && continue
  echo "setup-host: creating the Nix build user nixbld$i"
  useradd --system --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
    --gid nixbld --groups nixbld --comment "Nix build user $i" "nixbld$i"
done

# libvirtd (no systemd as PID 1 here: start the daemons by hand when they are not running)
if [ "${SETUP_LIBVIRT:-1}" = 1 ]; then
  if ! virsh -c qemu:///system version >/dev/null 2>&1; then
    mkdir -p /run/libvirt
    pgrep -x virtlogd >/dev/null || virtlogd -d
    pgrep -x libvirtd >/dev/null || libvirtd -d
    for _ in $(seq 1 30); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 1; done
    virsh -c qemu:///system version >/dev/null
  fi
fi
echo "setup-host: ok"
