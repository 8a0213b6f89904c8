"""The QRS ``?filter=`` language (sense-interfaces.md 1.2 and 4.6).

Grammar, with case-insensitive keywords and property names::

    expr    := and_expr ('or' and_expr)*          # 'and' binds tighter than 'or'
    and_expr:= unary ('and' unary)*
    unary   := 'not' unary | '(' expr ')' | cmp
    cmp     := path op value
    op      := eq | ne | gt | ge | lt | le | sw | ew | so
    value   := 'quoted' | GUID | number | true | false | null

Quoted strings use backslash escapes (\\' and \\\\), as a live QRS does; the
OData-style doubled quote '' is a parse error in strict mode. Paths are checked
against a schema learnt from prototype objects, so an unknown property is a
parse error even when the collection is empty. A path through an array matches
if any element matches.
"""

import re

from .util import GUID_RE


class FilterError(Exception):
    """Carries the exact QRS error text for a 400 answer."""


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<lp>\() | (?P<rp>\)) | (?P<quote>') |
      (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![\w.-]) |
      (?P<num>-?\d+(?:\.\d+)?)(?![\w.-]) |
      (?P<word>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)
    )""", re.X)
_OPS = frozenset(("eq", "ne", "gt", "ge", "lt", "le", "sw", "ew", "so"))
_LITERAL_WORDS = {"true": ("bool", True), "false": ("bool", False), "null": ("null", None)}


def _tokenize(text, strict):
    """-> list of (kind, value); kinds: lp rp str guid num word."""
    tokens, pos, n = [], 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos == n:
            return tokens
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterError(f"Cannot parse the expression: {text}")
        kind = m.lastgroup
        if kind == "quote":
            value, pos = _read_string(text, m.end(), strict)
            tokens.append(("str", value))
            continue
        tokens.append((kind, m.group(kind)))
        pos = m.end()


def _read_string(text, pos, strict):
    out, n = [], len(text)
    while pos < n:
        c = text[pos]
        if c == "\\" and pos + 1 < n:
            nxt = text[pos + 1]
            # Only \' and \\ are escapes; any other backslash is kept as typed.
            out.append(nxt if nxt in "'\\" else "\\" + nxt)
            pos += 2
        elif c == "'":
            if strict and pos + 1 < n and text[pos + 1] == "'":
                raise FilterError(f"Cannot parse the expression: {text}")
            return "".join(out), pos + 1
        else:
            out.append(c)
            pos += 1
    raise FilterError(f"Cannot parse the expression: {text}")


class _Parser:
    def __init__(self, text, tokens):
        self.text, self.tokens, self.i = text, tokens, 0

    def fail(self):
        raise FilterError(f"Cannot parse the expression: {self.text}")

    def peek_word(self):
        if self.i < len(self.tokens) and self.tokens[self.i][0] == "word":
            return self.tokens[self.i][1].lower()
        return None

    def take(self):
        if self.i >= len(self.tokens):
            self.fail()
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self):
        node = self.expr()
        if self.i != len(self.tokens):
            self.fail()
        return node

    def expr(self):
        items = [self.and_expr()]
        while self.peek_word() == "or":
            self.i += 1
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else ("or", items)

    def and_expr(self):
        items = []
        node = self.unary()
        while True:
            # Flatten nested ands (from parentheses) so correlated CP matching sees every conjunct.
            items.extend(node[1] if node[0] == "and" else [node])
            if self.peek_word() != "and":
                break
            self.i += 1
            node = self.unary()
        return items[0] if len(items) == 1 else ("and", items)

    def unary(self):
        if self.peek_word() == "not":
            self.i += 1
            return ("not", self.unary())
        kind, _ = self.take()
        if kind == "lp":
            if self.i < len(self.tokens) and self.tokens[self.i][0] == "rp":
                raise FilterError("Invalid expression")
            node = self.expr()
            if self.take()[0] != "rp":
                self.fail()
            return node
        self.i -= 1
        return self.cmp()

    def cmp(self):
        kind, path = self.take()
        if kind != "word" or path.lower() in _OPS or path.lower() in ("and", "or", "not"):
            self.fail()
        kind, op = self.take()
        op = op.lower()
        if kind != "word" or op not in _OPS:
            self.fail()
        kind, raw = self.take()
        if kind == "str":
            value = ("str", raw.lower())
        elif kind == "guid":
            value = ("str", raw.lower())
        elif kind == "num":
            value = ("num", float(raw) if "." in raw else int(raw))
        elif kind == "word" and raw.lower() in _LITERAL_WORDS:
            value = _LITERAL_WORDS[raw.lower()]
        else:
            self.fail()
        return ["cmp", tuple(path.lower().split(".")), op, value[0], value[1]]


class Schema:
    """Property paths of one entity kind, learnt from sample objects.

    ``keys`` maps a lower-case path to the real (camelCase) keys, so evaluation
    can use plain dict lookups; ``arrays`` holds the real-key paths that are JSON
    arrays (needed for correlated custom-property matching)."""

    def __init__(self, samples):
        self.keys, self.arrays = {}, set()
        for obj in samples:
            self._learn(obj, (), ())

    def _learn(self, value, low, real):
        if isinstance(value, dict):
            for k, v in value.items():
                lk, rk = low + (k.lower(),), real + (k,)
                self.keys[lk] = rk
                self._learn(v, lk, rk)
        elif isinstance(value, list):
            self.arrays.add(real)
            for v in value:
                self._learn(v, low, real)


def compile_filter(text, schema, strict):
    """Parse and bind a filter to a schema. Returns an AST whose cmp nodes carry real keys."""
    if not text.strip():
        return None
    ast = _Parser(text, _tokenize(text, strict)).parse()

    def bind(node):
        if node[0] == "cmp":
            real = schema.keys.get(node[1])
            if real is None:
                raise FilterError(f"Cannot parse the expression: {text}")
            node[1] = real
        elif node[0] == "not":
            bind(node[1])
        else:
            for child in node[1]:
                bind(child)
    bind(ast)
    return ast


def id_equals(ast, key=("id",)):
    """The GUID of a top-level '<key> eq <guid>' conjunct (key: the bound, real-key path),
    so callers can skip a scan."""
    if ast is None:
        return None
    for node in (ast[1] if ast[0] == "and" else [ast]):
        if node[0] == "cmp" and node[1] == key and node[2] == "eq" and node[3] == "str" \
                and GUID_RE.match(node[4]):
            return node[4]
    return None


def id_candidates(ast, key=("id",)):
    """The GUIDs an entity's `key` must be one of to match, when every disjunct of a
    top-level 'or' names it ('id eq A or id eq B ...'), so callers can look them up instead
    of scanning; None otherwise. The filter is still evaluated on what is found."""
    if ast is None:
        return None
    disjuncts = ast[1] if ast[0] == "or" else [ast]
    found = set()
    for node in disjuncts:
        guid = id_equals(node, key)
        if guid is None:
            return None
        found.add(guid)
    return found


def _resolve(obj, keys):
    """All leaf values at a path; arrays along the way (and at the end) fan out."""
    values = [obj]
    for k in keys:
        nxt = []
        for v in values:
            if isinstance(v, dict):
                nxt.append(v.get(k))
            elif isinstance(v, list):
                nxt.extend(e.get(k) for e in v if isinstance(e, dict))
        values = nxt
    out = []
    for v in values:
        if isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    return out


def _leaf_matches(leaf, op, vtype, value):
    if vtype == "null":  # only 'eq null' here; 'ne null' is negated by the caller
        return op == "eq" and leaf is None
    if leaf is None:
        return False
    if vtype == "bool":
        return op == "eq" and isinstance(leaf, bool) and leaf == value
    if vtype == "num" and isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
        a, b = leaf, value
    else:
        a = ("true" if leaf else "false") if isinstance(leaf, bool) else str(leaf).lower()
        b = str(value).lower() if vtype == "num" else value
    if op == "eq":
        return a == b
    if op == "sw":
        return isinstance(a, str) and a.startswith(b)
    if op == "ew":
        return isinstance(a, str) and a.endswith(b)
    if op == "so":  # "substring of": the value occurs inside the property
        return isinstance(a, str) and b in a
    try:
        return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]
    except TypeError:
        return False


def _cmp_holds(obj, node):
    _, keys, op, vtype, value = node
    leaves = _resolve(obj, keys)
    if op == "ne":  # no element equals (so an empty tag list is "ne" anything)
        return not any(_leaf_matches(x, "eq", vtype, value) for x in leaves)
    return any(_leaf_matches(x, op, vtype, value) for x in leaves)


def evaluate(ast, obj, schema, correlated):
    kind = ast[0]
    if kind == "cmp":
        return _cmp_holds(obj, ast)
    if kind == "not":
        return not evaluate(ast[1], obj, schema, correlated)
    if kind == "or":
        return any(evaluate(n, obj, schema, correlated) for n in ast[1])
    if not correlated:
        return all(evaluate(n, obj, schema, correlated) for n in ast[1])
    return _and_correlated(ast[1], obj, schema)


def _and_correlated(conjuncts, obj, schema):
    """Conjuncts that go through the same array must hold on one element of it."""
    groups, rest = {}, []
    for node in conjuncts:
        prefix = _first_array(node, schema) if node[0] == "cmp" else None
        if prefix is None:
            rest.append(node)
        else:
            groups.setdefault(prefix, []).append(node)
    if not all(evaluate(n, obj, schema, True) for n in rest):
        return False
    for prefix, nodes in groups.items():
        subs = [[n[0], n[1][len(prefix):], *n[2:]] for n in nodes]
        if not any(all(_cmp_holds(element, s) for s in subs) for element in _resolve(obj, prefix)):
            return False
    return True


def _first_array(node, schema):
    keys = node[1]
    for i in range(1, len(keys) + 1):
        if keys[:i] in schema.arrays:
            return keys[:i]
    return None
