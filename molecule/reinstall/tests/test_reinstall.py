# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the `reinstall` scenario: a disk that already held the layout was provisioned again (side_effect.yml:
data written to /nix/persist, everything recorded under /var/lib/impermanent-tests/before, the layout taken down
and the ESP emptied, then `impermanent.nixos.provision -e flake_reinstall=true` under -vvv).

Nothing lost: the persisted files, the LUKS header area, the filesystem UUIDs and the partition table are as they
were; the boot files are back; the mounts are back (test_install.py, pulled in by molecule.yml, checks the whole
layout step by step). The LUKS passphrase showed up nowhere: not in any guest process's argv (the sampler that ran
from before the first luksFormat to after the reinstall), not in the -vvv output, not in the guest's journal or
files. Each search is shown to find a marker planted the same way, so an empty result means something.
"""
import json
import os
import re
import secrets
import time

import pytest

BEFORE = "/var/lib/impermanent-tests/before"
DATA = "/mnt/nix/persist/reinstall-test"
SAMPLER = "/var/lib/impermanent-tests/argv-sampler.json"
MANIFEST = "/var/lib/impermanent-tests/manifest.sh"
DOUBLES_LOG = "/var/log/impermanent-doubles.log"
# searched for the passphrase; /proc, /sys and /dev are left out
SEARCHED = ["/var/log", "/var/tmp", "/tmp", "/root", "/run", "/mnt"]
# the provision playbook's one module call for every step (LUKS and the identity files among them); no_log
ONE_CALL_TASK = "TASK [Install in one call (each step keeps what is in place)]"


def before(host, name):
    f = host.file("%s/%s" % (BEFORE, name))
    assert f.exists, "side_effect.yml recorded no %s" % name
    return f.content_string


def partitions(host):
    dev = host.check_output("readlink -f %s", host.ansible.get_variables()["disk_device"])
    table = json.loads(host.check_output("sfdisk --json %s", dev))["partitiontable"]
    return dev, {p["name"]: p["node"] for p in table["partitions"]}


def passphrase(host):
    return host.ansible.get_variables()["disk_luks_passphrase"]


def octal(text):
    """printf format that prints text: the secret never stands literally in a command line (ours included)."""
    return "".join("\\%03o" % b for b in text.encode())


def files_containing(host, needle):
    """Paths under SEARCHED whose content holds needle: grep -rlF with the pattern read from a pipe."""
    cmd = host.run("bash -c %s", "grep -rlsF -D skip -f <(printf '%s') -- %s" % (octal(needle), " ".join(SEARCHED)))
    assert cmd.rc in (0, 1, 2), cmd.stderr  # 2: some file vanished or was unreadable while searching
    return [line for line in cmd.stdout.splitlines() if line]


def journal_lines_containing(host, needle):
    cmd = host.run("bash -c %s", "journalctl -o cat --no-pager | grep -cF -f <(printf '%s')" % octal(needle))
    assert cmd.rc in (0, 1), cmd.stderr
    return int(cmd.stdout.strip() or 0)


# --- A. reinstall keeping state ---------------------------------------------------------------------------------

def test_reinstall_started_from_a_closed_disk(host):
    """The reinstall began where a reboot into the live ISO leaves a machine: nothing mounted under /mnt (there
    were mounts before the teardown), no device-mapper mapping, no swap, and an empty ESP."""
    assert "/mnt/nix" in before(host, "mounts-before-teardown.txt").split()
    assert before(host, "mounts-after-teardown.txt") == ""
    assert before(host, "mappers-after-teardown.txt") == ""
    assert before(host, "swaps-after-teardown.txt") == ""
    assert before(host, "esp-after-break.txt") == ""
    assert before(host, "esp-files.txt").strip() != ""


def test_persisted_files_byte_identical(host):
    """The 4 MiB random file and the small files with odd names (spaces, tab, newline, non-ASCII, leading dash,
    hidden, empty, a symlink, deep directories) under /nix/persist survived the reinstall: same sha256 of every
    file (all their bytes compared: the count is printed), same names, types, modes, sizes and mtimes."""
    expected_bytes = int(before(host, "bytes"))
    size = int(before(host, "random.size"))
    assert size == 4194409 and expected_bytes > size
    assert host.check_output("sha256sum < %s/random.bin | cut -d' ' -f1", DATA) == before(host, "random.sha256").strip()
    manifest = host.check_output("%s %s", MANIFEST, DATA)
    recorded = before(host, "manifest.txt").rstrip("\n")
    assert manifest == recorded
    hashed = [line for line in recorded.splitlines() if re.match(r"^\\?[0-9a-f]{64}  \./", line)]
    assert len(hashed) == int(before(host, "files")) == 5, recorded
    for name in ("ünïcödé 名前/-leading-dash", "tab\tand 'quotes' \"too\".txt", "new\nline in the name",
                 ".hidden/empty", "deep/a/b/c/link to random -> ../../../../random.bin"):
        assert name in recorded, name
    print("persisted data: %d bytes in %d files compared by sha256" % (expected_bytes, len(hashed)))


def test_luks_header_unchanged(host):
    """The LUKS2 header area (the first 16 MiB of the nix partition, which is where the data segment starts) has the
    same sha256 as before the reinstall: no luksFormat, no key slot change; luksDump agrees."""
    _, parts = partitions(host)
    nix = parts["nix"]
    dump = host.check_output("cryptsetup luksDump %s", nix)
    segments = dump[dump.index("Data segments:"):dump.index("Keyslots:")]
    assert "offset: 16777216 [bytes]" in segments, segments
    header = host.check_output("dd if=%s bs=1M count=16 status=none | sha256sum | cut -d' ' -f1", nix)
    assert header == before(host, "luks-header.sha256").strip()
    assert dump == before(host, "luksDump.txt").rstrip("\n")


def test_filesystem_uuids_unchanged(host):
    """No mkfs ran: the ESP, the swap signature, the LUKS container and the ext4 inside it have the UUIDs, labels
    and types they had before (blkid's low-level probe, compared field by field)."""
    _, parts = partitions(host)
    devices = dict(parts, mapper="/dev/mapper/%s" % host.ansible.get_variables().get("disk_luks_name", "crypted"))
    for name in ("boot", "swap", "nix", "mapper"):
        now = host.check_output("blkid -p -o export %s", devices[name])
        was = before(host, "blkid-%s.txt" % name).rstrip("\n")
        assert "UUID=" in was and now == was, (name, was, now)


def test_partition_table_unchanged(host):
    """No sfdisk write: the GPT dump (disk GUID, every partition's start, size, type, GUID and name) is unchanged."""
    dev, _ = partitions(host)
    assert host.check_output("sfdisk --dump %s", dev) == before(host, "sfdisk.dump").rstrip("\n")


def test_grown_disk_kept_its_table(host):
    """The disk grew by 1 GiB before the reinstall (side_effect.yml, virsh blockresize on the running guest):
    gpt_partition counted the table as the layout, said how much the disk grew, and wrote nothing (the dump above,
    last-lba included, is unchanged)."""
    was, now = int(before(host, "disk-bytes.txt")), int(before(host, "disk-bytes-grown.txt"))
    assert now - was == host.ansible.get_variables()["harness_disk_grown_bytes"] == 1 << 30, (was, now)
    assert int(host.check_output("blockdev --getsize64 %s", partitions(host)[0])) == now
    words = " ".join(_vvv_log().split())  # Ansible wraps warnings at the terminal width
    # the one install call is no_log, so provision.yml shows its steps' warnings after what each step did
    grew = (r"WARNING: gpt_partition: \S+: the disk grew after this table was written: the table's last usable LBA "
            r"is \d+ \([^)]+\), the disk's is now \d+ \([^)]+\); partition 3 \('nix', 100%\) keeps its")
    assert re.search(grew, words), "no warning about the grown disk in the -vvv output"


def _installs(host):
    log = host.file(DOUBLES_LOG).content_string
    return [c for c in map(json.loads, filter(None, log.splitlines())) if c["tool"] == "nixos-install"]


def test_nixos_install_ran_again_and_repaired_the_boot(host):
    """nixos-install ran twice (converge, reinstall), both times successfully, the second as generation 2; the
    ESP, emptied before the reinstall, again holds every file it held before, plus the new generation's entry."""
    calls = _installs(host)
    assert [(c["rc"], c.get("generation")) for c in calls] == [(0, 1), (0, 2)], calls
    host_name = host.ansible.get_variables()["flake_hostname"]
    assert all(c["argv"][c["argv"].index("--flake") + 1] == "/mnt/etc/nixos#%s" % host_name for c in calls)
    was = before(host, "esp-files.txt").split("\n")
    now = host.check_output("cd /mnt/boot && find . -type f | LC_ALL=C sort").split("\n")
    assert set(filter(None, was)) < set(now), (was, now)
    assert sorted(set(now) - set(was)) == ["./loader/entries/nixos-generation-2.conf"]
    assert "./EFI/BOOT/BOOTX64.EFI" in now
    assert host.check_output("readlink /mnt/nix/var/nix/profiles/system") == "system-2-link"


def test_hwconfig_kept(host):
    """The reinstall did not regenerate hardware-configuration.nix (nixos-generate-config ran once, at converge)
    and the flake in /nix/persist/etc/nixos is still a git repository with it staged."""
    log = host.file(DOUBLES_LOG).content_string
    generated = [c for c in map(json.loads, filter(None, log.splitlines())) if c["tool"] == "nixos-generate-config"]
    assert len(generated) == 1
    tracked = host.check_output("git -C /mnt/etc/nixos -c safe.directory=* ls-files").split()
    assert "hardware-configuration.nix" in tracked


# --- B. the passphrase never shows ------------------------------------------------------------------------------

def test_argv_sampler_saw_cryptsetup_and_no_passphrase(host):
    """The guest's argv sampler (tests/argv_sampler.py), running from before the disk role of the first install
    until after the reinstall, read /proc/*/cmdline (and cryptsetup's environ) many times while cryptsetup ran
    (luksFormat, open) and never found the passphrase, nor the identity role's secrets (a user's password, a line
    of the host's private key, a given hash: converge.yml). Numbers are printed."""
    report = json.loads(host.file(SAMPLER).content_string)
    print("argv sampler: %(samples)d passes, %(cmdlines)d argv read, %(passes_with_cryptsetup)d passes with "
          "cryptsetup running (%(cryptsetup_processes)d processes, %(sightings)d sightings), subcommands "
          "%(subcommands)s, %(hits)d hits, %(seconds)s s" % report)
    assert report["running"] is False
    assert report["samples"] > 0 and report["cmdlines"] > 0
    assert report["passes_with_cryptsetup"] > 0, "the sampler never saw cryptsetup: the check proved nothing"
    assert report["subcommands"].get("open", 0) > 0, report["subcommands"]
    assert report["hits"] == 0, report["hit_sources"]


def _vvv_log():
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "reinstall-vvv.log")
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_vvv_output_has_no_passphrase(host):
    """The reinstall's `ansible-playbook -vvv` output (saved by side_effect.yml) reached the one install call (which
    opens LUKS), shows its result masked by no_log, and does not contain the passphrase."""
    text = _vvv_log()
    assert ONE_CALL_TASK in text
    call = text[text.index(ONE_CALL_TASK):]
    call = call[:call.index("\nTASK [")]
    assert "the output has been hidden due to the fact that 'no_log: true' was specified" in call
    assert passphrase(host) not in text
    print("-vvv output: %d characters searched" % len(text))


def test_passphrase_not_in_guest_files_or_journal(host):
    """grep -rlF over /var/log, /var/tmp, /tmp, /root, /run and /mnt, and over the whole journal, finds the
    passphrase nowhere."""
    assert files_containing(host, passphrase(host)) == []
    assert journal_lines_containing(host, passphrase(host)) == 0


def _identity_secrets(host):
    """The identity role's secrets (molecule.yml): private key lines of the host key made on the controller,
    the user's password, the given hash and the hash written for the password (their digest parts)."""
    variables = host.ansible.get_variables()
    with open(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "identity", "ssh_host_ed25519_key")) as f:
        # the last body lines: the private half (the first lines are the same in every unencrypted ed25519 key)
        key_lines = [line for line in f.read().splitlines() if line and not line.startswith("-----")][-3:]
    users = variables["flake_users"]
    written = host.file("/mnt/nix/persist/passwords/%s" % users[0]["name"]).content_string.strip()
    given = users[1]["password_hash"]
    return {"private key line %d" % i: line for i, line in enumerate(key_lines)}, {
        "password": users[0]["password"], "written hash": written.split("$")[-1], "given hash": given.split("$")[-1]}


def test_vvv_output_has_no_identity_secret(host):
    """The reinstall's -vvv output ran the identity role (its planning tasks are there) and the one install call
    that writes its files, and holds none of its secrets."""
    text = _vvv_log()
    assert ("TASK [impermanent.nixos.identity : Work out the host keys, machine id, password hashes and extra files "
            "to write under the persistent directory]") in text
    assert ONE_CALL_TASK in text
    key_lines, others = _identity_secrets(host)
    for what, needle in list(key_lines.items()) + list(others.items()):
        assert needle not in text, "%s in the -vvv output" % what


def test_identity_secrets_only_where_they_belong(host):
    """The private key and the hashes are in their persisted files and nowhere else under the searched
    directories, nor in the journal; the password is nowhere."""
    key_lines, others = _identity_secrets(host)
    users = host.ansible.get_variables()["flake_users"]
    expected = {
        "password": [],
        "written hash": ["/mnt/nix/persist/passwords/%s" % users[0]["name"]],
        "given hash": ["/mnt/nix/persist/passwords/%s" % users[1]["name"]],
    }
    key_files = ["/mnt/nix/persist/etc/ssh/ssh_host_ed25519_key"]
    for what, needle in others.items():
        assert files_containing(host, needle) == expected[what], what
        assert journal_lines_containing(host, needle) == 0, what
    for what, needle in key_lines.items():
        assert files_containing(host, needle) in ([], key_files), what
        assert journal_lines_containing(host, needle) == 0, what
    assert files_containing(host, list(key_lines.values())[-2]) == key_files


def test_search_finds_a_planted_marker(host):
    """Negative control: the same searches find a marker of the same shape written under /tmp and to the journal,
    so an empty result above is not a broken search."""
    marker = "reinstall-Marker-%s" % secrets.token_hex(3)
    directory = host.check_output("mktemp -d /tmp/impermanent-marker.XXXXXX")
    try:
        host.check_output("printf %s > %s/planted", octal(marker), directory)
        assert files_containing(host, marker) == [directory + "/planted"]
        host.check_output("logger -t impermanent-test %s", "planted " + marker)
        for _ in range(20):
            if journal_lines_containing(host, marker) >= 1:
                break
            time.sleep(0.5)
        assert journal_lines_containing(host, marker) >= 1
    finally:
        host.run("rm -rf %s", directory)
