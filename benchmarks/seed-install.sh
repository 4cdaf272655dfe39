#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The impermanent NixOS install typed by hand (docs/design.md steps 3-10), as ONE shell script, for
# benchmarks/bench_provision.py to time next to the provision playbook on the same guest and disk. It is what a
# person does at the live ISO's root shell, in the same order and with the same settings as the molecule/default
# host vars: GPT (ESP 512MiB, swap SWAP_SIZE, nix the rest), LUKS2 on the nix partition, FAT32/swap/ext4, tmpfs
# root with the persist bind mounts, swapon, nixos-generate-config, hardware-configuration.nix patched with sed,
# a starter flake in git, nixos-install --flake.
#
#   seed-install.sh DISK HOST [SWAP_SIZE] [PBKDF_ITERATIONS]  <<< "LUKS passphrase"
#
# The passphrase is the first line of stdin (never an argument); cryptsetup reads it from a pipe fed by the printf
# builtin. PBKDF_ITERATIONS > 0 means `--pbkdf pbkdf2 --pbkdf-force-iterations N` (TEST ONLY: the benchmark uses
# 1000, like molecule/default); 0 keeps cryptsetup's benchmarked argon2id. Expects a blank disk. In the benchmark
# guest nixos-generate-config and nixos-install are the test doubles of tests/images/doubles/ (prepare.yml puts
# them on PATH), called with the real tools' options. Each step prints its duration on stderr ("seed-step").
set -euo pipefail

disk=${1:?usage: seed-install.sh DISK HOST [SWAP_SIZE] [PBKDF_ITERATIONS] <<< PASSPHRASE}
host=${2:?usage: seed-install.sh DISK HOST [SWAP_SIZE] [PBKDF_ITERATIONS] <<< PASSPHRASE}
swap_size=${3:-8GiB}
pbkdf_iterations=${4:-0}
IFS= read -r passphrase

t_last=$(date +%s.%N)
step() { # step "name": report the time since the previous step, for the benchmark's side-by-side table
  local now; now=$(date +%s.%N)
  awk -v a="$t_last" -v b="$now" -v s="$1" 'BEGIN { printf "seed-step %-30s %6.2f s\n", s, b - a }' >&2
  t_last=$now
}

# --- 3. Partition: ESP 1MiB-513MiB (esp flag), swap, nix = the rest; IEC units, optimal alignment -------------
# (`parted DISK align-check optimal N` would confirm the alignment: 2 s per call in a TCG guest, left out here,
# as the playbook does not run it either: gpt_partition computes the alignment from sysfs.)
swap_mib=$(numfmt --from=iec-i --to-unit=Mi --suffix=B "$swap_size" | tr -d B)
swap_end=$((513 + ${swap_mib%%.*}))
parted --script --align optimal "$disk" -- \
  mklabel gpt \
  mkpart boot fat32 1MiB 513MiB \
  set 1 esp on \
  mkpart swap linux-swap 513MiB "${swap_end}MiB" \
  mkpart nix "${swap_end}MiB" 100%
udevadm settle
dev=$(readlink -f "$disk")
case $dev in *[0-9]) p=${dev}p ;; *) p=$dev ;; esac # /dev/vdb1, but /dev/nvme0n1p1
boot=${p}1 swap=${p}2 nixpart=${p}3
step "partition (parted)"

# --- 4. LUKS on the nix partition, opened as /dev/mapper/crypted ---------------------------------------------
kdf=()
if [ "$pbkdf_iterations" -gt 0 ]; then kdf=(--pbkdf pbkdf2 --pbkdf-force-iterations "$pbkdf_iterations"); fi
printf '%s' "$passphrase" | cryptsetup luksFormat --batch-mode --type luks2 "${kdf[@]}" --key-file=- "$nixpart"
printf '%s' "$passphrase" | cryptsetup open --key-file=- "$nixpart" crypted
step "luksFormat + open"

# --- 5. Filesystems ------------------------------------------------------------------------------------------
mkfs.fat -F 32 -n boot "$boot" >&2
mkswap -L swap "$swap" >&2
mkfs.ext4 -q -L nixos /dev/mapper/crypted
step "mkfs.fat, mkswap, mkfs.ext4"

# --- 6. tmpfs root, ESP, nix, persist bind mounts -------------------------------------------------------------
mount -t tmpfs -o defaults,size=25%,mode=755 tmpfs /mnt
mkdir -p /mnt/{boot,nix,etc/nixos,var/log}
mount -o umask=0077 "$boot" /mnt/boot
mount /dev/mapper/crypted /mnt/nix
mkdir -p /mnt/nix/persist/{etc/nixos,var/log}
mount --bind /mnt/nix/persist/etc/nixos /mnt/etc/nixos
mount --bind /mnt/nix/persist/var/log /mnt/var/log
step "mounts"

# --- 7. swap on, generate the hardware configuration ---------------------------------------------------------
swapon "$swap"
nixos-generate-config --root /mnt >&2
step "swapon, nixos-generate-config"

# --- 8. Patch hardware-configuration.nix (backup first; restore it if the result does not parse) -------------
hw=/mnt/etc/nixos/hardware-configuration.nix
cp -p "$hw" /tmp/hardware-configuration.nix.orig
swap_partuuid=$(blkid -s PARTUUID -o value "$swap")
sed -i \
  -e '/fsType = "tmpfs";/a\      options = [ "defaults" "size=25%" "mode=755" ];' \
  -e 's/options = \[ "fmask=0077" "dmask=0077" \];/options = [ "umask=0077" ];/' \
  -e "s|{ device = \"/dev/disk/by-uuid/[^\"]*\"; }|{ device = \"/dev/disk/by-partuuid/$swap_partuuid\"; randomEncryption.enable = true; }|" \
  "$hw"
nix-instantiate --parse "$hw" >/dev/null || { cp -p /tmp/hardware-configuration.nix.orig "$hw"; exit 1; }
step "patch hardware-configuration"

# --- 9. The starter flake, in git (flakes ignore untracked files) --------------------------------------------
cd /mnt/etc/nixos
cat > flake.nix <<EOF
{
  description = "NixOS configuration of $host";
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
    home-manager = {
      url = "github:nix-community/home-manager/release-25.05";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    impermanence.url = "github:nix-community/impermanence";
  };
  outputs = { self, nixpkgs, home-manager, impermanence, ... }@inputs: {
    nixosConfigurations."$host" = nixpkgs.lib.nixosSystem {
      specialArgs = { inherit inputs; };
      modules = [
        ./hardware-configuration.nix
        ./configuration.nix
        home-manager.nixosModules.home-manager
        impermanence.nixosModules.impermanence
      ];
    };
  };
}
EOF
cat > configuration.nix <<EOF
{ config, lib, pkgs, ... }:
{
  networking.hostName = "$host";
  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = true;
  nix.settings.experimental-features = [ "nix-command" "flakes" ];
  environment.persistence."/nix/persist" = {
    hideMounts = true;
    directories = [ "/etc/nixos" "/var/log" "/var/lib/nixos" "/var/lib/systemd" "/var/lib/bluetooth" ];
    files = [
      "/etc/machine-id"
      "/etc/ssh/ssh_host_ed25519_key" "/etc/ssh/ssh_host_ed25519_key.pub"
      "/etc/ssh/ssh_host_rsa_key" "/etc/ssh/ssh_host_rsa_key.pub"
    ];
  };
  services.openssh = {
    enable = true;
    settings.PermitRootLogin = "no";
    settings.PasswordAuthentication = false;
  };
  home-manager.useGlobalPkgs = true;
  home-manager.useUserPackages = true;
  system.stateVersion = "25.05";
}
EOF
git init --quiet
git add flake.nix configuration.nix hardware-configuration.nix
step "flake files, git init + add"

# --- 10. Install from the flake with /etc/nixos open, then close it again ------------------------------------
chmod 777 /mnt/etc/nixos
NIX_CONFIG="experimental-features = nix-command flakes" \
  nixos-install --flake "/mnt/etc/nixos#$host" --root /mnt --no-root-passwd >&2
chmod 755 /mnt/etc/nixos
step "nixos-install"
echo "seed-install: installed $host on $disk"
