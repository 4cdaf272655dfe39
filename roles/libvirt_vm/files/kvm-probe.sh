#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Print "kvm" when KVM really runs UEFI guests on this host, else "tcg".
# usage: kvm-probe.sh OVMF_CODE OVMF_VARS_TEMPLATE CACHE_DIR TIMEOUT_SECONDS
#
# /dev/kvm alone proves nothing: a paravirtual KVM (dmesg: kvm-pvm) opens fine, then OVMF hangs or QEMU
# stops with "KVM internal error". So boot OVMF alone for a few seconds and wait for its first line on
# the serial port (working KVM: about a second; TCG: about five). The answer is kept per host boot.
set -eu
code=$1 vars=$2 cache_dir=$3 timeout=$4

if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
  echo tcg
  exit 0
fi
boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
cache=$cache_dir/kvm-probe.$boot_id
if [ -s "$cache" ]; then
  cat "$cache"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$vars" "$work/vars.fd"
qemu-system-x86_64 -nodefaults -display none -no-reboot -m 256 -machine q35,accel=kvm -cpu host \
  -drive "if=pflash,format=raw,readonly=on,file=$code" -drive "if=pflash,format=raw,file=$work/vars.fd" \
  -serial "file:$work/serial.log" >"$work/qemu.log" 2>&1 &
pid=$!
result=tcg
i=0
while [ "$i" -lt "$timeout" ]; do
  if [ -s "$work/serial.log" ]; then
    result=kvm
    break
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 1
  i=$((i + 1))
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
mkdir -p "$cache_dir"
echo "$result" >"$cache"
echo "$result"
