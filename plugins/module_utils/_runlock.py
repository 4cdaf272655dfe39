# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""One module at a time on a host: the run lock every module that writes holds for its whole call.

A controller that dies (a dropped SSH session, Ctrl-C twice, a kill) leaves its module running on the target: the
module's Python does not notice until it writes its result, so a long ``nixos-install`` or a ``mkfs`` goes on.
A rerun started meanwhile would read a half-made state and write beside it: plan a file system the first run is
still making, start a second ``nixos-install`` into the same ``/mnt``, close the flake directory the first one has
opened. The run lock turns that race into a wait, or a refusal that names the other run:

  * a module that writes takes an exclusive ``flock`` on :data:`RUN_LOCK` (``/run`` is a tmpfs on the live system:
    the lock belongs to this boot) and writes who holds it into the file; in check mode (and install_plan without
    ``apply``) it takes a shared lock, so plans run side by side but never read what a writer is half-way through;
  * a module that finds the lock taken tries again every :data:`POLL` seconds for ``lock_timeout`` seconds, then
    fails with :class:`RunLockBusy`, naming the holder; nothing has been read or written by then;
  * the kernel drops the lock when the holder's process ends, however it ends: a killed run never leaves a stale
    lock behind. The descriptor is close-on-exec, so a program the module started cannot keep it; the harness
    releases it before the module returns, so a process that outlives the module (Mitogen's interpreter) does not
    keep it either.

Check mode writes nothing: where the lock file does not exist yet (no module has written on this boot), it takes
no lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError, Refused

#: the lock file (``/run``: a tmpfs on the live system, so one lock per boot and host)
RUN_LOCK = "/run/impermanent-nixos.lock"
#: seconds between two tries while the lock is taken
POLL = 0.2
#: the default of every writing module's ``lock_timeout`` option (seconds)
DEFAULT_TIMEOUT = 30

#: the option every module that writes adds to its argument spec (doc fragment ``impermanent.nixos.run_lock``)
LOCK_OPTION = dict(lock_timeout=dict(type="int", default=DEFAULT_TIMEOUT))
#: how a holder that wrote no line is named (a module in check mode writes none)
UNNAMED_HOLDER = "another impermanent.nixos module (one in check mode, which does not say which)"


class RunLockBusy(Refused):
    """Another module holds the run lock (``refused: busy``)."""

    def __init__(self, msg, holder):
        super().__init__(msg, reason="busy", lock_holder=holder)


class RunLock(object):
    """A run lock that is held; :meth:`release` gives it back (also safe to call twice)."""

    def __init__(self, fd, shared, waited, waited_for=""):
        self.fd = fd
        self.shared = shared
        #: seconds spent waiting for another module to let go
        self.waited = waited
        #: the holder the lock file named while this module waited ('' if it named none, or nobody held it)
        self.waited_for = waited_for

    def release(self):
        if self.fd is not None:
            if not self.shared:
                # the next module to wait must not name this one
                os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def holder_text(fd, is_alive=alive):
    """What the lock file says of its holder (one line), or '' where nothing is written or the process it names
    is gone (a writer that was killed leaves its line; a module in check mode writes none)."""
    try:
        data = os.pread(fd, 512, 0)
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").strip().splitlines()
    pid = re.search(r"\(pid (\d+),", lines[0]) if lines else None
    return lines[0] if pid and is_alive(int(pid.group(1))) else ""


def busy_message(path, holder, timeout, shared):
    """The refusal: who holds the lock, how long this module waited, and what to do."""
    who = holder or UNNAMED_HOLDER
    what = "plan" if shared else "write"
    return ("another run is working on this host: %s holds the run lock %s, and this module waited %d s for it "
            "(lock_timeout) before it would %s anything. Wait until that run ends and run again; if its controller "
            "is gone and the run is stuck, stop its process on the target first. Two runs at once would each read "
            "what the other is half-way through writing." % (who, path, timeout, what))


def acquire(shared, timeout, holder, path=None, clock=time.monotonic, sleep=time.sleep):
    """Take the run lock: shared (check mode) or exclusive (a module that writes). ``holder``: how this module
    names itself in the lock file (written only with the exclusive lock). Returns a :class:`RunLock`, or None in
    check mode where no lock file exists yet; raises :class:`RunLockBusy` once ``timeout`` seconds have passed
    with the lock taken, and :class:`._errors.ModuleError` where the lock file cannot be opened."""
    if timeout < 0:
        raise ModuleError("lock_timeout must be 0 or more seconds, not %d" % timeout)
    path = path or RUN_LOCK
    # no symbolic link: a lock file that is one could make this module truncate and write where it points
    flags = os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if shared and e.errno == errno.ENOENT:
            return None
        if e.errno == errno.ELOOP:
            raise ModuleError("the run lock %s is a symbolic link, which this module does not follow; remove it "
                              "(the modules create it as a plain file)" % path)
        raise ModuleError("cannot open the run lock %s: %s; run the module as root (become: true)"
                          % (path, e.strerror))
    start = clock()
    waited_for = None
    try:
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise ModuleError("cannot lock the run lock %s: %s" % (path, e.strerror))
            if waited_for is None:
                waited_for = holder_text(fd)
            if clock() - start >= timeout:
                text = holder_text(fd)
                raise RunLockBusy(busy_message(path, text, timeout, shared), text)
            sleep(POLL)
        if not shared:
            line = ("%s (pid %d, since %s)\n" % (holder, os.getpid(), time.strftime("%Y-%m-%d %H:%M:%S"))).encode(
                "utf-8", "replace")
            os.ftruncate(fd, 0)
            os.pwrite(fd, line, 0)
    except BaseException:
        os.close(fd)
        raise
    return RunLock(fd, shared, round(clock() - start, 1), waited_for or "")


def waited_warning(held):
    """The warning of a module that had to wait for another run, or None: the user learns that a run was still
    working on the host (one whose controller died, most likely)."""
    if held is None or held.waited <= 0:
        return None
    return "waited %.1f s for another run that held the run lock: %s" % (held.waited, held.waited_for or UNNAMED_HOLDER)
