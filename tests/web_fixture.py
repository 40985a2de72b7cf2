"""A small generated web site on loopback, and the same site as a WARC file, for crawler/extractor/corpus tests.

`FixtureSite` is a threaded HTTP server on 127.0.0.1 (random port) serving:

- `/` (UTF-8) linking to everything below with relative, absolute and protocol-relative URLs, plus an
  off-site link (`http://localhost:PORT/offsite.html`: same server, another host name) and a PDF (once with
  its extension, once without: `/files/report`, only its Content-Type says it is not HTML);
- `/news/spring.html` (UTF-8, charset in a <meta>): srcset, lazy `data-src`, og:image, figure/figcaption,
  a 1x1 tracking pixel, a 16x16 icon, `article:published_time`;
- `/news/autumn.html` (GBK, charset only in the Content-Type header) and `/news/winter.html` (GB2312, charset
  only in a <meta http-equiv>), Chinese titles, published times as `<time datetime>` and JSON-LD;
- `/gallery/` with `<base href="/media/">`, no published time in the page but a Last-Modified header;
- `/redirect/a` -> 301 -> `/redirect/b` -> 302 -> `/news/moved.html`; `/missing` (404); `/slow.html`
  (answers after `slow_seconds`); `/private/secret.html` (disallowed by robots.txt);
- `/robots.txt`: `Disallow: /private/` and `Crawl-delay: <crawl_delay>` for every user agent (or, with
  `robots_status`, a 404 or 5xx answer);
- generated PNG/JPEG images of different sizes with distinct content (so perceptual hashes differ), one
  duplicate under two URLs (`/img/rose.jpg` and `/img/rose-copy.jpg`).

Every request is logged (`log`: time, path, Host header, user agent) so tests can check politeness.
`write_warc` writes the same responses as WARC records (warcio), so WARC imports see the very same site.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image


def make_image(width: int, height: int, seed: int, fmt: str = "PNG") -> bytes:
    """A picture with blocky random colours: distinct per seed, also to a perceptual hash."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(blocks, "RGB").resize((width, height), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


@dataclass(frozen=True)
class LogEntry:
    time: float  # time.monotonic() when the request arrived
    path: str
    host: str  # the Host header
    user_agent: str


LAST_MODIFIED = "Wed, 05 Jun 2024 08:30:00 GMT"  # the gallery's Last-Modified (2024-06-05T08:30:00+00:00)

# path -> (width, height, seed, format)
IMAGES: dict[str, tuple[int, int, int, str]] = {
    "/img/rose.jpg": (320, 240, 1, "JPEG"),
    "/img/rose-copy.jpg": (320, 240, 1, "JPEG"),  # the same bytes as rose.jpg under another URL
    "/img/tulip.png": (400, 300, 2, "PNG"),
    "/img/tulip-2x.png": (800, 600, 2, "PNG"),
    "/img/lazy-lily.jpg": (300, 300, 3, "JPEG"),
    "/img/og-cover.jpg": (600, 315, 4, "JPEG"),
    "/img/figure-orchid.png": (256, 200, 5, "PNG"),
    "/img/pixel.png": (1, 1, 6, "PNG"),  # a tracking pixel
    "/img/icon.png": (16, 16, 7, "PNG"),  # a site icon
    "/img/maple.jpg": (360, 240, 8, "JPEG"),  # on the GBK page
    "/img/snow.png": (240, 320, 9, "PNG"),  # on the GB2312 page
    "/media/sea.jpg": (300, 200, 10, "JPEG"),  # gallery, through <base href>
    "/media/sky.png": (200, 300, 11, "PNG"),
    "/img/moved.png": (220, 220, 12, "PNG"),  # on the redirect target
    "/img/slow.png": (200, 200, 13, "PNG"),  # on the slow page
    "/private/secret.png": (200, 200, 14, "PNG"),  # only on the disallowed page
}

# Pages a polite, same-site crawl of `/` should end up with (final URLs), and their expected titles.
PAGE_TITLES = {
    "/": "Fixture home 首页",
    "/news/spring.html": "春天的花园 Spring garden",
    "/news/autumn.html": "北京的秋天",
    "/news/winter.html": "冬天的雪景",
    "/gallery/": "Gallery 画廊",
    "/news/moved.html": "Moved page 已移动",
    "/about.html": "About 关于",
}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (the slow page's timeout) is expected; anything else is printed as usual."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class FixtureSite:
    """The generated site and its server. Use as a context manager, or call `start()`/`stop()`."""

    def __init__(self, slow_seconds: float = 2.0, crawl_delay: float | None = 0.2, robots_status: int = 200) -> None:
        self.slow_seconds = slow_seconds
        self.crawl_delay = crawl_delay
        self.robots_status = robots_status  # 404: no robots.txt; 5xx: robots.txt unreachable
        self.log: list[LogEntry] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.images = {path: make_image(w, h, seed, fmt) for path, (w, h, seed, fmt) in IMAGES.items()}

    # -- server ---------------------------------------------------------------------------------------
    def start(self) -> FixtureSite:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                with site._lock:
                    site.log.append(LogEntry(time.monotonic(), self.path, self.headers.get("Host", ""),
                                             self.headers.get("User-Agent", "")))
                if self.path == "/slow.html":
                    time.sleep(site.slow_seconds)
                resp = site.response(self.path, self.headers.get("Host", ""))
                try:
                    self.send_response(resp.status)
                    for name, value in resp.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(resp.body)))
                    self.end_headers()
                    self.wfile.write(resp.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FixtureSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- the request log ------------------------------------------------------------------------------
    def requests(self, host: str | None = None) -> list[LogEntry]:
        """Logged requests, optionally only those whose Host header is `host` (default: every host)."""
        with self._lock:
            return [e for e in self.log if host is None or e.host == host]

    def paths(self) -> list[str]:
        return [e.path for e in self.requests()]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # -- content --------------------------------------------------------------------------------------
    def response(self, path: str, host: str = "") -> Response:
        """What the server answers for `path` (also what `write_warc` records)."""
        path = path.split("#", 1)[0]
        if path in self.images:
            fmt = IMAGES[path][3]
            return Response(200, (("Content-Type", f"image/{fmt.lower()}"),), self.images[path])
        if path == "/robots.txt" and self.robots_status != 200:
            return Response(self.robots_status, (("Content-Type", "text/plain"),), b"no robots here")
        if path == "/robots.txt":
            lines = ["User-agent: *", "Disallow: /private/"]
            if self.crawl_delay is not None:
                lines.append(f"Crawl-delay: {self.crawl_delay}")
            return Response(200, (("Content-Type", "text/plain"),), ("\n".join(lines) + "\n").encode())
        if path == "/redirect/a":
            return Response(301, (("Location", "/redirect/b"),))
        if path == "/redirect/b":
            return Response(302, (("Location", f"{self.base_url}/news/moved.html"),))
        if path in ("/files/report.pdf", "/files/report"):
            return Response(200, (("Content-Type", "application/pdf"),), b"%PDF-1.4\n% not really a pdf\n")
        page = self._page(path, host)
        if page is None:
            return Response(404, (("Content-Type", "text/html; charset=utf-8"),),
                            b"<html><head><title>Not found</title></head><body>404</body></html>")
        body, headers = page
        return Response(200, tuple(headers), body)

    def _page(self, path: str, host: str) -> tuple[bytes, list[tuple[str, str]]] | None:
        base = self.base_url
        html = "text/html; charset=utf-8"
        if path == "/":
            return (f"""<!doctype html><html><head><meta charset="utf-8"><title>{PAGE_TITLES['/']}</title></head>
<body><h1>Home</h1>
<a href="news/spring.html">spring</a>
<a href="/news/autumn.html#top">autumn</a>
<a href="{base}/news/winter.html">winter</a>
<a href="//127.0.0.1:{self.port}/gallery/">gallery</a>
<a href="/redirect/a">moved</a>
<a href="/missing">broken</a>
<a href="/slow.html">slow</a>
<a href="/private/secret.html">secret</a>
<a href="/files/report.pdf">pdf</a>
<a href="/files/report">pdf without an extension</a>
<a href="http://localhost:{self.port}/offsite.html">elsewhere</a>
<a href="mailto:someone@example.com">mail</a>
<a href="javascript:void(0)">js</a>
<img src="/img/icon.png" width="16" height="16" alt="icon">
</body></html>""".encode(), [("Content-Type", html)])
        if path == "/news/spring.html":
            return (f"""<!doctype html><html><head><meta charset="utf-8">
<title>{PAGE_TITLES['/news/spring.html']}</title>
<meta property="og:image" content="{base}/img/og-cover.jpg">
<meta property="article:published_time" content="2024-12-18T22:24:24+08:00">
</head><body>
<h1>春天的花园</h1>
<img src="../img/rose.jpg" alt="红玫瑰 red rose">
<img src="/img/tulip.png" srcset="/img/tulip.png 1x, /img/tulip-2x.png 2x" alt="郁金香 tulips">
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="/img/lazy-lily.jpg" class="lazy" alt="百合 lily">
<figure><img src="/img/figure-orchid.png"><figcaption>兰花 orchid in bloom</figcaption></figure>
<img src="/img/rose-copy.jpg" alt="红玫瑰 again">
<img src="/img/pixel.png" width="1" height="1" alt="">
<a href="/about.html">about</a> <a href="/">home</a>
</body></html>""".encode(), [("Content-Type", html)])
        if path == "/news/autumn.html":  # GBK, charset only in the header
            text = f"""<html><head><title>{PAGE_TITLES['/news/autumn.html']}</title></head><body>
<h1>北京的秋天</h1><p>发布于 <time datetime="2023-10-01T09:00:00+08:00">2023年10月1日</time></p>
<img src="/img/maple.jpg" alt="红色的枫叶">
<a href="/">首页</a></body></html>"""
            return text.encode("gbk"), [("Content-Type", "text/html; charset=gbk")]
        if path == "/news/winter.html":  # GB2312, charset only in a meta http-equiv
            ld = json.dumps({"@context": "https://schema.org", "@type": "NewsArticle",
                             "datePublished": "2022-01-15T08:00:00+08:00"})
            text = f"""<html><head>
<meta http-equiv="Content-Type" content="text/html; charset=gb2312">
<title>{PAGE_TITLES['/news/winter.html']}</title>
<script type="application/ld+json">{ld}</script></head><body>
<h1>冬天的雪景</h1><img src="/img/snow.png" alt="白色的雪">
</body></html>"""
            return text.encode("gb2312"), [("Content-Type", "text/html")]
        if path in ("/gallery/", "/gallery"):
            return (f"""<html><head><meta charset="utf-8"><title>{PAGE_TITLES['/gallery/']}</title>
<base href="/media/"></head><body>
<img src="sea.jpg" alt="大海 the sea"><img src="sky.png" alt="天空 the sky">
</body></html>""".encode(), [("Content-Type", html), ("Last-Modified", LAST_MODIFIED)])
        if path == "/news/moved.html":
            return (f"""<html><head><meta charset="utf-8"><title>{PAGE_TITLES['/news/moved.html']}</title></head>
<body><img src="/img/moved.png" alt="搬家 moving boxes"></body></html>""".encode(), [("Content-Type", html)])
        if path == "/slow.html":
            return ("""<html><head><meta charset="utf-8"><title>Slow 慢</title></head>
<body><img src="/img/slow.png" alt="slow"></body></html>""".encode(), [("Content-Type", html)])
        if path == "/about.html":
            return (f"""<html><head><meta charset="utf-8"><title>{PAGE_TITLES['/about.html']}</title></head>
<body><p>about</p><a href="/">home</a></body></html>""".encode(),
                    [("Content-Type", html), ("Last-Modified", formatdate(1_700_000_000, usegmt=True))])
        if path == "/offsite.html":
            return (b"<html><head><title>Offsite</title></head><body>offsite</body></html>",
                    [("Content-Type", html)])
        if path == "/private/secret.html":
            return (b"""<html><head><title>Secret</title></head>
<body><img src="/private/secret.png" alt="secret"></body></html>""", [("Content-Type", html)])
        return None

    # -- WARC -----------------------------------------------------------------------------------------
    def warc_paths(self, images: bool = True) -> list[str]:
        """What `write_warc` records by default: the crawlable pages, a redirect chain, a 404, the PDF and
        (with `images`) every image except the gallery's sky.png (so one referenced image is missing)."""
        pages = ["/", "/news/spring.html", "/news/autumn.html", "/news/winter.html", "/gallery/", "/redirect/a",
                 "/redirect/b", "/news/moved.html", "/missing", "/files/report.pdf", "/about.html"]
        return pages + ([p for p in IMAGES if p != "/media/sky.png"] if images else [])

    def write_warc(self, path: Path, paths: Iterable[str] | None = None, gzip: bool = True) -> Path:
        """A WARC file (gzip per record with `gzip`) of this site's responses, with a warcinfo record first and
        a request record before each response, as real crawlers write them. Needs no running server: URLs use
        `base_url` (port 0 when not started)."""
        from warcio.statusandheaders import StatusAndHeaders
        from warcio.warcwriter import WARCWriter

        reasons = {200: "OK", 301: "Moved Permanently", 302: "Found", 404: "Not Found"}
        with open(path, "wb") as fh:
            writer = WARCWriter(fh, gzip=gzip)
            writer.write_record(writer.create_warcinfo_record(path.name, {"software": "mmsearch tests"}))
            for p in paths if paths is not None else self.warc_paths():
                url = self.url(p)
                resp = self.response(p, f"127.0.0.1:{self.port}")
                req_headers = StatusAndHeaders(f"GET {p} HTTP/1.1", [("Host", f"127.0.0.1:{self.port}")],
                                               is_http_request=True)
                writer.write_record(writer.create_warc_record(url, "request", http_headers=req_headers))
                headers = StatusAndHeaders(f"{resp.status} {reasons.get(resp.status, 'OK')}",
                                           [*resp.headers, ("Content-Length", str(len(resp.body)))],
                                           protocol="HTTP/1.1")
                writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(resp.body),
                                                              http_headers=headers))
        return path


def serve(**kwargs: object) -> Iterator[FixtureSite]:
    """For pytest fixtures: `yield from serve(slow_seconds=...)`."""
    site = FixtureSite(**kwargs)  # type: ignore[arg-type]
    site.start()
    try:
        yield site
    finally:
        site.stop()
