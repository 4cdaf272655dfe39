# SPDX-License-Identifier: GPL-3.0-or-later
"""What the kill chain (tests/resume/kill_chain.py, run by side_effect.yml) saw, checked from its report.

The end state itself is checked by the shared step-by-step tests (default/tests/test_install.py) after converge and
idempotence; here: that the kills really happened where they were meant to, and that each resume converged.
"""
import json
import os
import re

import pytest

# Where side_effect.yml told the chain to write (tests/run-molecule.sh sets IMPERMANENT_TEST_LOGS).
REPORT = os.path.join(os.environ.get("IMPERMANENT_TEST_LOGS") or os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""),
                      "resume-kill-chain", "report.json")
# Tasks of provision.yml that change a blank disk's guest; a kill follows each of them (mode "changed").
MUST_KILL_AFTER = [
    "impermanent.nixos.disk : Partition the disk (ESP, swap, nix) on its optimal alignment",
    "impermanent.nixos.disk : Format (only without a LUKS header) and open the nix partition",
    "impermanent.nixos.disk : Create the file systems (FAT32 ESP, swap, ext4 for /nix), never over an existing one",
    "impermanent.nixos.layout : Mount the tmpfs root, the ESP, the nix filesystem and the persist bind mounts",
    "impermanent.nixos.hwconfig : Generate hardware-configuration.nix if it is missing, and patch it for the "
    "impermanent layout",
    "impermanent.nixos.flake : Install NixOS from the flake",
]


@pytest.fixture(scope="module")
def report():
    with open(REPORT) as f:
        return json.load(f)


def test_chain_completed(report):
    """Resume: the chain ended with a run that finished, and nothing failed on the way."""
    assert report["ok"] is True and report["problem"] is None, report.get("problem")


def test_killed_in_the_middle_of_luks_format(report):
    """Resume: ansible-playbook and cryptsetup luksFormat were SIGKILLed after the LUKS header was on the disk and
    before its key slot was: the header left behind has no key slot (luks_open formats such a header again)."""
    mid = report["mid"][0]
    assert mid["what"] == "luksFormat" and mid["remote"] == "KILLED" and mid["controller_rc"] == -9, mid
    assert mid["left"].splitlines() == ["Keyslots:", "Tokens:"], mid["left"]


def test_killed_in_the_middle_of_mkfs(report):
    """Resume: ansible-playbook and mke2fs were SIGKILLed while mke2fs was running on /dev/mapper/crypted."""
    mid = report["mid"][1]
    assert mid["what"] == "mkfs.ext4" and mid["remote"] == "KILLED" and mid["controller_rc"] == -9, mid


def test_each_kill_in_the_middle_resumed_a_boundary_kill_and_was_resumed(report):
    """Resume: the run killed in the middle of luksFormat started from the kill after partitioning, the one killed
    in mke2fs from the kill after LUKS was set up, and the chain went on from both (it ended with a finished run)."""
    kills = dict((k["index"], k["previous"]) for k in report["boundary_kills"])
    luks, mkfs = report["mid"][:2]
    assert kills[luks["resumed_from_boundary"]] == MUST_KILL_AFTER[0]
    assert kills[mkfs["resumed_from_boundary"]] == MUST_KILL_AFTER[1]


def test_a_kill_followed_every_task_that_changes_the_guest(report):
    """Resume: the chain killed ansible-playbook at the boundary after each state-changing task of provision.yml,
    and every kill point was resumed by the next run (a run that failed instead of being killed ends the chain)."""
    kills = report["boundary_kills"]
    # the install's controller dies in the middle of it (the next test): that interrupts it, its module goes on
    after = [k["previous"] for k in kills] + [m["task"] for m in report["mid"] if m.get("left_running")]
    for task in MUST_KILL_AFTER:
        assert task in after, "no kill right after %r; kills: %s" % (task, after)
    assert [k["index"] for k in kills] == sorted(set(k["index"] for k in kills))
    if report["mode"] == "changed":
        assert all(k["previous_changed"] for k in kills)
    print("kill points: %d at task boundaries + %d in the middle of a command, %d runs, %.0f s"
          % (len(kills), len(report["mid"]), report["runs"], report["seconds"]))


def test_a_rerun_waited_for_the_install_a_dead_controller_left_running(report):
    """Resume: ansible-playbook was SIGKILLed while nixos-install ran (frozen), leaving its module running in the
    guest, as a dropped SSH session does. The next run, started at once, opened the run lock beside it, waited
    (its warning names nixos_flake_install), and went on only after the old module had finished the install; the
    next test shows that nixos-install then ran once in the whole chain, not twice."""
    dies = report["mid"][2]
    assert dies["what"] == "nixos-install" and dies["left_running"] is True, dies
    assert dies["controller_rc"] == -9 and dies["remote"] == "RESUMED", dies
    assert dies["next_module_waiting"] == "WAITING", dies
    assert dies["next_run_waited"] is True, dies
    kills = dict((k["index"], k["previous"]) for k in report["boundary_kills"])
    assert kills[dies["resumed_from_boundary"]] == MUST_KILL_AFTER[4]


def test_chain_ends_with_one_generate_and_one_install(report):
    """Resume: no step ran twice to completion where it must run once: nixos-generate-config and nixos-install
    were each called once over the whole chain (the doubles' log), /nix is ext4 inside LUKS, the flake directory
    is closed again (755). The rest of the end state is checked by test_install.py after converge."""
    fp = report["final_fingerprint"]
    assert "## installer calls\n1\n" in fp and "## generate calls\n1\n" in fp, fp
    assert re.search(r"/mnt/nix +ext4 ", fp) and "TYPE=crypto_LUKS" in fp, fp
    assert "/mnt/etc/nixos 755" in fp, fp
