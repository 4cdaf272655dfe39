# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/vm.yml (the installed ``impermanent.nixos.vm``) against this host's libvirt, with a real ISO.

A small ISO 9660 image is made with xorriso (it holds no boot loader: a NixOS ISO is far too large for a test).
The playbook defines and starts a UEFI guest from it; the domain XML that libvirt reports is checked for the cdrom,
the boot order (the blank disk, then the cdrom), the SPICE display the playbook turns on, the non-Secure-Boot OVMF
loader and a memory/vCPU share of 25-50% of this host, and the guest must be running. The firmware's own boot log
on the serial console then shows that it tried the blank disk, found nothing, and went on to the DVD-ROM. The
playbook's default network (libvirt's NAT network) is replaced by QEMU user mode restricted: the test machines
start no guest on a libvirt network. ``vm_state=absent`` must remove the domain, its NVRAM and its disk, and a
second removal must change nothing. Needs root and a running libvirtd (``scripts/setup-host.sh``).
"""
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import LIBVIRT_IMAGES_DIR as IMAGES_DIR, PlaybookResult, _env, remove_guest, require_libvirt, virsh

NAME = "impermanent-itest-vm"
PORT = 22429
SERIAL = "itestdisk"
VM_DIR = os.path.join(IMAGES_DIR, "vms", NAME)


def vm_playbook(**extra_vars):
    argv = ["ansible-playbook", "-i", "localhost,", "-c", "local", "impermanent.nixos.vm"]
    for key, value in extra_vars.items():
        argv += ["-e", "%s=%s" % (key, value)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), check=False)
    result = PlaybookResult(proc)
    assert result.rc == 0 and result.failed == 0, "vm.yml %s failed:\n%s\n%s" % (
        extra_vars, proc.stdout[-4000:], proc.stderr[-2000:])
    return result


@pytest.fixture
def iso():
    require_libvirt()
    if shutil.which("xorriso") is None:
        pytest.fail("xorriso is missing: run scripts/setup-host.sh")
    os.makedirs(IMAGES_DIR, exist_ok=True)
    work = tempfile.mkdtemp(prefix="itest-iso-", dir=IMAGES_DIR)   # where libvirt's QEMU user may read
    os.chmod(work, 0o755)
    content = os.path.join(work, "content")
    os.makedirs(content)
    with open(os.path.join(content, "README.TXT"), "w", encoding="ascii") as f:
        f.write("impermanent.nixos test ISO for playbooks/vm.yml\n")
    path = os.path.join(work, "test.iso")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "IMPERMANENT_TEST", "-o", path, content],
                   check=True, capture_output=True)
    remove_guest(NAME)
    yield path
    remove_guest(NAME)
    shutil.rmtree(work, ignore_errors=True)


def host_memory_mib():
    with open("/proc/meminfo", encoding="ascii") as f:
        kib = int(re.search(r"^MemTotal:\s+(\d+) kB", f.read(), re.M).group(1))
    return kib // 1024


def boot_order(disk):
    boot = disk.find("boot")
    return None if boot is None else int(boot.get("order"))


def test_vm_from_iso_then_absent(iso):
    started = time.monotonic()
    result = vm_playbook(vm_name=NAME, vm_iso=iso, vm_disk_gib=2, vm_disk_serial=SERIAL, vm_ssh_port=PORT,
                         vm_memory_percent=25, vm_network="user_restricted")
    assert result.changed > 0

    dump = virsh("dumpxml", NAME)
    assert dump.returncode == 0, dump.stderr
    dom = ET.fromstring(dump.stdout)

    # cdrom: our ISO, read-only, second in the boot order; the blank disk first (it boots once installed)
    disks = dom.findall("devices/disk")
    cdroms = [d for d in disks if d.get("device") == "cdrom"]
    assert len(cdroms) == 1
    assert cdroms[0].find("source").get("file") == iso
    assert cdroms[0].find("readonly") is not None
    blank = [d for d in disks if d.get("device") == "disk"]
    assert len(blank) == 1, "only the blank disk: no root overlay in ISO mode"
    assert blank[0].findtext("serial") == SERIAL
    assert blank[0].find("source").get("file") == os.path.join(VM_DIR, "disk-%s.qcow2" % SERIAL)
    assert boot_order(blank[0]) == 1 and boot_order(cdroms[0]) == 2
    assert dom.find("os/boot") is None and dom.find("os/kernel") is None, "per-device boot order only"

    # a display for people: SPICE on 127.0.0.1 only, the agent's channel, a video device
    graphics = dom.findall("devices/graphics")
    assert [g.get("type") for g in graphics] == ["spice"]
    assert [ls.get("address") for ls in graphics[0].findall("listen")] == ["127.0.0.1"]
    assert ("spicevmc", "com.redhat.spice.0") in [(c.get("type"), c.find("target").get("name"))
                                                  for c in dom.findall("devices/channel")]
    assert len(dom.findall("devices/video")) == 1
    assert dom.findall("devices/interface") == [], "no libvirt network on the test machines"

    # OVMF without Secure Boot
    loader = dom.find("os/loader")
    assert loader.get("type") == "pflash" and loader.get("readonly") == "yes"
    assert loader.get("secure") in (None, "no")
    assert loader.text == "/usr/share/OVMF/OVMF_CODE_4M.fd"
    assert not re.search(r"secboot|\.ms\.|snakeoil", loader.text + (dom.findtext("os/nvram") or ""))
    assert dom.find("os/nvram").get("template") == "/usr/share/OVMF/OVMF_VARS_4M.fd"
    assert dom.find("features/smm") is None and dom.find("features/acpi") is not None

    # 25-50% of this host's memory and vCPUs
    memory_mib = int(dom.findtext("memory")) // 1024          # libvirt reports KiB
    assert dom.find("memory").get("unit") == "KiB"
    host_mib = host_memory_mib()
    assert 0.25 * host_mib - 1 <= memory_mib <= 0.5 * host_mib, (memory_mib, host_mib)
    vcpus = int(dom.findtext("vcpu"))
    cpus = os.cpu_count()
    assert 1 <= vcpus <= max(1, cpus // 2), (vcpus, cpus)

    assert virsh("domstate", NAME).stdout.strip() == "running"

    # the firmware tries the blank disk first, then the DVD-ROM (OVMF logs its boot attempts on the serial console)
    console = os.path.join(VM_DIR, "console.log")
    log = ""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        with open(console, encoding="utf-8", errors="replace") as f:
            log = f.read()
        if re.search(r"BdsDxe: (loading|failed to load) Boot\d+ \"UEFI QEMU DVD-ROM", log):
            break
        time.sleep(2)
    # e.g. BdsDxe: failed to load Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0)/...: Not Found  (blank)
    #      BdsDxe: failed to load Boot0002 "UEFI QEMU DVD-ROM QM00001 " from ...: Not Found  (no boot loader on it)
    attempts = re.findall(r"BdsDxe: (?:loading|failed to load) Boot\d+ \"([^\"]+)\"", log)
    assert len(attempts) >= 2, "no boot attempts on the serial console:\n%s" % log[-2000:]
    assert attempts[0] == "UEFI Misc Device" and "DVD-ROM" in attempts[1], attempts

    vm_playbook(vm_name=NAME, vm_state="absent")
    assert NAME not in virsh("list", "--all", "--name").stdout.split()
    assert not os.path.exists(VM_DIR), "the disk, NVRAM and console log go with the VM"
    assert os.path.exists(iso), "the ISO is the user's: kept"
    again = vm_playbook(vm_name=NAME, vm_state="absent")
    assert again.changed == 0
    print("vm.yml define+start, checks, removal: %.1f s" % (time.monotonic() - started))
