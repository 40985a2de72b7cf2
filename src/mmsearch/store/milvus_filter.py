"""Compile a filter tree to a Milvus boolean expression. Every value is an escaped literal.

The semantics are the LanceDB compiler's (store/lance_filter.py): `must` keeps items whose value (or any array
element) is in the values, so an item without the field fails it; `must_not` keeps the others, items without the
field included (`col is null or not (...)`, spelled out rather than left to the engine's null logic); a range
keeps items with a value inside it. Integer columns are compared with integer literals (x > 1.5 is x > 1), and
int64's smallest value, whose literal the server's grammar reads as -(2**63) (out of range), is written as
`col < -9223372036854775807`, the one int64 below that.
"""

from __future__ import annotations

import math
from typing import Any

from mmsearch.schema.filters import And, Filter, Match, Or, Range

INT64_MIN = -(2**63)
# C-style escapes both Milvus Lite's lexer and the server's grammar (Plan.g4) read; other control characters are
# valid inside a literal as they are (only a raw line break ends one)
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def column(field: str) -> str:
    """User fields live in `f_<name>` fields (names are [A-Za-z_][A-Za-z0-9_]*), clear of internal ones."""
    return f"f_{field}"


def string_literal(v: str) -> str:
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in v) + '"'


def literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"no Milvus literal for the non-finite number {v!r}")
        return repr(v)
    if isinstance(v, str):
        return string_literal(v)
    raise TypeError(f"no Milvus literal for {type(v).__name__}")


def _bound(f: Range, key: str) -> int | float:
    """Integer fields get integer bounds (so x > 1.5 is x > 1, x >= 1.5 is x >= 2), as the LanceDB compiler does."""
    v = getattr(f, key)
    if not math.isfinite(v):
        raise ValueError(f"range bound {key} of {f.field!r} is not finite: {v!r}")
    if f.type == "float":
        return float(v)
    return int(math.ceil(v) if key in ("gte", "lt") else math.floor(v))


def _compare(col: str, op: str, v: int | float) -> str:
    if type(v) is int and v == INT64_MIN:  # -9223372036854775808 does not parse as an int64 literal on a server
        m = INT64_MIN + 1
        return {">=": f"{col} is not null", ">": f"{col} >= {m}", "<=": f"{col} < {m}",
                "<": f"({col} < {m} and {col} > {m})"}[op]  # nothing is below the smallest int64
    return f"{col} {op} {literal(v)}"


def _values(col: str, values: tuple[Any, ...], array: bool) -> str:
    """`col in [...]`, or for an array field any element in the values. A scalar int64 field's smallest value is
    compared apart (`col < -9223372036854775807`); an array's element has no comparison, so there the literal
    stays (Milvus Lite reads it; a server refuses the expression, which then fails loudly, never silently)."""
    if array:
        return f"ARRAY_CONTAINS_ANY({col}, [{', '.join(literal(v) for v in values)}])"
    rest = [v for v in values if not (type(v) is int and v == INT64_MIN)]
    parts = [f"{col} in [{', '.join(literal(v) for v in rest)}]"] if rest else []
    if len(rest) < len(values):
        parts.append(f"{col} < {INT64_MIN + 1}")
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def to_expr(f: Filter) -> str:
    if isinstance(f, And):
        return "(" + " and ".join(to_expr(c) for c in f.conds) + ")"
    if isinstance(f, Or):
        return "(" + " or ".join(to_expr(c) for c in f.conds) + ")"
    if isinstance(f, Range):
        col = column(f.field)
        ops = (("gte", ">="), ("gt", ">"), ("lte", "<="), ("lt", "<"))
        parts = [_compare(col, sym, _bound(f, k)) for k, sym in ops if getattr(f, k) is not None]
        return "(" + " and ".join(parts) + ")"
    if isinstance(f, Match):
        col = column(f.field)
        test = _values(col, f.values, f.is_array)
        return f"({col} is null or not ({test}))" if f.negate else test
    raise TypeError(f"not a filter: {f!r}")
