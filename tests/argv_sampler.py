# SPDX-License-Identifier: GPL-3.0-or-later
"""Watch every process's argv for a secret: the sampler behind tests/integration/test_secrets.py (a thread on this
host) and molecule/reinstall (a daemon in the guest, run as a script). Python 3 standard library only.

A pass reads every /proc/PID/cmdline, and /proc/PID/environ of each cryptsetup process, and looks for the needle
in them. The sampler counts passes, argv vectors read and cryptsetup sightings (passes x cryptsetup processes):
a run that never saw cryptsetup proved nothing. A hit records where (argv or environ), the pid and the argv; the
report written by the script form (`report()`) keeps only the program name of a hit, never its argv, so that the
secret cannot land in the report.

As a script, in the guest:

    python3 argv_sampler.py --out REPORT.json --pidfile PIDFILE [--interval SECONDS]  < needles

reads the needles from standard input, one per line (never from the command line or a file: it would leave the
secrets where the tests look for them), detaches (returning once the pid file and a first report are written),
and samples until SIGTERM, rewriting REPORT.json every few seconds and at the end.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time


def _read(path):
    """The whole file, or b"" (the process is gone). os.read rather than open(): a pass stays cheap in a slow guest."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return b""
    finally:
        os.close(fd)
    return b"".join(chunks)


class Sampler(threading.Thread):
    def __init__(self, needle, interval=0.002):
        """needle: one secret (str or bytes) or a list of them; a hit is any of them."""
        super().__init__(daemon=True)
        needles = needle if isinstance(needle, (list, tuple)) else [needle]
        self.needles = [n.encode() if isinstance(n, str) else n for n in needles]
        if not self.needles or not all(self.needles):
            raise ValueError("an empty needle matches everything")
        self.interval = interval
        self.stop = threading.Event()
        self.samples = 0          # full passes over /proc
        self.cmdlines = 0         # argv vectors read
        self.cryptsetup = set()   # pids seen running cryptsetup
        self.sightings = 0        # (pass, cryptsetup pid) pairs
        self.passes_with_cryptsetup = 0
        self.subcommands = {}     # cryptsetup action (luksFormat, open, close, ...) -> sightings
        self.hits = []            # (where, pid, argv)

    def _holds(self, data):
        return any(n in data for n in self.needles)

    def sample(self):
        """One pass over /proc."""
        me = str(os.getpid())
        seen = False
        for entry in os.scandir("/proc"):
            pid = entry.name
            if not pid.isdigit() or pid == me:
                continue
            argv = _read("/proc/%s/cmdline" % pid)
            if not argv:
                continue
            self.cmdlines += 1
            if self._holds(argv):
                self.hits.append(("argv", pid, argv))
            words = argv.split(b"\0")
            if os.path.basename(words[0]) == b"cryptsetup":
                seen = True
                self.cryptsetup.add(pid)
                self.sightings += 1
                action = next((w for w in words[1:] if w and not w.startswith(b"-")), b"").decode(errors="replace")
                self.subcommands[action] = self.subcommands.get(action, 0) + 1
                if self._holds(_read("/proc/%s/environ" % pid)):
                    self.hits.append(("environ", pid, argv))
        self.samples += 1
        self.passes_with_cryptsetup += seen

    def run(self):
        while not self.stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def report(self):
        """The counts and the hits without their argv (which would hold the secret)."""
        return {
            "samples": self.samples, "cmdlines": self.cmdlines, "sightings": self.sightings,
            "passes_with_cryptsetup": self.passes_with_cryptsetup, "cryptsetup_processes": len(self.cryptsetup),
            "subcommands": self.subcommands, "hits": len(self.hits),
            "hit_sources": [dict(zip(("where", "pid", "program"), source)) for source in sorted(set(
                (where, pid, os.path.basename(argv.split(b"\0")[0]).decode(errors="replace"))
                for where, pid, argv in self.hits))],
        }


def _write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def _detach():
    """Double fork; the caller's process exits only once the daemon says it samples (0) or died first (1).
    Returns the daemon's end of that pipe."""
    ready_r, ready_w = os.pipe()
    if os.fork():
        os.close(ready_w)
        os._exit(0 if os.read(ready_r, 1) == b"1" else 1)
    os.close(ready_r)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return ready_w


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON report, rewritten while sampling")
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--interval", type=float, default=0.002, help="sleep between passes (seconds)")
    parser.add_argument("--foreground", action="store_true", help="do not detach")
    args = parser.parse_args(argv)
    needles = [line.rstrip(b"\r") for line in sys.stdin.buffer.read().split(b"\n") if line.rstrip(b"\r")]
    sampler = Sampler(needles, interval=args.interval)
    for path in (args.out, args.pidfile):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ready = None if args.foreground else _detach()
    started = time.time()

    def stop(_signum, _frame):
        sampler.stop.set()

    signal.signal(signal.SIGTERM, stop)
    with open(args.pidfile, "w") as f:
        f.write("%d\n" % os.getpid())
    last = 0.0
    while not sampler.stop.is_set():
        sampler.sample()
        if time.time() - last > 5:
            _write(args.out, dict(sampler.report(), running=True, seconds=round(time.time() - started, 1)))
            last = time.time()
        if ready is not None:  # pid file and a first report written: let the caller go on
            os.write(ready, b"1")
            os.close(ready)
            ready = None
        time.sleep(args.interval)
    _write(args.out, dict(sampler.report(), running=False, seconds=round(time.time() - started, 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
