#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""persist_audit against the seed's rsync command, on the same generated trees, in the same run.

What is timed:
  * module: the code the module runs, imported from the collection (``PersistAudit(...).run()`` from
    plugins/modules/persist_audit.py: both walks' setup, the walk, sorting, the snippet) — in-process, without
    Ansible's module transport (AnsiballZ packing, the interpreter start-up and JSON, which add a constant
    ~0.3-1 s per task whatever the tree);
  * module 1 / module N: the same with the walk forced into one process (what a one-CPU or busy target gets) or
    into one worker process per usable CPU (what an idle target gets);
  * rsync: the seed's ``rsync -amvxx --dry-run --no-links --exclude '/tmp/*' --exclude '/root/*' ROOT/ PERSIST/``,
    its output read through a pipe.
Each is run once to warm the caches, then REPEAT times in rotating order; wall-clock medians (and minimums) are
printed with the ratio module/rsync (below 1 means the module is faster), and the median CPU time (user+sys of
every process involved). The answers are checked to agree before timing.

Usage: bench_persist_audit.py [--sizes 10000,100000] [--repeat 7] [--dir DIR]   (trees: /dev/shm by default)
Needs the collection importable: run from the repository (it links the source tree like tests/conftest.py does)
or with IMPERMANENT_COLLECTIONS_PATH pointing at an installed copy.
"""
import argparse
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
import conftest  # noqa: E402,F401  (makes ansible_collections.impermanent.nixos importable)
from ansible_collections.impermanent.nixos.plugins.modules.persist_audit import PersistAudit  # noqa: E402
from _machine import cpu_model  # noqa: E402

EXCLUDES = ["/tmp/*", "/root/*"]
T0 = 1700000000


def generate(base, nfiles, seed=1):
    """A root with NFILES regular files in a few thousand directories, and a persist that has most of them.

    1% of the files are missing from persist, 0.5% differ (size or mtime), 1 in 50 directories is missing
    entirely; there are symlinks (skipped), empty directory chains (pruned) and excluded /tmp and /root content.
    """
    rnd = random.Random(seed)
    root = os.path.join(base, "root")
    persist = os.path.join(base, "persist")
    per_dir = 20
    dirs = []
    for i in range(max(1, nfiles // per_dir)):
        parts = ["d%d" % rnd.randint(0, 15) for _ in range(rnd.randint(0, 3))] + ["leaf%d" % i]
        dirs.append(os.path.join(*parts))
    made = 0
    for i, d in enumerate(dirs):
        src_dir = os.path.join(root, d)
        os.makedirs(src_dir, exist_ok=True)
        dir_missing = rnd.random() < 0.02
        if not dir_missing:
            os.makedirs(os.path.join(persist, d), exist_ok=True)
        for j in range(per_dir):
            if made >= nfiles:
                break
            made += 1
            data = b"x" * rnd.randint(0, 200)
            name = "f%d" % j
            with open(os.path.join(src_dir, name), "wb") as f:
                f.write(data)
            os.utime(os.path.join(src_dir, name), (T0, T0))
            roll = rnd.random()
            if dir_missing or roll < 0.01:
                continue
            dst = os.path.join(persist, d, name)
            with open(dst, "wb") as f:
                f.write(data + (b"!" if roll < 0.0125 else b""))
            os.utime(dst, (T0 - (5 if 0.0125 <= roll < 0.015 else 0),) * 2)
        if i % 25 == 0:
            os.symlink("f0", os.path.join(src_dir, "link"))
            os.makedirs(os.path.join(src_dir, "empty", "chain"), exist_ok=True)
    for excluded in ("tmp", "root"):
        os.makedirs(os.path.join(root, excluded))
        for k in range(50):
            open(os.path.join(root, excluded, "junk%d" % k), "w").close()
    return root, persist


def rsync_argv(root, persist):
    argv = ["rsync", "-amvxx", "--dry-run", "--no-links"]
    for pat in EXCLUDES:
        argv += ["--exclude", pat]
    return argv + [root + "/", persist + "/"]


def run_rsync(root, persist):
    proc = subprocess.run(rsync_argv(root, persist), stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise SystemExit("rsync failed: %s" % proc.stderr.decode(errors="replace"))
    return proc.stdout


def rsync_names(out):
    names = set()
    for line in out.split(b"\n")[1:]:          # line 0: "building file list ... done" / "sending incremental …"
        if not line or line.startswith(b"skipping non-regular") or line.startswith(b"sent ") \
                or line.startswith(b"total size"):
            continue
        name = line.rstrip(b"/")
        names.add(b"/" if name == b"." else b"/" + name)
    return names


def run_module(root, persist, workers=None):
    return PersistAudit(root, persist, EXCLUDES, "unpersisted", workers=workers).run()


def cpu_seconds():
    """user+sys time of this process and of its waited-for children (rsync, the module's workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def fs_type(path):
    """File system type of the mount holding ``path`` (from /proc/self/mountinfo)."""
    best, fstype = "", "?"
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                mnt = fields[4].replace("\\040", " ")
                sep = fields.index("-")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, fields[sep + 1]
    except OSError:
        pass
    return fstype


def rsync_version():
    out = subprocess.run(["rsync", "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"version\s+(\S+)", out)
    return m.group(1) if m else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--dir", default=None,
                    help="where to build the trees (default: /dev/shm, a tmpfs like the root being audited, when it "
                         "is writable; else the temporary directory)")
    args = ap.parse_args()
    if shutil.which("rsync") is None:
        raise SystemExit("rsync is not installed; the benchmark compares against it")
    where = args.dir
    if where is None and os.access("/dev/shm", os.W_OK):
        where = "/dev/shm"
    base = tempfile.mkdtemp(prefix="bench-persist-audit-", dir=where)
    try:
        print("persist_audit benchmark: module core (in-process import of plugins/modules/persist_audit.py"
              " PersistAudit.run) vs the seed's rsync --dry-run")
        print("machine: %s, nproc %s, usable CPUs %d, Python %s, rsync %s, trees on %s (%s), load %s"
              % (cpu_model(), os.cpu_count(), len(os.sched_getaffinity(0)), platform.python_version(),
                 rsync_version(), base, fs_type(base), " ".join("%.2f" % x for x in os.getloadavg())))
        print("rsync: %s" % " ".join(rsync_argv("ROOT", "PERSIST")))
        ncpu = len(os.sched_getaffinity(0))
        print("wall seconds, median (min) of %d runs; cpu: user+sys seconds of all processes, median" % args.repeat)
        print("module = as the module runs (one worker per usable CPU past 2000 entries, 'wrk' = the counts seen); module 1 = one "
              "process; module %d = %d worker processes forced" % (ncpu, ncpu))
        print("%7s %6s %4s | %14s %14s %14s %14s | %5s %5s %5s | %5s %5s %5s %5s"
              % ("files", "listed", "wrk", "module", "module 1", "module %d" % ncpu, "rsync", "m/rs", "m1/rs",
                 "m%d/rs" % ncpu, "cpu m", "m1", "m%d" % ncpu, "rs"))
        for size in [int(s) for s in args.sizes.split(",")]:
            tree = os.path.join(base, str(size))
            root, persist = generate(tree, size)
            res = run_module(root, persist)
            listed = set(r["path"].encode() for r in res["unpersisted"] + res["differing"])
            rs = rsync_names(run_rsync(root, persist))
            if listed != rs:
                raise SystemExit("answers differ: only module %s, only rsync %s"
                                 % (sorted(listed - rs)[:5], sorted(rs - listed)[:5]))
            names = ["module", "module1", "moduleN", "rsync"]
            runners = {"module": lambda: run_module(root, persist),
                       "module1": lambda: run_module(root, persist, workers=1),
                       "moduleN": lambda: run_module(root, persist, workers=ncpu),
                       "rsync": lambda: run_rsync(root, persist)}
            times = dict((k, []) for k in names)
            cpu = dict((k, []) for k in names)
            workers_seen = set()
            for i in range(args.repeat):
                for name in names[i % 4:] + names[:i % 4]:
                    c = cpu_seconds()
                    t = time.perf_counter()
                    out = runners[name]()
                    times[name].append(time.perf_counter() - t)
                    cpu[name].append(cpu_seconds() - c)
                    if name == "module":
                        workers_seen.add(out["scanned"]["workers"])
            med = dict((k, statistics.median(v)) for k, v in times.items())
            low = dict((k, min(v)) for k, v in times.items())
            mcpu = dict((k, statistics.median(v)) for k, v in cpu.items())
            print("%7d %6d %4s | %s %s %s %s | %5.2f %5.2f %5.2f | %5.3f %5.3f %5.3f %5.3f"
                  % ((size, len(listed), ",".join(str(w) for w in sorted(workers_seen)))
                     + tuple("%6.3f (%5.3f)" % (med[k], low[k]) for k in names)
                     + tuple(med[k] / med["rsync"] for k in names[:3])
                     + tuple(mcpu[k] for k in names)))
            shutil.rmtree(tree)
        print("ratios are of the wall medians; below 1 the module is faster. The load average above says how much"
              " else the machine was doing: wall times of both sides grow with it, cpu times much less.")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
