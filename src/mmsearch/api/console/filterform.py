"""The playground's filter builder: rows of (field, operator, value) joined by and/or, as the spec's filter JSON.

Rows are `c0.field`, `c0.op`, `c0.value`, `c0.to` in the form or the query string. Values are typed by the
field (comma-separated for must / must_not; from and to for range) and a value that does not fit is passed on
as it is, so the search's own filter check names the field and the rule, exactly as the API would. Groups
nested deeper than one and/or are written as JSON in the builder's text box.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmsearch.schema.fields import INT_RANGES, DatasetSchema

OPS = ("must", "must_not", "range")
JOINS = ("and", "or")
MAX_ROWS = 20
_SPLIT = re.compile(r"\s*[,，、]\s*")


@dataclass(frozen=True)
class Condition:
    field: str = ""
    op: str = "must"
    value: str = ""
    to: str = ""


def conditions_from(params: Mapping[str, Any]) -> list[Condition]:
    """The builder's rows with a field chosen, in order (at most MAX_ROWS)."""
    out = []
    for i in range(MAX_ROWS):
        field = str(params.get(f"c{i}.field") or "").strip()
        if not field:
            continue
        op = str(params.get(f"c{i}.op") or "must")
        out.append(Condition(field=field[:64], op=op if op in OPS else "must",
                             value=str(params.get(f"c{i}.value") or "")[:10_000],
                             to=str(params.get(f"c{i}.to") or "")[:100]))
    return out


def _typed(text: str, type_: str) -> Any:
    """`text` as a value of the field's (element) type, or the text itself when it is not one."""
    t = type_[6:-1] if type_.startswith("array<") else type_
    try:
        if t in INT_RANGES:
            return int(text)
        if t == "float":
            return float(text)
    except ValueError:
        return text
    if t == "bool" and text.lower() in ("true", "false", "1", "0"):
        return text.lower() in ("true", "1")
    return text


def build_filter(conditions: list[Condition], join: str, schema: DatasetSchema) -> dict[str, Any] | None:
    """The spec's filter for the rows: one row is itself, several are joined by `join` (and/or)."""
    parts: list[dict[str, Any]] = []
    for c in conditions:
        spec = schema.field(c.field)
        type_ = spec.type if spec is not None else "string"
        if c.op == "range":
            node: dict[str, Any] = {"op": "range", "field": c.field}
            if c.value.strip():
                node["gte"] = _typed(c.value.strip(), "float" if type_ == "float" else type_)
            if c.to.strip():
                node["lte"] = _typed(c.to.strip(), "float" if type_ == "float" else type_)
            parts.append(node)
        else:
            values = [_typed(v, type_) for v in _SPLIT.split(c.value.strip()) if v]
            parts.append({"op": c.op, "field": c.field, "conds": values})
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return {"op": join if join in JOINS else "and", "conds": parts}
