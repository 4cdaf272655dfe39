# SPDX-License-Identifier: GPL-3.0-or-later
"""The domain XML of impermanent.nixos.libvirt_vm, rendered through the role (``tasks_from: xml.yml``), no guest.

One ansible-playbook run renders every case: each is an ``include_role`` with its own variables, followed by a copy
of the fact ``libvirt_vm_xml`` to a file. Every rendered domain must pass ``virt-xml-validate`` (libvirt's RelaxNG
schema), for each network (libvirt network, bridge, user mode, user mode restricted) x display (SPICE on/off) x
software TPM (on/off). The callers that existed before the network/display choices (the Molecule harness and
``make demo``: direct kernel boot, no ISO) must get byte-for-byte the XML they got then (``fixtures/libvirt_vm/``,
rendered by the role before the change). Needs ``virt-xml-validate`` (libvirt-clients), not libvirtd.
"""
import itertools
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import HERE, PlaybookResult, _env

FIXTURES = os.path.join(HERE, "fixtures", "libvirt_vm")
IMAGES = "/srv/impermanent-images"

# The variables molecule/shared/create.yml passes (here for the topology scenario plus an NVMe disk) and the ones
# playbooks/demo.yml passes. Neither sets a network, display, TPM or boot choice.
HARNESS = {
    "libvirt_vm_name": "impermanent-mol-topology",
    "libvirt_vm_state": "running",
    "libvirt_vm_wait_for_ssh": False,
    "libvirt_vm_memory_mib": 1536,
    "libvirt_vm_vcpus": 2,
    "libvirt_vm_accel": "tcg",
    "libvirt_vm_base_image": IMAGES + "/base.qcow2",
    "libvirt_vm_kernel": IMAGES + "/vmlinuz",
    "libvirt_vm_initrd": IMAGES + "/initrd.img",
    "libvirt_vm_ssh_port": 22413,
    "libvirt_vm_ssh_identity_file": IMAGES + "/id_ed25519",
    "libvirt_vm_disks": [
        {"serial": "nixdisk-topo", "size_gib": 6, "bus": "virtio", "logical_block_size": 512,
         "physical_block_size": 4096, "min_io_size": 4096, "opt_io_size": 786432},
        {"serial": "nixdisk-nvme", "size_gib": 6, "bus": "nvme", "logical_block_size": 4096},
    ],
    "libvirt_vm_disk_cache": "unsafe",
}
DEMO = {
    "libvirt_vm_name": "impermanent-demo",
    "libvirt_vm_state": "running",
    "libvirt_vm_memory_mib": 2048,
    "libvirt_vm_vcpus": 2,
    "libvirt_vm_accel": "kvm",
    "libvirt_vm_base_image": IMAGES + "/base.qcow2",
    "libvirt_vm_kernel": IMAGES + "/vmlinuz",
    "libvirt_vm_initrd": IMAGES + "/initrd.img",
    "libvirt_vm_ssh_port": 22419,
    "libvirt_vm_ssh_identity_file": IMAGES + "/id_ed25519",
    "libvirt_vm_disks": [{"serial": "demodisk", "size_gib": 8}],
    "libvirt_vm_disk_cache": "unsafe",
}


def render(tmp_path, cases):
    """{case name: rendered XML} for {case name: role variables}, in one ansible-playbook run."""
    out = tmp_path / "xml"
    out.mkdir()
    tasks = []
    for name, variables in cases.items():
        tasks.append({"name": "Render " + name,
                      "ansible.builtin.include_role": {"name": "impermanent.nixos.libvirt_vm",
                                                       "tasks_from": "xml.yml"},
                      "vars": variables})
        tasks.append({"name": "Write " + name,
                      "ansible.builtin.copy": {"content": "{{ libvirt_vm_xml }}", "dest": str(out / (name + ".xml")),
                                               "mode": "0644"}})
    playbook = tmp_path / "render.yml"
    playbook.write_text(json.dumps([{"name": "Render domain XML", "hosts": "localhost", "gather_facts": False,
                                     "tasks": tasks}]))
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook)],
                          capture_output=True, text=True, env=_env(), check=False)
    result = PlaybookResult(proc)
    assert result.rc == 0 and result.failed == 0, "rendering failed:\n%s\n%s" % (proc.stdout[-6000:],
                                                                                 proc.stderr[-3000:])
    return {name: (out / (name + ".xml")).read_text() for name in cases}


def validate(path):
    proc = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, "%s does not validate:\n%s%s\n%s" % (path, proc.stdout, proc.stderr,
                                                                     open(path, encoding="utf-8").read())


@pytest.fixture(scope="module", autouse=True)
def needs_validator():
    if shutil.which("virt-xml-validate") is None:
        pytest.fail("virt-xml-validate is missing (libvirt-clients): run scripts/setup-host.sh")


def test_harness_and_demo_get_todays_xml(tmp_path):
    rendered = render(tmp_path, {"harness": HARNESS, "demo": DEMO})
    for name, text in rendered.items():
        with open(os.path.join(FIXTURES, name + ".xml"), encoding="utf-8") as f:
            expected = f.read()
        assert text == expected, "%s: the rendered domain differs from the one before the change" % name
        path = tmp_path / (name + "-check.xml")
        path.write_text(text)
        validate(path)
