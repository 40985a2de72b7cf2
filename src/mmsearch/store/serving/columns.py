"""Typed in-memory columns of the filterable and sortable fields, and the filter tree evaluated over them.

A filter is evaluated once per query into a boolean row mask that both recall channels share. The semantics
are those of the Lance predicate in store/lance_filter.py, which the table still answers for `count`:
`must` drops rows without a value; `must_not` keeps them; a range compares integer columns with bounds
rounded into the integers (x > 1.5 is x >= 2) and never matches a missing value; an array field matches
when any element is among the values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from mmsearch.schema.fields import FieldSpec
from mmsearch.schema.filters import And, Filter, Match, Or, Range
from mmsearch.store.serving.arrays import Growable

_NUMPY = {"int32": np.int64, "int64": np.int64, "float": np.float64, "bool": np.bool_, "string": np.int32}


class Strings:
    """String values as dense int32 codes; a value never seen has no code, so it matches nothing."""

    def __init__(self, values: list[str] | None = None) -> None:
        self.values: list[str] = []
        self.codes: dict[str, int] = {}
        for v in values or []:
            self.code(v)

    def code(self, v: str) -> int:
        c = self.codes.get(v)
        if c is None:
            c = self.codes[v] = len(self.values)
            self.values.append(v)
        return c

    def lookup(self, values: tuple[Any, ...]) -> np.ndarray:
        return np.array([self.codes[v] for v in values if v in self.codes], dtype=np.int32)


class Column:
    """One field. Scalars: a value per row plus a validity mask. Arrays: every element with its owning row."""

    def __init__(self, spec: FieldSpec) -> None:
        self.spec = spec
        self.is_array = spec.is_array
        self.kind = spec.element_type
        self.strings = Strings() if self.kind == "string" else None
        dtype = _NUMPY[self.kind]
        if self.is_array:
            self.elements = Growable(dtype)
            self.owners = Growable(np.int64)
        else:
            self.values = Growable(dtype)
            self.valid = Growable(np.bool_)

    def _encode(self, v: Any) -> Any:
        return self.strings.code(v) if self.strings is not None else v

    def extend(self, first_row: int, values: list[Any]) -> None:
        if self.is_array:
            owners: list[int] = []
            elements: list[Any] = []
            for offset, value in enumerate(values):
                for element in value or ():
                    if element is not None:
                        owners.append(first_row + offset)
                        elements.append(self._encode(element))
            self.owners.extend(np.array(owners, dtype=np.int64))
            self.elements.extend(np.array(elements, dtype=self.elements.view().dtype))
            return
        valid = np.array([v is not None for v in values], dtype=np.bool_)
        fill = 0 if self.kind != "bool" else False
        self.values.extend(np.array([fill if v is None else self._encode(v) for v in values],
                                    dtype=self.values.view().dtype))
        self.valid.extend(valid)

    def snapshot(self, rows: int) -> ColumnView:
        if self.is_array:
            return ColumnView(self.spec, rows, self.strings, elements=self.elements.view(), owners=self.owners.view())
        return ColumnView(self.spec, rows, self.strings, values=self.values.view(), valid=self.valid.view())

    def arrays(self) -> dict[str, np.ndarray]:
        if self.is_array:
            return {"elements": self.elements.view(), "owners": self.owners.view()}
        return {"values": self.values.view(), "valid": self.valid.view()}

    def load(self, arrays: dict[str, np.ndarray], strings: list[str] | None) -> None:
        if self.strings is not None:
            self.strings = Strings(strings)
        for name, array in arrays.items():
            setattr(self, name, Growable.of(array))


class ColumnView:
    """A column as of one published version: read-only arrays, safe to use while the column grows."""

    def __init__(self, spec: FieldSpec, rows: int, strings: Strings | None, **arrays: np.ndarray) -> None:
        self.spec = spec
        self.rows = rows
        self.strings = strings
        self.values = arrays.get("values")
        self.valid = arrays.get("valid")
        self.elements = arrays.get("elements")
        self.owners = arrays.get("owners")

    def _codes(self, values: tuple[Any, ...]) -> np.ndarray:
        if self.strings is not None:
            return self.strings.lookup(values)
        dtype = self.values.dtype if self.values is not None else self.elements.dtype
        return np.array(values, dtype=dtype)

    def _member(self, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """`values` in `codes`: a lookup table over string codes (dense and small) and bools, a comparison per
        value for a few integers, np.isin (sorting) for many."""
        if self.strings is not None:
            table = np.zeros(len(self.strings.values) + 1, dtype=bool)
            table[codes] = True
            return np.take(table, values)  # twice as fast as table[values] (measured at 1M rows: 1.1 vs 2.3 ms)
        if len(codes) <= 8:
            out = values == codes[0]
            for c in codes[1:]:
                out |= values == c
            return out
        return np.isin(values, codes)

    def match(self, f: Match, at: np.ndarray | None = None) -> np.ndarray:
        """The condition over every row, or over the rows `at` only (a mask as long as `at`)."""
        codes = self._codes(f.values)
        if self.elements is not None:
            hit = np.zeros(self.rows, dtype=bool)
            if len(codes):
                hit[self.owners[self._member(self.elements, codes)]] = True
            hit = hit if at is None else hit[at]
            return ~hit if f.negate else hit
        valid, values = (self.valid, self.values) if at is None else (self.valid[at], self.values[at])
        hit = valid & self._member(values, codes) if len(codes) else np.zeros(len(valid), dtype=bool)
        return ~hit if f.negate else hit  # must_not keeps rows without a value, as SQL `IS NULL OR NOT IN`

    def range(self, f: Range, at: np.ndarray | None = None) -> np.ndarray:
        keep = self.valid.copy() if at is None else self.valid[at]
        v = self.values if at is None else self.values[at]
        for key, op in (("gte", np.greater_equal), ("gt", np.greater), ("lte", np.less_equal), ("lt", np.less)):
            bound = getattr(f, key)
            if bound is None:
                continue
            if f.type != "float":
                bound = math.ceil(bound) if key in ("gte", "lt") else math.floor(bound)
            keep &= op(v, bound)
        return keep

    def take(self, rows: np.ndarray) -> list[Any]:
        """The rows' values as stored (None where missing); arrays as lists."""
        if self.elements is not None:
            return [[self._decode(x) for x in self.elements[self.owners == r].tolist()] for r in rows.tolist()]
        valid = self.valid[rows].tolist()
        values = self.values[rows].tolist()  # numpy bools come back as Python bools, ints as ints
        if self.strings is not None:
            names = self.strings.values
            return [names[v] if ok else None for v, ok in zip(values, valid, strict=True)]
        return [v if ok else None for v, ok in zip(values, valid, strict=True)]

    def _decode(self, v: Any) -> Any:
        if self.strings is not None:
            return self.strings.values[v]
        if self.spec.element_type == "bool":
            return bool(v)
        return v


def evaluate(
    f: Filter, columns: dict[str, ColumnView], rows: int, leaf: Callable[[Match | Range], np.ndarray] | None = None,
) -> np.ndarray:
    """The filter as a boolean mask over `rows` rows. `leaf`, when given, answers the must/must_not/range
    conditions (a cache: the same condition recurs across queries far more often than a whole filter does);
    its arrays are never written to."""
    if isinstance(f, And | Or):
        out = evaluate(f.conds[0], columns, rows, leaf).copy()
        for c in f.conds[1:]:
            if isinstance(f, And):
                out &= evaluate(c, columns, rows, leaf)
            else:
                out |= evaluate(c, columns, rows, leaf)
        return out
    if leaf is not None:
        return leaf(f)
    return condition(f, columns)


def condition(f: Match | Range, columns: dict[str, ColumnView], at: np.ndarray | None = None) -> np.ndarray:
    """One condition's mask over every row, or over the rows `at` only."""
    col = columns[f.field]
    if isinstance(f, Match):
        return col.match(f, at)
    if isinstance(f, Range):
        return col.range(f, at)
    raise TypeError(f"not a filter: {f!r}")
