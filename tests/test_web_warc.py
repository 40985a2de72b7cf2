"""WARC import end to end: a WARC written from the fixture site, the real extractor, the real corpus (LanceDB).

The site keeps running during the imports, so its request log proves that images came from the WARC's bytes
and not from the network.
"""

from __future__ import annotations

import gzip
import io
import json

import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.errors import InvalidArgument
from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus
from mmsearch.ingest.web.warc import WarcReport, import_warcs, warc_images
from mmsearch.media import FetchConfig
from test_web_crawl import EXPECTED_IMAGES, LOOPBACK, engine, items_by_path
from web_fixture import FixtureSite

# every picture the WARC holds and a page references, big enough for the corpus (sky.png is not in the WARC)
FROM_WARC = EXPECTED_IMAGES - {"/media/sky.png"}


@pytest.fixture
def site():
    with FixtureSite(crawl_delay=None) as s:
        yield s


def corpus(mm) -> WebCorpus:
    return WebCorpus(mm, "web", CorpusConfig(fetch=FetchConfig(allowed_networks=LOOPBACK, retries=0)))


def test_warc_import_uses_the_archived_bytes(site, tmp_path):
    warc = site.write_warc(tmp_path / "site.warc.gz")
    mm = engine(tmp_path / "home")
    with corpus(mm) as c:
        report = import_warcs([warc], c)
    assert site.paths() == []  # nothing fetched: every image came from the WARC, the missing one was dropped
    r = report.as_dict()
    assert (r["files"], r["pages"], r["pages_failed"]) == (1, 7, 0), r
    assert r["image_records"] == len(site.warc_paths()) - 11  # every image response but sky.png
    assert r["images_missing"] == 1 and r["images_to_fetch"] == 0  # sky.png
    assert r["images_from_warc"] == r["images_found"] - 1
    assert r["skipped"] == {"warcinfo record": 1, "request record": len(site.warc_paths()), "HTTP 3xx": 2,
                            "HTTP 4xx": 1, "not HTML (application/pdf)": 1}, r["skipped"]
    items = items_by_path(mm)
    assert set(items) == FROM_WARC, sorted(items)
    assert r["corpus"]["imported"] == len(items)
    assert items["/img/rose.jpg"]["publishedTime"] == "2024-12-18T22:24:24+08:00"
    assert items["/media/sea.jpg"]["publishedTime"] == "2024-06-05T08:30:00+00:00"  # the record's Last-Modified
    assert items["/media/sea.jpg"]["hostPageUrl"] == site.url("/gallery/")
    assert any(t in items["/img/maple.jpg"]["title"] for t in ("红色的枫叶", "北京的秋天"))  # a GBK page
    assert items["/img/moved.png"]["hostPageUrl"] == site.url("/news/moved.html")

    with corpus(mm) as c:  # importing the same archive again changes nothing
        again = import_warcs([warc], c)
    assert again.corpus["imported"] == again.corpus["updated"] == 0
    assert again.corpus["unchanged"] + again.corpus["duplicates_merged"] >= len(items)


def test_warc_fetch_missing_downloads_only_what_the_archive_lacks(site, tmp_path):
    warc = site.write_warc(tmp_path / "site.warc")  # uncompressed this time
    mm = engine(tmp_path / "home")
    with corpus(mm) as c:
        report = import_warcs([warc], c, fetch_missing=True)
    assert site.paths() == ["/media/sky.png"]
    assert report.images_to_fetch == 1 and report.images_missing == 0
    assert "/media/sky.png" in items_by_path(mm)


def test_warc_images_across_files_and_redirects(site, tmp_path):
    """Pages in one file, their images in another; an image reached through a recorded redirect."""
    pages = site.write_warc(tmp_path / "pages.warc.gz", ["/gallery/"])
    images = site.write_warc(tmp_path / "images.warc.gz", ["/media/sea.jpg"])
    report = WarcReport()
    found = {i.image_url: i for i in warc_images([pages, images], report=report)}
    assert found[site.url("/media/sea.jpg")].data == site.images["/media/sea.jpg"]
    assert report.images_missing == 1  # sky.png

    # a redirect record for the image's old URL leads to the archived bytes
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    moved = tmp_path / "moved.warc.gz"
    with open(moved, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        html = f'<html><head><title>t</title></head><body><img src="{site.url("/old/sea.jpg")}" alt="海"></body>'
        writer.write_record(writer.create_warc_record(
            site.url("/old.html"), "response", payload=io.BytesIO(html.encode()),
            http_headers=StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")],
                                          protocol="HTTP/1.1")))
        writer.write_record(writer.create_warc_record(
            site.url("/old/sea.jpg"), "response", payload=io.BytesIO(b""),
            http_headers=StatusAndHeaders("301 Moved", [("Location", "/media/sea.jpg")], protocol="HTTP/1.1")))
    found = list(warc_images([moved, images]))
    assert [(i.image_url, i.data == site.images["/media/sea.jpg"]) for i in found] == [
        (site.url("/old/sea.jpg"), True)]
    assert site.paths() == []


def test_warc_gzipped_as_a_whole_is_refused_with_a_hint(site, tmp_path):
    plain = site.write_warc(tmp_path / "site.warc", gzip=False)
    whole = tmp_path / "whole.warc.gz"
    whole.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(InvalidArgument, match="recompress"):
        list(warc_images([whole]))
    not_warc = tmp_path / "notes.warc"
    not_warc.write_text("hello, not a WARC\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match="not a readable WARC"):
        list(warc_images([not_warc]))


def test_cli_import_warc(site, tmp_path):
    warc = site.write_warc(tmp_path / "site.warc.gz")
    env = {"MMSEARCH_CLIP_MODEL": "none", "MMSEARCH_OCR": "false"}
    runner = CliRunner()
    res = runner.invoke(app, ["--home", str(tmp_path / "home"), "import-warc", str(warc), "--json"], env=env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["dataset"] == "web" and out["pages"] == 7 and out["images_missing"] == 1
    assert out["corpus"]["imported"] >= len(FROM_WARC)
    assert site.paths() == []
    empty = tmp_path / "empty.warc.gz"
    site.write_warc(empty, [])
    res = runner.invoke(app, ["--home", str(tmp_path / "home"), "import-warc", str(empty), "--json"], env=env)
    assert res.exit_code == 1 and json.loads(res.stdout)["pages"] == 0
    res = runner.invoke(app, ["--home", str(tmp_path / "home"), "import-warc", str(warc)], env=env)
    assert res.exit_code == 0, res.output  # already indexed: unchanged items count as usable
    assert "images not in the WARC (dropped)" in res.stdout and "already indexed" in res.stdout
