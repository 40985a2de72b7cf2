"""Web corpus benchmark: crawl, WARC and LAION import rates against a generated loopback site, then the latency of
IQS MultimodalSearch (`POST /search/multimodal`) over the crawled corpus.

The site (built here; tests/web_fixture.py's `FixtureSite` is a fixed 7-page site) is P generated HTML pages
spread over S loopback hosts (127.0.0.1 ... 127.0.0.S, one threaded HTTP/1.1 server each, so `excludeSites` has
real hosts to exclude). Every host serves `/robots.txt` (everything allowed, no Crawl-delay), a home page linking
to all its pages, and pages `/p/N.html` with a title from a small Chinese/English vocabulary, a published time,
links to three other pages of the same host, a 32x32 logo (dropped by the corpus's size filter) and
`--images-per-page` distinct ~300x200 pictures (JPEG and PNG, blocky random colours plus a caption drawn in a
white band, so perceptual hashes differ and OCR has something to read). Duplicates exercise dedup: every 5th
page also shows another page's picture under a second URL (identical bytes), every 10th page a resized,
re-encoded copy of one (a near-duplicate by perceptual hash). Every image is generated before any timing starts.

Measured, each into a fresh data directory with the real library code:

- *crawl*: `Crawler` + `WebCorpus` exactly as `mmsearch crawl` wires them (the sink calls `corpus.add` per batch of
  64 images, which also folds the new rows into the indexes), delay 0, `--per-host` requests in flight per host
  and `--concurrency` in all; OCR off over the whole site, then OCR on over the first `--ocr-pages` pages;
- *WARC*: the same site written as a WARC (gzip per record, request + response records, pages and images), read
  by `import_warcs` (no network: every image's bytes come from the WARC);
- *LAION*: a .jsonl with one row per image URL of the site (`url`, `caption`, `width`, `height`; no page URL, as
  LAION has none), imported like `mmsearch import-web` (8 download workers) from the loopback hosts.

The embedding model is a tiny CLIP-shaped ONNX model (tests/tiny_clip.py, 512-d, `--model tiny`, the default) or
none (`--model none`): import rates exclude a real model's image encoding (bench/encode.py measures that), and
search latency excludes a real text encoder.

Search: `mmsearch serve` (one uvicorn worker) as a separate process on 127.0.0.1 over the crawl's data directory;
a paid account with the highest QPS limit; closed-loop asyncio + httpx clients (keep-alive) send queries made
of words from the page titles, with and without `advancedParams.excludeSites` (one of the S hosts), 1 and 4 at a
time. A request counts as an error unless it answers 200 with at least one image, and (with excludeSites) none
from the excluded host.

Loopback only (the fetchers admit 127.0.0.0/8 through `allowed_networks`; the SSRF guard stays on for the rest):
nothing leaves the machine, and there is no real network latency or bandwidth limit.

    python bench/web.py --pages 500 --ocr-pages 50 --duration 10
    python bench/web.py --pages 50 --ocr-pages 10 --duration 3 --no-record      # quick check

Figures are printed as tables and written to docs/benchmarks.md between `<!-- bench:web N=... -->` markers.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the model hub

import sys

# tests/ holds tiny_clip (a CLIP-shaped ONNX model built on the spot).
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import argparse
import dataclasses
import datetime as dt
import io
import json
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.table import Table

from docs_section import DOC, record_section
from engine import machine
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus, WebImportReport
from mmsearch.ingest.web.crawler import CrawlConfig, Crawler, CrawlState
from mmsearch.ingest.web.laion import read_laion
from mmsearch.ingest.web.types import WebImage
from mmsearch.ingest.web.warc import import_warcs
from mmsearch.media import FetchConfig
from server_process import LoadRun, ServerProcess, measure_load

LOOPBACK = ("127.0.0.0/8",)  # admitted by the fetchers; everything else stays refused by the SSRF guard
DATASET = "web"
SEED = 20241111
DIM = 512

NOUNS = [("狮子", "lion"), ("大象", "elephant"), ("熊猫", "panda"), ("花园", "garden"), ("海边", "beach"),
         ("雪山", "mountain"), ("城市", "city"), ("老虎", "tiger"), ("樱花", "cherry blossom"),
         ("长城", "great wall"), ("故宫", "palace"), ("火锅", "hotpot"), ("高铁", "train"), ("咖啡", "coffee"),
         ("小猫", "cat"), ("小狗", "dog")]
ADJS = ["美丽的", "夜晚的", "春天的", "秋天的", "古老的", "可爱的", "壮观的", "安静的"]


# -- the site ------------------------------------------------------------------------------------------
def picture(seed: int, caption: str, fmt: str, size: tuple[int, int] = (300, 200), quality: int = 88) -> bytes:
    """Blocky random colours (distinct per seed, also to a perceptual hash) with a caption in a white band."""
    rng = np.random.default_rng([SEED, seed])
    blocks = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    img = Image.fromarray(blocks, "RGB").resize((300, 200), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 150, 290, 185), fill=(255, 255, 255))
    draw.text((18, 156), caption, fill=(0, 0, 0), font=ImageFont.load_default(size=20))
    if size != (300, 200):
        img = img.resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


@dataclass
class Page:
    host: str
    path: str
    title: str
    published: str
    links: list[str]
    images: list[tuple[str, str]]  # (path, alt)


class BenchSite:
    """P pages over S loopback hosts; `start()` serves them, `urls`/`pages`/`images` describe them."""

    def __init__(self, pages: int, sites: int, images_per_page: int) -> None:
        self.hosts = [f"127.0.0.{i + 1}" for i in range(sites)]
        self.ports: dict[str, int] = {}
        self.servers: list[ThreadingHTTPServer] = []
        self.pages: dict[tuple[str, str], Page] = {}
        self.images: dict[tuple[str, str], tuple[bytes, str]] = {}  # (host, path) -> (bytes, content type)
        self.requests = 0
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self.exact_copies = self.near_copies = 0
        rng = np.random.default_rng(SEED)
        logo = Image.new("RGB", (32, 32), (200, 30, 30))
        buf = io.BytesIO()
        logo.save(buf, "PNG")
        by_host: dict[str, list[int]] = {h: [] for h in self.hosts}
        for n in range(pages):
            by_host[self.hosts[n % sites]].append(n)
        first_image: dict[int, tuple[str, str, bytes]] = {}  # page -> its first picture (host, path, bytes)
        for n in range(pages):
            host = self.hosts[n % sites]
            self.images[(host, "/img/logo.png")] = (buf.getvalue(), "image/png")
            zh, en = NOUNS[int(rng.integers(len(NOUNS)))]
            adj = ADJS[int(rng.integers(len(ADJS)))]
            title = f"{adj}{zh} {en} 第{n}页"
            day = dt.datetime(2024, 1, 1, 8, tzinfo=dt.timezone(dt.timedelta(hours=8))) + dt.timedelta(hours=7 * n)
            peers = by_host[host]
            links = [f"/p/{peers[int(rng.integers(len(peers)))]}.html" for _ in range(3)]
            imgs: list[tuple[str, str]] = [("/img/logo.png", "logo")]
            for k in range(images_per_page):
                fmt, ext = ("JPEG", "jpg") if k % 2 == 0 else ("PNG", "png")
                path = f"/img/{n}-{k}.{ext}"
                data = picture(n * 100 + k, f"{en} {n}-{k}", fmt)
                self.images[(host, path)] = (data, f"image/{fmt.lower()}")
                imgs.append((path, f"{zh} {en} {k}"))
                if k == 0:
                    first_image[n] = (host, path, data)
            if n % 5 == 4 and n - 1 in first_image:  # identical bytes of another page's picture, another URL
                data = first_image[n - 1][2]
                path = f"/copy/{n}.jpg"
                self.images[(host, path)] = (data, "image/jpeg")
                imgs.append((path, f"{zh} copy"))
                self.exact_copies += 1
            if n % 10 == 9 and n - 2 in first_image:  # the same picture resized and re-encoded
                seed = (n - 2) * 100
                data = picture(seed, f"{self._english(n - 2)} {n - 2}-0", "JPEG", size=(330, 220), quality=75)
                path = f"/near/{n}.jpg"
                self.images[(host, path)] = (data, "image/jpeg")
                imgs.append((path, f"{zh} resized"))
                self.near_copies += 1
            self.pages[(host, f"/p/{n}.html")] = Page(host, f"/p/{n}.html", title, day.isoformat(), links, imgs)
        self._titles = {p.title for p in self.pages.values()}
        self.by_host = by_host

    def _english(self, n: int) -> str:
        title = self.pages[(self.hosts[n % len(self.hosts)], f"/p/{n}.html")].title
        return title.split(" ", 1)[1].rsplit(" ", 1)[0]

    @property
    def picture_count(self) -> int:
        """Distinct pictures (by content) worth indexing: every page's own images (copies and logos excluded)."""
        return sum(1 for (_h, p) in self.images if p.startswith("/img/") and p != "/img/logo.png")

    def base(self, host: str) -> str:
        return f"http://{host}:{self.ports[host]}"

    def response(self, host: str, path: str) -> tuple[int, str, bytes]:
        path = path.split("#", 1)[0]
        if (host, path) in self.images:
            data, ctype = self.images[(host, path)]
            return 200, ctype, data
        if path == "/robots.txt":
            return 200, "text/plain", b"User-agent: *\nAllow: /\n"
        if path == "/":
            links = "\n".join(f'<li><a href="/p/{n}.html">page {n}</a></li>' for n in self.by_host[host])
            return 200, "text/html; charset=utf-8", (
                f'<!doctype html><html><head><meta charset="utf-8"><title>Bench site {host}</title></head>'
                f"<body><h1>Bench site</h1><ul>{links}</ul></body></html>").encode()
        page = self.pages.get((host, path))
        if page is None:
            return 404, "text/html; charset=utf-8", b"<html><head><title>Not found</title></head></html>"
        imgs = "\n".join(
            f'<img src="{p}" alt="{alt}" width="32" height="32">' if p == "/img/logo.png"
            else f'<figure><img src="{p}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
            for p, alt in page.images)
        links = " ".join(f'<a href="{u}">more</a>' for u in page.links)
        return 200, "text/html; charset=utf-8", f"""<!doctype html><html><head><meta charset="utf-8">
<title>{page.title}</title>
<meta property="article:published_time" content="{page.published}">
</head><body><h1>{page.title}</h1><p>{page.title} 的图片。</p>
{imgs}
<p>{links} <a href="/">home</a></p></body></html>""".encode()

    def start(self) -> BenchSite:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                status, ctype, body = site.response(self.server.server_address[0], self.path)  # type: ignore[index]
                with site._lock:
                    site.requests += 1
                    site.bytes_sent += len(body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        for host in self.hosts:
            server = ThreadingHTTPServer((host, 0), Handler)
            server.daemon_threads = True
            self.ports[host] = server.server_address[1]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def reset_counters(self) -> tuple[int, int]:
        with self._lock:
            out = (self.requests, self.bytes_sent)
            self.requests = self.bytes_sent = 0
        return out

    # -- the same site as files ------------------------------------------------------------------------
    def all_paths(self) -> list[tuple[str, str]]:
        homes = [(h, "/") for h in self.hosts]
        return homes + list(self.pages) + list(self.images)

    def write_warc(self, path: Path) -> Path:
        from warcio.statusandheaders import StatusAndHeaders
        from warcio.warcwriter import WARCWriter

        with open(path, "wb") as fh:
            writer = WARCWriter(fh, gzip=True)
            writer.write_record(writer.create_warcinfo_record(path.name, {"software": "mmsearch bench/web.py"}))
            for host, p in self.all_paths():
                url = self.base(host) + p
                status, ctype, body = self.response(host, p)
                hostport = f"{host}:{self.ports[host]}"
                req = StatusAndHeaders(f"GET {p} HTTP/1.1", [("Host", hostport)], is_http_request=True)
                writer.write_record(writer.create_warc_record(url, "request", http_headers=req))
                headers = StatusAndHeaders(f"{status} OK", [("Content-Type", ctype),
                                                              ("Content-Length", str(len(body)))],
                                           protocol="HTTP/1.1")
                writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                              http_headers=headers))
        return path

    def write_laion(self, path: Path) -> int:
        rows = 0
        alts = {(p.host, src): alt for p in self.pages.values() for src, alt in p.images}
        with path.open("w", encoding="utf-8") as fh:
            for (host, p), (data, _ctype) in self.images.items():
                with Image.open(io.BytesIO(data)) as img:
                    w, h = img.size
                fh.write(json.dumps({"url": self.base(host) + p, "caption": alts.get((host, p), ""),
                                     "width": w, "height": h}, ensure_ascii=False) + "\n")
                rows += 1
        return rows

    def queries(self, count: int) -> list[str]:
        """Words and word pairs of the page titles (every one matches some pages)."""
        rng = np.random.default_rng([SEED, 1])
        used = sorted({t.split(" ", 1)[0] for t in self._titles})  # e.g. 春天的熊猫
        pool: list[str] = []
        for adj_noun in used:
            adj = next(a for a in ADJS if adj_noun.startswith(a))
            noun = adj_noun[len(adj):]
            en = dict(NOUNS)[noun]
            pool += [noun, adj_noun, f"{noun} {en}", en]
        pool = sorted(set(pool))
        return [pool[int(i)] for i in rng.integers(len(pool), size=count)]


# -- imports -------------------------------------------------------------------------------------------
@dataclass
class ImportRun:
    name: str
    seconds: float = 0.0
    pages: int = 0  # HTML pages parsed (crawl, WARC)
    requests: int = 0  # HTTP requests the site answered during the run
    mb_served: float = 0.0
    corpus: WebImportReport = field(default_factory=WebImportReport)
    note: str = ""

    @property
    def pages_s(self) -> float:
        return self.pages / self.seconds if self.pages and self.seconds else float("nan")

    @property
    def images_s(self) -> float:
        return self.corpus.seen / self.seconds if self.seconds else float("nan")

    @property
    def items_s(self) -> float:
        return self.corpus.imported / self.seconds if self.seconds else float("nan")


def engine_for(home: Path, model: str, ocr: bool) -> MMSearch:
    """An engine whose index upkeep (`store.maintain`, run by `WebCorpus.add` after each batch) is timed."""
    mm = MMSearch(Settings(home=home, clip_model=model, ocr=ocr))
    store = mm.store
    inner = store.maintain
    store.maintain_calls, store.maintain_s = 0, 0.0  # type: ignore[attr-defined]

    def maintain(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            store.maintain_calls += 1  # type: ignore[attr-defined]
            store.maintain_s += time.perf_counter() - t  # type: ignore[attr-defined]

    store.maintain = maintain  # type: ignore[method-assign]
    return mm


def upkeep(mm: MMSearch, seconds: float) -> str:
    s = mm.store.maintain_s  # type: ignore[attr-defined]
    return f"index upkeep {s:.1f} s in {mm.store.maintain_calls} calls ({s / seconds:.0%})"  # type: ignore[attr-defined]


def merge(total: WebImportReport, part: WebImportReport) -> None:
    for f in dataclasses.fields(WebImportReport):
        if f.name not in ("failures", "failures_truncated"):
            setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))
    total.failures += part.failures[:20]


class CountingOcr:
    """Wraps the OCR engine: how many pictures it read, in how many seconds, and how often it found text."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = self.found = 0
        self.seconds = 0.0

    def read(self, image: Any) -> Any:
        t = time.perf_counter()
        result = self.inner.read(image)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        self.found += bool(result.text.strip())
        return result


def crawl(site: BenchSite, home: Path, model: str, ocr: bool, max_pages: int, args: argparse.Namespace,
          name: str) -> ImportRun:
    mm = engine_for(home, model, ocr)
    counter: CountingOcr | None = None
    if ocr:
        _ = mm.ocr.read(Image.new("RGB", (64, 32), "white"))  # load RapidOCR before the clock starts
        counter = CountingOcr(mm.ocr)
        mm._ocr = counter  # what `mm.ocr` returns from now on
    state = CrawlState.open(home, "bench")
    state.add_seeds(site.base(h) + "/" for h in site.hosts)
    config = CrawlConfig(scope="same-host", max_pages=max_pages, max_depth=3, delay=0.0,
                         concurrency=args.concurrency, per_host=args.per_host, timeout=30.0,
                         allowed_networks=LOOPBACK)
    fetch = FetchConfig(per_host=args.per_host, user_agent=config.user_agent, allowed_networks=LOOPBACK)
    total = WebImportReport()
    site.reset_counters()
    started = time.perf_counter()
    with WebCorpus(mm, DATASET, CorpusConfig(min_side=100, fetch=fetch)) as corpus:
        corpus.ensure_dataset()

        def sink(images: list[WebImage]) -> int:
            part = corpus.add(images)
            merge(total, part)
            return part.imported + part.updated

        crawler = Crawler(state, sink, config)
        try:
            report = crawler.run()
        finally:
            crawler.close()
    seconds = time.perf_counter() - started
    state.close()
    requests, sent = site.reset_counters()
    mm.catalog.engine.dispose()
    run = ImportRun(name, seconds, report.pages_done, requests, sent / 2**20, total)
    run.note = (f"{report.pages_done} pages parsed, {report.pages_failed} failed, {report.images_found} image refs; "
                f"stopped by {report.stopped_by}; {upkeep(mm, seconds)}")
    if counter is not None:
        run.note += (f"; OCR read {counter.calls} pictures ({counter.seconds / max(counter.calls, 1) * 1000:.0f} ms "
                     f"each, {counter.seconds / seconds:.0%} of the wall time) and found text in {counter.found}")
    if report.errors:
        run.note += f"; first error {report.errors[0]}"
    return run


def warc_import(site: BenchSite, home: Path, model: str, warc: Path) -> ImportRun:
    mm = engine_for(home, model, ocr=False)
    site.reset_counters()
    started = time.perf_counter()
    with WebCorpus(mm, DATASET, CorpusConfig(min_side=100)) as corpus:
        report = import_warcs([warc], corpus)
    seconds = time.perf_counter() - started
    requests, sent = site.reset_counters()
    mm.catalog.engine.dispose()
    fields = {f.name for f in dataclasses.fields(WebImportReport)}
    corpus_report = WebImportReport(**{k: v for k, v in report.corpus.items() if k in fields})
    run = ImportRun("WARC import", seconds, report.pages, requests, sent / 2**20, corpus_report)
    run.note = (f"{warc.stat().st_size / 2**20:.1f} MiB WARC, {report.records} records, {report.image_records} image "
                f"records, {report.images_missing} images missing, {report.pages_failed} pages failed; "
                f"{upkeep(mm, seconds)}")
    return run


def laion_import(site: BenchSite, home: Path, model: str, jsonl: Path, rows: int) -> ImportRun:
    mm = engine_for(home, model, ocr=False)
    fetch = FetchConfig(allowed_networks=LOOPBACK)
    site.reset_counters()
    started = time.perf_counter()
    with WebCorpus(mm, DATASET, CorpusConfig(min_side=100, workers=8, fetch=fetch)) as corpus:
        report = corpus.add(read_laion(jsonl))
    seconds = time.perf_counter() - started
    requests, sent = site.reset_counters()
    mm.catalog.engine.dispose()
    run = ImportRun("LAION .jsonl import", seconds, 0, requests, sent / 2**20, report)
    run.note = f"{rows} rows (image URLs on the loopback hosts), 8 download workers, 4 per host; {upkeep(mm, seconds)}"
    return run


# -- the server ----------------------------------------------------------------------------------------
@dataclass
class SearchRun(LoadRun):
    items: int = 0
    from_excluded: int = 0  # images in the answers whose page is on the excludeSites host


def measure(server: ServerProcess, key: str, name: str, bodies: list[dict[str, Any]], watched: str, excluding: bool,
            concurrency: int, warmup: float, seconds: float) -> SearchRun:
    """An answer counts when it has images and, with excludeSites, none from the `watched` (excluded) host."""
    run = SearchRun(name, concurrency)

    def accept(r: httpx.Response) -> bool:
        items = r.json().get("imageItems") if r.status_code == 200 else None
        hits = sum(urlsplit(i["hostPageUrl"]).hostname == watched for i in items or [])
        if not items or (excluding and hits):
            return False
        run.items += len(items)
        run.from_excluded += hits
        return True

    return measure_load(server, key, "/search/multimodal", bodies, run, warmup, seconds, accept)


# -- reporting -----------------------------------------------------------------------------------------
IMPORT_HEAD = ["run", "wall s", "pages", "pages/s", "images in", "images/s", "new items", "items/s",
               "duplicates merged", "skipped small", "failed", "site requests", "MiB served"]
SEARCH_HEAD = ["scenario", "clients", "QPS", "p50 ms", "p99 ms", "requests", "errors", "images/answer",
               "from excluded host", "server CPU ms/req"]


def import_cells(r: ImportRun) -> list[str]:
    c = r.corpus
    return [r.name, f"{r.seconds:.1f}", str(r.pages) if r.pages else "-",
            f"{r.pages_s:.1f}" if r.pages else "-", f"{c.seen:,}", f"{r.images_s:.1f}", f"{c.imported:,}",
            f"{r.items_s:.1f}", str(c.duplicates_merged), str(c.skipped_small), str(c.failed),
            f"{r.requests:,}" if r.requests else "0", f"{r.mb_served:.1f}"]


def search_cells(r: SearchRun) -> list[str]:
    done = r.ok + r.errors
    return [r.scenario, str(r.concurrency), f"{r.qps:,.1f}", f"{r.pct(50):.1f}", f"{r.pct(99):.1f}", f"{r.ok:,}",
            str(r.errors), f"{r.items / r.ok:.1f}" if r.ok else "-",
            f"{r.from_excluded / r.items:.0%}" if r.items else "-",
            f"{r.server_cpu_s * 1000 / done:.1f}" if done else "-"]


def markdown(args: argparse.Namespace, site: BenchSite, imports: list[ImportRun], searches: list[SearchRun],
             model_desc: str, corpus_items: int, excluded: str, load_before: tuple[float, float, float],
             wall_s: float) -> str:
    import lancedb

    cores = os.cpu_count() or 1
    busy = (f"Other work was sharing the machine (load average {load_before[0]:.1f} when the benchmark started), "
            "so rates are floors and p99 is noisy." if load_before[0] > 0.5 * cores
            else f"Load average {load_before[0]:.1f} when the benchmark started.")
    ocr_note = [r for r in imports if "OCR on" in r.name]
    lines = [
        f"<!-- bench:web N={args.pages} -->",
        f"### Web corpus: crawl, WARC and LAION import, `/search/multimodal`, {args.pages:,} pages",
        "",
        f"Run {dt.date.today().isoformat()} on {machine()}; lancedb {lancedb.__version__}, httpx "
        f"{httpx.__version__}. `python bench/web.py --pages {args.pages} --ocr-pages {args.ocr_pages} "
        f"--duration {args.duration:g}`.",
        "",
        f"A generated site on loopback: {args.pages:,} pages over {args.sites} hosts (127.0.0.1-{args.sites}, one "
        f"threaded Python HTTP/1.1 server each, in the benchmark process), each page with {args.images_per_page} "
        f"distinct ~300x200 JPEG/PNG pictures (caption drawn in), a 32x32 logo (dropped by the size filter), "
        f"{site.exact_copies} identical copies under other URLs and {site.near_copies} resized re-encoded copies "
        f"(near-duplicates): {site.picture_count:,} distinct pictures. robots.txt allows everything, no "
        f"Crawl-delay. Each run imports into a fresh data directory with the real library code. Crawl: "
        f"`Crawler` + `WebCorpus` as `mmsearch crawl` wires them, **delay 0, {args.per_host} requests in flight "
        f"per host, {args.concurrency} in all** (a real crawl defaults to 1 per host and a 1 s delay, and pays "
        f"real network latency: these are upper bounds of the library's own cost, not crawl speeds on the "
        f"internet). Model: {model_desc}.",
        "",
        "| " + " | ".join(IMPORT_HEAD) + " |",
        "|" + "---|" * len(IMPORT_HEAD),
        *["| " + " | ".join(import_cells(r)) + " |" for r in imports],
        "",
        "- *images in*: image references handed to the corpus (logos and copies included); *images/s*: those per "
        "second of wall time; *new items*: distinct pictures indexed; *duplicates merged*: copies that joined "
        "an existing item (identical bytes or perceptual hash within 6 bits). Wall time covers fetching, "
        "extraction, download, decode, perceptual hash, dedup, embedding, OCR, the LanceDB writes and the index "
        "upkeep after each batch.",
    ]
    if ocr_note:
        r = ocr_note[0]
        lines.append(f"- OCR (RapidOCR, on every new picture) dominates when on: {r.images_s:.1f} images/s over the "
                     f"first {r.pages} pages (the {args.sites} home pages, without pictures, included), against "
                     f"{imports[0].images_s:.1f} with OCR off over the whole site.")
    lines += [
        "- WARC: the same site as one gzip-per-record WARC file, no network. LAION: one row per image URL, "
        "downloads from the loopback hosts (no page to fetch or parse).",
        *[f"- {r.name}: {r.note}." for r in imports],
        "",
        f"`/search/multimodal` over the crawled corpus ({corpus_items:,} items, OCR off): `mmsearch serve` (one "
        f"uvicorn worker) in its own process on 127.0.0.1, a paid account (QPS limit {QPS_LIMIT:,}), closed-loop "
        f"asyncio + httpx clients with keep-alive, {args.warmup:g} s warm-up then {args.duration:g} s per row. "
        f"{args.queries} queries of title words (`狮子`, `春天的熊猫`, `panda`, ...), 20 images per answer; "
        f"*excludeSites* adds `advancedParams.excludeSites: \"{excluded}\"` (one of the {args.sites} hosts, about "
        f"1/{args.sites} of the corpus) and checks no answer shows it. *from excluded host*: the share of the "
        f"answers' images whose page is on {excluded}. An error is a non-200, an empty answer or an excluded "
        "host in it.",
        "",
        "| " + " | ".join(SEARCH_HEAD) + " |",
        "|" + "---|" * len(SEARCH_HEAD),
        *["| " + " | ".join(search_cells(r)) + " |" for r in searches],
        "",
        "- One uvicorn worker on 2 cores is CPU-bound already with one client: 4 closed-loop clients add queueing, "
        "not throughput (p50 grows to about clients / QPS). Queries are text only (the IQS API takes no image); "
        "with the tiny model the text encoder costs next to nothing, a real CLIP text tower adds its encode time.",
        "- No real network: loopback has no round-trip time and no bandwidth limit, and the site answers from "
        "memory, so fetch-bound stages here are far faster than on the internet.",
        f"- The site, the importers, the server and the load generator share the machine's {cores} cores. {busy} "
        f"Benchmark wall time {wall_s:.0f} s.",
        "<!-- /bench:web -->",
    ]
    return "\n".join(lines)


QPS_LIMIT = 100_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=500, help="generated HTML pages")
    parser.add_argument("--sites", type=int, default=4, help="loopback hosts the pages are spread over (1-16)")
    parser.add_argument("--images-per-page", type=int, default=3, help="distinct pictures per page")
    parser.add_argument("--ocr-pages", type=int, default=50, help="pages crawled again with OCR on (0 skips it)")
    parser.add_argument("--per-host", type=int, default=8, help="crawl requests in flight per host")
    parser.add_argument("--concurrency", type=int, default=8, help="crawl requests in flight in all")
    parser.add_argument("--model", choices=["tiny", "none"], default="tiny",
                        help="tiny CLIP-shaped ONNX model (512-d) or no model")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per search row")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each search row")
    parser.add_argument("--queries", type=int, default=200, help="distinct search queries (taken in turn)")
    parser.add_argument("--concurrency-search", type=lambda s: [int(x) for x in s.split(",") if x.strip()],
                        default=[1, 4], help="comma-separated search client counts (default 1,4)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the data directories under this folder")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if args.pages < 1 or not 1 <= args.sites <= 16 or args.images_per_page < 1 or args.duration <= 0:
        parser.error("--pages, --images-per-page and --duration must be positive, --sites 1 to 16")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console()
    wall = time.perf_counter()
    load_before = os.getloadavg()
    root = args.keep or Path(tempfile.mkdtemp(prefix="mmsearch-bench-web-"))
    root.mkdir(parents=True, exist_ok=True)
    model_dir = root / f"tiny-clip-{DIM}"
    if args.model == "tiny":
        import tiny_clip

        tiny_clip.DIM = DIM
        if not (model_dir / "config.json").is_file():
            tiny_clip.build_immich(model_dir)
        model = str(model_dir)
        model_desc = (f"tiny CLIP-shaped ONNX ({DIM}-d, tests/tiny_clip.py): images are embedded and the vlm "
                      "channel runs, but **rates and latencies exclude a real model's encode cost** (bench/encode.py)")
    else:
        model = "none"
        model_desc = "none (`MMSEARCH_CLIP_MODEL=none`: no embeddings, text channel only)"

    t = time.perf_counter()
    site = BenchSite(args.pages, args.sites, args.images_per_page)
    console.log(f"generated {len(site.pages)} pages and {len(site.images)} image URLs "
                f"({site.picture_count} distinct pictures) in {time.perf_counter() - t:.1f} s")
    site.start()
    server: ServerProcess | None = None
    imports: list[ImportRun] = []
    searches: list[SearchRun] = []
    try:
        max_pages = args.pages + args.sites + 10  # every page and home page, so the frontier empties first
        homes = {k: root / k for k in ("crawl", "crawl-ocr", "warc", "laion")}
        for h in homes.values():
            shutil.rmtree(h, ignore_errors=True)
            h.mkdir(parents=True)
        r = crawl(site, homes["crawl"], model, False, max_pages, args, "crawl, OCR off")
        console.log(f"{r.name}: {r.seconds:.1f} s, {r.pages_s:.1f} pages/s, {r.images_s:.1f} images/s; {r.note}")
        imports.append(r)
        if args.ocr_pages:
            r = crawl(site, homes["crawl-ocr"], model, True, min(args.ocr_pages, max_pages), args,
                      f"crawl, OCR on (first {args.ocr_pages} pages)")
            console.log(f"{r.name}: {r.seconds:.1f} s, {r.pages_s:.1f} pages/s, {r.images_s:.1f} images/s; {r.note}")
            imports.append(r)
        warc = site.write_warc(root / "site.warc.gz")
        r = warc_import(site, homes["warc"], model, warc)
        console.log(f"{r.name}: {r.seconds:.1f} s, {r.images_s:.1f} images/s; {r.note}")
        imports.append(r)
        jsonl = root / "site.jsonl"
        rows = site.write_laion(jsonl)
        r = laion_import(site, homes["laion"], model, jsonl, rows)
        console.log(f"{r.name}: {r.seconds:.1f} s, {r.images_s:.1f} images/s; {r.note}")
        imports.append(r)
        for r in imports:
            if r.corpus.failures:
                console.log(f"[yellow]{r.name}: first failures {r.corpus.failures[:3]}")

        mm = engine_for(homes["crawl"], model, ocr=False)
        corpus_items = int(mm.stats(DATASET)["rows"])
        key = mm.catalog.accounts.create("bench-web", plan="paid", credits=10**12, qps=QPS_LIMIT).api_key
        mm.catalog.engine.dispose()
        server = ServerProcess(homes["crawl"], model, root / "server.log")
        ready = server.wait_ready()
        console.log(f"server ready at {server.url}: channels {ready.get('channels')}; corpus {corpus_items} items")
        queries = site.queries(args.queries)
        excluded = site.hosts[1 % len(site.hosts)]
        scenarios = [("text", [{"query": q} for q in queries], False),
                     ("text + excludeSites", [{"query": q, "advancedParams": {"excludeSites": excluded}}
                                              for q in queries], True)]
        for name, bodies, excluding in scenarios:
            for c in args.concurrency_search:
                s = measure(server, key, name, bodies, excluded, excluding, c, args.warmup, args.duration)
                console.log(f"{name:<22} c={c} {s.qps:6.1f} QPS p50 {s.pct(50):6.1f} ms p99 {s.pct(99):6.1f} ms "
                            f"errors {s.errors}")
                if s.error_samples:
                    console.log(f"  first error: {s.error_samples[0]}")
                searches.append(s)
    finally:
        if server is not None:
            server.stop()
        site.stop()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    wide = console if console.is_terminal else Console(width=180)
    table = Table(title=f"mmsearch web corpus, {args.pages} pages ({machine()})")
    for i, h in enumerate(IMPORT_HEAD):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in imports:
        table.add_row(*import_cells(r))
    wide.print(table)
    table = Table(title="/search/multimodal")
    for i, h in enumerate(SEARCH_HEAD):
        table.add_column(h, justify="left" if i == 0 else "right")
    for s in searches:
        table.add_row(*search_cells(s))
    wide.print(table)
    if not args.no_record:
        section = markdown(args, site, imports, searches, model_desc, corpus_items, excluded, load_before,
                           time.perf_counter() - wall)
        record_section("web", args.pages, section, DOC)
        console.log(f"recorded in {DOC}")
    return 1 if any(s.errors for s in searches) else 0


if __name__ == "__main__":
    sys.exit(main())
