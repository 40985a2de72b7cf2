"""Compile a filter tree to a Lance (DataFusion SQL) predicate. Every value is a quoted literal."""

from __future__ import annotations

import math
from typing import Any

from mmsearch.schema.filters import And, Filter, Match, Or, Range


def column(field: str) -> str:
    """User fields live in `f_<name>` columns, so they never collide with internal ones."""
    return f"`f_{field}`"


def literal(v: Any) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        # the SQL parser reads -9223372036854775808 as -(9223372036854775808), which overflows int64 into a float
        # that an Int64 column refuses; the folded expression is the same value
        return "(-9223372036854775807 - 1)" if v == -(2**63) else str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {type(v).__name__}")


def _array_literal(values: tuple[Any, ...], element_type: str) -> str:
    body = ", ".join(literal(v) for v in values)
    if element_type == "int32":
        return f"arrow_cast([{body}], 'List(Int32)')"
    return f"[{body}]"


def _bound(f: Range, key: str) -> str:
    """Integer columns get integer literals (so scalar indexes apply); x > 1.5 is x > 1 on integers."""
    v = getattr(f, key)
    if f.type == "float":
        return literal(float(v))
    rounded = math.ceil(v) if key in ("gte", "lt") else math.floor(v)
    return literal(int(rounded))


def to_sql(f: Filter) -> str:
    if isinstance(f, And):
        return "(" + " AND ".join(to_sql(c) for c in f.conds) + ")"
    if isinstance(f, Or):
        return "(" + " OR ".join(to_sql(c) for c in f.conds) + ")"
    if isinstance(f, Range):
        col = column(f.field)
        ops = (("gte", ">="), ("gt", ">"), ("lte", "<="), ("lt", "<"))
        parts = [f"{col} {sym} {_bound(f, k)}" for k, sym in ops if getattr(f, k) is not None]
        return "(" + " AND ".join(parts) + ")"
    if isinstance(f, Match):
        col = column(f.field)
        if f.is_array:
            test = f"array_has_any({col}, {_array_literal(f.values, f.type[6:-1])})"
        else:
            test = f"{col} IN ({', '.join(literal(v) for v in f.values)})"
        # NULL IN (...) is NULL, so must already drops missing values; must_not has to let them pass
        return f"({col} IS NULL OR NOT {test})" if f.negate else test
    raise TypeError(f"not a filter: {f!r}")
