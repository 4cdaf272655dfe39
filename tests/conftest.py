# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.impermanent.nixos`` importable for the tests.

`make` sets IMPERMANENT_COLLECTIONS_PATH to the built-and-installed artifact, so the tests import what
users install. Run by hand without it, the tests import the source tree through a symlink farm.
"""
import hashlib
import os
import sys
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _collections_root():
    installed = os.environ.get("IMPERMANENT_COLLECTIONS_PATH")
    if installed and os.path.isdir(os.path.join(installed, "ansible_collections", "impermanent", "nixos")):
        return installed
    # one farm per clone: a shared one would keep pointing at whichever clone made it first
    farm = os.path.join(tempfile.gettempdir(), "impermanent-nixos-src-%d-%s"
                        % (os.getuid(), hashlib.sha256(REPO.encode()).hexdigest()[:12]))
    link = os.path.join(farm, "ansible_collections", "impermanent", "nixos")
    if os.path.realpath(link) != os.path.realpath(REPO):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(REPO, link)
    return farm


COLLECTIONS_ROOT = _collections_root()
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)


# Property-based tests (tests/unit/test_properties_*.py). The default profile is reproducible: the same examples on
# every run (derandomize), a bounded number of them, nothing written to an example database in the repository.
# HYPOTHESIS_PROFILE=thorough runs ten times as many examples from a random seed (a failure prints the blob that
# replays it with @reproduce_failure).
settings.register_profile("repro", derandomize=True, max_examples=100, deadline=None, database=None,
                          print_blob=False, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", derandomize=False, max_examples=1000, deadline=None, database=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repro"))
# Hypothesis still caches the constants it finds in the code under test: outside the work tree.
set_hypothesis_home_dir(os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")
                        or os.path.join(tempfile.gettempdir(), "impermanent-nixos-hypothesis-%d" % os.getuid()))
