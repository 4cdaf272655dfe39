#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# `make demo`: provision a throwaway local UEFI VM end to end and show the resulting layout (docs/demo.md).
#
#   make demo            # setup + build, then this script; the VM is removed at the end
#   KEEP=1 make demo     # keep the VM (also after a failure) and print how to log in and how to remove it
#
# Steps: build or reuse the cached Debian guest image; playbooks/demo.yml boots the guest `impermanent-demo`
# (SSH on 127.0.0.1:22419, a blank 8 GiB disk), installs the test doubles of nixos-generate-config/nixos-install,
# runs impermanent.nixos.provision (LUKS with a random throwaway passphrase kept in Ansible Vault) and reads the
# layout back; then a second run of the provision playbook, which must report changed=0; then removal with
# playbooks/vm.yml. Ctrl-C or a failure removes the VM too (unless KEEP=1); the exit status is non-zero on failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO_DIR=${DEMO_DIR:-$REPO/.build/demo}
NAME=impermanent-demo
PORT=22419
KEEP=${KEEP:-0}
BIN=$REPO/.venv/bin

START=$SECONDS
phase_start=$SECONDS
if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
say() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN"; }
took() { printf '    (%s: %d s)\n' "$1" $((SECONDS - phase_start)); phase_start=$SECONDS; }
die() { printf 'demo: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (libvirt, the guest image cache): sudo make demo"
[ -x "$BIN/ansible-playbook" ] || die "no $BIN/ansible-playbook: run 'make demo' (it runs 'make setup build' first)"
export PATH=$BIN:$PATH
# The roles and the provision playbook are used by FQCN: the installed artifact (make build), as a user would.
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$REPO/.build/collections}
[ -d "${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/impermanent/nixos" ] ||
  die "impermanent.nixos is not installed under $ANSIBLE_COLLECTIONS_PATH: run 'make demo' (or 'make build')"
# The Makefile exports the venv's Python for localhost; it would apply to the guest too (it has /usr/bin/python3).
unset ANSIBLE_PYTHON_INTERPRETER
export ANSIBLE_PIPELINING=True ANSIBLE_RETRY_FILES_ENABLED=False ANSIBLE_DISPLAY_SKIPPED_HOSTS=False
export ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_INVENTORY_UNPARSED_WARNING=False

remove_vm() {
  say "Removing the VM $NAME (playbooks/vm.yml vm_state=absent)"
  if ansible-playbook "$REPO/playbooks/vm.yml" -e vm_name=$NAME -e vm_state=absent >"$DEMO_DIR.remove.log" 2>&1; then
    grep -A3 '^PLAY RECAP' "$DEMO_DIR.remove.log" | sed -n 2p
    rm -rf "$DEMO_DIR" "$DEMO_DIR.remove.log"
  else
    cat "$DEMO_DIR.remove.log" >&2
    echo "demo: could not remove $NAME; by hand: virsh -c qemu:///system destroy $NAME;" \
      "virsh -c qemu:///system undefine --nvram $NAME" >&2
    return 1
  fi
}

print_login() {
  cat <<EOF

The VM is kept (KEEP=1). Log in:
  ssh -i $IMAGE_DIR/id_ed25519 -p $PORT -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1
Run the provision playbook again:
  ANSIBLE_COLLECTIONS_PATH=$ANSIBLE_COLLECTIONS_PATH $BIN/ansible-playbook -i $DEMO_DIR/inventory.yml \\
    --vault-password-file $DEMO_DIR/vault-pass impermanent.nixos.provision
Remove it:
  ANSIBLE_COLLECTIONS_PATH=$ANSIBLE_COLLECTIONS_PATH $BIN/ansible-playbook $REPO/playbooks/vm.yml -e vm_name=$NAME -e vm_state=absent
EOF
}

vm_started=0
IMAGE_DIR=
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  trap '' INT TERM   # let the removal finish
  if ((rc == 99 || rc == 130)); then
    printf '\ndemo: interrupted (exit %d) after %d s\n' "$rc" $((SECONDS - START)) >&2
  elif ((rc != 0)); then
    printf '\ndemo: FAILED (exit %d) after %d s\n' "$rc" $((SECONDS - START)) >&2
  fi
  if ((vm_started)); then
    # Ctrl-C always removes the VM (ansible-playbook exits 99 when interrupted, this script 130)
    if [ "$KEEP" = 1 ] && ((rc != 130 && rc != 99)); then print_login; else remove_vm || rc=1; fi
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

cat <<'EOF'
impermanent.nixos demo: a throwaway UEFI libvirt VM provisioned end to end by impermanent.nixos.provision.

  Read this first: the guest is a small DEBIAN image standing in for the NixOS live ISO, and in it
  nixos-generate-config and nixos-install are TEST DOUBLES (tests/images/doubles/): this machine has no
  nixpkgs, no NixOS ISO and no binary cache. Partitioning, alignment, LUKS, mkfs, the tmpfs root, the
  mounts, swap, the hardware-configuration.nix patch and the git-staged flake are real; the NixOS system
  that nixos-install would build is not.
EOF

say "Building or reusing the cached guest image (tests/images/build-guest-image.sh)"
IMAGE_DIR=$(bash "$REPO/tests/images/build-guest-image.sh" | tail -n 1)
[ -f "$IMAGE_DIR/base.qcow2" ] || die "no guest image in '$IMAGE_DIR'"
echo "    $IMAGE_DIR"
took "image"

say "Writing a throwaway LUKS passphrase into Ansible Vault ($DEMO_DIR)"
rm -rf "$DEMO_DIR"
(
  umask 077
  mkdir -p "$DEMO_DIR/host_vars/$NAME"
  head -c 32 /dev/urandom | base64 >"$DEMO_DIR/vault-pass"
  # the passphrase goes from /dev/urandom through a pipe into ansible-vault: never in argv, never printed
  head -c 24 /dev/urandom | base64 | tr -d '\n' |
    ansible-vault encrypt_string --vault-password-file "$DEMO_DIR/vault-pass" --stdin-name disk_luks_passphrase \
      >"$DEMO_DIR/host_vars/$NAME/vault.yml" 2>"$DEMO_DIR/vault.err" || { cat "$DEMO_DIR/vault.err" >&2; exit 1; }
  rm -f "$DEMO_DIR/vault.err"
)
printf 'all:\n  hosts: {}\n' >"$DEMO_DIR/inventory.yml"
head -c 60 "$DEMO_DIR/host_vars/$NAME/vault.yml"; echo ' …'

say "Booting $NAME, installing the test doubles, provisioning it (playbooks/demo.yml)"
vm_started=1   # from here on a failure or Ctrl-C removes the VM
ansible-playbook -i "$DEMO_DIR/inventory.yml" --vault-password-file "$DEMO_DIR/vault-pass" \
  "$REPO/playbooks/demo.yml" -e "demo_dir=$DEMO_DIR" -e "demo_image_dir=$IMAGE_DIR"
took "boot + prepare + provision"

say "The guest after provisioning (read over SSH by the last play of playbooks/demo.yml)"
cat "$DEMO_DIR/layout.txt"

say "Running impermanent.nixos.provision again: nothing may change"
ansible-playbook -i "$DEMO_DIR/inventory.yml" --vault-password-file "$DEMO_DIR/vault-pass" \
  impermanent.nixos.provision >"$DEMO_DIR/rerun.log" 2>&1 || { cat "$DEMO_DIR/rerun.log"; die "the rerun failed"; }
grep -A1 '^changed: ' "$DEMO_DIR/rerun.log" || true   # nothing, when idempotent
sed -n '/^PLAY RECAP/,$p' "$DEMO_DIR/rerun.log"
grep -Eq "^$NAME +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0" "$DEMO_DIR/rerun.log" ||
  die "the second run changed something or failed (log above)"
echo "    idempotent: changed=0"
took "rerun"

say "Done in $((SECONDS - START)) s"
if [ "$KEEP" != 1 ]; then
  remove_vm
  vm_started=0
  took "removal"
  echo "Total wall time: $((SECONDS - START)) s"
fi
