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
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import HERE, run_tasks

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
    result = run_tasks(tmp_path / "render.yml", tasks)
    assert result.rc == 0 and result.failed == 0, "rendering failed:\n%s\n%s" % (result.stdout[-6000:],
                                                                                 result.stderr[-3000:])
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


NETWORKS = {
    "network": {"libvirt_vm_network": "network", "libvirt_vm_network_name": "default"},
    "bridge": {"libvirt_vm_network": "bridge", "libvirt_vm_bridge": "br0"},
    "user": {"libvirt_vm_network": "user"},
    "user_restricted": {"libvirt_vm_network": "user_restricted"},
}
# what playbooks/vm.yml passes: an ISO install onto one blank virtio disk
ISO_INSTALL = {
    "libvirt_vm_name": "nixos-try",
    "libvirt_vm_accel": "tcg",
    "libvirt_vm_iso": IMAGES + "/nixos.iso",
    "libvirt_vm_disks": [{"serial": "nixos", "size_gib": 40}],
    "libvirt_vm_ssh_port": 2222,
}


def matrix():
    cases = {}
    for (net, net_vars), display, tpm in itertools.product(NETWORKS.items(), ("spice", "none"), (True, False)):
        name = "%s-%s-%s" % (net, display, "tpm" if tpm else "notpm")
        cases[name] = dict(ISO_INSTALL, libvirt_vm_display=display, libvirt_vm_tpm=tpm, **net_vars)
    return cases


def devices(dom, tag):
    return dom.findall("devices/" + tag)


def qemu_args(dom):
    ns = {"qemu": "http://libvirt.org/schemas/domain/qemu/1.0"}
    return [arg.get("value") for arg in dom.findall("qemu:commandline/qemu:arg", ns)]


def test_every_network_display_tpm_combination_validates(tmp_path):
    cases = matrix()
    assert len(cases) == 16
    rendered = render(tmp_path, cases)
    for name, text in rendered.items():
        path = tmp_path / (name + ".xml")
        path.write_text(text)
        validate(path)
        dom = ET.fromstring(text)
        net, display, tpm = name.rsplit("-", 2)
        args = qemu_args(dom)
        netdevs = [a for a in args if a.startswith("user,")]
        interfaces = devices(dom, "interface")
        if net in ("network", "bridge"):
            assert netdevs == [] and len(interfaces) == 1, name
            assert interfaces[0].get("type") == net
            assert interfaces[0].find("model").get("type") == "virtio"
            source = interfaces[0].find("source")
            assert (source.get("network"), source.get("bridge")) == (("default", None) if net == "network"
                                                                      else (None, "br0"))
            assert dom.find("{http://libvirt.org/schemas/domain/qemu/1.0}commandline") is None
        else:
            assert interfaces == [] and len(netdevs) == 1, name
            assert netdevs[0].endswith(",hostfwd=tcp:127.0.0.1:2222-:22")
            assert ("restrict=on" in netdevs[0]) == (net == "user_restricted"), netdevs
        graphics = devices(dom, "graphics")
        channels = [c.find("target").get("name") for c in devices(dom, "channel")]
        if display == "spice":
            assert [g.get("type") for g in graphics] == ["spice"], name
            assert [ls.get("address") for ls in graphics[0].findall("listen")] == ["127.0.0.1"]
            assert channels == ["com.redhat.spice.0"]
            assert [v.find("model").get("type") for v in devices(dom, "video")] == ["virtio"]
        else:
            assert graphics == [] and channels == [] and devices(dom, "video") == [], name
        tpms = devices(dom, "tpm")
        if tpm == "tpm":
            assert [(t.get("model"), t.find("backend").get("type"), t.find("backend").get("version"))
                    for t in tpms] == [("tpm-crb", "emulator", "2.0")], name
        else:
            assert tpms == [], name
        # an ISO install: the blank disk first (nothing to boot on it yet), the ISO second
        orders = {d.get("device"): int(d.find("boot").get("order")) for d in devices(dom, "disk")}
        assert orders == {"disk": 1, "cdrom": 2}, name


def test_defaults_by_use_and_other_choices(tmp_path):
    cases = {
        # the role's own defaults with an ISO: user mode restricted (the role's default), SPICE (auto: an ISO)
        "iso-defaults": ISO_INSTALL,
        "iso-cdrom-first-qxl": dict(ISO_INSTALL, libvirt_vm_boot_first="cdrom", libvirt_vm_video="qxl",
                                    libvirt_vm_mac="52:54:00:AB:CD:EF", libvirt_vm_network="network"),
        "iso-nvme-disk": dict(ISO_INSTALL, libvirt_vm_disks=[{"serial": "nixos", "size_gib": 4, "bus": "nvme"}]),
        "kernel-spice": dict(HARNESS, libvirt_vm_display="spice"),
        "user-mac": dict(HARNESS, libvirt_vm_network="user", libvirt_vm_mac="52:54:00:12:34:56"),
    }
    rendered = render(tmp_path, cases)
    for name, text in rendered.items():
        path = tmp_path / (name + ".xml")
        path.write_text(text)
        validate(path)
    doms = {name: ET.fromstring(text) for name, text in rendered.items()}

    iso = doms["iso-defaults"]
    assert [g.get("type") for g in devices(iso, "graphics")] == ["spice"]
    assert any(a.startswith("user,id=hostnet0,restrict=on,") for a in qemu_args(iso))
    assert devices(iso, "tpm") == []

    qxl = doms["iso-cdrom-first-qxl"]
    assert {d.get("device"): int(d.find("boot").get("order")) for d in devices(qxl, "disk")} == \
        {"cdrom": 1, "disk": 2}
    assert [v.find("model").get("type") for v in devices(qxl, "video")] == ["qxl"]
    assert devices(qxl, "interface")[0].find("mac").get("address") == "52:54:00:ab:cd:ef"

    # an NVMe install disk is on the QEMU command line: its boot index comes with it
    nvme = doms["iso-nvme-disk"]
    assert [int(d.find("boot").get("order")) for d in devices(nvme, "disk") if d.get("device") == "cdrom"] == [2]
    assert [a for a in qemu_args(nvme) if a.startswith("nvme,")][0].endswith(",bootindex=1")

    # a direct kernel boot has no boot order, with or without a display
    kernel = doms["kernel-spice"]
    assert [d.find("boot") for d in devices(kernel, "disk")] == [None, None]
    assert len(devices(kernel, "graphics")) == 1
    assert "virtio-net-pci,netdev=hostnet0,id=net0,bus=pcie.0,addr=0x10,mac=52:54:00:12:34:56" in \
        qemu_args(doms["user-mac"])


def test_bad_choices_are_refused(tmp_path):
    bad_cases = [
        ({"libvirt_vm_network": "nat"}, 'libvirt_vm_network must be network'),
        ({"libvirt_vm_network": "bridge"}, 'libvirt_vm_bridge, a host bridge such as br0; now ""'),
        ({"libvirt_vm_mac": "52:54:00:12:34"}, 'now "52:54:00:12:34"'),
        ({"libvirt_vm_display": "vnc"}, 'now "vnc"'),
    ]
    tasks = [{"name": "Render", "ansible.builtin.include_role": {"name": "impermanent.nixos.libvirt_vm",
                                                                 "tasks_from": "xml.yml",
                                                                 "apply": {"ignore_errors": True}},
              "vars": dict(ISO_INSTALL, **bad)} for bad, _ in bad_cases]
    result = run_tasks(tmp_path / "bad.yml", tasks)
    failures = [task["hosts"]["localhost"].get("msg", "") for play in result.data["plays"] for task in play["tasks"]
                if task["hosts"].get("localhost", {}).get("failed")]
    assert len(failures) == len(bad_cases), result.stdout[-3000:]
    for (bad, message), failure in zip(bad_cases, failures):
        assert message in failure, (bad, failure)
