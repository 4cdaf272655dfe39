#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build, once per machine, the Debian guest image the Molecule scenarios boot, and print its directory.
#
#   tests/images/build-guest-image.sh            # build or reuse; prints the image directory on stdout
#
# The directory (under $IMPERMANENT_IMAGE_CACHE, default /var/lib/libvirt/images/impermanent-nixos) is
# guest-<key>/ where <key> is a sha256 over this script, guest-customize.sh, guest-packages.txt, the apt
# sources and the suite. It holds:
#   base.qcow2     ext4 root filesystem labelled "root" (no partition table, no bootloader)
#   vmlinuz        the guest kernel, booted directly by OVMF (EFI stub)
#   initrd.img     its initramfs (virtio_blk, virtio_pci, nvme and ext4 checked present)
#   id_ed25519     private key for root@guest (the public half is baked into authorized_keys)
#   image.env      the above as shell variables, plus IMAGE_KEY
# A build happens in a temporary directory that is renamed into place only when complete: a killed or
# failed build is never taken for a cached image. Concurrent callers serialise on a lock.
#
# After a build, older images beyond the newest IMPERMANENT_IMAGE_KEEP (default 2) are removed
# (prune-guest-images.sh).
#
# Environment: IMPERMANENT_IMAGE_CACHE (cache root), IMPERMANENT_IMAGE_KEEP, IMPERMANENT_GUEST_SUITE
# (default: this host's VERSION_CODENAME), IMPERMANENT_GUEST_APT_SOURCES (a .sources or .list file; default:
# the Debian entries of this host's apt configuration).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${IMPERMANENT_IMAGE_CACHE:-/var/lib/libvirt/images/impermanent-nixos}
PACKAGES_FILE=$HERE/guest-packages.txt
CUSTOMIZE=$HERE/guest-customize.sh
ROOT_SIZE=3G

log() { printf 'build-guest-image: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap, and libvirt's image directory)"
for tool in mmdebstrap mkfs.ext4 qemu-img ssh-keygen flock sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/setup-host.sh"
done

# shellcheck disable=SC1091
suite=${IMPERMANENT_GUEST_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-}")}
[ -n "$suite" ] || die "cannot tell the Debian suite: set IMPERMANENT_GUEST_SUITE"

# The apt sources: this machine's Debian entries (third-party repositories would lack keys in the chroot).
sources_text() {
  if [ -n "${IMPERMANENT_GUEST_APT_SOURCES:-}" ]; then
    cat "$IMPERMANENT_GUEST_APT_SOURCES"
    return
  fi
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822: keep the stanzas that point at Debian's archive
    awk -v RS= -v ORS='\n\n' '/debian-archive-keyring|debian\.org/' "$f"
  done
}
sources_list_text() {
  [ -n "${IMPERMANENT_GUEST_APT_SOURCES:-}" ] && return
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    grep -E '^deb[[:space:]].*debian\.org' || true
}
packages=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PACKAGES_FILE" | grep -v '^$' | paste -sd, -)
[ -n "$packages" ] || die "no packages in $PACKAGES_FILE"

deb822=$(sources_text)
oneline=$(sources_list_text)
[ -n "$deb822$oneline" ] || die "no Debian apt source found: set IMPERMANENT_GUEST_APT_SOURCES"

key=$(
  {
    sha256sum "${BASH_SOURCE[0]}" "$CUSTOMIZE" "$PACKAGES_FILE" | cut -d' ' -f1
    printf 'suite=%s\nsize=%s\narch=%s\n' "$suite" "$ROOT_SIZE" "$(dpkg --print-architecture)"
    printf '%s\n--\n%s\n' "$deb822" "$oneline"
  } | sha256sum | cut -c1-16
)
final=$CACHE_ROOT/guest-$key

install -d -m 0755 "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build.lock"
flock 9
if [ -f "$final/.complete" ]; then
  log "reusing $final"
  echo "$final"
  exit 0
fi

# Leftovers of killed builds (never cross into a mount a killed mmdebstrap may have left behind).
for stale in "$CACHE_ROOT"/.build-*; do
  [ -e "$stale" ] || continue
  log "removing the unfinished build $stale"
  rm -rf --one-file-system "$stale"
done
[ -e "$final" ] && rm -rf --one-file-system "$final"

start=$SECONDS
tmp=$(mktemp -d "$CACHE_ROOT/.build-$key.XXXXXX")
trap 'rm -rf --one-file-system "$tmp"' EXIT
rootdir=$tmp/rootfs
mirrors=()
if [ -n "$deb822" ]; then printf '%s\n' "$deb822" >"$tmp/debian.sources"; mirrors+=("$tmp/debian.sources"); fi
if [ -n "$oneline" ]; then printf '%s\n' "$oneline" >"$tmp/debian.list"; mirrors+=("$tmp/debian.list"); fi

ssh-keygen -q -t ed25519 -N '' -C "root@impermanent-nixos-molecule-$key" -f "$tmp/id_ed25519"

log "building guest-$key ($suite, minbase + $(tr ',' '\n' <<<"$packages" | wc -l) packages) in $tmp"
mmdebstrap --variant=minbase --mode=root --format=directory \
  --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook="\"$CUSTOMIZE\" \"\$1\" \"$tmp/id_ed25519.pub\"" \
  "$suite" "$rootdir" "${mirrors[@]}" >&2
log "mmdebstrap done after $((SECONDS - start)) s"

kernel=$(find "$rootdir/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)
[ -n "$kernel" ] || die "no kernel in $rootdir/boot"
kver=${kernel##*/vmlinuz-}
[ -f "$rootdir/boot/initrd.img-$kver" ] || die "no initrd.img-$kver in $rootdir/boot"
install -m 0644 "$kernel" "$tmp/vmlinuz"
install -m 0644 "$rootdir/boot/initrd.img-$kver" "$tmp/initrd.img"

mkfs.ext4 -q -F -L root -d "$rootdir" "$tmp/root.img" "$ROOT_SIZE" >&2
rm -rf --one-file-system "$rootdir"
qemu-img convert -f raw -O qcow2 "$tmp/root.img" "$tmp/base.qcow2" >&2
rm -f "$tmp/root.img" "$tmp/debian.sources" "$tmp/debian.list"
chmod 0644 "$tmp/base.qcow2" "$tmp/id_ed25519.pub"
chmod 0600 "$tmp/id_ed25519"
cat >"$tmp/image.env" <<ENV
IMAGE_KEY=$key
IMAGE_DIR=$final
IMAGE_BASE=$final/base.qcow2
IMAGE_KERNEL=$final/vmlinuz
IMAGE_INITRD=$final/initrd.img
IMAGE_IDENTITY=$final/id_ed25519
IMAGE_KERNEL_VERSION=$kver
IMAGE_SUITE=$suite
ENV
chmod 0644 "$tmp/image.env"
touch "$tmp/.complete"
chmod 0755 "$tmp"
mv -T "$tmp" "$final"
trap - EXIT
log "built $final in $((SECONDS - start)) s"
bash "$HERE/prune-guest-images.sh" "$CACHE_ROOT" "${IMPERMANENT_IMAGE_KEEP:-2}"
echo "$final"
