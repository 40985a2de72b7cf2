"""The web corpus import path end to end: real HTTP on loopback, real LanceDB, real catalog, real OCR.

Pictures are generated: distinct block patterns, a resized re-encoded copy (a near-duplicate), a
byte-identical copy under another URL, a 1x1 tracking pixel, a 16x16 icon and an HTML page served at an
image URL.
"""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders import HashingEncoder
from mmsearch.errors import InvalidArgument
from mmsearch.ingest.web.corpus import (
    CorpusConfig,
    WebCorpus,
    copy_rank,
    hamming,
    perceptual_hash,
    site_domains,
    title_tier,
)
from mmsearch.ingest.web.laion import read_laion
from mmsearch.ingest.web.types import WebImage
from mmsearch.search import SearchRequest
from render import render_text

LOOPBACK = ("127.0.0.1/32",)


def blocks(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A coarse random block pattern: survives resizing and JPEG, far from other seeds in phash."""
    grid = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(grid, "RGB").resize(size, Image.Resampling.NEAREST)


def encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


class Site:
    """A threaded HTTP server on 127.0.0.1 serving fixed bodies; it records every path asked for."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, bytes]] = {}
        self.requested: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requested.append(self.path)
                found = site.files.get(self.path)
                if found is None:
                    self.send_error(404)
                    return
                ctype, body = found
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def put(self, path: str, body: bytes, ctype: str = "image/png") -> str:
        self.files[path] = (ctype, body)
        return self.url(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    s = Site()
    yield s
    s.close()


def engine(home: Path, ocr: bool = False) -> MMSearch:
    return MMSearch(Settings(home=home, ocr=ocr), encoder=HashingEncoder(32))


def corpus(mm: MMSearch, **kw) -> WebCorpus:
    from mmsearch.media import FetchConfig

    return WebCorpus(mm, "web", CorpusConfig(fetch=FetchConfig(allowed_networks=LOOPBACK, retries=0), **kw))


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return path


@pytest.fixture
def gallery(site, tmp_path):
    """The metadata file of the scenario and the URLs it names."""
    lion = blocks(1)
    lion_png = encode(lion)
    near = encode(lion.resize((288, 216), Image.Resampling.BILINEAR), "JPEG", quality=80)
    assert hamming(perceptual_hash(lion), perceptual_hash(Image.open(io.BytesIO(near)).convert("RGB"))) <= 6
    ocean_png = encode(blocks(2))
    assert hamming(perceptual_hash(lion), perceptual_hash(blocks(2))) > 20
    u = {
        "lion": site.put("/img/lion.png", lion_png),
        "lion_near": site.put("/img/lion-small.jpg", near, "image/jpeg"),
        "lion_same": site.put("/cdn/copy-of-lion.png", lion_png),
        "ocean": site.put("/img/ocean.png", ocean_png),
        "ocean_same": site.put("/mirror/ocean.png", ocean_png),
        "pixel": site.put("/t.gif", encode(Image.new("RGB", (1, 1)), "GIF"), "image/gif"),
        "icon": site.put("/favicon.png", encode(blocks(3, (16, 16)))),
        "html": site.put("/photo.jpg", b"<!doctype html><html><body>not a picture</body></html>", "image/jpeg"),
        "stated_small": site.url("/never-fetched.png"),
        "missing": site.url("/gone.png"),
    }
    rows = [
        # the lion three times: a generic title but the newest date, a good title, a good title and newer
        {"url": u["lion"], "caption": "IMG_1234.jpg", "page_url": "http://www.360doc.com/a/1",
         "publishedTime": "2025-09-01T10:00:00+08:00"},
        {"url": u["lion_near"], "caption": "草原上晒太阳的狮子", "page_url": "https://m.weibo.com/status/9",
         "time": "2024-05-01T08:00:00+08:00"},
        {"URL": u["lion_same"], "TEXT": "草原上晒太阳的狮子 一家三口", "source_url": "http://news.sohu.com/a/945",
         "published_time": "2025-03-01 12:00:00+08:00"},
        {"url": u["ocean"], "caption": "Blue ocean waves at dawn", "page_url": "https://travel.example.org/sea",
         "date": "2023-01-02"},
        {"url": u["ocean_same"], "caption": "", "page_url": "https://mirror.example.net/x"},
        {"url": u["pixel"], "caption": "tracking pixel"},
        {"url": u["icon"], "caption": "site icon"},
        {"url": u["html"], "caption": "a page pretending to be a jpeg"},
        {"url": u["stated_small"], "caption": "tiny", "width": 20, "height": 20},
        {"url": "data:image/png;base64,iVBORw0KGgo=", "caption": "inline"},
        {"url": u["missing"], "caption": "dead link"},
        {"caption": "no image url"},
        "{this is not json",
        {"url": u["lion"], "caption": "bad size", "width": "wide"},
    ]
    return write_jsonl(tmp_path / "laion.jsonl", rows), u


def only(mm: MMSearch, title_word: str):
    hits = mm.search("web", SearchRequest(text=title_word, page_size=10)).hits
    assert hits, title_word
    return hits


def test_import_dedups_skips_and_reports(site, gallery, tmp_path):
    path, u = gallery
    mm = engine(tmp_path / "home")
    with corpus(mm) as c:
        report = c.add(read_laion(path))
    r = report.as_dict()
    assert (r["seen"], r["bad_rows"]) == (11, 3), r
    assert (r["skipped_small"], r["skipped_not_image"], r["skipped_data_uri"], r["failed"]) == (3, 1, 1, 1), r
    assert (r["imported"], r["duplicates_merged"], r["updated"]) == (2, 3, 0), r
    assert r["downloaded"] == 5 + 2  # five pictures, the pixel and the icon (the HTML is refused while streaming)
    assert "/never-fetched.png" not in site.requested  # stated too small: not downloaded at all
    reasons = {f.get("row", f.get("url")): f["reason"] for f in r["failures"]}
    assert "404" in reasons[u["missing"]]
    assert "imageUrl: missing" in reasons[11] and "not valid JSON" in reasons[12] and "width" in reasons[13]

    info = mm.dataset("web")
    assert info.type == "web" and mm.store.count(info) == 2
    lion = only(mm, "狮子")[0].fields
    # the good titles outrank the newer generic one; of the two good ones the newer copy wins, whole
    assert lion["title"] == "草原上晒太阳的狮子 一家三口"
    assert lion["publishedTime"] == "2025-03-01T12:00:00+08:00"
    assert lion["hostPageUrl"] == "http://news.sohu.com/a/945" and lion["imageUrl"] == u["lion_same"]
    assert (lion["site"], lion["site_domains"]) == ("news.sohu.com", ["news.sohu.com", "sohu.com"])
    assert (lion["width"], lion["height"]) == (320, 240) and len(lion["phash"]) == 16
    ocean = only(mm, "ocean")[0].fields
    assert ocean["title"] == "Blue ocean waves at dawn" and ocean["publishedTime"] == "2023-01-02T00:00:00+00:00"
    assert ocean["site_domains"] == ["travel.example.org", "example.org"]

    def visible(excluded: list[str]) -> set[str]:
        flt = {"op": "must_not", "field": "site_domains", "conds": excluded}
        hits = mm.search("web", SearchRequest(vector=np.ones(32), channels=("vlm",), filter=flt)).hits
        return {h.fields["title"][:4] for h in hits}

    assert visible(["sohu.com"]) == {"Blue"}  # a parent domain excludes its subdomains
    assert visible(["example.org"]) == {"草原上晒"}
    assert visible(["ample.org", "www.sohu.com"]) == {"Blue", "草原上晒"}  # not a suffix match, not a sibling
    assert mm.stats("web")["vectors"] == 2


def test_reimport_is_idempotent_and_dedup_persists(site, gallery, tmp_path):
    path, _ = gallery
    home = tmp_path / "home"
    with corpus(engine(home)) as c:
        c.add(read_laion(path))
    before = {h.id: h.fields for h in engine(home).search("web", SearchRequest(text="狮子 ocean")).hits}

    mm = engine(home)  # a new process's view: the duplicate index lives in the catalog database
    with corpus(mm) as c:
        again = c.add(read_laion(path))
    assert (again.imported, again.updated) == (0, 0)
    assert again.unchanged == 2 and again.duplicates_merged == 3
    after = {h.id: h.fields for h in mm.search("web", SearchRequest(text="狮子 ocean")).hits}
    assert after == before

    # a resized copy of the ocean from a parquet file (other column names), newer and still well titled:
    # it joins the ocean's item across imports and becomes its representative
    ocean = blocks(2).resize((400, 300), Image.Resampling.BILINEAR)
    url = site.put("/new/ocean-big.jpg", encode(ocean, "JPEG", quality=90), "image/jpeg")
    table = pa.table({"URL": [url], "TEXT": ["Blue ocean waves at dawn, wide"], "WIDTH": [400], "HEIGHT": [300],
                      "time": ["2025-10-01T00:00:00Z"]})
    pq.write_table(table, tmp_path / "more.parquet")
    with corpus(mm) as c:
        more = c.add(read_laion(tmp_path / "more.parquet"))
    assert (more.imported, more.updated, more.duplicates_merged) == (0, 1, 1)
    info = mm.dataset("web")
    assert mm.store.count(info) == 2
    ocean_doc = only(mm, "ocean")[0].fields
    assert ocean_doc["id"] in before  # the item keeps its id
    assert ocean_doc["imageUrl"] == url and (ocean_doc["width"], ocean_doc["height"]) == (400, 300)
    assert ocean_doc["hostPageUrl"] == site.url("/")  # no page URL in the row: the image's origin
    assert ocean_doc["publishedTime"] == "2025-10-01T00:00:00+00:00" and ocean_doc["site"] == "127.0.0.1"


def test_ocr_text_and_bytes_supplied(tmp_path):
    """Text drawn in a picture finds it; a builder that already has the bytes (WARC) downloads nothing; the
    alt text stands in for a missing title."""
    mm = engine(tmp_path / "home", ocr=True)
    poster = encode(render_text(["WAVELENGTH 7731"], size=(480, 140), px=48))
    with corpus(mm) as c:
        report = c.add([WebImage(image_url="http://127.0.0.1:9/poster.png", data=poster,
                                 host_page_url="http://127.0.0.1:9/page", alt="concert poster")])
    assert (report.imported, report.downloaded, report.failed) == (1, 0, 0), report.as_dict()
    hits = mm.search("web", SearchRequest(text="wavelength", channels=("text",))).hits
    assert [h.fields["title"] for h in hits] == ["concert poster"]


def test_dedup_ignores_other_datasets_and_config_limits(tmp_path):
    mm = engine(tmp_path / "home")
    data = encode(blocks(7))
    for name in ("web", "web2"):
        with WebCorpus(mm, name, CorpusConfig()) as c:
            report = c.add([WebImage(image_url=f"http://127.0.0.1:9/{name}.png", host_page_url="",
                                     title="same picture", data=data)])
        assert report.imported == 1
    with pytest.raises(InvalidArgument, match="phash_distance"):
        CorpusConfig(phash_distance=8)
    mm.create_dataset("shop", {"fields": [{"name": "id", "type": "string", "primary_key": True}]})
    with pytest.raises(InvalidArgument, match="not web"), WebCorpus(mm, "shop") as c:
        c.add([])


def test_site_domains_and_title_rank():
    assert site_domains("news.sohu.com") == ["news.sohu.com", "sohu.com"]
    assert site_domains("a.b.example.com.cn") == ["a.b.example.com.cn", "b.example.com.cn", "example.com.cn",
                                                  "com.cn"]
    assert site_domains("localhost") == ["localhost"] and site_domains("10.0.0.1") == ["10.0.0.1"]
    assert site_domains("") == []
    titles = ("", "image", "IMG_2024.JPG", "DSC01234", "9f8e7d6c5b", "https://x.com/a", "图片", "狮子", "Lion",
              "狮子在草原上", "A lion resting")
    assert [title_tier(t) for t in titles] == [0, 1, 1, 1, 1, 1, 1, 2, 2, 3, 3]
    # tier first, then newer, then longer (capped)
    assert copy_rank("狮子在草原上", 1) > copy_rank("photo", 10**9)
    assert copy_rank("狮子在草原上", 2) > copy_rank("狮子在草原上晒太阳", 1)
    assert copy_rank("狮子在草原上晒太阳", 1) > copy_rank("狮子在草原上", 1)
    assert copy_rank("x" * 500 + " lion", None) == copy_rank("y" * 200 + " lion", None)


def test_cli_import_web(site, gallery, tmp_path, monkeypatch):
    path, _ = gallery
    monkeypatch.setenv("MMSEARCH_ALLOW_PRIVATE_NETWORKS", "true")  # the CLI uses the engine's fetcher settings
    monkeypatch.setenv("MMSEARCH_OCR", "false")
    runner = CliRunner()
    home = str(tmp_path / "cli-home")
    result = runner.invoke(app, ["--home", home, "import-web", str(path), "--min-side", "50", "--workers", "2",
                                 "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    report = json.loads(result.stdout)
    assert (report["dataset"], report["imported"], report["bad_rows"]) == ("web", 2, 3)
    assert report["images_per_second"] > 0

    result = runner.invoke(app, ["--home", home, "import-web", str(path)])
    assert result.exit_code == 0 and "already indexed" in result.stdout and "failures and bad rows" in result.stdout

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"caption": "no url"}, {"url": "ftp://x/y.png"}])
    result = runner.invoke(app, ["--home", home, "import-web", str(bad)])
    assert result.exit_code == 1 and "not an http(s) URL" in result.stdout


def test_near_duplicates_must_look_alike_not_only_hash_alike(tmp_path):
    """Issue 11: a resized, re-encoded copy merges; flat pictures of other colours or shapes hash alike but are
    other pictures, and so is the same pattern recoloured."""
    mm = engine(tmp_path / "home")
    red, blue = Image.new("RGB", (300, 200), (220, 30, 30)), Image.new("RGB", (300, 200), (30, 30, 220))
    wide = Image.new("RGB", (600, 200), (220, 30, 30))
    assert hamming(perceptual_hash(red), perceptual_hash(blue)) == 0  # the hash alone cannot tell them apart
    pattern = blocks(11)
    inverted = Image.fromarray(255 - np.asarray(pattern.convert("RGB")))
    copies = [
        ("red", encode(red)), ("blue", encode(blue)), ("wide", encode(wide)),
        ("pattern", encode(pattern)),
        ("pattern resized", encode(pattern.resize((240, 180)), "JPEG", quality=80)),  # same picture: merges
        ("pattern tinted", encode(Image.fromarray(np.clip(np.asarray(pattern.convert("RGB")) * [1.0, 0.3, 0.3], 0,
                                                          255).astype(np.uint8)))),
        ("pattern inverted", encode(inverted)),
    ]
    with corpus(mm) as c:
        report = c.add([WebImage(image_url=f"http://127.0.0.1:9/{n.replace(' ', '-')}.png", host_page_url="",
                                 title=n, data=data) for n, data in copies])
    assert report.duplicates_merged == 1, report.as_dict()
    assert report.imported == len(copies) - 1
