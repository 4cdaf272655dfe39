# SPDX-License-Identifier: GPL-3.0-or-later
"""The system's crypt(3) (libxcrypt: yescrypt, SHA-512 and the rest), the oracle the identity tests compare with.

Python's ``crypt`` module was removed in 3.13; libcrypt is called through ctypes instead, on every Python.
"""
import ctypes
import ctypes.util


def _load():
    name = ctypes.util.find_library("crypt")
    if not name:
        return None
    function = ctypes.CDLL(name).crypt
    function.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    function.restype = ctypes.c_char_p
    return function


_CRYPT = _load()


def crypt(password, setting):
    """crypt(3) of ``password`` with ``setting`` (a whole hash or ``$id$salt``); None when libcrypt is missing."""
    if _CRYPT is None:
        return None
    out = _CRYPT(password.encode("utf-8"), setting.encode("utf-8"))
    return None if out is None else out.decode("ascii")
