# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) impermanent.nixos contributors
"""A small Nix lexer and parser for editing files such as hardware-configuration.nix in place.

Every token and every syntax node carries its exact ``start``/``end`` offsets in the source text, so an
edit is a splice (:func:`apply_edits`) that keeps every other character -- comments, blank lines,
indentation -- exactly as it was. Nothing is evaluated: the parser only builds enough structure to find
attribute sets, lists, strings and bindings, and to see through ``lib.mkDefault``-style wrappers.

Covered: the whole expression grammar that module files use (functions with formals, ``let``, ``with``,
``assert``, ``if``, ``rec``, ``inherit``, lists, strings with ``${}`` interpolation, indented strings,
paths, URIs, operators with Nix precedence, selects with ``or`` defaults). Not covered: pipe operators
and path interpolation (``./${x}``); such input raises :class:`NixSyntaxError` rather than being misread.
"""

from __future__ import annotations

import re

from ansible_collections.impermanent.nixos.plugins.module_utils._errors import ModuleError

KEYWORDS = frozenset(("let", "in", "with", "rec", "inherit", "if", "then", "else", "assert"))

_WS = re.compile(r"[ \t\r\n]+")
_LINE_COMMENT = re.compile(r"#[^\r\n]*")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_'\-]*")
_FLOAT = re.compile(r"(?:[1-9][0-9]*\.[0-9]*|0?\.[0-9]+)(?:[Ee][+-]?[0-9]+)?")
_INT = re.compile(r"[0-9]+")
_PATH = re.compile(r"[A-Za-z0-9._\-+]*(?:/[A-Za-z0-9._\-+]+)+/?")
_HPATH = re.compile(r"~(?:/[A-Za-z0-9._\-+]+)+/?")
_PATH_INTERPOLATION = re.compile(r"[A-Za-z0-9._\-+~]*(?:/[A-Za-z0-9._\-+]+)*/\$\{")
_SPATH = re.compile(r"<[A-Za-z0-9._\-+]+(?:/[A-Za-z0-9._\-+]+)*>")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[A-Za-z0-9%/?:@&=+$,\-_.!~*']+")
_OPERATORS = ("...", "${", "++", "//", "==", "!=", "<=", ">=", "&&", "||", "->",
              "{", "}", "[", "]", "(", ")", ";", "=", ".", ",", ":", "?", "@", "+", "-", "*", "/", "<", ">", "!")
_TRAILING_COMMENT = re.compile(r"[ \t]*(#[^\r\n]*|/\*(?:(?!\*/)[^\r\n])*\*/(?=[ \t]*(?:[\r\n]|$)))")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


class NixSyntaxError(ModuleError, ValueError):
    """The text is not Nix this parser understands; ``line``/``column`` are 1-based."""

    def __init__(self, msg, text=None, pos=None):
        self.pos = pos
        self.line = self.column = None
        if text is not None and pos is not None:
            self.line = text.count("\n", 0, pos) + 1
            self.column = pos - (text.rfind("\n", 0, pos) + 1) + 1
            msg = "%s at line %d, column %d" % (msg, self.line, self.column)
        super().__init__(msg)


class Token:
    __slots__ = ("kind", "start", "end", "text")

    def __init__(self, kind, start, end, text):
        self.kind = kind    # ws comment id int float path uri string istring op eof
        self.start = start
        self.end = end
        self.text = text

    def __repr__(self):
        return "Token(%s, %r, %d)" % (self.kind, self.text, self.start)


def tokenize(text, trivia=False):
    """All tokens of ``text`` (whitespace and comments only when ``trivia``), ending with an ``eof`` token."""
    tokens = []
    pos = 0
    while True:
        tok = _next_token(text, pos)
        pos = tok.end
        if trivia or tok.kind not in ("ws", "comment"):
            tokens.append(tok)
        if tok.kind == "eof":
            return tokens


def _next_token(text, pos):
    if pos >= len(text):
        return Token("eof", pos, pos, "")
    ch = text[pos]
    m = _WS.match(text, pos)
    if m:
        return Token("ws", pos, m.end(), m.group())
    if ch == "#":
        m = _LINE_COMMENT.match(text, pos)
        return Token("comment", pos, m.end(), m.group())
    if text.startswith("/*", pos):
        end = text.find("*/", pos + 2)
        if end < 0:
            raise NixSyntaxError("unterminated /* comment", text, pos)
        return Token("comment", pos, end + 2, text[pos:end + 2])
    if ch == '"':
        end = _scan_string(text, pos + 1)
        return Token("string", pos, end, text[pos:end])
    if text.startswith("''", pos):
        end = _scan_string(text, pos + 2, indented=True)
        return Token("istring", pos, end, text[pos:end])
    if _PATH_INTERPOLATION.match(text, pos):
        raise NixSyntaxError("path interpolation is not supported", text, pos)
    best = None
    for kind, rx in (("path", _PATH), ("hpath", _HPATH), ("spath", _SPATH), ("uri", _URI),
                     ("float", _FLOAT), ("int", _INT), ("id", _IDENT)):
        m = rx.match(text, pos)
        if m and (best is None or m.end() > best[1]):
            best = (kind, m.end())
    if best is not None:
        kind, end = best
        if kind in ("hpath", "spath"):
            kind = "path"
        return Token(kind, pos, end, text[pos:end])
    for op in _OPERATORS:
        if text.startswith(op, pos):
            return Token("op", pos, pos + len(op), op)
    raise NixSyntaxError("unexpected character %r" % ch, text, pos)


def _skip_interpolation(text, pos):
    """``pos`` is just after ``${``; return the offset just after the matching ``}``."""
    depth = 1
    start = pos
    while True:
        tok = _next_token(text, pos)
        if tok.kind == "eof":
            raise NixSyntaxError("unterminated ${ interpolation", text, start - 2)
        if tok.kind == "op" and tok.text in ("{", "${"):
            depth += 1
        elif tok.kind == "op" and tok.text == "}":
            depth -= 1
            if depth == 0:
                return tok.end
        pos = tok.end


def _scan_string(text, pos, indented=False):
    """``pos`` is just after the opening ``"`` (or ``''``); return the offset just after the closing one."""
    start = pos - (2 if indented else 1)
    n = len(text)
    while pos < n:
        if indented and text.startswith("''", pos):
            nxt = text[pos + 2:pos + 3]
            if nxt not in ("'", "$", "\\"):
                return pos + 2
            pos += 4 if nxt == "\\" else 3  # the escapes ''' ''$ ''\x
        elif not indented and text[pos] == '"':
            return pos + 1
        elif not indented and text[pos] == "\\":
            pos += 2
        elif text.startswith("${", pos):
            pos = _skip_interpolation(text, pos + 2)
        elif text.startswith("$$", pos):
            pos += 2
        else:
            pos += 1
    raise NixSyntaxError("unterminated %s" % ("indented string" if indented else "string"), text, start)


def string_literal_value(raw):
    """The value of a ``"..."`` token without interpolation, else None."""
    if not raw.startswith('"'):
        return None
    body = raw[1:-1]
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        elif body.startswith("${", i):
            return None
        elif body.startswith("$$", i):
            out.append("$$")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------------
# Syntax nodes


class Node:
    """A syntax node: ``start``/``end`` offsets in the source plus the values named in ``fields``."""
    __slots__ = ("start", "end")
    kind = "node"
    fields = ()

    def __init__(self, start, end, *values):
        self.start, self.end = start, end
        for i, name in enumerate(self.fields):
            setattr(self, name, values[i] if i < len(values) else None)

    def children(self):
        out = []
        for name in self.fields:
            value = getattr(self, name)
            if isinstance(value, Node):
                out.append(value)
            elif isinstance(value, list):
                out.extend(v for v in value if isinstance(v, Node))
        return out


class Leaf(Node):
    """Identifier, number, path, URI, string or indented string; ``value`` is the string's text when known."""
    __slots__ = ("kind", "text", "value")

    def __init__(self, tok):
        super().__init__(tok.start, tok.end)
        self.kind = {"id": "ident", "int": "number", "float": "number"}.get(tok.kind, tok.kind)
        self.text = tok.text
        self.value = string_literal_value(tok.text) if tok.kind == "string" else None


def _node_class(name, doc, fields):
    """A node class with no behaviour of its own: its ``fields`` are positional after ``start``/``end``."""
    return type(name, (Node,), {"__doc__": doc, "__slots__": fields, "fields": fields, "kind": name.lower(),
                                "__module__": __name__})


AttrKey = _node_class("AttrKey", "One element of an attribute path: ``name`` is None for a dynamic key (``${...}`` "
                                 "or an interpolated string).", ("name", "expr"))
Inherit = _node_class("Inherit", "``inherit a b;`` or ``inherit (source) a b;``; ``names`` are AttrKeys.",
                      ("source", "names"))
List = _node_class("List", "``[ items ]``.", ("items",))
Paren = _node_class("Paren", "``( expr )``.", ("expr",))
Select = _node_class("Select", "``expr.a.b`` or ``expr.a.b or default``.", ("expr", "keys", "default"))
Apply = _node_class("Apply", "``func arg1 arg2``.", ("func", "args"))
Operator = _node_class("Operator", "Binary (``lhs op rhs``), unary (``lhs`` None) or has-attribute (``rhs`` is a "
                                   "key list).", ("op", "lhs", "rhs"))
Let = _node_class("Let", "``let entries in body``.", ("entries", "body"))
With = _node_class("With", "``with scope; body`` (and, as :class:`Assert`, ``assert scope; body``).", ("scope", "body"))
If = _node_class("If", "``if cond then then else orelse``.", ("cond", "then", "orelse"))


class Binding(Node):
    """``a.b."c" = value;`` -- ``start`` is the first key, ``end`` is just after the semicolon."""
    fields = __slots__ = ("keys", "value")
    kind = "binding"

    @property
    def names(self):
        return [k.name for k in self.keys]


class AttrSet(Node):
    """``{ ... }`` or ``rec { ... }``; ``lbrace``/``rbrace`` are the offsets of the braces."""
    fields = __slots__ = ("rec", "lbrace", "rbrace", "entries")
    kind = "attrset"

    @property
    def bindings(self):
        return [e for e in self.entries if isinstance(e, Binding)]


class Function(Node):
    """``arg: body``, ``{ formals }: body`` with optional ``@`` name; ``formals`` (a list of (name, default)
    pairs) is None for a plain argument."""
    fields = __slots__ = ("arg", "formals", "ellipsis", "body")
    kind = "function"

    def children(self):
        return [d for _n, d in (self.formals or []) if d is not None] + [self.body]


class Assert(With):
    __slots__ = ()
    kind = "assert"


# ---------------------------------------------------------------------------------------------------
# Parser

# binary operators: token -> (precedence, associativity); higher binds tighter
_BINARY = {
    "->": (1, "right"), "||": (2, "left"), "&&": (3, "left"), "==": (4, "none"), "!=": (4, "none"),
    "<": (5, "none"), ">": (5, "none"), "<=": (5, "none"), ">=": (5, "none"), "//": (6, "right"),
    "+": (8, "left"), "-": (8, "left"), "*": (9, "left"), "/": (9, "left"), "++": (10, "right"),
    "?": (11, "none"),
}
_PREC_NOT = 7
_PREC_NEG = 12
_ATOM_KINDS = ("id", "int", "float", "path", "uri", "string", "istring")


class _Parser:
    def __init__(self, text):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # token helpers
    @property
    def tok(self):
        return self.toks[self.i]

    def peek(self, n=1):
        return self.toks[min(self.i + n, len(self.toks) - 1)]

    def is_op(self, text, tok=None):
        tok = tok or self.tok
        return tok.kind == "op" and tok.text == text

    def is_kw(self, word, tok=None):
        tok = tok or self.tok
        return tok.kind == "id" and tok.text == word

    def advance(self):
        tok = self.tok
        self.i += 1
        return tok

    def expect_op(self, text):
        if not self.is_op(text):
            self.error("expected %r" % text)
        return self.advance()

    def error(self, what, tok=None):
        tok = tok or self.tok
        found = "end of file" if tok.kind == "eof" else repr(tok.text)
        raise NixSyntaxError("%s, found %s" % (what, found), self.text, tok.start)

    # grammar
    def parse_file(self):
        node = self.parse_expr()
        if self.tok.kind != "eof":
            self.error("expected end of file")
        return node

    def parse_expr(self):
        tok = self.tok
        if tok.kind == "id" and tok.text not in KEYWORDS:
            if self.is_op(":", self.peek()):
                return self.parse_function_simple()
            if self.is_op("@", self.peek()) and self.is_op("{", self.peek(2)):
                return self.parse_function_formals()
        if self.is_op("{") and self._looks_like_formals():
            return self.parse_function_formals()
        if self.is_kw("let") and not self.is_op("{", self.peek()):
            return self.parse_let()
        if self.is_kw("with") or self.is_kw("assert"):
            self.advance()
            scope = self.parse_expr()
            self.expect_op(";")
            body = self.parse_expr()
            cls = With if tok.text == "with" else Assert
            return cls(tok.start, body.end, scope, body)
        if self.is_kw("if"):
            self.advance()
            cond = self.parse_expr()
            if not self.is_kw("then"):
                self.error("expected 'then'")
            self.advance()
            then = self.parse_expr()
            if not self.is_kw("else"):
                self.error("expected 'else'")
            self.advance()
            orelse = self.parse_expr()
            return If(tok.start, orelse.end, cond, then, orelse)
        return self.parse_op(0)

    def _looks_like_formals(self):
        a, b = self.peek(), self.peek(2)
        if self.is_op("}", a):
            return self.is_op(":", b) or self.is_op("@", b)
        if self.is_op("...", a):
            return True
        return a.kind == "id" and a.text not in KEYWORDS and b.kind == "op" and b.text in (",", "?", "}")

    def parse_function_simple(self):
        arg = self.advance()
        self.expect_op(":")
        body = self.parse_expr()
        return Function(arg.start, body.end, arg.text, None, False, body)

    def parse_function_formals(self):
        start = self.tok.start
        arg = None
        if self.tok.kind == "id":
            arg = self.advance().text
            self.expect_op("@")
        self.expect_op("{")
        formals, ellipsis = [], False
        while not self.is_op("}"):
            if self.is_op("..."):
                self.advance()
                ellipsis = True
            elif self.tok.kind == "id":
                name = self.advance().text
                default = None
                if self.is_op("?"):
                    self.advance()
                    default = self.parse_expr()
                formals.append((name, default))
            else:
                self.error("expected a formal argument")
            if not self.is_op(","):
                break
            self.advance()
        self.expect_op("}")
        if self.is_op("@"):
            self.advance()
            if self.tok.kind != "id":
                self.error("expected a name after '@'")
            arg = self.advance().text
        self.expect_op(":")
        body = self.parse_expr()
        return Function(start, body.end, arg, formals, ellipsis, body)

    def parse_let(self):
        start = self.advance().start
        entries = self.parse_bindings(until="in")
        self.advance()
        body = self.parse_expr()
        return Let(start, body.end, entries, body)

    def parse_op(self, min_prec):
        tok = self.tok
        if self.is_op("!"):
            self.advance()
            operand = self.parse_op(_PREC_NOT)
            lhs = Operator(tok.start, operand.end, "!", None, operand)
        elif self.is_op("-"):
            self.advance()
            operand = self.parse_op(_PREC_NEG)
            lhs = Operator(tok.start, operand.end, "neg", None, operand)
        else:
            lhs = self.parse_apply()
        while self.tok.kind == "op" and self.tok.text in _BINARY:
            op = self.tok.text
            prec, assoc = _BINARY[op]
            if prec < min_prec:
                break
            self.advance()
            if op == "?":
                keys = self.parse_attrpath()
                lhs = Operator(lhs.start, keys[-1].end, op, lhs, keys)
                continue
            rhs = self.parse_op(prec if assoc == "right" else prec + 1)
            lhs = Operator(lhs.start, rhs.end, op, lhs, rhs)
            if assoc == "none" and self.tok.kind == "op" and _BINARY.get(self.tok.text, (None,))[0] == prec:
                self.error("operator %r is not associative" % op)
        return lhs

    def _starts_atom(self):
        tok = self.tok
        if tok.kind in _ATOM_KINDS:
            return tok.kind != "id" or tok.text not in KEYWORDS or tok.text in ("rec", "let")
        return tok.kind == "op" and tok.text in ("(", "[", "{")

    def parse_apply(self):
        func = self.parse_select()
        args = []
        while self._starts_atom() and not (self.is_kw("let") and not self.is_op("{", self.peek())):
            args.append(self.parse_select())
        if not args:
            return func
        return Apply(func.start, args[-1].end, func, args)

    def parse_select(self):
        expr = self.parse_atom()
        if not self.is_op("."):
            return expr
        self.advance()
        keys = self.parse_attrpath()
        default = None
        end = keys[-1].end
        if self.is_kw("or"):
            self.advance()
            default = self.parse_select()
            end = default.end
        return Select(expr.start, end, expr, keys, default)

    def parse_atom(self):
        tok = self.tok
        if tok.kind in ("int", "float", "path", "uri", "string", "istring"):
            return Leaf(self.advance())
        if tok.kind == "id":
            if tok.text == "rec":
                self.advance()
                return self.parse_attrset(tok.start, rec=True)
            if tok.text == "let" and self.is_op("{", self.peek()):
                self.advance()
                return self.parse_attrset(tok.start, rec=True)
            if tok.text in KEYWORDS:
                self.error("unexpected keyword")
            return Leaf(self.advance())
        if self.is_op("("):
            self.advance()
            inner = self.parse_expr()
            close = self.expect_op(")")
            return Paren(tok.start, close.end, inner)
        if self.is_op("["):
            self.advance()
            items = []
            while not self.is_op("]"):
                if self.tok.kind == "eof":
                    self.error("unterminated list (missing ']' for the '[' at line %d)" % self._line(tok.start))
                items.append(self.parse_select())
            close = self.advance()
            return List(tok.start, close.end, items)
        if self.is_op("{"):
            return self.parse_attrset(tok.start, rec=False)
        self.error("expected an expression")

    def _line(self, pos):
        return self.text.count("\n", 0, pos) + 1

    def parse_attrset(self, start, rec):
        lbrace = self.expect_op("{")
        entries = self.parse_bindings(until="}", opened_at=lbrace.start)
        rbrace = self.advance()
        return AttrSet(start, rbrace.end, rec, lbrace.start, rbrace.start, entries)

    def parse_bindings(self, until, opened_at=None):
        entries = []
        while True:
            tok = self.tok
            if (until == "}" and self.is_op("}")) or (until == "in" and self.is_kw("in")):
                return entries
            if tok.kind == "eof":
                if opened_at is not None:
                    self.error("unterminated attribute set (missing '}' for the '{' at line %d)" % self._line(opened_at))
                self.error("expected 'in'")
            if self.is_kw("inherit"):
                self.advance()
                source = None
                if self.is_op("("):
                    open_tok = self.advance()
                    inner = self.parse_expr()
                    close = self.expect_op(")")
                    source = Paren(open_tok.start, close.end, inner)
                names = []
                while not self.is_op(";"):
                    names.extend(self.parse_attrpath(single=True))
                semi = self.advance()
                entries.append(Inherit(tok.start, semi.end, source, names))
                continue
            keys = self.parse_attrpath()
            self.expect_op("=")
            value = self.parse_expr()
            semi = self.expect_op(";")
            entries.append(Binding(keys[0].start, semi.end, keys, value))

    def parse_attrpath(self, single=False):
        keys = [self.parse_attrkey()]
        while not single and self.is_op("."):
            self.advance()
            keys.append(self.parse_attrkey())
        return keys

    def parse_attrkey(self):
        tok = self.tok
        if tok.kind == "id" and (tok.text not in KEYWORDS or tok.text == "or"):
            self.advance()
            return AttrKey(tok.start, tok.end, tok.text)
        if tok.kind == "string":
            self.advance()
            return AttrKey(tok.start, tok.end, string_literal_value(tok.text), Leaf(tok))
        if self.is_op("${"):
            self.advance()
            inner = self.parse_expr()
            close = self.expect_op("}")
            return AttrKey(tok.start, close.end, None, inner)
        self.error("expected an attribute name")


def parse(text):
    """Parse a whole Nix file; raises :class:`NixSyntaxError` (naming an unclosed bracket when there is one)."""
    try:
        return _Parser(text).parse_file()
    except RecursionError:
        raise NixSyntaxError("brackets, functions or operators nested hundreds of levels deep, more than this parser "
                             "follows (a generated hardware-configuration.nix has a handful)")
    except NixSyntaxError as e:
        hint = unbalanced(text)
        if hint:
            raise NixSyntaxError("%s (%s)" % (e, hint))
        raise


def unbalanced(text):
    """A description of the first unclosed or unmatched bracket, brace or parenthesis, else None.

    A missing closer shows up at the end of the file, on the outermost brace; the pair whose closer is indented
    less than its opener usually names the brace that really lost its closer, so that one is reported as well.
    """
    pairs = {"}": "{", "]": "[", ")": "("}
    stack, matched = [], []
    try:
        tokens = tokenize(text)
    except NixSyntaxError:
        return None

    def line(tok):
        return text.count("\n", 0, tok.start) + 1

    def indent(tok):
        start = text.rfind("\n", 0, tok.start) + 1
        return len(text[start:tok.start]) - len(text[start:tok.start].lstrip(" \t"))

    for tok in tokens:
        if tok.kind != "op":
            continue
        if tok.text in ("{", "${", "[", "("):
            stack.append(tok)
        elif tok.text in pairs:
            opener = stack.pop() if stack else None
            if opener is None:
                return "unbalanced: the %r at line %d has no matching opening bracket" % (tok.text, line(tok))
            if opener.text.lstrip("$") != pairs[tok.text]:
                return "unbalanced: the %r at line %d closes the %r at line %d" % (
                    tok.text, line(tok), opener.text, line(opener))
            matched.append((opener, tok))
    if not stack:
        return None
    outer = stack[-1]
    suspects = [o for o, c in matched if o.text == outer.text and indent(c) < indent(o) and line(c) > line(o)]
    if suspects:
        return "unbalanced: a %r is never closed, probably the one at line %d (its supposed closer at line %d " \
               "is indented less); the outermost one left open is at line %d" % (
                   outer.text, line(suspects[0]), line(
                       next(c for o, c in matched if o is suspects[0])), line(outer))
    return "unbalanced: the %r at line %d is never closed" % (outer.text, line(outer))


# ---------------------------------------------------------------------------------------------------
# Helpers for editors

WRAPPERS = ("mkDefault", "mkForce", "mkOverride", "mkBefore", "mkAfter", "mkOrder")
_WRAPPER_ARITY = {"mkOverride": 2, "mkOrder": 2}


def callee_name(node):
    """``lib.mkDefault`` -> ``mkDefault``; ``mkForce`` -> ``mkForce``; anything else -> None."""
    if isinstance(node, Leaf) and node.kind == "ident":
        return node.text
    if isinstance(node, Select) and node.default is None and node.keys and node.keys[-1].name:
        return node.keys[-1].name
    return None


def unwrap(node):
    """See through parentheses and priority wrappers (``lib.mkDefault x``, ``lib.mkOverride 50 x`` ...)."""
    while True:
        if isinstance(node, Paren):
            node = node.expr
            continue
        if isinstance(node, Apply):
            name = callee_name(node.func)
            if name in WRAPPERS and len(node.args) == _WRAPPER_ARITY.get(name, 1):
                node = node.args[-1]
                continue
        return node


def string_value(node):
    """The literal text of a (possibly wrapped) ``"..."`` string, else None."""
    node = unwrap(node)
    if isinstance(node, Leaf) and node.kind == "string":
        return node.value
    return None


def walk(node):
    """Every node below ``node`` (pre-order), ``node`` included."""
    stack = [node]
    while stack:
        cur = stack.pop()
        yield cur
        stack.extend(reversed(list(cur.children())))


def apply_edits(text, edits):
    """Splice ``(start, end, replacement)`` edits into ``text``; edits must not overlap."""
    out = []
    pos = 0
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1])):
        if start < pos:
            raise ValueError("overlapping edits at offset %d" % start)
        out.append(text[pos:start])
        out.append(replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def line_break(text):
    """The file's line break: ``\\r\\n`` when it uses them, else ``\\n``."""
    return "\r\n" if "\r\n" in text else "\n"


def indent_of(text, pos):
    """Indentation for a new line aligned with ``pos``: the line's own leading whitespace when ``pos`` starts
    the line's content, else spaces up to the column of ``pos`` (e.g. the second field after ``{ ``)."""
    line_start = text.rfind("\n", 0, pos) + 1
    prefix = text[line_start:pos]
    if prefix.strip() == "":
        return prefix
    return " " * len(prefix)


def end_of_line_comment(text, pos):
    """After ``pos`` skip blanks; if a ``#`` comment or a one-line ``/* */`` comment ends the line, return
    the offset after it, else ``pos``: insertions then go after a binding's trailing comment."""
    m = _TRAILING_COMMENT.match(text, pos)
    return m.end(1) if m else pos


# -- writing Nix ----------------------------------------------------------------------------------------------
_NIX_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def nix_string(text):
    """A Nix double-quoted string literal for ``text`` (``${`` is escaped so it is not an interpolation).

    The one implementation of Nix string quoting in the collection: hardware-configuration.nix edits, the
    persist_audit snippet and the ``impermanent.nixos.nix_string`` filter all use it."""
    out = []
    for i, c in enumerate(text):
        if c == "$" and text[i + 1:i + 2] == "{":
            out.append("\\$")
        else:
            out.append(_NIX_ESCAPES.get(c, c))
    return '"' + "".join(out) + '"'
