#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Install what the test layers need on a fresh Debian machine and start libvirtd.
# Idempotent: skips apt when every package is present, skips daemons already running.
set -euo pipefail

APT_PACKAGES=(
  parted cryptsetup dosfstools gdisk fdisk e2fsprogs util-linux rsync git nix-bin
  qemu-system-x86 qemu-utils ovmf libvirt-daemon-system libvirt-clients passt mmdebstrap
  # to build libvirt-python (requirements.txt) for community.libvirt.virt in the venv
  pkg-config libvirt-dev gcc
  # to make the small ISO that tests/integration/test_vm_playbook.py boots playbooks/vm.yml from
  xorriso
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
