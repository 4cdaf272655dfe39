# SPDX-License-Identifier: GPL-3.0-or-later
"""Properties of the mountinfo and /proc/swaps parsers and of the mount tree, for generated mount tables whose paths
hold any byte but NUL and ``/`` (Hypothesis, profile in tests/conftest.py).

The tables are written the way the kernel writes them (fs/proc_namespace.c show_mountinfo, mm/swapfile.c
swap_show): space, tab, newline and backslash in a path or source become ``\\ooo``; every other byte, carriage
returns and non-UTF-8 bytes included, is written as it is. The modules read those files with surrogateescape, so
a path is compared as ``os.fsdecode`` of its bytes.
"""
import os
import posixpath

from hypothesis import example, given, settings, strategies as st

from ansible_collections.impermanent.nixos.plugins.module_utils._blockdev import parse_proc_swaps
from ansible_collections.impermanent.nixos.plugins.module_utils._mountinfo import (
    MountTable, parse_mountinfo, parse_swaps, unescape,
)

ESCAPED = b" \t\n\\"
# a generated table costs a few milliseconds: half the profile's examples for those
TABLES = settings(max_examples=max(10, settings.default.max_examples // 2))
# bytes that matter to a line-based parser, plus ordinary ones
PIECES = [b" ", b"\t", b"\n", b"\\", b"\\040", b"\r", b"\r\n", b"\x0b", b"\x0c", b"\x1c", b"\x85", b"\xff",
          "\u2028".encode(), "\u0085".encode(), b"-", b"#", b"${", b"(deleted)", b"a", b"data", b".", b"\xc3"]
NAME = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=3)), min_size=1, max_size=4) \
    .map(b"".join).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")).filter(lambda b: b not in (b".", b".."))
PATHS = st.lists(NAME, max_size=4).map(lambda names: b"/" + b"/".join(names))


def kernel_escape(raw):
    """mangle_path()/seq_escape() with the kernel's " \\t\\n\\\\" set."""
    return b"".join(b"\\%03o" % c if c in ESCAPED else bytes([c]) for c in raw)


def mountinfo_line(mount_id, parent_id, devno, root, target, opts, optional, fstype, source, super_opts):
    fields = [b"%d" % mount_id, b"%d" % parent_id, b"%d:%d" % devno, kernel_escape(root), kernel_escape(target),
              b",".join(opts)] + optional + [b"-", kernel_escape(fstype), kernel_escape(source),
                                             b",".join(super_opts)]
    return b" ".join(fields) + b"\n"


MOUNT_OPTS = st.lists(st.sampled_from([b"rw", b"ro", b"relatime", b"nosuid", b"nodev", b"noexec"]), min_size=1,
                      max_size=4, unique=True)
OPTIONAL = st.lists(st.sampled_from([b"shared:1", b"master:7", b"propagate_from:3", b"unbindable"]), max_size=2,
                    unique=True)
SUPER_OPTS = st.lists(st.sampled_from([b"rw", b"size=6170916k", b"mode=755", b"inode64", b"errors=remount-ro",
                                       b"fmask=0077"]), max_size=4, unique=True)
FSTYPES = st.sampled_from([b"tmpfs", b"ext4", b"vfat", b"fuse.sshfs", b"fuse.my fs", b"none"])


@st.composite
def mount_lines(draw):
    return dict(
        mount_id=draw(st.integers(1, 10 ** 6)), parent_id=draw(st.integers(0, 10 ** 6)),
        devno=(draw(st.integers(0, 4095)), draw(st.integers(0, 2 ** 20 - 1))),
        root=draw(PATHS), target=draw(PATHS), opts=draw(MOUNT_OPTS), optional=draw(OPTIONAL), fstype=draw(FSTYPES),
        source=draw(st.one_of(PATHS, st.just(b"none"), NAME)), super_opts=draw(SUPER_OPTS))


@TABLES
@given(lines=st.lists(mount_lines(), min_size=1, max_size=4))
@example(lines=[dict(mount_id=30, parent_id=1, devno=(0, 41), root=b"/", target=b"/mnt/a\rb", opts=[b"rw"],
                     optional=[], fstype=b"tmpfs", source=b"tmpfs", super_opts=[b"rw"])])
@example(lines=[dict(mount_id=30, parent_id=1, devno=(0, 41), root=b"/sub dir", target="/mnt/\u2028".encode(),
                     opts=[b"rw"], optional=[b"shared:1"], fstype=b"ext4", source=b"/dev/loop0", super_opts=[])])
def test_every_field_reads_back_as_the_kernel_wrote_it(lines):
    """Any mountinfo the kernel can write parses line by line into the fields it was written from: octal escapes
    undone, spaces, tabs, newlines and backslashes in paths kept, and no other byte (carriage return, form feed,
    U+2028, non-UTF-8) taken for a line break."""
    text = os.fsdecode(b"".join(mountinfo_line(**line) for line in lines))
    mounts = parse_mountinfo(text)
    assert len(mounts) == len(lines)
    for m, line in zip(mounts, lines):
        assert (m.mount_id, m.parent_id, m.devno) == (line["mount_id"], line["parent_id"], line["devno"])
        assert m.root == os.fsdecode(line["root"])
        assert m.target == os.fsdecode(line["target"])
        assert m.mount_options == [os.fsdecode(o) for o in line["opts"]]
        assert m.optional == [os.fsdecode(o) for o in line["optional"]]
        assert m.fstype == os.fsdecode(line["fstype"])
        assert m.source == os.fsdecode(line["source"])
        assert m.super_options == [os.fsdecode(o) for o in line["super_opts"]]


@given(raw=st.binary(max_size=40))
def test_unescape_inverts_the_kernels_escape(raw):
    """unescape(escape(x)) == x for any bytes, a backslash followed by digits included."""
    raw = raw.replace(b"\0", b"")
    assert unescape(os.fsdecode(kernel_escape(raw))) == os.fsdecode(raw)


def swaps_line(raw, kind, size, used, prio, deleted):
    """mm/swapfile.c swap_show(): the escaped d_path (an unlinked file gets " (deleted)", escaped as well), padding
    to 40 columns, the type, then tab-separated numbers."""
    name = kernel_escape(raw + (b" (deleted)" if deleted else b""))
    pad = b" " * (40 - len(name) if len(name) < 40 else 1)
    return (name + pad + (b"partition" if kind == "partition" else b"file\t") + b"\t%d\t%s%d\t%s%d\n" % (
        size, b"\t" if size < 10000000 else b"", used, b"\t" if used < 10000000 else b"", prio))


SWAP = st.tuples(PATHS.filter(lambda p: p != b"/"), st.sampled_from(["partition", "file"]), st.integers(0, 2 ** 40),
                 st.integers(0, 2 ** 40), st.integers(-10, 32767), st.booleans())


@TABLES
@given(swaps=st.lists(SWAP, max_size=5))
@example(swaps=[(b"/old swap", "file", 1024, 0, -3, True)])
@example(swaps=[(b"/swap\rfile", "file", 1024, 0, -2, False)])
def test_swaps_read_back(swaps):
    """Any /proc/swaps the kernel can write reads back as the swap areas' names (without the " (deleted)" mark of
    an unlinked swap file), types, sizes, use and priorities; gpt_partition's list of swap names agrees."""
    text = os.fsdecode(b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
                       + b"".join(swaps_line(*s) for s in swaps))
    got = parse_swaps(text)
    want = [dict(filename=os.fsdecode(raw), type=kind, size_kib=size, used_kib=used, priority=prio)
            for raw, kind, size, used, prio, _deleted in swaps]
    assert got == want
    assert parse_proc_swaps(text) == [w["filename"] for w in want]


# -- the mount tree ------------------------------------------------------------------------------------------------

def _under(path, top):
    return top == "/" or path == top or path.startswith(top + "/")


@st.composite
def mount_histories(draw):
    """A sequence of mounts as the kernel records them: each one's parent is the mount visible at its target when
    it was mounted (the top of a stack there, or the mount whose file system holds the directory). Also returns
    the model of what is visible afterwards: {target: mount id}; mounting on a directory hides every mount below
    it and stacks on the one at it."""
    names = draw(st.lists(NAME, min_size=1, max_size=4, unique=True))
    texts = [os.fsdecode(n) for n in names]
    lines = [dict(mount_id=1, parent_id=0, devno=(0, 1), root=b"/", target=b"/", opts=[b"rw"], optional=[],
                  fstype=b"tmpfs", source=b"rootfs", super_opts=[])]
    visible = {"/": 1}
    for mount_id in range(2, draw(st.integers(2, 9))):
        target = "/" + "/".join(draw(st.lists(st.sampled_from(texts), min_size=0, max_size=3)))
        holder = max((t for t in visible if _under(target, t)), key=len)
        lines.append(dict(mount_id=mount_id, parent_id=visible[holder], devno=(0, mount_id), root=b"/",
                          target=os.fsencode(target), opts=[b"rw"], optional=[], fstype=b"tmpfs",
                          source=b"tmpfs", super_opts=[]))
        for t in [t for t in visible if t != target and _under(t, target)]:
            del visible[t]
        visible[target] = mount_id
    probes = draw(st.lists(st.lists(st.sampled_from(texts), max_size=4), max_size=4))
    return lines, visible, ["/" + "/".join(p) for p in probes]


@TABLES
@given(history=mount_histories())
def test_the_tree_shows_what_path_lookup_sees(history):
    """For any sequence of mounts, stacked or hidden, with any names: visible(target) is the top mount at a target
    that path lookup reaches (None for hidden ones), and containing(path) the mount holding any path below."""
    lines, visible, probes = history
    table = MountTable.from_text(os.fsdecode(b"".join(mountinfo_line(**line) for line in lines)))
    for line in lines:
        target = os.fsdecode(line["target"])
        seen = table.visible(target)
        assert (seen.mount_id if seen else None) == visible.get(target), target
    for path in probes + [os.fsdecode(line["target"]) for line in lines]:
        holder = max((t for t in visible if _under(posixpath.normpath(path), t)), key=len)
        assert table.containing(path).mount_id == visible[holder], path

