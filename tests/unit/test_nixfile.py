# SPDX-License-Identifier: GPL-3.0-or-later
"""The Nix lexer/parser used for in-place edits: lossless tokens, exact positions, Nix's own verdict on syntax."""
import glob
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.impermanent.nixos.plugins.module_utils import _nixfile as nix

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "hwconfig")
ALL_FIXTURES = sorted(glob.glob(os.path.join(FIXTURES, "*.nix")))


def nix_instantiate():
    path = shutil.which("nix-instantiate")
    if path is None:
        pytest.fail("nix-instantiate is a test dependency (Debian package nix-bin) and is not on PATH")
    return path


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=os.path.basename)
def test_trivia_tokens_reproduce_the_file_exactly(path):
    text = read(path)
    tokens = nix.tokenize(text, trivia=True)
    assert "".join(t.text for t in tokens) == text
    assert all(text[t.start:t.end] == t.text for t in tokens)


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=os.path.basename)
def test_parser_agrees_with_nix_on_every_fixture(path):
    proc = subprocess.run([nix_instantiate(), "--parse", path], capture_output=True, text=True, check=False)
    try:
        nix.parse(read(path))
        ours = True
    except nix.NixSyntaxError:
        ours = False
    assert ours == (proc.returncode == 0), proc.stderr


def test_binding_positions_slice_the_source():
    text = '{ a }: { fileSystems."/" = { device = "none"; }; x.y = 1; inherit (a) b c; }'
    tree = nix.parse(text)
    assert isinstance(tree, nix.Function) and tree.formals == [("a", None)]
    body = tree.body
    assert isinstance(body, nix.AttrSet)
    fs, xy, inh = body.entries
    assert fs.names == ["fileSystems", "/"]
    assert text[fs.start:fs.end] == 'fileSystems."/" = { device = "none"; };'
    assert text[fs.value.lbrace] == "{" and text[fs.value.rbrace] == "}"
    assert xy.names == ["x", "y"] and text[xy.value.start:xy.value.end] == "1"
    assert isinstance(inh, nix.Inherit) and [k.name for k in inh.names] == ["b", "c"]


def test_strings_interpolation_and_escapes():
    text = ('{ a = "x${ { b = "}"; }.b }y"; b = "q\\"\\${z}$${w}"; '
            "c = ''in ${\"}\"} '''' ''$ ''; \"d e\" = 1; }")
    tree = nix.parse(text)
    a, b, c, d = tree.entries
    assert a.value.kind == "string" and a.value.value is None  # interpolated
    assert b.value.value == 'q"${z}$${w}'
    assert c.value.kind == "istring"
    assert d.names == ["d e"]


def test_nix_string_round_trips_through_nix(tmp_path):
    values = ['plain', 'with "quotes"', 'back\\slash', '${not interpolated}', 'tab\tnewline\n', 'dollar $ end$']
    src = tmp_path / "s.nix"
    src.write_text("[ %s ]" % " ".join(nix.nix_string(v) for v in values))
    out = subprocess.run([nix_instantiate(), "--eval", "--strict", "--json", str(src)],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == values
    assert [nix.string_literal_value(nix.nix_string(v)) for v in values] == values


def test_comments_with_brackets_and_quotes_are_not_code():
    text = '{ # } ] ) "\n  a = /* { */ 1; # "\n}'
    tree = nix.parse(text)
    assert tree.entries[0].names == ["a"]


def test_paths_uris_and_search_paths():
    tree = nix.parse("[ ./a/b.nix /etc/x ~/y <nixpkgs/nixos> https://example.org/x.tar.gz a/b 1.5 2 ]")
    kinds = [(i.kind, i.text) for i in tree.items]
    assert kinds == [("path", "./a/b.nix"), ("path", "/etc/x"), ("path", "~/y"), ("path", "<nixpkgs/nixos>"),
                     ("uri", "https://example.org/x.tar.gz"), ("path", "a/b"), ("number", "1.5"), ("number", "2")]


def test_operator_precedence():
    tree = nix.parse("a + b * c ++ d")
    assert tree.op == "+" and tree.rhs.op == "*" and tree.rhs.rhs.op == "++"
    tree = nix.parse("!a && b || c -> d")
    assert tree.op == "->" and tree.lhs.op == "||" and tree.lhs.lhs.op == "&&" and tree.lhs.lhs.lhs.op == "!"
    tree = nix.parse("x ? a.b && f y.z or 1")
    assert tree.op == "&&" and tree.lhs.op == "?" and [k.name for k in tree.lhs.rhs] == ["a", "b"]
    assert isinstance(tree.rhs, nix.Apply) and tree.rhs.args[0].default.text == "1"
    with pytest.raises(nix.NixSyntaxError):
        nix.parse("a == b == c")


def test_function_headers_let_with_rec():
    tree = nix.parse("args@{ config, lib ? null, ... }: let x = 1; in with lib; rec { y = x; }")
    assert tree.arg == "args" and tree.ellipsis and [n for n, _d in tree.formals] == ["config", "lib"]
    assert isinstance(tree.body, nix.Let) and isinstance(tree.body.body, nix.With)
    assert tree.body.body.body.rec
    tree = nix.parse("{ ... }@a: x: { }")
    assert tree.arg == "a" and isinstance(tree.body, nix.Function) and tree.body.arg == "x"


def test_unwrap_sees_through_priority_wrappers():
    tree = nix.parse('{ a = lib.mkForce (lib.mkDefault [ "x" ]); b = mkOverride 50 "s"; c = lib.mkIf true "t"; }')
    a, b, c = tree.entries
    assert isinstance(nix.unwrap(a.value), nix.List)
    assert nix.string_value(b.value) == "s"
    assert nix.string_value(c.value) is None  # mkIf is a condition, not a priority: not seen through


@pytest.mark.parametrize("text, where", [
    ('{ a = "x; }', "unterminated string at line 1"),
    ("{\n  a = {\n    b = 1;\n}\n", "probably the one at line 2 (its supposed closer at line 4"),
    ("{ a = { b = 1; }", "the '{' at line 1 is never closed"),
    ("{ a = [ 1 2; }", "closes the '[' at line 1"),
    ("{ a = 1; } }", "'}' at line 1 has no matching"),
    ("{ a = 1 ^ 2; }", "unexpected character '^'"),
    ("{ a = ./${x}; }", "path interpolation"),
])
def test_syntax_errors_say_where(text, where):
    with pytest.raises(nix.NixSyntaxError) as e:
        nix.parse(text)
    assert where in str(e.value)


def test_apply_edits_splices_and_rejects_overlaps():
    text = "0123456789"
    assert nix.apply_edits(text, [(8, 9, "X"), (2, 2, "ab"), (4, 6, "")]) == "01ab2367X9"
    with pytest.raises(ValueError):
        nix.apply_edits(text, [(1, 5, "x"), (3, 4, "y")])


def test_layout_helpers():
    text = "  { device = \"none\"; # c\n      fsType = \"t\"; /* d */\n    };\n"
    assert nix.indent_of(text, text.index("device")) == "    "
    assert nix.indent_of(text, text.index("fsType")) == "      "
    after_device = text.index('"none";') + len('"none";')
    assert nix.end_of_line_comment(text, after_device) == text.index("# c") + 3
    after_fstype = text.index('"t";') + 4
    assert nix.end_of_line_comment(text, after_fstype) == text.index("*/") + 2
    assert nix.end_of_line_comment("a; b", 2) == 2
    assert nix.line_break("a\r\nb") == "\r\n" and nix.line_break("a\nb") == "\n"


@pytest.mark.parametrize("path", [p for p in ALL_FIXTURES if "unbalanced" not in p], ids=os.path.basename)
def test_walk_reaches_every_string_token(path):
    text = read(path)
    strings = [t.start for t in nix.tokenize(text) if t.kind == "string"]
    seen = sorted(n.start for n in nix.walk(nix.parse(text)) if getattr(n, "kind", None) == "string")
    assert seen == strings


# Valid and invalid snippets; free variables are bound by a leading `with {};` as Nix checks them at parse time.
SNIPPETS = [
    "''a ''' b ''$ c ''\\n d ${e} ''", "''a '' b''", "''unterminated ''' ", '"a\\"', '"x ${ "}" }"',
    'x: x.y or z', '{ a.b.c = 1; a.d = 2; }', 'let { body = 1; }', '{ "${a}" = 1; ${b} = 2; }', '[ (f x) (-1) ]',
    '[ -1 ]', 'a: b: a - b', 'a-b', 'a -b', '{ inherit a; inherit (b) c d; }', 'f { } [ ] ""', 'x.${y}.z',
    'rec { a = 1; b = a; }', 'assert true; 1', 'if a then b else c', '{ a = 1; } // { b = 2; }', 'a ? b.c',
    'a ? "b"', '"${"${x}"}"', "''a\n  b ${c}\n''", '{ }: 1', '{ ... }: 1', '{ a, b ? 2, ... }@c: 1', 'c@{ a }: a',
    '/* c */ 1 # d', '1 /* c', '{ a = 1 }', '[ 1 2', '(1', 'a.b.c or d.e', 'x:x', 'http://a/b', '<nixpkgs>',
    'import <nixpkgs> {}', './a.nix', '../a.nix', '~/a', 'a/b/c', '1.5e3', '.5', '{ or = 1; }', 'a or',
    'let a = 1; in let b = 2; in a + b', 'with a; with b; c', '!a', '- a', 'a -> b -> c', 'a || b && c', 'a < b',
    'a < b < c', 'a == b', '"\\""', "''''\\n''", "''$${x}''", '"$${x}"', '{ a = { b = 1; }; a.c = 2; }',
    'fileSystems."/".options', '{ "a b".c = 1; }', 'let inherit (x) y; in y', '{ a = [ ./x ]; }', 'a.b."c d"',
    'f (x: x)', 'x: { inherit x; }', '[ a.b c.d or e ]', 'a.b or c.d or e', 'null', 'true', '__curPos', 'a++b',
    'a//b', 'a+b', 'a*b', 'a / b', '{ a = 1; };', '{ a = 1; } { }', '', 'a.b or',
    '{ a = 1; b.c = 2; b = { d = 3; }; }', '{ x = { }: 1; }', '{ a ? 1 }: a', '"\\${x}"', "''\\${x}''",
    '{ a = "x"; } . a', 'f.g h.i', '[ { a = 1; } { b = 2; } ]', '{ a = b: c; }', 'a: { ... }: a', 'x: y: x y',
    '{ a = rec { }; }', 'let in 1', '{ inherit; }', '{ inherit (a); }', '({ a = 1; }).a', '[ ] ++ [ ]', '1 - -1',
    '-1', '{ a = 1; } ? a', 'x ? ${y}', '"a" + "b"', 'a.${"b"}',
]


def test_parser_agrees_with_nix_on_snippets(tmp_path):
    disagree = []
    for i, snippet in enumerate(SNIPPETS):
        text = "with {};\n" + snippet
        path = tmp_path / ("s%d.nix" % i)
        path.write_text(text)
        proc = subprocess.run([nix_instantiate(), "--parse", str(path)], capture_output=True, check=False)
        theirs = proc.returncode == 0
        try:
            nix.parse(text)
            ours = True
        except nix.NixSyntaxError:
            ours = False
        if ours != theirs:
            disagree.append((snippet, ours, theirs))
    assert disagree == []
    assert 20 < sum(1 for s in SNIPPETS if s.strip()) and len(SNIPPETS) > 90


def test_repeated_attributes_are_left_to_nix():
    # documented limit: duplicates are a semantic error that `nix-instantiate --parse` reports (the module's
    # validate step); the editing parser accepts them
    assert isinstance(nix.parse("{ a.b = 1; a.b = 2; }"), nix.AttrSet)
