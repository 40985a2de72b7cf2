"""A dataset's items written back out as they were imported (`mmsearch export`), so that importing the file
elsewhere gives the same results: JSON Lines (streamed) or Parquet, `_vector` added with `vectors=True`.

Fields mmsearch writes itself (`_ocr`, a video's generated title and summary, …) are left out: the import
makes them again, and an item may not carry them. Parquet needs one type per field across all items; a
catalogue where a field is a string in one item and a list in another is refused with a message pointing to
JSON Lines, which keeps every item exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mmsearch.errors import InvalidArgument
from mmsearch.schema.fields import RESERVED_NAMES

FORMATS = (".jsonl", ".ndjson", ".parquet")


def _items(rows: Iterator[tuple[str, dict[str, Any], list[float] | None]], vectors: bool,
           on_progress: Callable[[int], None] | None) -> Iterator[dict[str, Any]]:
    for n, (_, doc, vec) in enumerate(rows, 1):
        item = {k: v for k, v in doc.items() if k not in RESERVED_NAMES}
        if vectors and vec is not None:
            item["_vector"] = [float(x) for x in vec]
        if on_progress is not None and n % 1_000 == 0:
            on_progress(n)
        yield item


def export_items(rows: Iterator[tuple[str, dict[str, Any], list[float] | None]], path: Path, vectors: bool = False,
                 on_progress: Callable[[int], None] | None = None) -> int:
    """Write the items to `path` (its suffix picks the format) through a temporary file; the number written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InvalidArgument(f"file: {path.name}: export writes {', '.join(FORMATS)}", field="file")
    part = path.with_name(f".{path.name}.part")
    count = 0
    try:
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            items = list(_items(rows, vectors, on_progress))
            try:
                table = pa.Table.from_pylist(items)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InvalidArgument(
                    f"file: Parquet needs one type per field and these items mix them ({exc}); export to .jsonl, "
                    "which keeps every item as it is", field="file") from None
            pq.write_table(table, part)
            count = len(items)
        else:
            with part.open("w", encoding="utf-8") as fh:
                for item in _items(rows, vectors, on_progress):
                    fh.write(json.dumps(item, ensure_ascii=False) + "\n")
                    count += 1
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    if on_progress is not None:
        on_progress(count)
    return count
