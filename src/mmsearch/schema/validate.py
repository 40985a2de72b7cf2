"""Check one item against its schema; every broken rule is reported, and a broken item is skipped whole."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsearch.schema.fields import INT_RANGES, MEDIA_TYPES, DatasetSchema, FieldSpec
from mmsearch.unicode import find_invalid_unicode, is_valid_unicode, scrub

VECTOR_FIELD = "_vector"  # reserved: a precomputed image embedding supplied with the item


@dataclass(frozen=True)
class ItemError:
    index: int
    id: str | None
    field: str | None
    rule: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "field": self.field, "rule": self.rule, "message": self.message}


@dataclass
class ValidItem:
    id: str
    doc: dict[str, Any]
    vector: list[float] | None = None
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _scalar_problem(t: str, v: Any) -> tuple[str, str] | None:
    """(rule, message) when `v` is not a valid value of scalar type `t`."""
    if t in INT_RANGES:
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                return "type", f"expected {t}, got {_kind(v)}"
        lo, hi = INT_RANGES[t]
        if not lo <= v <= hi:
            return "range", f"{v} is outside the {t} range [{lo}, {hi}]"
        return None
    if t == "float":
        if isinstance(v, bool) or not isinstance(v, int | float):
            return "type", f"expected float, got {_kind(v)}"
        if not math.isfinite(v):
            return "range", "float must be finite (no NaN or Infinity)"
        return None
    if t == "bool":
        return None if isinstance(v, bool) else ("type", f"expected bool, got {_kind(v)}")
    if t == "string":
        return None if isinstance(v, str) else ("type", f"expected string, got {_kind(v)}")
    raise AssertionError(t)


def _kind(v: Any) -> str:
    return {bool: "bool", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(v), "null" if v is None else type(v).__name__
    )


def _normalise(spec: FieldSpec, v: Any) -> Any:
    """Integral floats given for integer fields are stored as integers."""
    if spec.element_type in INT_RANGES:
        if spec.is_array:
            return [int(x) for x in v]
        return int(v)
    return v


def _check_field(spec: FieldSpec, v: Any) -> tuple[str, str] | None:
    t = spec.type
    if t in ("int32", "int64", "float", "bool", "string"):
        problem = _scalar_problem(t, v)
        if problem is None and t == "string":
            if spec.primary_key and not v:
                return "required", "primary key must not be empty"
            if len(v) > spec.value_max_length:
                return "max_length", f"{len(v)} characters exceeds max_length {spec.value_max_length}"
        return problem
    if t == "array<object>":
        if not isinstance(v, list):
            return "type", f"expected array<object>, got {_kind(v)}"
        if len(v) > spec.value_max_items:
            return "max_items", f"{len(v)} elements exceeds max_items {spec.value_max_items}"
        for i, x in enumerate(v):
            if not isinstance(x, dict):
                return "type", f"element {i}: expected object, got {_kind(x)}"
        return None
    if spec.is_array:
        if not isinstance(v, list):
            return "type", f"expected {t}, got {_kind(v)}"
        if len(v) > spec.value_max_items:
            return "max_items", f"{len(v)} elements exceeds max_items {spec.value_max_items}"
        for i, x in enumerate(v):
            problem = _scalar_problem(spec.element_type, x)
            if problem:
                return problem[0], f"element {i}: {problem[1]}"
            if spec.element_type == "string" and len(x) > spec.value_max_length:
                return "max_length", f"element {i}: {len(x)} characters exceeds max_length {spec.value_max_length}"
        return None
    if t == "object":
        return None if isinstance(v, dict) else ("type", f"expected object, got {_kind(v)}")
    if t in MEDIA_TYPES:
        return _check_media(spec, v)
    if t == "geo_point":
        return _check_geo(v)
    raise AssertionError(t)


def _check_media(spec: FieldSpec, v: Any) -> tuple[str, str] | None:
    key = f"{spec.type}_url"
    refs: list[Any]
    if isinstance(v, str):
        refs = [v]
    elif isinstance(v, list):
        if len(v) > spec.value_max_items:
            return "max_items", f"{len(v)} elements exceeds max_items {spec.value_max_items}"
        refs = [x.get(key) if isinstance(x, dict) else x for x in v]
    else:
        return "type", f"expected a {spec.type} reference, a list of them, or a list of objects with {key}"
    for i, ref in enumerate(refs):
        if not isinstance(ref, str) or not ref:
            return "type", f"element {i}: expected a non-empty string (URL, path or data URI) or {{{key!r}: ...}}"
        if len(ref) > spec.value_max_length:
            return "max_length", f"element {i}: {len(ref)} characters exceeds max_length {spec.value_max_length}"
    return None


def _check_geo(v: Any) -> tuple[str, str] | None:
    if not isinstance(v, dict) or "latitude" not in v or "longitude" not in v:
        return "type", "expected {\"latitude\": number, \"longitude\": number}"
    lat, lon = parse_coordinate(v["latitude"]), parse_coordinate(v["longitude"])
    if lat is None or not -90 <= lat <= 90:
        return "range", "latitude must be a number in [-90, 90]"
    if lon is None or not -180 <= lon <= 180:
        return "range", "longitude must be a number in [-180, 180]"
    return None


def parse_coordinate(v: Any) -> float | None:
    """Numbers or numeric strings (the spec sends query locations as strings)."""
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _check_vector(v: Any, dim: int) -> tuple[str, str] | None:
    if not isinstance(v, list) or len(v) != dim:
        return "dimension", f"expected a list of {dim} numbers"
    # one C-speed pass for the common all-float case; the per-element loop only for mixed input
    if not all(type(x) is float for x in v) and any(
        isinstance(x, bool) or not isinstance(x, int | float) for x in v
    ):
        return "type", "vector elements must be finite numbers"
    arr = np.asarray(v, dtype=np.float64)
    if not np.isfinite(arr).all():
        return "type", "vector elements must be finite numbers"
    if not arr.any():
        return "range", "vector must not be all zeros"
    return None


_PLAIN = (int, float, bool, type(None))


def _unicode_problem(name: str, value: Any) -> str | None:
    """Where in one top-level value a string (or object key) is not valid Unicode: a lone surrogate from
    JSON's "\\ud800", or a byte that was not UTF-8 in a file. The engine cannot store such a string, and it
    would fail the whole batch rather than this item. Flat lists of numbers (vectors, int arrays) are skipped
    at C speed."""
    if isinstance(value, str):
        return None if is_valid_unicode(value) else name
    if isinstance(value, _PLAIN):
        return None
    if isinstance(value, list) and all(type(x) in _PLAIN for x in value):
        return None
    return find_invalid_unicode(value, name)


def validate_item(
    schema: DatasetSchema, raw: Any, index: int, vector_dim: int
) -> tuple[ValidItem | None, list[ItemError]]:
    """Return the cleaned item, or None and every rule it breaks. Unknown fields are kept for display."""
    if not isinstance(raw, dict):
        return None, [ItemError(index, None, None, "type", f"item must be a JSON object, got {_kind(raw)}")]
    pk = schema.primary_key
    pk_value = raw.get(pk.name)
    item_id = str(pk_value) if isinstance(pk_value, str | int) and not isinstance(pk_value, bool) else None
    if item_id is not None:
        item_id = scrub(item_id)  # the report is stored and sent as JSON; a bad id is shown with U+FFFD
    errors: list[ItemError] = []
    doc: dict[str, Any] = {}
    for name, value in raw.items():
        # `_vector` is skipped: anything but numbers in it is refused as its own type error
        bad = ("<key>" if isinstance(name, str) and not is_valid_unicode(name)
               else None if name == VECTOR_FIELD else _unicode_problem(name, value))
        if bad is not None:
            errors.append(ItemError(index, item_id, bad, "unicode", f"{bad}: not valid Unicode (a lone surrogate "
                                    "such as \\ud800, or bytes that are not UTF-8); send UTF-8 text"))
            continue
        if name == VECTOR_FIELD:
            continue
        spec = schema.field(name)
        if spec is None or value is None:
            if value is not None:
                doc[name] = value  # unknown field: kept for display_fields
            continue
        problem = _check_field(spec, value)
        if problem:
            errors.append(ItemError(index, item_id, name, problem[0], f"{name}: {problem[1]}"))
        else:
            doc[name] = _normalise(spec, value)
    for spec in schema.fields:
        if (spec.primary_key or spec.required) and raw.get(spec.name) is None:
            errors.append(ItemError(index, item_id, spec.name, "required", f"{spec.name}: is required"))
    vector = raw.get(VECTOR_FIELD)
    if vector is not None:
        problem = _check_vector(vector, vector_dim)
        if problem:
            errors.append(ItemError(index, item_id, VECTOR_FIELD, problem[0], f"{VECTOR_FIELD}: {problem[1]}"))
    if errors:
        return None, errors
    assert item_id is not None
    return ValidItem(id=str(doc[pk.name]), doc=doc, vector=vector, index=index), []
