"""The crawler end to end: the generated fixture site on loopback, the real extractor, the real corpus (LanceDB).

Politeness is checked from the server's own request log: robots.txt asked for once, a disallowed path never
requested, the Crawl-delay kept between page requests, the user agent sent, off-site links left alone.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders import HashingEncoder
from mmsearch.errors import InvalidArgument
from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus
from mmsearch.ingest.web.crawler import (
    CRAWLER_USER_AGENT,
    CrawlConfig,
    Crawler,
    CrawlProgress,
    CrawlState,
    in_scope,
    normalize_url,
)
from mmsearch.ingest.web.types import WebImage
from mmsearch.media import FetchConfig
from web_fixture import IMAGES, LAST_MODIFIED, PAGE_TITLES, FixtureSite

LOOPBACK = ("127.0.0.1/32",)
CRAWL_DELAY = 0.2  # the fixture's robots.txt Crawl-delay; larger than the configured delay, so it wins
# Distinct pictures a full same-site crawl must index: the pixel and the icon are too small, rose-copy has
# rose's bytes, the largest srcset candidate (tulip-2x) stands for tulip, og:image counts as an image.
EXPECTED_IMAGES = {"/img/rose.jpg", "/img/tulip-2x.png", "/img/lazy-lily.jpg", "/img/figure-orchid.png",
                   "/img/og-cover.jpg", "/img/maple.jpg", "/img/snow.png", "/media/sea.jpg", "/media/sky.png",
                   "/img/moved.png"}
NEVER = {"/private/secret.html", "/private/secret.png", "/files/report.pdf", "/img/slow.png", "/offsite.html"}


def engine(home: Path) -> MMSearch:
    return MMSearch(Settings(home=home, ocr=False), encoder=HashingEncoder(32))


def crawl_config(**kw) -> CrawlConfig:
    base = {"delay": 0.05, "allowed_networks": LOOPBACK, "timeout": 0.6, "retries": 0, "batch_size": 4,
            "concurrency": 4}
    return CrawlConfig(**{**base, **kw})


class Run:
    """A crawl wired to a real corpus; `images` collects what the sink was handed."""

    def __init__(self, home: Path, name: str = "t") -> None:
        self.mm = engine(home)
        self.corpus = WebCorpus(self.mm, "web", CorpusConfig(fetch=FetchConfig(allowed_networks=LOOPBACK,
                                                                               retries=0)))
        self.state = CrawlState.open(home, name)
        self.images: list[WebImage] = []
        self.progress: list[CrawlProgress] = []

    def sink(self, batch: list[WebImage]) -> int:
        self.images.extend(batch)
        report = self.corpus.add(batch)
        return report.imported + report.updated

    def crawl(self, seeds: list[str], stop: threading.Event | None = None, stop_after: int | None = None, **kw):
        def on_progress(p: CrawlProgress) -> None:
            self.progress.append(p)
            if stop is not None and stop_after is not None and p.fetched >= stop_after:
                stop.set()

        crawler = Crawler(self.state, self.sink, crawl_config(**kw), on_progress=on_progress)
        crawler.add_seeds(seeds)
        try:
            return crawler.run(stop)
        finally:
            crawler.close()

    def items(self) -> dict[str, dict]:
        return items_by_path(self.mm)


def items_by_path(mm: MMSearch) -> dict[str, dict]:
    """Every indexed item of the `web` dataset, by the path of its imageUrl."""
    info = mm.dataset("web")
    docs = [json.loads(d) for batch in mm.store.scan(info, ["_doc"]) for d in batch["_doc"]]
    return {urlsplit(d["imageUrl"]).path: d for d in docs}


def page_paths(site: FixtureSite) -> list[tuple[float, str]]:
    """(time, path) of the requests that were not image downloads (those are the corpus's, not the crawler's)."""
    return [(e.time, e.path) for e in site.requests() if e.path not in IMAGES]


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    """One full crawl of the fixture site, shared by the read-only tests below."""
    with FixtureSite(slow_seconds=2.0, crawl_delay=CRAWL_DELAY) as site:
        run = Run(tmp_path_factory.mktemp("crawl"))
        # one image batch at the end: the corpus's CPU work (decoding, hashing, LanceDB) would otherwise compete
        # for the GIL with the in-process server and blur its request timestamps; other tests use small batches
        report = run.crawl([site.url("/")], batch_size=1000)
        yield site, run, report


def test_crawl_finds_pages_and_images(crawled):
    site, run, report = crawled
    rows = {urlsplit(r["url"]).path: r for r in run.state.rows()}
    done = {p for p, r in rows.items() if r["status"] == "done"}
    assert done == set(PAGE_TITLES), rows
    assert report.stopped_by == "frontier empty" and not report.interrupted and report.pages_queued == 0
    items = run.items()
    assert set(items) == EXPECTED_IMAGES, sorted(items)
    assert report.images_found == sum(r["images"] for r in rows.values()) >= len(EXPECTED_IMAGES)
    assert report.images_imported == len(items)
    # each image keeps the page it was found on, absolute URLs resolved against the page or its <base>
    assert items["/media/sea.jpg"]["hostPageUrl"] == site.url("/gallery/")
    assert items["/img/lazy-lily.jpg"]["hostPageUrl"] == site.url("/news/spring.html")


def test_crawl_published_times_and_encodings(crawled):
    site, run, _ = crawled
    items = run.items()
    assert items["/img/rose.jpg"]["publishedTime"] == "2024-12-18T22:24:24+08:00"  # article:published_time
    assert items["/img/maple.jpg"]["publishedTime"] == "2023-10-01T09:00:00+08:00"  # <time datetime>, GBK page
    assert items["/media/sea.jpg"]["publishedTime"] == "2024-06-05T08:30:00+00:00", LAST_MODIFIED  # header
    # GBK (charset in the header) and GB2312 (charset in a meta) pages decode to the right Chinese text
    assert any(t in items["/img/maple.jpg"]["title"] for t in ("红色的枫叶", "北京的秋天"))
    assert any(t in items["/img/snow.png"]["title"] for t in ("白色的雪", "冬天的雪景"))
    assert items["/img/maple.jpg"]["hostPageUrl"] == site.url("/news/autumn.html")


def test_crawl_is_polite(crawled):
    site, run, _ = crawled
    paths = [p for _, p in page_paths(site)]
    assert paths[0] == "/robots.txt" and paths.count("/robots.txt") == 1
    assert not NEVER & set(site.paths())  # disallowed, skipped by extension, unreached or off-site
    assert not site.requests(host=f"localhost:{site.port}")
    assert all(paths.count(p) == 1 for p in paths), paths  # nothing fetched twice
    times = [t for t, _ in page_paths(site)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # the Crawl-delay, not the smaller configured delay (0.05); the slack absorbs scheduling jitter between the
    # crawler deciding to start a request and the server logging it, on a busy machine
    assert min(gaps) >= CRAWL_DELAY - 0.06 and sorted(gaps)[len(gaps) // 2] >= CRAWL_DELAY - 0.01, gaps
    agents = {e.user_agent for e in site.requests() if e.path not in IMAGES}
    assert agents == {CRAWLER_USER_AGENT}
    rows = {urlsplit(r["url"]).path: r for r in run.state.rows()}
    assert rows["/private/secret.html"]["status"] == "blocked"


def test_crawl_follows_redirects_and_records_failures(crawled):
    site, run, report = crawled
    rows = {urlsplit(r["url"]).path: r for r in run.state.rows()}
    assert (rows["/redirect/a"]["status"], rows["/redirect/a"]["http_status"]) == ("redirect", 301)
    assert rows["/redirect/a"]["target"] == site.url("/redirect/b")
    assert (rows["/redirect/b"]["status"], rows["/redirect/b"]["http_status"]) == ("redirect", 302)
    assert rows["/news/moved.html"]["status"] == "done"
    assert run.items()["/img/moved.png"]["hostPageUrl"] == site.url("/news/moved.html")
    assert (rows["/missing"]["status"], rows["/missing"]["http_status"]) == ("failed", 404)
    assert rows["/slow.html"]["status"] == "failed" and "timed out" in rows["/slow.html"]["error"]
    assert (rows["/files/report"]["status"], rows["/files/report"]["error"]) == ("skipped",
                                                                                  "not HTML (application/pdf)")
    assert {e["url"] for e in report.errors} == {site.url("/missing"), site.url("/slow.html")}
    assert report.redirects == 2 and report.blocked == 1 and report.pages_skipped == 1


def test_crawl_resumes_where_it_stopped(tmp_path):
    with FixtureSite(slow_seconds=0.1, crawl_delay=None) as site:
        home = tmp_path / "home"
        first = Run(home).crawl([site.url("/")], max_pages=4)
        assert first.stopped_by == "max_pages" and first.fetched == 4 and first.pages_queued > 0
        before = [p for _, p in page_paths(site)]
        assert len(before) == 5  # robots.txt and four pages
        run = Run(home)  # a new process: everything comes from the state file
        second = run.crawl([], max_pages=100)
        after = [p for _, p in page_paths(site)][len(before):]
        assert "/robots.txt" not in after  # cached in the state
        assert not set(before) & set(after), (before, after)  # no page fetched again
        assert second.stopped_by == "frontier empty" and second.pages_queued == 0
        assert second.fetched_this_run == len(after) and second.fetched == 4 + len(after)
        assert set(run.items()) >= EXPECTED_IMAGES | {"/img/slow.png"}


def test_interrupted_crawl_keeps_frontier_and_images(tmp_path):
    with FixtureSite(slow_seconds=0.1, crawl_delay=None) as site:
        home = tmp_path / "home"
        stop = threading.Event()
        run = Run(home)
        report = run.crawl([site.url("/")], stop=stop, stop_after=2, batch_size=1000)
        assert report.interrupted and report.stopped_by == "interrupted"
        queued = run.state.counts()["queued"]
        assert queued > 0 and report.pages_queued == queued
        pending = run.state.pending_count()
        assert pending == report.images_found > 0 and not run.images  # not handed over: kept for the next run
        again = Run(home).crawl([], max_pages=100)
        assert again.pages_queued == 0 and run.state.pending_count() == 0
        assert again.images_imported >= len(EXPECTED_IMAGES)


def test_missing_robots_allows_all_and_unreachable_robots_allows_nothing(tmp_path):
    with FixtureSite(slow_seconds=0.1, robots_status=404) as site:
        report = Run(tmp_path / "a").crawl([site.url("/")], max_depth=1)
        assert "/private/secret.html" in site.paths() and report.blocked == 0  # no robots.txt: all allowed
    with FixtureSite(slow_seconds=0.1, robots_status=503) as site:
        run = Run(tmp_path / "b")
        report = run.crawl([site.url("/")])
        assert site.paths() == ["/robots.txt"]  # RFC 9309: an unreachable robots.txt means crawl nothing
        error = report.errors[0]["error"]
        assert report.fetched == 0 and error.startswith("robots.txt unreachable") and "HTTP 503" in error
        assert run.state.counts() == {"queued": 1}  # the seed waits for a run that can read robots.txt


def test_scope_and_url_normalisation():
    seeds = ["https://www.example.com/"]
    assert in_scope("https://img.example.com/a", seeds, "same-site")
    assert in_scope("http://example.com/b", seeds, "same-site")
    assert not in_scope("https://example.org/", seeds, "same-site")
    assert not in_scope("https://badexample.com/", seeds, "same-site")
    assert not in_scope("https://img.example.com/a", seeds, "same-host")
    assert in_scope("https://www.example.com/x?y=1", seeds, "same-host")
    assert in_scope("https://example.org/", seeds, "any")
    assert normalize_url("HTTP://Example.COM:80/a#frag") == "http://example.com/a"
    assert normalize_url("https://example.com:8443") == "https://example.com:8443/"
    assert normalize_url("mailto:x@example.com") is None and normalize_url("javascript:void(0)") is None
    assert normalize_url("http://user:pw@example.com/") is None


def test_crawl_name_and_seeds_are_checked(tmp_path):
    with pytest.raises(InvalidArgument, match="name"):
        CrawlState.open(tmp_path, "../escape")
    state = CrawlState.open(tmp_path, "ok")
    with pytest.raises(InvalidArgument, match="seeds"):
        state.add_seeds(["ftp://example.com/"])
    assert state.seeds() == [] and state.counts() == {}
    with pytest.raises(InvalidArgument, match="scope"):
        CrawlConfig(scope="everything").check()  # type: ignore[arg-type]
    other = CrawlState.open(tmp_path, "ok")  # as another process would open it
    with state.exclusive(), pytest.raises(InvalidArgument, match="running in another process"), other.exclusive():
        pass
    with CrawlState.open(tmp_path, "ok").exclusive():  # released
        pass


def test_cli_crawl_needs_private_networks_allowed_for_loopback(tmp_path):
    runner = CliRunner()
    env = {"MMSEARCH_CLIP_MODEL": "none", "MMSEARCH_OCR": "false", "MMSEARCH_ALLOW_PRIVATE_NETWORKS": "false"}
    with FixtureSite(crawl_delay=None) as site:
        refused = runner.invoke(app, ["--home", str(tmp_path), "crawl", site.url("/"), "--delay", "0", "--json"],
                                env=env)  # a seed as an argument
        assert refused.exit_code == 1
        assert "loopback" in json.loads(refused.stdout)["crawl"]["errors"][0]["error"]
        assert site.paths() == []  # refused before connecting

        seeds = tmp_path / "seeds.txt"
        seeds.write_text(f"# the fixture\n{site.url('/')}\n\n", encoding="utf-8")
        env["MMSEARCH_ALLOW_PRIVATE_NETWORKS"] = "true"
        ok = runner.invoke(app, ["--home", str(tmp_path), "crawl", "--name", "cli", "--seeds", str(seeds),
                                 "--delay", "0", "--max-pages", "3", "--timeout", "1", "--json"], env=env)
        assert ok.exit_code == 0, ok.output
        out = json.loads(ok.stdout)
        assert out["crawl"]["fetched"] == 3 and out["crawl"]["name"] == "cli" and out["dataset"] == "web"
        assert out["corpus"]["imported"] == out["crawl"]["images_imported"] > 0
        assert (tmp_path / "crawls" / "cli" / "state.sqlite3").is_file()

        resumed = runner.invoke(app, ["--home", str(tmp_path), "crawl", "--name", "cli", "--delay", "0",
                                      "--max-pages", "5", "--timeout", "1"], env=env)
        assert resumed.exit_code == 0, resumed.output
        assert "crawl 'cli' (max_pages)" in resumed.stdout
        assert "resume with: mmsearch crawl --name cli" in resumed.stdout
        assert "this run: 2 requests" in resumed.stdout


def test_fetch_page_follows_redirects_and_returns_4xx():
    from mmsearch.media import Fetcher, UnsafeURL

    with FixtureSite(crawl_delay=None) as site, Fetcher(FetchConfig(allowed_networks=LOOPBACK, retries=0)) as f:
        page = f.fetch_page(site.url("/redirect/a"))
        assert (page.status, page.final_url, page.redirects) == (200, site.url("/news/moved.html"), 2)
        assert PAGE_TITLES["/news/moved.html"].encode() in page.body and page.content_type == "text/html"
        hop = f.fetch_page(site.url("/redirect/a"), follow_redirects=False)
        assert (hop.status, hop.final_url, hop.body) == (301, site.url("/redirect/b"), b"")
        missing = f.fetch_page(site.url("/missing"))
        assert (missing.status, missing.body) == (404, b"")
        pdf = f.fetch_page(site.url("/files/report"), content_types={"text/html"})
        assert (pdf.status, pdf.content_type, pdf.body) == (200, "application/pdf", b"")
        gbk = f.fetch_page(site.url("/news/autumn.html"))
        assert gbk.headers["content-type"] == "text/html; charset=gbk" and "北京的秋天".encode("gbk") in gbk.body
        before = len(site.paths())
        with Fetcher() as default, pytest.raises(UnsafeURL, match="loopback"):
            default.fetch_page(site.url("/"))
        assert len(site.paths()) == before  # refused before connecting
