"""LAION/Wukong-style metadata: column aliases, both file formats, and bad rows reported by index."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmsearch.errors import InvalidArgument
from mmsearch.ingest.web.corpus import SourceError, parse_time
from mmsearch.ingest.web.laion import count_rows, read_laion, row_to_image
from mmsearch.ingest.web.types import WebImage


def test_aliases_map_to_web_image_fields():
    laion = row_to_image({"URL": " https://a.example/x.jpg ", "TEXT": "a lion", "WIDTH": 640.0, "HEIGHT": 480}, 0)
    assert laion == WebImage(image_url="https://a.example/x.jpg", host_page_url="", title="a lion", width=640,
                             height=480)
    wukong = row_to_image({"url": "http://b.example/y.png", "caption": "狮子", "page_url": "http://b.example/p",
                           "published_time": "2025-04-12T12:47:54+08:00"}, 1)
    assert isinstance(wukong, WebImage)
    assert (wukong.title, wukong.host_page_url, wukong.published_time) == (
        "狮子", "http://b.example/p", "2025-04-12T12:47:54+08:00")
    # first non-empty alias wins; NaN sizes (pandas' missing) and empty strings count as absent
    row = {"image_url": "https://c.example/z.webp", "caption": "", "title": "fallback title",
           "hostPageUrl": "https://c.example/", "width": float("nan"), "time": 1_700_000_000}
    img = row_to_image(row, 2)
    assert isinstance(img, WebImage)
    assert (img.title, img.width, img.published_time) == ("fallback title", None, "2023-11-14T22:13:20+00:00")


@pytest.mark.parametrize(("row", "reason"), [
    ({"caption": "x"}, "imageUrl: missing"),
    ({"url": "ftp://x/y.png"}, "is not an http(s) URL"),
    ({"url": 42}, "imageUrl: missing"),
    ({"url": "http://x/y.png", "page_url": "javascript:alert(1)"}, "hostPageUrl"),
    ({"url": "http://x/y.png", "width": "wide"}, "width: expected a number"),
    ({"url": "http://x/y.png", "height": -3}, "height: expected a whole number"),
    ({"url": "http://x/y.png", "date": "yesterday"}, "publishedTime:"),
    (["not", "an", "object"], "row must be an object"),
])
def test_bad_rows_say_why(row, reason):
    out = row_to_image(row, 7, "f.jsonl")
    assert isinstance(out, SourceError) and out.index == 7 and out.source == "f.jsonl"
    assert reason in out.reason


def test_parse_time_forms():
    assert parse_time("2024-12-18T22:24:24+08:00").isoformat() == "2024-12-18T22:24:24+08:00"
    assert parse_time("2024-12-18T14:24:24Z").isoformat() == "2024-12-18T14:24:24+00:00"
    assert parse_time("2024-12-18").isoformat() == "2024-12-18T00:00:00+00:00"
    assert parse_time("1700000000000").isoformat() == "2023-11-14T22:13:20+00:00"  # milliseconds
    assert parse_time(None) is None and parse_time("") is None
    with pytest.raises(ValueError):
        parse_time("18/12/2024")


def test_jsonl_and_parquet_read_in_order(tmp_path: Path):
    jsonl = tmp_path / "rows.ndjson"
    jsonl.write_text(json.dumps({"url": "http://a/1.jpg", "caption": "one"}) + "\n\n{broken\n"
                     + json.dumps({"url": "http://a/2.jpg", "TEXT": "two"}) + "\n", encoding="utf-8")
    rows = list(read_laion(jsonl))
    assert [type(r).__name__ for r in rows] == ["WebImage", "SourceError", "WebImage"]
    assert rows[1].index == 1 and "not valid JSON" in rows[1].reason
    assert count_rows(jsonl) == 3

    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"URL": ["http://a/1.jpg", None, "http://a/3.jpg"], "TEXT": ["one", "two", None],
                             "WIDTH": [100, 200, None], "HEIGHT": [50, 60, None]}), parquet)
    rows = list(read_laion(parquet))
    assert count_rows(parquet) == 3
    assert isinstance(rows[0], WebImage) and (rows[0].width, rows[0].height) == (100, 50)
    assert isinstance(rows[1], SourceError) and rows[1].index == 1
    assert isinstance(rows[2], WebImage) and rows[2].title == "" and rows[2].width is None


def test_unsupported_or_broken_files(tmp_path: Path):
    csv = tmp_path / "rows.csv"
    csv.write_text("url\nhttp://a/1.jpg\n")
    with pytest.raises(InvalidArgument, match="unsupported format"):
        list(read_laion(csv))
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"not parquet at all")
    with pytest.raises(InvalidArgument, match="not a readable parquet file"):
        list(read_laion(fake))
