#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# mmdebstrap --customize-hook for the Molecule guest image (called by build-guest-image.sh).
# $1: the finished root directory, $2: the public key allowed to log in as root.
# Part of the image cache key: changing this file rebuilds the image.
set -eu
root=$1
pubkey=$2
hostname=impermanent-guest

echo "$hostname" >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$hostname" >"$root/etc/hosts"
printf '# <file system> <mount point> <type> <options> <dump> <pass>\nLABEL=root / ext4 defaults,errors=remount-ro 0 1\n' \
  >"$root/etc/fstab"

# root logs in over SSH with the build's key only; no passwords anywhere.
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$pubkey" "$root/root/.ssh/authorized_keys"
cat >"$root/etc/ssh/sshd_config.d/10-impermanent-test.conf" <<'CONF'
# Molecule test guest: key-only root login, no DNS lookups (the guest has no resolver).
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
CONF
chmod 0644 "$root/etc/ssh/sshd_config.d/10-impermanent-test.conf"
rm -f "$root"/etc/ssh/ssh_host_*
chroot "$root" ssh-keygen -A

# eth0 by DHCP from QEMU's user-mode network (the kernel runs with net.ifnames=0).
install -d -m 0755 "$root/etc/systemd/network"
printf '[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
  >"$root/etc/systemd/network/10-eth0.network"
chmod 0644 "$root/etc/systemd/network/10-eth0.network"

chroot "$root" systemctl enable systemd-networkd.service ssh.service serial-getty@ttyS0.service
chroot "$root" systemctl set-default multi-user.target
# Nothing here waits for the network, and timers only burn emulated CPU in a short-lived test guest.
chroot "$root" systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer e2scrub_reap.service fstrim.timer
: >"$root/etc/machine-id"

# The initrd must find the root disk on virtio-blk, NVMe or SATA and mount ext4 by LABEL, whatever
# initramfs-tools' MODULES=most picks: list the drivers explicitly and check the result.
cat >>"$root/etc/initramfs-tools/modules" <<'MODS'
virtio_pci
virtio_blk
virtio_scsi
nvme
ahci
sd_mod
ext4
MODS
chroot "$root" update-initramfs -u -k all
for kver in "$root"/lib/modules/*; do
  kver=${kver##*/}
  listing=$(chroot "$root" lsinitramfs "/boot/initrd.img-$kver")
  for mod in virtio_pci virtio_blk nvme ext4; do
    if ! printf '%s\n' "$listing" | grep -q "/$mod\.ko"; then
      # built into the kernel is fine too
      grep -qE "/$mod\.ko\$" "$root/lib/modules/$kver/modules.builtin" || {
        echo "guest-customize: $mod missing from initrd.img-$kver" >&2
        exit 1
      }
    fi
  done
done
