"""A polite, resumable crawler that turns HTML pages into `WebImage`s for the web corpus.

Politeness: robots.txt is fetched once per origin (cached in the crawl state for a day) and its Disallow rules
and Crawl-delay for our agent token are honoured; requests to one origin are at most `per_host` at a time and
start at least `delay` seconds apart (or the Crawl-delay, if larger), robots.txt included; every request carries
`user_agent`. Redirects are not followed inside one request: a 3xx is recorded and its target queued like a
link, so each hop is SSRF-checked, robots-checked, delayed and seen only once.

Resumability: everything lives in one SQLite file (`CrawlState`): each URL ever seen with its depth and status
(queued, done, failed, skipped, redirect, blocked), per-origin robots.txt and next-allowed time, and the images
found on done pages that the corpus has not taken yet. A page's outcome, its new links and its images are
written in one transaction, so stopping the process (Ctrl-C, kill) loses at most the pages in flight: they are
still `queued` and are fetched again by the next run, which also hands any left-over images to the corpus.
`max_pages` counts page requests over all runs of a crawl, so a second run with a higher limit continues.
A run keeps the queued URLs in memory (about 100-200 bytes each) and takes them breadth first.

Scope: `same-host` keeps URLs whose host and port equal a seed's; `same-site` keeps a seed's host and its
subdomains, with a leading `www.` ignored (`www.example.com` -> `example.com`, `img.example.com`), without a
public-suffix list (so a seed `co.uk` would admit all of it; seed with real site names); `any` keeps every
http(s) URL. Only http(s) is crawled, only text/html and application/xhtml+xml bodies are parsed, and links to
obvious non-page files (images, archives, media, documents) are not requested at all.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from protego import Protego

from mmsearch import __version__
from mmsearch.errors import InvalidArgument
from mmsearch.ingest.web.types import PageExtract, WebImage
from mmsearch.media.errors import FetchError, UnsafeURL
from mmsearch.media.fetch import FetchConfig, Fetcher, PageResult

CRAWLER_USER_AGENT = f"mmsearch-crawler/{__version__} (+https://github.com/mmsearch)"
ROBOTS_AGENT = "mmsearch"  # the token robots.txt groups are matched against
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
ROBOTS_TTL_S = 24 * 3600
SCOPES = ("same-site", "same-host", "any")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SKIP_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".svg", ".ico", ".tif", ".tiff", ".avif", ".heic", ".pdf",
    ".zip", ".gz", ".tgz", ".tar", ".rar", ".7z", ".bz2", ".xz", ".mp3", ".mp4", ".m4a", ".m4v", ".avi", ".mov",
    ".wmv", ".flv", ".mkv", ".webm", ".wav", ".ogg", ".exe", ".dmg", ".iso", ".apk", ".bin", ".css", ".js", ".json",
    ".xml", ".rss", ".atom", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".csv", ".woff", ".woff2", ".ttf",
    ".eot"
})  # links to these are not requested: not pages

Scope = Literal["same-site", "same-host", "any"]
ImageSink = Callable[[list[WebImage]], int]  # takes a batch, returns how many became (or updated) items
Extractor = Callable[[bytes, str, Mapping[str, str]], PageExtract]


@dataclass(frozen=True)
class CrawlConfig:
    """Knobs of one crawl run; defaults are polite for the open web (tests use small delays)."""

    scope: Scope = "same-site"
    max_pages: int = 1000  # page requests over all runs of this crawl (redirects and errors count)
    max_depth: int = 3  # links followed from a seed (seeds are depth 0)
    delay: float = 1.0  # minimum seconds between request starts to one origin (robots Crawl-delay may raise it)
    per_host: int = 1  # concurrent requests to one origin
    concurrency: int = 8  # worker threads over all origins
    timeout: float = 15.0  # read timeout of one request (connect: at most 5 s)
    retries: int = 1  # extra attempts after timeouts, connection errors and 5xx
    max_page_bytes: int = 5 * 1024 * 1024
    batch_size: int = 64  # images handed to the corpus at a time
    user_agent: str = CRAWLER_USER_AGENT
    robots_agent: str = ROBOTS_AGENT
    allow_private: bool = False  # loopback/private addresses (MMSEARCH_ALLOW_PRIVATE_NETWORKS)
    allowed_networks: tuple[str, ...] = ()

    def check(self) -> CrawlConfig:
        if self.scope not in SCOPES:
            raise InvalidArgument(f"scope: must be one of {', '.join(SCOPES)}", field="scope")
        for name, low in (("max_pages", 1), ("max_depth", 0), ("per_host", 1), ("concurrency", 1),
                          ("batch_size", 1), ("retries", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgument(f"{name}: must be an integer >= {low}", field=name)
        if self.delay < 0 or self.timeout <= 0:
            raise InvalidArgument("delay/timeout: delay must be >= 0 and timeout > 0", field="delay")
        return self

    def fetch_config(self) -> FetchConfig:
        return FetchConfig(
            # pages are fetched one hop at a time (follow_redirects=False); max_redirects serves robots.txt only
            connect_timeout=min(5.0, self.timeout), read_timeout=self.timeout, total_timeout=max(30.0, self.timeout),
            max_bytes=self.max_page_bytes, max_redirects=5, retries=self.retries, backoff=0.25,
            per_host=self.per_host, allow_private=self.allow_private, allowed_networks=self.allowed_networks,
            user_agent=self.user_agent,
        )


@dataclass
class CrawlProgress:
    """Counters of a crawl (over all its runs, except `elapsed` and `rate`, which are this run's)."""

    pages_done: int = 0  # HTML pages parsed
    pages_failed: int = 0  # 4xx/5xx, timeouts, refused addresses, unparsable pages
    pages_skipped: int = 0  # not HTML
    redirects: int = 0
    blocked: int = 0  # disallowed by robots.txt (never requested)
    pages_queued: int = 0
    images_found: int = 0
    images_imported: int = 0  # what the sink reported for the batches it took
    fetched_this_run: int = 0
    elapsed: float = 0.0

    @property
    def fetched(self) -> int:
        return self.pages_done + self.pages_failed + self.pages_skipped + self.redirects

    @property
    def rate(self) -> float:
        """Page requests per second in this run."""
        return self.fetched_this_run / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fetched": self.fetched, "rate": round(self.rate, 3)}


@dataclass
class CrawlReport(CrawlProgress):
    name: str = ""
    interrupted: bool = False  # stopped early (Ctrl-C or the stop event); resume with the same name
    stopped_by: str = ""  # "frontier empty", "max_pages", "interrupted"
    errors: list[dict[str, Any]] = field(default_factory=list)  # the latest failures (url, error), at most 50


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The URL a crawler keys on: http(s) only, lower-case scheme and host, no default port, no fragment,
    "/" for an empty path; None for anything else (mailto:, javascript:, malformed)."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            return None
        if parts.username is not None or parts.password is not None:
            return None
        host = parts.hostname.rstrip(".").lower()
        port = parts.port
    except ValueError:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == (443 if scheme == "https" else 80) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _site(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


def in_scope(url: str, seeds: Iterable[str], scope: str) -> bool:
    """Whether `url` (normalised) may be crawled from these seeds under `scope` (see the module docstring)."""
    if scope == "any":
        return True
    parts = urlsplit(url)
    host = parts.hostname or ""
    for seed in seeds:
        sp = urlsplit(seed)
        if scope == "same-host":
            if sp.netloc == parts.netloc:
                return True
            continue
        site = _site(sp.hostname or "")
        if host == site or host.endswith("." + site) or _site(host) == site:
            return True
    return False


def _skippable(url: str) -> bool:
    return PurePosixPath(urlsplit(url).path).suffix.lower() in _SKIP_EXTENSIONS


def crawl_dir(home: Path, name: str) -> Path:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument("name: a crawl name must match [A-Za-z0-9_-]{1,64}", field="name")
    return Path(home) / "crawls" / name


class CrawlState:
    """The persistent frontier, seen set, robots cache, per-origin next-allowed times and pending images."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS urls(
                url TEXT PRIMARY KEY, depth INTEGER NOT NULL, status TEXT NOT NULL, http_status INTEGER,
                target TEXT, images INTEGER NOT NULL DEFAULT 0, error TEXT, updated REAL);
            CREATE INDEX IF NOT EXISTS urls_status ON urls(status);
            CREATE TABLE IF NOT EXISTS hosts(
                origin TEXT PRIMARY KEY, robots TEXT, robots_fetched REAL, next_allowed REAL NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS pending_images(id INTEGER PRIMARY KEY AUTOINCREMENT, image TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """)

    @classmethod
    def open(cls, home: Path, name: str) -> CrawlState:
        """The state of crawl `name` under `home/crawls/<name>/state.sqlite3` (created on first use)."""
        return cls(crawl_dir(home, name) / "state.sqlite3")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held while a crawl runs: a second process running the same crawl is refused, not interleaved."""
        import fcntl

        with open(self.path.with_suffix(".lock"), "a+b") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InvalidArgument(f"name: crawl {self.path.parent.name!r} is running in another process",
                                      field="name") from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- meta -----------------------------------------------------------------------------------------
    def seeds(self) -> list[str]:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='seeds'").fetchone()
        return json.loads(row[0]) if row else []

    def add_seeds(self, urls: Iterable[str]) -> int:
        """Remember seeds (they define the scope) and queue the ones never seen; returns how many were queued."""
        seeds = self.seeds()
        added = 0
        with self._lock:
            self._db.execute("BEGIN")
            for raw in urls:
                url = normalize_url(raw)
                if url is None:
                    self._db.execute("ROLLBACK")
                    raise InvalidArgument(f"seeds: {raw!r} is not an http(s) URL", field="seeds")
                if url not in seeds:
                    seeds.append(url)
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO urls(url, depth, status, updated) VALUES (?, 0, 'queued', ?)",
                    (url, time.time()))
                added += cur.rowcount
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('seeds', ?)", (json.dumps(seeds),))
            self._db.execute("COMMIT")
        return added

    # -- frontier -------------------------------------------------------------------------------------
    def queued(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(u, d) for u, d in self._db.execute(
                "SELECT url, depth FROM urls WHERE status='queued' ORDER BY depth, rowid")]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT status, COUNT(*) FROM urls GROUP BY status").fetchall())

    def status(self, url: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT status FROM urls WHERE url=?", (url,)).fetchone()
        return row[0] if row else None

    def rows(self) -> list[dict[str, Any]]:
        """Every URL with its outcome (for reports and tests)."""
        with self._lock:
            cur = self._db.execute("SELECT url, depth, status, http_status, target, images, error FROM urls "
                                   "ORDER BY rowid")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def record(self, url: str, status: str, http_status: int | None = None, target: str | None = None,
               error: str | None = None, links: Iterable[tuple[str, int]] = (),
               images: Iterable[WebImage] = ()) -> list[tuple[str, int]]:
        """One page's outcome, its new links and its images, atomically; returns the links that were new."""
        images = list(images)
        new: list[tuple[str, int]] = []
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "UPDATE urls SET status=?, http_status=?, target=?, images=?, error=?, updated=? WHERE url=?",
                    (status, http_status, target, len(images), error, now, url))
                for link, depth in links:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO urls(url, depth, status, updated) VALUES (?, ?, 'queued', ?)",
                        (link, depth, now))
                    if cur.rowcount:
                        new.append((link, depth))
                self._db.executemany(
                    "INSERT INTO pending_images(image) VALUES (?)",
                    [(json.dumps({k: v for k, v in dataclasses.asdict(i).items() if k != "data"},
                                 ensure_ascii=False),) for i in images])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def images_found(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COALESCE(SUM(images), 0) FROM urls").fetchone()[0]

    def seen(self, url: str) -> bool:
        return self.status(url) is not None

    # -- hosts ----------------------------------------------------------------------------------------
    def host(self, origin: str) -> tuple[str | None, float | None, float]:
        """(robots.txt text or None, when it was fetched, next allowed request time) of an origin."""
        with self._lock:
            row = self._db.execute("SELECT robots, robots_fetched, next_allowed FROM hosts WHERE origin=?",
                                   (origin,)).fetchone()
        return (row[0], row[1], row[2]) if row else (None, None, 0.0)

    def set_robots(self, origin: str, text: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO hosts(origin, robots, robots_fetched) VALUES (?, ?, ?) "
                "ON CONFLICT(origin) DO UPDATE SET robots=excluded.robots, robots_fetched=excluded.robots_fetched",
                (origin, text, time.time()))

    def set_next_allowed(self, origin: str, when: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO hosts(origin, next_allowed) VALUES (?, ?) "
                "ON CONFLICT(origin) DO UPDATE SET next_allowed=excluded.next_allowed", (origin, when))

    # -- pending images -------------------------------------------------------------------------------
    def pending_images(self, after: int = 0, limit: int = 1000) -> list[tuple[int, WebImage]]:
        with self._lock:
            rows = self._db.execute("SELECT id, image FROM pending_images WHERE id > ? ORDER BY id LIMIT ?",
                                    (after, limit)).fetchall()
        return [(i, WebImage(**json.loads(raw))) for i, raw in rows]

    def pending_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM pending_images").fetchone()[0]

    def drop_images(self, up_to: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pending_images WHERE id <= ?", (up_to,))

    def add_stat(self, key: str, n: int) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            value = (int(row[0]) if row else 0) + n
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, str(value)))
        return value


@dataclass
class _Outcome:
    kind: Literal["page", "robots"]
    origin: str
    url: str
    depth: int = 0
    result: PageResult | None = None
    error: str | None = None
    extract: PageExtract | None = None


class Crawler:
    """Runs a crawl over a `CrawlState`, handing images to `sink` in batches. One run at a time per state."""

    def __init__(
        self,
        state: CrawlState,
        sink: ImageSink,
        config: CrawlConfig | None = None,
        extract: Extractor | None = None,
        on_progress: Callable[[CrawlProgress], None] | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.state = state
        self.sink = sink
        self.config = (config or CrawlConfig()).check()
        if extract is None:
            from mmsearch.ingest.web.extract import extract_page

            extract = extract_page
        self.extract = extract
        self.on_progress = on_progress
        self._fetcher = fetcher or Fetcher(self.config.fetch_config())
        self._own_fetcher = fetcher is None
        self._robots: dict[str, Protego] = {}
        self._queues: dict[str, deque[tuple[str, int]]] = {}
        self._inflight: dict[str, int] = {}
        self._next: dict[str, float] = {}
        self._errors: deque[dict[str, Any]] = deque(maxlen=50)
        self._unreachable: set[str] = set()  # origins whose robots.txt could not be read in this run

    def close(self) -> None:
        if self._own_fetcher:
            self._fetcher.close()

    def add_seeds(self, urls: Iterable[str]) -> int:
        return self.state.add_seeds(urls)

    # -- the run --------------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> CrawlReport:
        """Crawl until the frontier is empty, `max_pages` is reached or `stop` is set (or Ctrl-C): in-flight pages
        finish and are recorded, their images stay pending for the next run when interrupted."""
        with self.state.exclusive():
            return self._run(stop or threading.Event())

    def _run(self, stop: threading.Event) -> CrawlReport:
        c = self.config
        started = time.time()
        self._queues, self._inflight, self._next, self._robots = {}, {}, {}, {}
        self._unreachable = set()
        self._seeds = self.state.seeds()
        for url, depth in self.state.queued():
            self._queues.setdefault(origin_of(url), deque()).append((url, depth))
        progress = self._progress(started, 0)
        fetched_run = 0
        futures: dict[Future[_Outcome], str] = {}
        flush: Future[tuple[int, int]] | None = None
        stopped_by = "frontier empty"
        crashed = False
        pool = ThreadPoolExecutor(max_workers=c.concurrency, thread_name_prefix="crawl")
        sink_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crawl-sink")
        try:
            while True:
                if stop.is_set():
                    stopped_by = "interrupted"
                    break
                budget = c.max_pages - progress.fetched - sum(1 for k in futures.values() if k == "page")
                while budget > 0 and len(futures) < c.concurrency:
                    picked = self._pick()
                    if picked is None:
                        break
                    kind, origin, url, depth = picked
                    now = time.time()
                    gap = max(c.delay, self._crawl_delay(origin))
                    self._inflight[origin] = self._inflight.get(origin, 0) + 1
                    self._next[origin] = now + gap
                    self.state.set_next_allowed(origin, now + gap)
                    task = self._fetch_robots if kind == "robots" else self._fetch_page
                    futures[pool.submit(task, origin, url, depth)] = kind
                    budget -= kind == "page"
                if not futures:
                    if budget <= 0:
                        stopped_by = "max_pages"
                        break
                    wait_for = self._next_ready()
                    if wait_for is None:
                        break
                    stop.wait(wait_for)
                    continue
                ready = self._next_ready() if budget > 0 and len(futures) < c.concurrency else None
                done, _ = wait(list(futures), timeout=ready or 0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    kind = futures.pop(fut)
                    outcome = fut.result()
                    self._inflight[outcome.origin] -= 1
                    if kind == "robots":
                        self._robots_done(outcome)
                    else:
                        fetched_run += 1
                        self._page_done(outcome)
                if done:
                    progress = self._progress(started, fetched_run)
                if flush is not None and flush.done():
                    progress.images_imported = self._flush_done(flush)
                    flush = None
                if flush is None and self.state.pending_count() >= c.batch_size:
                    flush = sink_pool.submit(self._flush)
                if done and self.on_progress:
                    self.on_progress(progress)
        except KeyboardInterrupt:
            stop.set()
            stopped_by = "interrupted"
        except BaseException:
            crashed = True
            raise
        finally:
            interrupted = stop.is_set()
            for fut in futures:
                fut.cancel()
            for fut in [f for f in futures if not f.cancelled()]:
                try:
                    outcome = fut.result()
                except BaseException:  # the page stays queued for the next run
                    continue
                if futures[fut] == "robots":
                    self._robots_done(outcome)
                else:
                    fetched_run += 1
                    self._page_done(outcome)
            pool.shutdown(wait=True)
            if flush is not None:
                self._flush_done(flush)
            if not interrupted and not crashed:
                while self.state.pending_count():  # everything left over, from this run or an earlier one
                    self._flush_done(sink_pool.submit(self._flush))
            sink_pool.shutdown(wait=True)
        progress = self._progress(started, fetched_run)
        if self.on_progress:
            self.on_progress(progress)
        return CrawlReport(**dataclasses.asdict(progress), name=self.state.path.parent.name,
                           interrupted=interrupted, stopped_by=stopped_by, errors=list(self._errors))

    # -- scheduling -----------------------------------------------------------------------------------
    def _pick(self) -> tuple[str, str, str, int] | None:
        """The next request to start: robots.txt of a new origin, or a page of an origin that is free now."""
        now = time.time()
        for origin, queue in list(self._queues.items()):
            if not queue or self._inflight.get(origin, 0) >= self.config.per_host:
                continue
            if origin not in self._next:
                _robots, _fetched, nxt = self.state.host(origin)
                self._next[origin] = nxt
            if self._next[origin] > now:
                continue
            if origin in self._unreachable:
                queue.clear()  # its URLs stay queued in the state, for the next run
                continue
            robots = self._robots.get(origin)
            if robots is None:
                text, fetched, _ = self.state.host(origin)
                if text is not None and fetched is not None and now - fetched < ROBOTS_TTL_S:
                    robots = self._robots[origin] = Protego.parse(text)
                elif self._inflight.get(origin, 0):
                    continue  # robots.txt is being fetched
                else:
                    return "robots", origin, origin + "/robots.txt", 0
            while queue:
                url, depth = queue.popleft()
                if self.state.status(url) != "queued":
                    continue
                if not robots.can_fetch(url, self.config.robots_agent):
                    self.state.record(url, "blocked", error="disallowed by robots.txt")
                    continue
                return "page", origin, url, depth
        return None

    def _next_ready(self) -> float | None:
        """Seconds until an origin with queued URLs and a free slot may be asked again (None: there is none)."""
        now = time.time()
        waits = [max(0.0, self._next.get(o, 0.0) - now) for o, q in self._queues.items()
                 if q and self._inflight.get(o, 0) < self.config.per_host and o not in self._unreachable
                 and not (o not in self._robots and self._inflight.get(o, 0))]  # not while robots.txt is asked
        return max(0.005, min(waits)) if waits else None

    def _crawl_delay(self, origin: str) -> float:
        robots = self._robots.get(origin)
        delay = robots.crawl_delay(self.config.robots_agent) if robots is not None else None
        return float(delay or 0.0)

    # -- workers (threads) ----------------------------------------------------------------------------
    def _fetch_robots(self, origin: str, url: str, depth: int) -> _Outcome:
        try:
            return _Outcome("robots", origin, url, result=self._fetcher.fetch_page(
                url, field="robots.txt", content_types=None, accept="text/plain,*/*;q=0.5"))
        except (FetchError, UnsafeURL) as exc:
            return _Outcome("robots", origin, url, error=exc.message)

    def _fetch_page(self, origin: str, url: str, depth: int) -> _Outcome:
        out = _Outcome("page", origin, url, depth)
        try:
            out.result = self._fetcher.fetch_page(url, field="url", content_types=HTML_TYPES, follow_redirects=False)
        except (FetchError, UnsafeURL) as exc:
            out.error = exc.message
            return out
        r = out.result
        if r.status < 300 and r.content_type in HTML_TYPES:
            fetched_at = datetime.now(UTC).isoformat(timespec="seconds")
            try:
                out.extract = self.extract(r.body, r.final_url, r.headers)
            except Exception as exc:  # one bad page must not stop the crawl
                out.error = f"could not parse the page: {type(exc).__name__}: {exc}"
            else:  # a page with no date (no metas, no Last-Modified) is dated by when it was fetched
                out.extract.images = [i if i.published_time else dataclasses.replace(i, seen_time=fetched_at)
                                      for i in out.extract.images]
        return out

    # -- results (main thread) ------------------------------------------------------------------------
    def _robots_done(self, o: _Outcome) -> None:
        r = o.result
        if r is not None and 200 <= r.status < 300:
            text = r.body.decode("utf-8", errors="replace")
        elif r is not None and 400 <= r.status < 500:
            text = ""  # no robots.txt: everything is allowed (RFC 9309 2.3.1.3)
        else:  # unreachable: nothing of this origin is crawled in this run (RFC 9309 2.3.1.4); the next run asks again
            self._unreachable.add(o.origin)
            reason = o.error or f"HTTP {r.status if r is not None else '?'}"
            self._errors.append({"url": o.url, "error": f"robots.txt unreachable: {reason}"})
            return
        self.state.set_robots(o.origin, text)
        self._robots[o.origin] = Protego.parse(text)
        # the request after robots.txt waits for the Crawl-delay too: counted from when robots.txt was asked for
        asked = self._next.get(o.origin, 0.0) - self.config.delay
        nxt = max(self._next.get(o.origin, 0.0), asked + max(self.config.delay, self._crawl_delay(o.origin)))
        self._next[o.origin] = nxt
        self.state.set_next_allowed(o.origin, nxt)

    def _page_done(self, o: _Outcome) -> None:
        r = o.result
        if o.error is not None or r is None:
            self._fail(o.url, o.error or "no response", r.status if r else None)
            return
        if r.status in REDIRECTS:
            target = normalize_url(r.final_url)
            links = [(target, o.depth)] if target and self._follow(target) else []
            self._queue(self.state.record(o.url, "redirect", r.status, target=target, links=links))
            return
        if r.status >= 300:
            self._fail(o.url, f"HTTP {r.status}", r.status)
            return
        if r.content_type not in HTML_TYPES:
            self.state.record(o.url, "skipped", r.status, error=f"not HTML ({r.content_type or 'no Content-Type'})")
            return
        page = o.extract
        assert page is not None
        links = []
        if o.depth < self.config.max_depth:
            for link in page.links:
                url = normalize_url(link)
                if url and self._follow(url):
                    links.append((url, o.depth + 1))
        self._queue(self.state.record(o.url, "done", r.status, links=links, images=page.images))

    def _fail(self, url: str, error: str, status: int | None) -> None:
        self.state.record(url, "failed", status, error=error)
        self._errors.append({"url": url, "error": error})

    def _follow(self, url: str) -> bool:
        return not _skippable(url) and in_scope(url, self._seeds, self.config.scope)

    def _queue(self, new: list[tuple[str, int]]) -> None:
        for url, depth in new:
            self._queues.setdefault(origin_of(url), deque()).append((url, depth))

    # -- images ---------------------------------------------------------------------------------------
    def _flush(self) -> tuple[int, int]:
        """Hand pending images to the sink (runs in the sink thread); returns (last id taken, imported)."""
        batch = self.state.pending_images(limit=max(self.config.batch_size, 1))
        if not batch:
            return 0, 0
        imported = self.sink([img for _, img in batch])
        return batch[-1][0], int(imported or 0)

    def _flush_done(self, fut: Future[tuple[int, int]]) -> int:
        last, imported = fut.result()  # a sink error stops the crawl; the images stay pending
        if last:
            self.state.drop_images(last)
            return self.state.add_stat("images_imported", imported)
        return self.state.add_stat("images_imported", 0)

    def _progress(self, started: float, fetched_run: int) -> CrawlProgress:
        counts = self.state.counts()
        found = self.state.images_found()
        return CrawlProgress(
            pages_done=counts.get("done", 0), pages_failed=counts.get("failed", 0),
            pages_skipped=counts.get("skipped", 0), redirects=counts.get("redirect", 0),
            blocked=counts.get("blocked", 0), pages_queued=counts.get("queued", 0), images_found=found,
            images_imported=self.state.add_stat("images_imported", 0), fetched_this_run=fetched_run,
            elapsed=time.time() - started,
        )
