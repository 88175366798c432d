"""A CQL2-text subset for ``filter=``: comparisons of a property with a literal, joined by AND.

Supported: ``= <> != < <= > >=``, ``AND``, parentheses, numbers, 'strings' (``''`` escapes a quote), TRUE/FALSE,
and property paths into nested objects (``quality.rmse.2.2 > 1``, ``attributes.district = 'Dongcheng'``). A key
that holds a dot can be double-quoted (``quality.rmse."2.2"``); runs of numeric keys are joined with dots, so
``rmse.2.2`` means the key ``"2.2"`` (the LoD). Everything else (OR, NOT, LIKE, IN, spatial and temporal
operators) is refused with a message saying so, because the store evaluates a conjunction of comparisons.
"""

from __future__ import annotations

import re
from typing import Any

from twin.errors import BadInput

Filter = tuple[list[str], str, Any]

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)(?![A-Za-z_])
  | (?P<str>'(?:[^']|'')*')
  | (?P<op><>|!=|<=|>=|=|<|>)
  | (?P<paren>[()])
  | (?P<path>(?:"[^"]+"|[A-Za-z_][A-Za-z0-9_:-]*)(?:\.(?:"[^"]+"|[A-Za-z0-9_:-]+))*)
  )""",
    re.VERBOSE,
)
_UNSUPPORTED = {"OR", "NOT", "LIKE", "IN", "BETWEEN", "IS", "NULL", "S_INTERSECTS", "T_INTERSECTS", "CASEI",
                "ACCENTI", "DIV"}
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class CQLError(BadInput):
    """The filter is not valid CQL2 text, or uses a part of CQL2 this server does not evaluate."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CQLError(f"unexpected text at character {pos + 1}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _split_path(raw: str) -> list[str]:
    parts = re.findall(r'"[^"]+"|[^.]+', raw)
    keys: list[str] = []
    numeric_run = False
    for p in parts:
        quoted = p.startswith('"')
        key = p[1:-1] if quoted else p
        if not quoted and key.isdigit() and numeric_run:
            keys[-1] += "." + key
        else:
            keys.append(key)
        numeric_run = not quoted and key.isdigit()
    return keys


def _literal(kind: str, value: str) -> Any:
    if kind == "num":
        return float(value)
    if kind == "str":
        return value[1:-1].replace("''", "'")
    return value.upper() == "TRUE"


def _is_literal(kind: str, value: str) -> bool:
    return kind in ("num", "str") or (kind == "path" and value.upper() in ("TRUE", "FALSE"))


def parse(text: str) -> list[Filter]:
    """The filter as (property path keys, operator, value) triples, all of which must hold (AND)."""
    if not text.strip():
        raise CQLError("the filter is empty")
    toks = _tokens(text)
    for kind, val in toks:
        if kind == "path" and val.upper() in _UNSUPPORTED:
            raise CQLError(f"{val.upper()} is not supported; this server evaluates comparisons joined by AND")
    out: list[Filter] = []
    depth = 0
    i = 0
    expect_term = True
    while i < len(toks):
        kind, val = toks[i]
        if expect_term:
            if kind == "paren" and val == "(":
                depth += 1
                i += 1
                continue
            if len(toks) - i < 3:
                rest = " ".join(v for _, v in toks[i:])
                raise CQLError(f"incomplete comparison {rest!r}: expected <property> <operator> <literal>")
            (k1, v1), (k2, v2), (k3, v3) = toks[i:i + 3]
            if k2 != "op":
                raise CQLError(f"expected a comparison operator after {v1!r}, got {v2!r}")
            op = "!=" if v2 == "<>" else v2
            lit1, lit3 = _is_literal(k1, v1), _is_literal(k3, v3)
            if not lit1 and k1 == "path" and lit3:
                out.append((_split_path(v1), op, _literal(k3, v3)))
            elif lit1 and not lit3 and k3 == "path":
                out.append((_split_path(v3), _FLIP[op], _literal(k1, v1)))
            else:
                raise CQLError(f"a comparison needs one property and one literal: {v1} {v2} {v3}")
            i += 3
            expect_term = False
            continue
        if kind == "paren" and val == ")":
            depth -= 1
            if depth < 0:
                raise CQLError("unbalanced ')'")
            i += 1
            continue
        if kind == "path" and val.upper() == "AND":
            expect_term = True
            i += 1
            continue
        raise CQLError(f"expected AND or ')' but got {val!r}")
    if expect_term:
        raise CQLError("the filter ends where a comparison is expected")
    if depth:
        raise CQLError("unbalanced '('")
    return out
