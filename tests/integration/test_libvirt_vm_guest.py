# SPDX-License-Identifier: GPL-3.0-or-later
"""impermanent.nixos.libvirt_vm defines and starts a guest for people: QEMU user mode without ``restrict``, SPICE.

A small guest (256 MiB, no disk, no ISO: OVMF alone) is defined and started through the role with
``libvirt_vm_network: user`` and ``libvirt_vm_display: spice``. The domain libvirt reports (``virsh dumpxml``) must
hold the SPICE graphics listening on 127.0.0.1 only, the agent's ``spicevmc`` channel, the video device and the
unrestricted user-mode netdev; the running QEMU must say the same (``info network``: ``restrict=off``, ``info
spice``: 127.0.0.1), and the role's result must name the display and the forwarded port. The guest is destroyed
and undefined with its NVRAM afterwards, also when the test fails. A software TPM on a host without swtpm is
refused before anything is defined or created. The libvirt-network and bridge modes are only rendered and
validated (test_libvirt_vm_xml.py): the test machines start no guest on them. Needs root and a running libvirtd
(``scripts/setup-host.sh``).
"""
import os
import shutil
import xml.etree.ElementTree as ET

import pytest

from conftest import LIBVIRT_IMAGES_DIR, remove_guest, require_libvirt, run_tasks, virsh

NAME = "impermanent-itest-spice"
PORT = 22431
QEMU_NS = {"qemu": "http://libvirt.org/schemas/domain/qemu/1.0"}


@pytest.fixture
def guest_name():
    require_libvirt()
    remove_guest(NAME)
    yield NAME
    remove_guest(NAME)
    assert NAME not in virsh("list", "--all", "--name").stdout.split()


def test_user_mode_spice_guest(guest_name, tmp_path):
    result = run_tasks(tmp_path / "guest.yml", [
        {"name": "Define and start it", "ansible.builtin.include_role": {"name": "impermanent.nixos.libvirt_vm"},
         "vars": {"libvirt_vm_name": guest_name, "libvirt_vm_memory_mib": 256, "libvirt_vm_vcpus": 1,
                  "libvirt_vm_accel": "tcg", "libvirt_vm_network": "user", "libvirt_vm_display": "spice",
                  "libvirt_vm_ssh_port": PORT, "libvirt_vm_wait_for_ssh": False}},
        {"name": "Show the result", "ansible.builtin.debug": {"var": "libvirt_vm_info"}},
    ], play_vars={"ansible_python_interpreter": "{{ ansible_playbook_python }}"})
    assert result.rc == 0 and result.failed == 0, "%s\n%s" % (result.stdout[-6000:], result.stderr[-2000:])
    info = result.task("Show the result")["libvirt_vm_info"]

    assert virsh("domstate", guest_name).stdout.strip() == "running"
    dump = virsh("dumpxml", guest_name)
    assert dump.returncode == 0, dump.stderr
    dom = ET.fromstring(dump.stdout)

    graphics = dom.findall("devices/graphics")
    assert [g.get("type") for g in graphics] == ["spice"]
    assert [ls.get("address") for ls in graphics[0].findall("listen")] == ["127.0.0.1"]
    assert graphics[0].get("listen") == "127.0.0.1"
    port = int(graphics[0].get("port"))
    assert port > 0, "libvirt gives the started guest's SPICE server a port"
    channels = [(c.get("type"), c.find("target").get("name")) for c in dom.findall("devices/channel")]
    assert ("spicevmc", "com.redhat.spice.0") in channels
    assert [v.find("model").get("type") for v in dom.findall("devices/video")] == ["virtio"]
    assert dom.findall("devices/tpm") == [] and dom.findall("devices/interface") == []

    netdevs = [a.get("value") for a in dom.findall("qemu:commandline/qemu:arg", QEMU_NS)
               if a.get("value").startswith("user,")]
    assert netdevs == ["user,id=hostnet0,hostfwd=tcp:127.0.0.1:%d-:22" % PORT]

    # what the running QEMU does, not only what the definition says
    network = virsh("qemu-monitor-command", guest_name, "--hmp", "info network")
    assert network.returncode == 0, network.stderr
    assert "type=user" in network.stdout and "restrict=off" in network.stdout, network.stdout
    spice = virsh("qemu-monitor-command", guest_name, "--hmp", "info spice")
    assert spice.returncode == 0, spice.stderr
    assert "127.0.0.1:%d" % port in spice.stdout, spice.stdout

    assert info["network"] == "user"
    assert (info["ssh_host"], int(info["ssh_port"])) == ("127.0.0.1", PORT)
    assert info["address_source"] == "the port QEMU user mode forwards to the guest"
    assert info["display"] == "spice://127.0.0.1:%d" % port
    assert info["tpm"] is False


def test_tpm_without_swtpm_is_refused_before_anything_exists(guest_name, tmp_path):
    if shutil.which("swtpm") is not None:
        pytest.skip("swtpm is installed here: the refusal needs a host without it")
    result = run_tasks(tmp_path / "tpm.yml", [
        {"name": "Define and start it", "ansible.builtin.include_role": {"name": "impermanent.nixos.libvirt_vm"},
         "vars": {"libvirt_vm_name": guest_name, "libvirt_vm_memory_mib": 256, "libvirt_vm_accel": "tcg",
                  "libvirt_vm_network": "user", "libvirt_vm_tpm": True, "libvirt_vm_ssh_port": PORT,
                  "libvirt_vm_wait_for_ssh": False}},
    ])
    assert result.rc != 0
    assert "libvirt_vm_tpm is on but swtpm is not installed" in result.stdout, result.stdout[-3000:]
    assert guest_name not in virsh("list", "--all", "--name").stdout.split(), "nothing defined"
    assert not os.path.exists(os.path.join(LIBVIRT_IMAGES_DIR, "vms", guest_name)), "nothing created"
