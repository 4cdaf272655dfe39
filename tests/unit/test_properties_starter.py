# SPDX-License-Identifier: GPL-3.0-or-later
"""The starter flake planner (Hypothesis, profile in tests/conftest.py): whatever the flake directory holds, the
starter never touches a directory that has a flake.nix (without overwrite), writes only files whose text differs,
and applying its plan once leaves nothing to do (a rerun changes nothing).

Each example: the starter's files (flake.nix and up to two others, texts drawn from a small set so that equal
texts occur), what the directory holds for each name (missing or one of those texts), whether it has .git, and the
overwrite and git_init options.
"""
from hypothesis import given, strategies as st

from ansible_collections.impermanent.nixos.plugins.module_utils import _flake as flake

TEXTS = st.sampled_from(["{ }\n", "{ a = 1; }\n", "{ mine }\n", "é\udcff\n"])
NAMES = ["flake.nix", "configuration.nix", "home.nix"]


@st.composite
def cases(draw):
    names = ["flake.nix"] + draw(st.lists(st.sampled_from(NAMES[1:]), unique=True, max_size=2))
    files = [{"name": n, "content": draw(TEXTS)} for n in draw(st.permutations(names))]
    existing = dict((n, draw(st.one_of(st.none(), TEXTS))) for n in NAMES)
    return files, existing, draw(st.booleans()), draw(st.booleans()), draw(st.booleans())


@given(cases())
def test_starter_writes_only_what_differs_never_over_a_flake_and_once(case):
    """Property: with a flake.nix and no overwrite nothing is written; otherwise exactly the files whose text
    differs are, in the given order; after applying the plan, planning again writes nothing and inits nothing."""
    files, existing, has_git, overwrite, git_init = case
    plan = flake.plan_starter(files, existing, has_git, overwrite, git_init)
    if existing["flake.nix"] is not None and not overwrite:
        assert plan.writes == []
    else:
        assert plan.names == [f["name"] for f in files if existing[f["name"]] != f["content"]]
    for name, before, content in plan.writes:
        assert before == existing[name] and content != before
    assert plan.git_init == (git_init and not has_git)
    after = dict(existing)
    after.update((name, content) for name, _before, content in plan.writes)
    again = flake.plan_starter(files, after, has_git or plan.git_init, overwrite, git_init)
    assert after["flake.nix"] is not None and not again.changed
