"""The spec's filter language (must, must_not, range, and, or), checked against a schema into a typed tree.

Engines compile the tree to their own expression language; nothing here knows SQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mmsearch.errors import InvalidArgument
from mmsearch.schema.fields import INT_RANGES, NUMERIC_TYPES, DatasetSchema, FieldSpec
from mmsearch.unicode import require_valid_unicode

MAX_DEPTH = 32
MAX_CONDS = 1_024  # values in one must/must_not


@dataclass(frozen=True)
class FilterLimits:
    """Bounds on a whole filter tree. Depth and per-`conds` bounds alone let a flat `or` of 40,000 conditions
    through, and an engine compiles that into an expression deep enough to crash it; the caller passes the
    configured limits (Settings: MMSEARCH_MAX_FILTER_*)."""

    max_conditions: int = 1_024  # filter objects in the tree: must, must_not, range, and, or
    max_values: int = 10_000  # values across all must / must_not conds
    max_chars: int = 1_000_000  # characters across all string values


DEFAULT_LIMITS = FilterLimits()
_KEYS = {"op", "field", "conds", "gte", "gt", "lte", "lt"}
_BOUNDS = ("gte", "gt", "lte", "lt")


@dataclass(frozen=True)
class Match:
    """must (negate=False) / must_not (negate=True): the value, or any array element, is in `values`."""

    field: str
    type: str
    values: tuple[Any, ...]
    negate: bool = False

    @property
    def is_array(self) -> bool:
        return self.type.startswith("array<")


@dataclass(frozen=True)
class Range:
    field: str
    type: str
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


@dataclass(frozen=True)
class And:
    conds: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    conds: tuple[Filter, ...]


Filter = Match | Range | And | Or


def parse_filter(
    raw: Any, schema: DatasetSchema, where: str = "filter", limits: FilterLimits = DEFAULT_LIMITS
) -> Filter | None:
    """None or {} means no filter; anything else must be a valid filter object within `limits`."""
    if raw is None or raw == {}:
        return None
    _check_size(raw, where, limits)
    require_valid_unicode(raw, where)  # before any message quotes a key or a value
    return _parse(raw, schema, where, 0)


def _check_size(raw: Any, where: str, limits: FilterLimits) -> None:
    """Count the whole tree before parsing it, so an oversized filter costs one cheap pass and its error
    gives the total. Deeper than MAX_DEPTH is left to the parser's own error."""
    conditions = values = chars = 0
    stack: list[tuple[Any, int]] = [(raw, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict) or depth > MAX_DEPTH:
            continue
        conditions += 1
        conds = node.get("conds")
        if not isinstance(conds, list):
            continue
        if node.get("op") in ("and", "or"):
            stack.extend((c, depth + 1) for c in conds)
        else:
            values += len(conds)
            chars += sum(len(v) for v in conds if isinstance(v, str))
    if conditions > limits.max_conditions:
        raise _fail(where, f"at most {limits.max_conditions} conditions in a filter (each must, must_not, range, "
                           f"and, or counts), got {conditions}")
    if values > limits.max_values:
        raise _fail(where, f"at most {limits.max_values} values across all must/must_not conds, got {values}")
    if chars > limits.max_chars:
        raise _fail(where, f"at most {limits.max_chars} characters across all string values, got {chars}")


def _fail(where: str, rule: str) -> InvalidArgument:
    return InvalidArgument(f"{where}: {rule}", field=where)


def _parse(raw: Any, schema: DatasetSchema, where: str, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise _fail(where, f"filters nest at most {MAX_DEPTH} levels deep")
    if not isinstance(raw, dict):
        raise _fail(where, "a filter must be an object with an 'op'")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", "unknown key; a filter has op, field, conds, gte, gt, lte, lt")
    op = raw.get("op")
    if op in ("and", "or"):
        conds = raw.get("conds")
        if not isinstance(conds, list) or not conds:
            raise _fail(f"{where}.conds", f"'{op}' needs a non-empty list of filters in conds")
        parts = tuple(_parse(c, schema, f"{where}.conds[{i}]", depth + 1) for i, c in enumerate(conds))
        return And(parts) if op == "and" else Or(parts)
    if op in ("must", "must_not"):
        spec = _filterable(raw, schema, where)
        return _match(raw, spec, where, negate=op == "must_not")
    if op == "range":
        spec = _filterable(raw, schema, where)
        return _range(raw, spec, where)
    raise _fail(f"{where}.op", f"{op!r} is not an operator; use must, must_not, range, and or or")


def _filterable(raw: dict, schema: DatasetSchema, where: str) -> FieldSpec:
    name = raw.get("field")
    if not isinstance(name, str) or not name:
        raise _fail(f"{where}.field", f"'{raw['op']}' needs a field name")
    spec = schema.field(name)
    if spec is None:
        raise _fail(f"{where}.field", f"field {name!r} does not exist in the dataset")
    if not spec.filterable:
        raise _fail(f"{where}.field", f"field {name!r} is not filterable (set \"filterable\": true in the schema)")
    return spec


def _match(raw: dict, spec: FieldSpec, where: str, negate: bool) -> Match:
    op = raw["op"]
    if spec.element_type == "float":
        raise _fail(f"{where}.field", f"'{op}' does not apply to float field {spec.name!r}; use range")
    for bound in _BOUNDS:
        if bound in raw:
            raise _fail(f"{where}.{bound}", f"'{bound}' belongs to range, not '{op}'")
    conds = raw.get("conds")
    if not isinstance(conds, list) or not conds:
        raise _fail(f"{where}.conds", f"'{op}' needs a non-empty list of values in conds")
    if len(conds) > MAX_CONDS:
        raise _fail(f"{where}.conds", f"at most {MAX_CONDS} values")
    values = tuple(_value(v, spec, f"{where}.conds[{i}]") for i, v in enumerate(conds))
    return Match(spec.name, spec.type, tuple(dict.fromkeys(values)), negate)


def _value(v: Any, spec: FieldSpec, where: str) -> Any:
    t = spec.element_type
    if t in INT_RANGES:
        sent = v
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise _fail(where, f"{v!r} is not an integer; field {spec.name!r} is {spec.type}")
        lo, hi = INT_RANGES[t]
        if not lo <= v <= hi:
            raise _fail(where, f"{sent!r} is outside the {t} range [{lo}, {hi}] of field {spec.name!r}")
        return v
    if t == "bool":
        if not isinstance(v, bool):
            raise _fail(where, f"{v!r} is not a bool; field {spec.name!r} is {spec.type}")
        return v
    if t == "string":
        if not isinstance(v, str):
            raise _fail(where, f"{v!r} is not a string; field {spec.name!r} is {spec.type}")
        return v
    raise AssertionError(t)


def _range(raw: dict, spec: FieldSpec, where: str) -> Range:
    if spec.type not in NUMERIC_TYPES:
        raise _fail(f"{where}.field", f"range applies to int32, int64 and float fields; {spec.name!r} is {spec.type}")
    if "conds" in raw:
        raise _fail(f"{where}.conds", "range takes gte, gt, lte or lt, not conds")
    bounds: dict[str, float] = {}
    for key in _BOUNDS:
        if key not in raw or raw[key] is None:
            continue
        v = raw[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise _fail(f"{where}.{key}", f"{v!r} is not a finite number")
        if spec.type in INT_RANGES:
            # an engine compares integer columns with integer literals of the column's width: a bound outside
            # it is refused rather than clamped, as the same value is refused in must/must_not and in items
            lo, hi = INT_RANGES[spec.type]
            if not lo <= v <= hi:
                raise _fail(f"{where}.{key}", f"{v!r} is outside the {spec.type} range [{lo}, {hi}] "
                                              f"of field {spec.name!r}")
        bounds[key] = v
    if not bounds:
        raise _fail(where, "range needs at least one of gte, gt, lte, lt")
    return Range(spec.name, spec.type, **bounds)
