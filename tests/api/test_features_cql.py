"""The CQL2-text subset parser: what it accepts, how paths split, and that the rest is refused by name."""

from __future__ import annotations

import pytest

from twin.api.cql import CQLError, parse


@pytest.mark.parametrize(("text", "expected"), [
    ("height > 10", [(["height"], ">", 10.0)]),
    ("quality.rmse.2.2 > 1", [(["quality", "rmse", "2.2"], ">", 1.0)]),
    ('quality.rmse."2.2" >= 1.5e0', [(["quality", "rmse", "2.2"], ">=", 1.5)]),
    ("use = 'it''s' AND height<=-2.5", [(["use"], "=", "it's"), (["height"], "<=", -2.5)]),
    ("(a <> 'x') and (b != 3)", [(["a"], "!=", "x"), (["b"], "!=", 3.0)]),
    ("1 < height", [(["height"], ">", 1.0)]),
    ("quality.valid = false", [(["quality", "valid"], "=", False)]),
    ("attributes.cadastre_id = '110101-000001'", [(["attributes", "cadastre_id"], "=", "110101-000001")]),
])
def test_parses_comparisons_joined_by_and(text: str, expected: list) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"),
    ("a = 1 OR b = 2", "OR is not supported"),
    ("NOT a = 1", "NOT is not supported"),
    ("name LIKE 'x%'", "LIKE is not supported"),
    ("a = ", "incomplete"),
    ("a b c", "comparison operator"),
    ("a = b", "one property and one literal"),
    ("1 = 2", "one property and one literal"),
    ("a = 1 AND", "ends where a comparison"),
    ("((a = 1)", "unbalanced"),
    ("a = 1)", "unbalanced"),
    ("a = 1 b = 2", "expected AND"),
    ("a = 'open", "unexpected text"),
])
def test_refuses_what_it_does_not_evaluate_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(CQLError, match=says):
        parse(text)
