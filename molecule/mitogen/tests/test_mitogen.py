# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks specific to the `mitogen` scenario: the default scenario's inputs (by-id virtio disk, LUKS, 1GiB swap),
provisioned under Mitogen, taken down and provisioned again by side_effect.yml. The step-by-step checks shared by
every scenario come from ../default/tests/test_install.py (testinfra additional_files_or_dirs); they hold after the
second provision too (one nixos-install, one nixos-generate-config in all)."""
import os


def test_scenario_inputs(host):
    """Steps 3, 4 and 7 (guard): the scenario exercises by-id addressing, LUKS and swap, like molecule/default."""
    v = host.ansible.get_variables()
    assert v["disk_device"] == "/dev/disk/by-id/virtio-nixdisk-mitogen"
    assert v["disk_luks"] is True
    assert str(v["disk_swap_size"]) == "1GiB"


def test_the_second_provision_ran_under_mitogen_without_the_passphrase(host):
    """side_effect.yml's -vvv output (kept in the scenario's ephemeral directory): a Mitogen context ran the
    modules, the one install call (which opens LUKS again) ran, and the passphrase appears nowhere."""
    log = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "mitogen-vvv.log")
    with open(log) as f:
        text = f.read()
    assert "(mitogen:" in text
    assert "TASK [Install in one call (each step keeps what is in place)]" in text
    assert host.ansible.get_variables()["disk_luks_passphrase"] not in text
