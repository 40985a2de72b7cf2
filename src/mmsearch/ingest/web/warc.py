"""Import web images from WARC files (.warc, .warc.gz): pages from HTML responses, bytes from image responses.

Two passes over the files, so the order of records does not matter and memory stays small:
1. an index of image responses (normalised WARC-Target-URI -> file, record offset) and of redirect
   responses (URI -> Location), with no payload kept;
2. every HTML response (status 2xx, Content-Type text/html or application/xhtml+xml) goes through the one
   extractor (`extract_page`, with the record's HTTP headers, so a Last-Modified header can date the page; a
   page with no date of its own gets the record's WARC-Date as `seen_time`, its publishedTime in the corpus);
   each image it references is looked up in the index (following recorded redirects, at most 5 hops) and its
   bytes are read from the WARC by seeking to the record, only when the corpus takes it.

Images that the WARC does not hold are dropped and counted (`images_missing`) unless `fetch_missing` is on
(default off: importing an archive sends no network traffic; with it, the corpus downloads them, through the
SSRF-guarded fetcher). Records that are not responses (warcinfo, request, metadata), revisit records,
non-2xx pages and other content types are skipped and counted by reason. Gzipped WARCs must be compressed per
record, as WARC writers do; a file gzipped as a whole is refused with a hint (`warcio recompress`).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord

from mmsearch.errors import InvalidArgument
from mmsearch.ingest.web.crawler import HTML_TYPES, normalize_url
from mmsearch.ingest.web.types import PageExtract, WebImage

MAX_PAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_REDIRECT_HOPS = 5

Extractor = Callable[[bytes, str, Mapping[str, str]], PageExtract]


@dataclass
class WarcReport:
    files: int = 0
    records: int = 0
    pages: int = 0  # HTML responses extracted
    pages_failed: int = 0  # HTML responses the extractor could not read
    image_records: int = 0  # image responses indexed
    images_found: int = 0  # image references on the pages
    images_from_warc: int = 0  # references whose bytes came from the WARC
    images_to_fetch: int = 0  # references not in the WARC, left to the corpus to download (--fetch-missing)
    images_missing: int = 0  # references not in the WARC, dropped (no --fetch-missing)
    skipped: dict[str, int] = field(default_factory=dict)  # records skipped, by reason
    errors: list[dict[str, Any]] = field(default_factory=list)  # at most 100: {"file", "offset", "uri", "error"}
    corpus: dict[str, Any] = field(default_factory=dict)  # the corpus's import report
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _error(self, file: Path, offset: int, uri: str, error: str) -> None:
        if len(self.errors) < 100:
            self.errors.append({"file": str(file), "offset": offset, "uri": uri, "error": error})


def _media_type(record: ArcWarcRecord) -> str:
    ctype = record.http_headers.get_header("Content-Type") if record.http_headers else None
    return (ctype or "").split(";", 1)[0].strip().lower()


def _status(record: ArcWarcRecord) -> int:
    try:
        return int(record.http_headers.get_statuscode()) if record.http_headers else 0
    except (TypeError, ValueError):
        return 0


def _records(path: Path) -> Iterator[tuple[ArchiveIterator, ArcWarcRecord]]:
    try:
        with open(path, "rb") as fh:
            it = ArchiveIterator(fh)
            for record in it:
                yield it, record
    except ArchiveLoadFailed as exc:
        hint = " (a .warc.gz must be gzipped per record; try `warcio recompress`)" if "gzip" in str(exc) else ""
        raise InvalidArgument(f"file: {path} is not a readable WARC file: {exc}{hint}", field="file") from None
    except OSError as exc:
        raise InvalidArgument(f"file: cannot read {path}: {exc}", field="file") from None


@dataclass
class WarcIndex:
    """Where each image response of a set of WARC files is, and where recorded redirects lead."""

    files: list[Path]
    images: dict[str, tuple[int, int]] = field(default_factory=dict)  # url -> (file index, record offset)
    redirects: dict[str, str] = field(default_factory=dict)

    def resolve(self, url: str) -> tuple[int, int] | None:
        key = normalize_url(url)
        for _ in range(MAX_REDIRECT_HOPS + 1):
            if key is None:
                return None
            if key in self.images:
                return self.images[key]
            key = self.redirects.get(key)
        return None

    def read(self, where: tuple[int, int]) -> bytes | None:
        """The payload of the image record at `where` (None when it cannot be read back)."""
        file_no, offset = where
        with open(self.files[file_no], "rb") as fh:
            fh.seek(offset)
            for record in ArchiveIterator(fh):
                data = record.content_stream().read(MAX_IMAGE_BYTES + 1)
                return data if 0 < len(data) <= MAX_IMAGE_BYTES else None
        return None


def index_warcs(paths: Iterable[Path], report: WarcReport | None = None) -> WarcIndex:
    """Pass 1: image responses and redirects of every file (payloads are not kept)."""
    report = report if report is not None else WarcReport()
    index = WarcIndex(files=[Path(p) for p in paths])
    for n, path in enumerate(index.files):
        for it, record in _records(path):
            if record.rec_type != "response" or record.http_headers is None:
                continue
            uri = normalize_url(record.rec_headers.get_header("WARC-Target-URI") or "")
            if uri is None:
                continue
            status = _status(record)
            if 300 <= status < 400:
                location = record.http_headers.get_header("Location")
                target = normalize_url(urljoin(uri, location)) if location else None
                if target:
                    index.redirects.setdefault(uri, target)
            elif 200 <= status < 300 and _media_type(record).startswith("image/"):
                length = int(record.rec_headers.get_header("Content-Length") or 0)
                if length <= MAX_IMAGE_BYTES + 64 * 1024:  # the record holds HTTP headers too
                    index.images.setdefault(uri, (n, it.get_record_offset()))
                    report.image_records += 1
    return index


def warc_images(
    paths: Iterable[Path | str],
    fetch_missing: bool = False,
    extract: Extractor | None = None,
    report: WarcReport | None = None,
) -> Iterator[WebImage]:
    """Pass 2, lazily: the images of every HTML page in the files, with their bytes when the WARC has them."""
    if extract is None:
        from mmsearch.ingest.web.extract import extract_page

        extract = extract_page
    report = report if report is not None else WarcReport()
    files = [Path(p) for p in paths]
    report.files = len(files)
    index = index_warcs(files, report)
    cache: dict[tuple[int, int], bytes | None] = {}  # the last few reads: the same image on many pages
    for path in files:
        for it, record in _records(path):
            report.records += 1
            uri = record.rec_headers.get_header("WARC-Target-URI") or ""
            if record.rec_type != "response":
                report._skip(f"{record.rec_type} record")
                continue
            if record.http_headers is None:
                report._skip("response without HTTP headers")
                continue
            status, mtype = _status(record), _media_type(record)
            if mtype.startswith("image/"):
                continue  # indexed in pass 1; read when a page references it
            if not 200 <= status < 300:
                report._skip(f"HTTP {status // 100}xx")
                continue
            if mtype not in HTML_TYPES:
                report._skip(f"not HTML ({mtype or 'no Content-Type'})")
                continue
            body = record.content_stream().read(MAX_PAGE_BYTES + 1)
            if len(body) > MAX_PAGE_BYTES:
                report._skip("page over 5 MB")
                continue
            headers = {k.lower(): v for k, v in record.http_headers.headers}
            try:
                page = extract(body, uri, headers)
            except Exception as exc:  # one bad record must not stop the import
                report.pages_failed += 1
                report._error(path, it.offset, uri, f"{type(exc).__name__}: {exc}")
                continue
            report.pages += 1
            seen = record.rec_headers.get_header("WARC-Date")  # when the archive captured the page
            for image in page.images:
                report.images_found += 1
                if image.published_time is None and seen:
                    image = dataclasses.replace(image, seen_time=seen)
                where = index.resolve(image.image_url)
                if where is not None:
                    if where not in cache:
                        if len(cache) >= 256:
                            cache.pop(next(iter(cache)))
                        cache[where] = index.read(where)
                    data = cache[where]
                    if data is not None:
                        report.images_from_warc += 1
                        yield dataclasses.replace(image, data=data)
                        continue
                if fetch_missing:
                    report.images_to_fetch += 1
                    yield image
                else:
                    report.images_missing += 1


def import_warcs(
    paths: Iterable[Path | str],
    corpus: Any,
    fetch_missing: bool = False,
    on_progress: Callable[[WarcReport], None] | None = None,
    extract: Extractor | None = None,
) -> WarcReport:
    """Stream the images of WARC files into a `WebCorpus` (anything with `add(images, on_progress)`)."""
    started = time.perf_counter()
    report = WarcReport()
    files = [Path(p) for p in paths]
    for p in files:
        if not p.is_file():
            raise InvalidArgument(f"file: {p} does not exist or is not a file", field="file")

    def progress(corpus_report: Any) -> None:
        report.corpus = corpus_report.as_dict() if hasattr(corpus_report, "as_dict") else dict(corpus_report)
        report.seconds = time.perf_counter() - started
        if on_progress:
            on_progress(report)

    result = corpus.add(warc_images(files, fetch_missing, extract, report), on_progress=progress)
    report.corpus = result.as_dict() if hasattr(result, "as_dict") else dict(result)
    report.skipped = dict(Counter(report.skipped).most_common())
    report.seconds = time.perf_counter() - started
    return report
