"""Read LAION/Wukong-style image metadata (.parquet or .jsonl) into `WebImage`s for the web corpus.

Column names vary between releases, so each field accepts aliases (first present, non-empty one wins):

    imageUrl     url, URL, image_url, imageUrl, img_url
    title        caption, TEXT, text, title, alt
    hostPageUrl  page_url, pageUrl, hostPageUrl, source_url, page
    width        width, WIDTH, original_width
    height       height, HEIGHT, original_height
    publishedTime  publishedTime, published_time, time, date

Without a page URL (LAION has none) the corpus uses the image URL's origin as `hostPageUrl`. A row that
cannot be used (not an object, no http(s) image URL, a width that is not a number, an unreadable time)
becomes a `SourceError` with its 0-based row index and the reason: it is reported, and the import goes on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmsearch.errors import InvalidArgument
from mmsearch.ingest.web.corpus import SourceError, format_time, parse_time
from mmsearch.ingest.web.types import WebImage

SUFFIXES = (".parquet", ".jsonl", ".ndjson")
ALIASES: dict[str, tuple[str, ...]] = {
    "image_url": ("url", "URL", "image_url", "imageUrl", "img_url"),
    "title": ("caption", "TEXT", "text", "title", "alt"),
    "host_page_url": ("page_url", "pageUrl", "hostPageUrl", "source_url", "page"),
    "width": ("width", "WIDTH", "original_width"),
    "height": ("height", "HEIGHT", "original_height"),
    "published_time": ("publishedTime", "published_time", "time", "date"),
}
PARQUET_BATCH = 4_096

Row = WebImage | SourceError


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidArgument(f"file: {path.name}: unsupported format; use .parquet or .jsonl", field="file")
    return ".jsonl" if suffix == ".ndjson" else suffix


def count_rows(path: Path) -> int:
    """Rows in the file, for progress bars (parquet: from the footer; jsonl: non-blank lines)."""
    if _format(path) == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _raw_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row index, dict) or (row index, SourceError) for a line that is not JSON."""
    if _format(path) == ".parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not parquet
            raise InvalidArgument(f"file: {path.name} is not a readable parquet file: {exc}", field="file") from None
        index = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH):
            for row in batch.to_pylist():
                yield index, row
                index += 1
        return
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        index = 0
        for line in fh:
            if not line.strip():
                continue
            try:
                yield index, json.loads(line)
            except json.JSONDecodeError as exc:
                yield index, SourceError(index, f"not valid JSON: {exc.msg} (column {exc.colno})", path.name)
            index += 1


def _pick(row: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, str) and not value.strip():
            continue
        return value
    return None


def _size(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number of pixels, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number of pixels, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or not number.is_integer():
        raise ValueError(f"{name}: expected a whole number of pixels >= 0, got {value!r}")
    return int(number) or None


def row_to_image(row: Any, index: int, source: str = "") -> Row:
    """One metadata row as a WebImage, or the reason it cannot be one."""
    if not isinstance(row, dict):
        return SourceError(index, f"row must be an object, got {type(row).__name__}", source)
    url = _pick(row, ALIASES["image_url"])
    if not isinstance(url, str):
        names = "|".join(ALIASES["image_url"])
        return SourceError(index, f"imageUrl: missing; expected a string in one of {names}", source)
    url = url.strip()
    if not url.lower().startswith(("http://", "https://", "data:")):
        return SourceError(index, f"imageUrl: {url[:100]!r} is not an http(s) URL", source)
    title = _pick(row, ALIASES["title"])
    page = _pick(row, ALIASES["host_page_url"])
    if page is not None and not (isinstance(page, str) and page.strip().lower().startswith(("http://", "https://"))):
        return SourceError(index, f"hostPageUrl: {str(page)[:100]!r} is not an http(s) URL", source)
    try:
        width = _size(_pick(row, ALIASES["width"]), "width")
        height = _size(_pick(row, ALIASES["height"]), "height")
        published = parse_time(_pick(row, ALIASES["published_time"]))
    except (ValueError, OverflowError, OSError) as exc:
        message = str(exc)
        if not message.startswith(("width", "height")):
            message = f"publishedTime: {message}"
        return SourceError(index, message, source)
    return WebImage(
        image_url=url,
        host_page_url=page.strip() if isinstance(page, str) else "",
        title=str(title) if title is not None else "",
        published_time=format_time(published) if published else None,
        width=width,
        height=height,
    )


def read_laion(path: Path) -> Iterator[Row]:
    """Every row of a LAION/Wukong-style metadata file, in order: a WebImage or a SourceError."""
    path = Path(path)
    for index, raw in _raw_rows(path):
        yield raw if isinstance(raw, SourceError) else row_to_image(raw, index, path.name)
