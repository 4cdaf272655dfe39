# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for ansible-test's pip bootstrap script, for machines that reach PyPI but not ansible's CI file host.

ansible-test creates an empty virtualenv per sanity test and runs a cached ``get-pip-<version>.py`` in it with pip's
install options as arguments. This does the same with the stdlib's ``ensurepip`` and then installs the requested
pip version from the package index. `make sanity` copies it into ~/.ansible/test/cache/ when it is missing there.
"""
import ensurepip
import os
import subprocess
import sys

saved_config = os.environ.get("PIP_CONFIG_FILE")
ensurepip.bootstrap(upgrade=True)
# ensurepip points PIP_CONFIG_FILE at /dev/null; the real install must see the machine's pip config (index, CA).
os.environ.pop("PIP_CONFIG_FILE", None)
if saved_config is not None:
    os.environ["PIP_CONFIG_FILE"] = saved_config
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet"] + args))
