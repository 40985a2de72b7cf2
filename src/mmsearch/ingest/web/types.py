"""Data crossing the web corpus's module borders: what extraction finds on a page, what the corpus imports."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WebImage:
    """One image seen on one web page, before its bytes are checked.

    `published_time` is ISO 8601 with an offset (`2024-12-18T22:24:24+08:00`) or None when the page gives
    none. `seen_time` (same format) is when the source saw the page, for a page without a date: the WARC
    record's WARC-Date, the crawl's fetch time; shown as `publishedTime` when there is no `published_time`
    (else the import time is), never ranked as one. `data` carries the bytes when the source already has them
    (a WARC record); otherwise the corpus downloads `image_url`. `width`/`height` are hints (LAION metadata);
    the bytes decide."""

    image_url: str
    host_page_url: str
    title: str = ""
    published_time: str | None = None
    data: bytes | None = None
    width: int | None = None
    height: int | None = None
    alt: str = ""  # the raw alt text, kept apart from `title` for ranking and debugging
    seen_time: str | None = None


@dataclass
class PageExtract:
    """What one HTML page yields: its images and the links a crawler may follow."""

    url: str  # the page's final URL (after redirects)
    title: str = ""
    published_time: str | None = None
    images: list[WebImage] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    base_url: str = ""  # <base href> when present, else url
