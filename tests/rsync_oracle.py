# SPDX-License-Identifier: GPL-3.0-or-later
"""rsync's own answer to "what would the seed's command transfer?": the oracle of persist_audit's tests
(tests/integration/test_persist_audit.py on real mounts, tests/unit/test_properties_persist.py on generated trees)."""
import re
import subprocess

ARGV = ["rsync", "-amxx", "--dry-run", "--no-links", "--out-format=@@%n"]
MAKE_WAY = re.compile(rb"^could not make way for new [a-z ]+: (.*)$")


def _unescape(name):
    """Undo rsync's escaping of unprintable bytes in a name it prints (backslash, '#', three octal digits)."""
    return re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), name)


def rsync_dry_run(src, dst, excludes):
    """(names, returncode, stderr) of ``rsync -amxx --dry-run --no-links SRC/ DST/`` with ``--exclude`` each pattern.

    ``names`` is the set of names (bytes, leading /) rsync prints. rsync cannot write NUL-separated names, so each
    name is printed after a marker with --out-format and rsync's own escaping of unprintable bytes (backslash, '#',
    three octal digits) is undone.
    """
    argv = list(ARGV)
    for pat in excludes:
        argv += ["--exclude", pat]
    proc = subprocess.run(argv + [src + b"/", dst + b"/"], capture_output=True, check=False)
    names = set()
    for line in proc.stdout.split(b"\n"):
        if not line.startswith(b"@@"):
            continue
        name = _unescape(line[2:]).rstrip(b"/")
        names.add(b"/" if name in (b".", b"") else b"/" + name)
    return names, proc.returncode, proc.stderr


def make_way_failures(stderr):
    """Names (bytes, leading /) rsync failed on with "could not make way for new ...": without --force it does not
    replace a non-empty directory of the destination by a file of the source, and prints neither."""
    out = set()
    for line in stderr.split(b"\n"):
        m = MAKE_WAY.match(line)
        if m:
            out.add(b"/" + _unescape(m.group(1)))
    return out
