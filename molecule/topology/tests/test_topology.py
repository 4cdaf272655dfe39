# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks specific to the `topology` scenario: a virtio disk with 4096-byte physical sectors and an optimal I/O size
of 786432 bytes (768KiB, not a power of two, so 1MiB alignment would be wrong). The step-by-step checks shared by
every scenario come from ../default/tests/test_install.py (testinfra additional_files_or_dirs)."""
import json
import os

OPT_IO = 786432


def _disk(host):
    return host.check_output("readlink -f %s", host.ansible.get_variables()["disk_device"])


def test_guest_sees_the_topology(host):
    """Step 3 (guard): the harness gave the disk the odd topology; without it the alignment checks prove nothing."""
    queue = "/sys/block/%s/queue" % os.path.basename(_disk(host))
    got = {k: int(host.check_output("cat %s/%s", queue, k))
           for k in ("logical_block_size", "physical_block_size", "optimal_io_size")}
    assert got == {"logical_block_size": 512, "physical_block_size": 4096, "optimal_io_size": OPT_IO}


def test_partitions_start_on_optimal_io_multiples(host):
    """Step 3: every partition starts on a multiple of the 768KiB optimal I/O size (hence of 4096), at 1MiB or
    later, which a fixed 1MiB alignment would miss (1MiB is not a multiple of 768KiB)."""
    table = json.loads(host.check_output("sfdisk --json %s", _disk(host)))["partitiontable"]
    sector = table.get("sectorsize", 512)
    starts = [p["start"] * sector for p in table["partitions"]]
    assert len(starts) == 3
    for start in starts:
        assert start % OPT_IO == 0 and start % 4096 == 0 and start >= 1024 * 1024, start


def test_parted_align_check_minimal_too(host):
    """Step 3: the partitions also pass `parted align-check minimal` (4096-byte physical sectors)."""
    dev = _disk(host)
    for number in (1, 2, 3):
        cmd = host.run("parted %s align-check minimal %s", dev, str(number))
        assert cmd.rc == 0 and cmd.stdout.strip() == "%d aligned" % number, cmd.stdout
