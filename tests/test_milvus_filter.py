"""The Milvus filter compiler: every value a literal, int64's extremes, the LanceDB compiler's null semantics.

End-to-end semantics (each operator against Milvus Lite and LanceDB) are in test_store_contract.py; here the
expression text itself, read back by Milvus Lite's own lexer."""

from __future__ import annotations

import math

import pytest

from mmsearch.schema.filters import And, Match, Or, Range
from mmsearch.store.milvus_filter import literal, string_literal, to_expr
from test_filters import DECOYS, TRICKY

HOSTILE = [*TRICKY, *DECOYS, '"', '\\"', 'a"b', 'x" || true || "', "\n", "\r\n", "\t", "\x00", "\x01\x1f", "é", "鞋",
           "\\", "\\\\", "'\"'", "${x}", "ARRAY_CONTAINS_ANY(f_x, [1])"]


@pytest.mark.parametrize("value", HOSTILE)
def test_string_literals_read_back_as_the_value(value):
    tokens = pytest.importorskip("milvus_lite.search.filter.tokens")
    source = f"f_x == {string_literal(value)}"
    found = [tok for tok in tokens.tokenize(source) if tok.kind == tokens.TokenKind.STRING]
    assert len(found) == 1 and found[0].value == value


def test_must_and_must_not():
    assert to_expr(Match("c", "string", ("a", 'b"'))) == 'f_c in ["a", "b\\""]'
    # must_not lets items without the field pass, as the LanceDB compiler does
    assert to_expr(Match("c", "string", ("a",), negate=True)) == '(f_c is null or not (f_c in ["a"]))'
    assert to_expr(Match("t", "array<string>", ("x", "y"))) == 'ARRAY_CONTAINS_ANY(f_t, ["x", "y"])'
    assert to_expr(Match("b", "bool", (True,), negate=True)) == "(f_b is null or not (f_b in [true]))"


def test_ranges_on_integer_fields_use_integer_bounds():
    assert to_expr(Range("s", "int32", gt=1.5, lt=3)) == "(f_s > 1 and f_s < 3)"
    assert to_expr(Range("s", "int32", gte=1.5, lte=2.5)) == "(f_s >= 2 and f_s <= 2)"
    assert to_expr(Range("p", "float", gte=1, lt=1e300)) == "(f_p >= 1.0 and f_p < 1e+300)"


def test_int64_extremes():
    lo, hi = -(2**63), 2**63 - 1
    assert to_expr(Match("n", "int64", (lo, 5))) == "(f_n in [5] or f_n < -9223372036854775807)"
    assert to_expr(Match("n", "int64", (hi,))) == f"f_n in [{hi}]"
    assert to_expr(Range("n", "int64", gte=lo)) == "(f_n is not null)"
    assert to_expr(Range("n", "int64", lte=lo)) == "(f_n < -9223372036854775807)"
    assert to_expr(Range("n", "int64", lt=lo)) == "((f_n < -9223372036854775807 and f_n > -9223372036854775807))"


def test_non_finite_numbers_are_refused():
    for v in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="finite"):
            literal(v)
        with pytest.raises(ValueError, match="finite"):
            to_expr(Range("p", "float", gte=v))
    with pytest.raises(TypeError):
        literal(object())


def test_and_or_nest():
    tree = Or((And((Match("c", "string", ("a",)), Range("p", "float", lt=2))), Match("c", "string", ("b",), True)))
    assert to_expr(tree) == '((f_c in ["a"] and (f_p < 2.0)) or (f_c is null or not (f_c in ["b"])))'
