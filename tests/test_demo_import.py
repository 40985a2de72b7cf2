"""`make run`'s import path (issue 10): OCR results cached by picture hash across imports and engines, OCR in a
process pool giving the same text as in-process, and plain progress lines when stderr is not a terminal."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mmsearch import samples
from mmsearch.cli import app
from mmsearch.commands import progress as progress_mod
from mmsearch.commands.progress import ImportProgress
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.ocr_cache import OCR_CACHE_FILE, OcrCache
from mmsearch.search import SearchRequest
from render import WQY_FONT

needs_font = pytest.mark.skipif(not WQY_FONT.exists(), reason="fonts-wqy-microhei is not installed")


def test_ocr_cache_round_trip_counts_and_versions(tmp_path: Path) -> None:
    cache = OcrCache(tmp_path / OCR_CACHE_FILE, "v1")
    assert cache.get_many(["a", "b"]) == {} and (cache.hits, cache.misses) == (0, 2)
    cache.put_many({"a": "限时特惠", "b": ""})  # no text is an answer too
    again = OcrCache(tmp_path / OCR_CACHE_FILE, "v1")  # another engine, same file
    assert again.get_many(["a", "b", "c"]) == {"a": "限时特惠", "b": ""}
    assert (again.hits, again.misses) == (2, 1)
    assert OcrCache(tmp_path / OCR_CACHE_FILE, "v2").get_many(["a"]) == {}  # other engine options: read afresh


def test_unreadable_ocr_cache_is_a_miss_not_a_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / OCR_CACHE_FILE
    path.write_bytes(b"this is not an sqlite database" * 100)
    cache = OcrCache(path, "v1")
    with caplog.at_level(logging.WARNING, logger="mmsearch.ocr"):
        assert cache.get_many(["a"]) == {}
        cache.put_many({"a": "x"})
    assert "could not be read" in caplog.text and "could not be written" in caplog.text


@needs_font
def test_second_import_takes_ocr_text_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-run (new engine on the same home, new dataset) reads no picture, and the cached words still find items."""
    from mmsearch.encoders.ocr import OcrEngine

    settings = Settings(home=tmp_path, clip_model="none", ocr=True, ocr_workers=1,
                        image_roots=str(samples.SAMPLES_DIR))
    items = samples.load_products()[:10]  # P0000-P0009 say 限时特惠 on the picture only
    first = MMSearch(settings)
    first.create_dataset("demo", samples.load_schema())
    report = first.import_items("demo", items)
    assert report.images["ocr_read"] == 10 and report.images["ocr_cached"] == 0
    assert (tmp_path / OCR_CACHE_FILE).is_file()

    reads: list[object] = []
    real_read = OcrEngine.read
    monkeypatch.setattr(OcrEngine, "read", lambda self, image: reads.append(image) or real_read(self, image))
    second = MMSearch(settings)
    second.create_dataset("again", samples.load_schema())
    report = second.import_items("again", items)
    assert report.images["ocr_read"] == 0 and report.images["ocr_cached"] == 10 and reads == []
    assert second.ocr_cache.hits == 10 and second.ocr_cache.misses == 0
    assert report.images["ocr_chars"] > 0
    hits = second.search("again", SearchRequest(text="限时特惠", page_size=50, channels=("text",))).hits
    assert sorted(h.id for h in hits) == [f"P{n:04d}" for n in range(10)]


@needs_font
def test_pooled_ocr_reads_the_same_text_as_in_process() -> None:
    from PIL import Image

    from mmsearch.encoders.ocr import POOL_MIN_IMAGES, OcrEngine

    paths = sorted(samples.IMAGES_DIR.glob("*.png"))[:POOL_MIN_IMAGES]
    pictures = []
    for path in paths:
        with Image.open(path) as image:
            pictures.append(image.convert("RGB"))
    serial = [r.text for r in OcrEngine(workers=1).read_many(pictures)]
    pooled_engine = OcrEngine(workers=2)
    try:
        pooled = [r.text for r in pooled_engine.read_many(pictures)]
        assert pooled_engine._pool is not None  # the batch really went through worker processes
    finally:
        pooled_engine.close()
    assert pooled == serial and all(serial)


def test_plain_progress_lines_carry_count_rate_and_eta() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=200)
    with ImportProgress("importing", 4, console, interval=0) as progress:
        progress.update(1)
        progress.update(4)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "importing: 4 items"
    assert lines[1].startswith("importing: 1/4 items (25%), ") and "items/s" in lines[1] and "ETA" in lines[1]
    assert lines[-1].startswith("importing: 4/4 items (100%), ") and "ETA" not in lines[-1]


def test_disabled_progress_prints_nothing() -> None:
    stream = io.StringIO()
    with ImportProgress("importing", 4, Console(file=stream, force_terminal=False), disable=True, interval=0) as p:
        p.update(4)
    assert stream.getvalue() == ""


def test_cli_import_prints_progress_lines_when_stderr_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_mod, "PLAIN_INTERVAL_S", 0.0)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"fields": [
        {"name": "item_id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
    ]}))
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"item_id": f"i{n}", "title": f"item {n}"}) + "\n" for n in range(6)))
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    assert runner.invoke(app, [*home, "dataset", "create", "d", "--schema", str(schema)]).exit_code == 0
    result = runner.invoke(app, [*home, "import", "d", str(data), "--batch-size", "2"])
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("importing")]
    assert lines[0] == "importing: 6 items"
    assert any(line.startswith("importing: 2/6 items (33%)") for line in lines), lines
    assert lines[-1].startswith("importing: 6/6 items (100%)")
    assert "\x1b[" not in result.stderr  # no terminal control codes in a log
