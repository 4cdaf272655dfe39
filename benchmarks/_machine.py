# SPDX-License-Identifier: GPL-3.0-or-later
"""What the benchmarks say about the machine they ran on (imported by the bench_*.py scripts next to it)."""
import platform


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def mem_gib():
    with open("/proc/meminfo") as f:
        kib = int(f.readline().split()[1])
    return kib / 1024 / 1024
