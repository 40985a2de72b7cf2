"""Sorting fused candidates by a field, paging, and choosing display fields."""

from __future__ import annotations

from typing import Any

from mmsearch.errors import InvalidArgument
from mmsearch.schema.fields import DatasetSchema
from mmsearch.search.types import SearchHit

_MISSING = object()


def check_sort(schema: DatasetSchema, sort_by: str | None, sort_order: str) -> None:
    if sort_order not in ("asc", "desc"):
        raise InvalidArgument(f"sort_order: {sort_order!r} must be \"asc\" or \"desc\"", field="sort_order")
    if sort_by is None:
        return
    why = schema.sort_problem(sort_by)
    if why is not None:
        raise InvalidArgument(
            f"sort_by: {sort_by!r} {why}; a sort key is a basic-type field (int32, int64, float, bool, string) "
            "or a path into an object field (field.sub)", field="sort_by"
        )


def _values(doc: Any, path: list[str]) -> list[Any]:
    """All values at a dotted path; lists (array<object>) fan out."""
    if not path:
        return [doc] if doc is not None else []
    if isinstance(doc, list):
        return [v for element in doc for v in _values(element, path)]
    if isinstance(doc, dict) and path[0] in doc:
        return _values(doc[path[0]], path[1:])
    return []


def sort_value(doc: dict[str, Any], sort_by: str, descending: bool) -> Any:
    values = [v for v in _values(doc, sort_by.split(".")) if isinstance(v, bool | int | float | str)]
    if not values:
        return _MISSING
    try:
        return max(values) if descending else min(values)
    except TypeError:
        return values[0]


def _key(v: Any) -> tuple[int, Any]:
    # numbers (and bools) sort among themselves, strings after them; mixed types never raise
    return (1, v) if isinstance(v, str) else (0, float(v))


def sort_hits(hits: list[SearchHit], sort_by: str | None, sort_order: str) -> list[SearchHit]:
    """Stable: equal values keep fused order. Items without the field go last in either order."""
    if not sort_by:
        return hits
    descending = sort_order == "desc"
    if "." not in sort_by:  # a top-level field: its value is a scalar (or missing) in nearly every case
        keyed = [(v if isinstance(v := h.fields.get(sort_by, _MISSING), bool | int | float | str) or v is _MISSING
                  else sort_value(h.fields, sort_by, descending), h) for h in hits]
    else:
        keyed = [(sort_value(h.fields, sort_by, descending), h) for h in hits]
    present = [(v, h) for v, h in keyed if v is not _MISSING]
    missing = [h for v, h in keyed if v is _MISSING]
    if all(not isinstance(v, str) for v, _ in present):  # numbers only (the usual case): plain float keys, no calls
        sign = -1.0 if descending else 1.0
        numbers = [(sign * float(v), n, h) for n, (v, h) in enumerate(present)]
        numbers.sort()  # (key, position): stable, and a hit is never compared
        return [h for _, _, h in numbers] + missing
    present.sort(key=lambda p: _key(p[0]), reverse=descending)
    return [h for _, h in present] + missing


def page(hits: list[SearchHit], page_number: int, page_size: int) -> list[SearchHit]:
    start = (page_number - 1) * page_size
    return hits[start : start + page_size]


def project(fields: dict[str, Any], output_fields: list[str] | None) -> dict[str, Any]:
    """Top-level names only; unknown or nested names are ignored (the spec). None or [] = all fields."""
    if not output_fields:
        return fields
    wanted = set(output_fields)
    return {k: v for k, v in fields.items() if k in wanted}
