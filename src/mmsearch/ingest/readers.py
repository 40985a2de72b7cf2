"""Read items from .jsonl/.ndjson, .json (an array), .csv and .parquet files, one at a time.

Each reader yields (index, item); an unreadable record yields (index, ItemError) instead, so one
bad line never stops an import. Bytes that are not UTF-8 are decoded with `surrogateescape`: they become lone
surrogates in that item's strings, which validation rejects as that item's `unicode` error.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmsearch.errors import InvalidArgument
from mmsearch.schema.fields import MEDIA_TYPES, DatasetSchema
from mmsearch.schema.validate import ItemError

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
Record = tuple[int, Any]


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidArgument(f"file: {path.name}: unsupported format; use {', '.join(SUFFIXES)}", field="file")
    return ".jsonl" if suffix == ".ndjson" else suffix


def count_items(path: Path) -> int | None:
    """Cheap total for progress bars (None when it would need a full parse)."""
    fmt = _format(path)
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if fmt in (".jsonl", ".csv"):
        with path.open("rb") as fh:
            lines = sum(1 for line in fh if line.strip())
        return max(lines - 1, 0) if fmt == ".csv" else lines
    return None


def read_items(path: Path, schema: DatasetSchema) -> Iterator[Record]:
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"file: {path} does not exist", field="file")
    fmt = _format(path)
    if fmt == ".jsonl":
        yield from _jsonl(path)
    elif fmt == ".json":
        yield from _json(path)
    elif fmt == ".csv":
        yield from _csv(path, schema)
    else:
        yield from _parquet(path)


def _jsonl(path: Path) -> Iterator[Record]:
    index = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            line = raw.decode("utf-8", errors="surrogateescape")
            try:
                yield index, json.loads(line)
            except json.JSONDecodeError as exc:
                yield index, ItemError(index, None, None, "json", f"line {lineno}: invalid JSON: {exc.msg}")
            except RecursionError:
                yield index, ItemError(index, None, None, "json", f"line {lineno}: JSON nested too deeply")
            index += 1


def _json(path: Path) -> Iterator[Record]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig", errors="surrogateescape"))
    except json.JSONDecodeError as exc:
        where = f"file: {path.name}: invalid JSON at line {exc.lineno}"
        raise InvalidArgument(f"{where}: {exc.msg}", field="file") from None
    except RecursionError:
        raise InvalidArgument(f"file: {path.name}: JSON nested too deeply", field="file") from None
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        data = data["items"]
    if not isinstance(data, list):
        raise InvalidArgument(f"file: {path.name}: expected a JSON array of items", field="file")
    yield from enumerate(data)


_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def coerce_cell(value: str, type_: str) -> Any:
    """CSV cells are text; turn them into the schema's type. A cell that will not convert is kept
    as text, so validation reports it with the field and rule."""
    v = value.strip()
    try:
        if type_ in ("int32", "int64"):
            return int(v)
        if type_ == "float":
            return float(v)
        if type_ == "bool":
            low = v.lower()
            return True if low in _TRUE else False if low in _FALSE else value
        if type_.startswith("array<") or type_ in ("object", "geo_point"):
            return json.loads(v)
        if type_ in MEDIA_TYPES and v[:1] in "[{":
            return json.loads(v)
    except (ValueError, json.JSONDecodeError):
        return value
    return value


def _csv(path: Path, schema: DatasetSchema) -> Iterator[Record]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        for index, row in enumerate(csv.DictReader(fh)):
            item: dict[str, Any] = {}
            for name, cell in row.items():
                if name is None or cell is None or cell == "":
                    continue  # extra cells without a header, or empty cells: missing values
                spec = schema.field(name)
                item[name] = coerce_cell(cell, spec.type) if spec else cell
            yield index, item


def to_json_value(v: Any) -> Any:
    """Parquet cells may hold dates, decimals and bytes; items are JSON documents."""
    if isinstance(v, dict):
        return {k: to_json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [to_json_value(x) for x in v]
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return v


def _parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            yield index, {k: to_json_value(v) for k, v in row.items() if v is not None}
            index += 1
