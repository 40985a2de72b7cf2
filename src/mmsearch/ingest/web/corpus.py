"""The one import path of the web image corpus: every builder (crawler, WARC import, LAION/Wukong metadata)
hands `WebImage`s to `WebCorpus.add`, which downloads and checks the bytes, drops what is not a picture worth
returning (icons, spacers, tracking pixels, data URIs, non-images), collapses duplicates, reads and embeds
the pictures, and upserts them into the `web` dataset.

Duplicates: identical bytes (sha256) and near-duplicates (a 64-bit perceptual hash within
`phash_distance` bits, re-encoded or resized copies) become ONE item. A persistent index in the catalog
database (`web_image_hashes`: dataset, sha256 -> item id, phash split into 8 bands of 8 bits) finds them
across imports and processes: two hashes within 7 bits differ in at most 7 bands, so they share at least
one band exactly (multi-index hashing); candidates sharing a band get an exact Hamming check. A close hash is
not enough: flat or nearly flat pictures hash alike whatever their colour or shape, so a near-duplicate must
also look like the same picture (`web_image_looks`: its aspect ratio within ASPECT_TOLERANCE and its mean
colour within COLOUR_DISTANCE, see `same_look`).

Which copy represents the item (the "best-titled, newest copy"), compared in this order:
1. title tier: informative (3) > short, under 6 letters/CJK characters (2) > generic or filename-like
   ("image", "图片", "IMG_1234", "a1b2c3.jpg", a URL, digits/hex only) (1) > empty (0);
2. newer publishedTime (a copy without one is oldest; a time the page did not give, see below, does not count);
3. longer title, counted up to 120 characters (longer is not more informative past that);
4. otherwise the copy already indexed stays (re-imports change nothing).
A copy's title is its `title`, or its `alt` text when it has no title.
The winner gives every page field (title, hostPageUrl, site, publishedTime, imageUrl, width, height), so
a title is never shown with another page's link or date. The item id is derived from the bytes of the
first copy seen (sha256 prefix) and never changes, so results and upserts stay stable.

`publishedTime` is never empty: the page's own time (publication metas, JSON-LD, `<time>`, the HTTP
Last-Modified header; a LAION time column), else when the source saw the page (`WebImage.seen_time`: the WARC
record's WARC-Date, the crawler's fetch time), else the import time. Times mmsearch supplies itself are written
in +08:00, like the spec's examples, and only a page's own time is stored in `published_ts` (what ranks
copies and what a date filter means), so re-importing an undated page changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import ipaddress
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from mmsearch.catalog.models import BANDS, WebImageHashRow, WebImageLookRow
from mmsearch.encoders.base import l2_normalise
from mmsearch.errors import InvalidArgument, MMSearchError
from mmsearch.ingest.web.types import WebImage
from mmsearch.media import FetchConfig, Fetcher, FetchError, UnsafeURL, decode_image, is_data_uri, sniff_image_format
from mmsearch.media.images import MAX_BYTES, DecodedImage
from mmsearch.schema.fields import OCR_FIELD, DatasetInfo
from mmsearch.schema.validate import validate_item
from mmsearch.store.base import Record
from mmsearch.text import field_text, join_fields

WEB_DATASET_TYPE = "web"
MAX_PHASH_DISTANCE = BANDS - 1
ASPECT_TOLERANCE = 0.03  # a resized copy keeps its shape; a crop or another picture rarely does
COLOUR_DISTANCE = 24.0  # mean RGB distance (0..441); re-encoding moves it by a few units, recolouring by far more
MAX_REPORTED_FAILURES = 1_000
TITLE_MAX_CHARS = 1_000
TITLE_LENGTH_CAP = 120  # characters of title that still count as "more informative"
SHORT_TITLE = 6  # letters/CJK characters under which a title is "short"
ID_HEX = 32  # item id: the first 128 bits of the first copy's sha256

WEB_SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
        {"name": "hostPageUrl", "type": "string"},
        {"name": "imageUrl", "type": "string"},
        {"name": "publishedTime", "type": "string"},  # ISO 8601 with offset, as the IQS spec shows it
        {"name": "published_ts", "type": "int64", "filterable": True, "sortable": True},  # epoch seconds
        {"name": "width", "type": "int32", "filterable": True, "sortable": True},
        {"name": "height", "type": "int32", "filterable": True, "sortable": True},
        {"name": "site", "type": "string", "filterable": True},  # the page's host
        {"name": "site_domains", "type": "array<string>", "filterable": True},  # host + parent domains
        {"name": "phash", "type": "string", "filterable": True},  # 16 hex digits
        {"name": "image", "type": "image"},  # the imageUrl again, so image-aware stages see the picture
    ]
}


@dataclass(frozen=True)
class CorpusConfig:
    """`min_side`: pictures whose shorter side is under it are icons, spacers or tracking pixels and are
    skipped (also before downloading, when the source states the size). `phash_distance`: bits (of 64)
    within which two pictures are the same picture; at most 7. `fetch`: the downloader's settings (the SSRF
    guard stays on; tests admit loopback with `allowed_networks`); None = the engine's."""

    min_side: int = 100
    max_bytes: int = MAX_BYTES
    workers: int = 8
    phash_distance: int = 6
    batch_size: int = 64
    fetch: FetchConfig | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_side <= 6000:
            raise InvalidArgument("min_side: must be an integer in [1, 6000]", field="min_side")
        if not 0 <= self.phash_distance <= MAX_PHASH_DISTANCE:
            raise InvalidArgument(f"phash_distance: must be an integer in [0, {MAX_PHASH_DISTANCE}]",
                                  field="phash_distance")
        if not 1 <= self.workers <= 128:
            raise InvalidArgument("workers: must be an integer in [1, 128]", field="workers")
        if not 1 <= self.batch_size <= 10_000:
            raise InvalidArgument("batch_size: must be an integer in [1, 10000]", field="batch_size")
        if self.max_bytes < 1024:
            raise InvalidArgument("max_bytes: must be at least 1024", field="max_bytes")


@dataclass(frozen=True)
class SourceError:
    """A source record that could not be read (a bad metadata row, a broken WARC record): reported, skipped."""

    index: int
    reason: str
    source: str = ""


@dataclass
class WebImportReport:
    seen: int = 0  # images handed in (bad source records not included)
    bad_rows: int = 0
    downloaded: int = 0
    skipped_data_uri: int = 0
    skipped_small: int = 0
    skipped_not_image: int = 0
    failed: int = 0
    duplicates_merged: int = 0  # copies that joined an existing item (identical or near-identical picture)
    unchanged: int = 0  # copies already indexed as they are (a re-import)
    imported: int = 0  # new items
    updated: int = 0  # existing items whose representative copy changed
    failures: list[dict[str, Any]] = field(default_factory=list)  # {"url" or "row", "reason"}, capped
    failures_truncated: bool = False
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Images processed per second."""
        return (self.seen + self.bad_rows) / self.seconds if self.seconds else 0.0

    def note(self, entry: dict[str, Any]) -> None:
        if len(self.failures) < MAX_REPORTED_FAILURES:
            self.failures.append(entry)
        else:
            self.failures_truncated = True

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items()}
        out["seconds"] = round(self.seconds, 3)
        out["images_per_second"] = round(self.rate, 1)
        return out


# -- page fields ------------------------------------------------------------------------------------------
def page_host(url: str) -> str:
    """The lower-case host of a URL, without port or trailing dot ("" when there is none)."""
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    return host.strip(".").lower()


def site_domains(host: str) -> list[str]:
    """The host and each parent domain, without the bare TLD: news.sohu.com -> [news.sohu.com, sohu.com].
    Filtering `must_not site_domains in [x]` then excludes x and all its subdomains, exactly."""
    if not host:
        return []
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) == 1:
        return [host]
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (date or date-time, `Z` or an offset; naive times are taken as UTC) or epoch seconds
    (milliseconds when too large). Raises ValueError for anything else; None/"" gives None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value:  # NaN: a missing value in a dataframe
            return None
        seconds = value / 1000 if abs(value) > 10**11 else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d{9,13}", text):
            return parse_time(int(text))
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"expected an ISO 8601 time or epoch seconds, got {type(value).__name__}")


def format_time(ts: datetime) -> str:
    return ts.isoformat(timespec="seconds")


SUPPLIED_TZ = timezone(timedelta(hours=8))  # times mmsearch supplies (seen, imported) are shown in +08:00


def supplied_time(ts: datetime | None = None) -> str:
    """A time mmsearch supplies for an undated page (`ts`, else now), at seconds, in +08:00."""
    ts = ts if ts is not None else datetime.now(UTC)
    return format_time(ts.astimezone(SUPPLIED_TZ).replace(microsecond=0))


_GENERIC_TITLES = frozenset({
    "image", "images", "img", "photo", "photos", "picture", "pic", "pics", "untitled", "no title", "default",
    "thumbnail", "thumb", "banner", "logo", "icon", "placeholder", "null", "none", "undefined", "n/a", "-",
    "图片", "图像", "照片", "无标题", "未命名", "缩略图", "配图", "图", "点击查看大图", "查看大图", "image description",
})
_FILENAME = re.compile(r"^[\w\-. ()]+\.(jpe?g|png|gif|webp|bmp|tiff?|svg|ico|avif|heic)$", re.IGNORECASE)
_CAMERA = re.compile(r"^(img|dsc|dscn|dcim|pxl|p|screenshot|wx_camera|mmexport|image)[_\- ]?\d[\d_\-]*$",
                     re.IGNORECASE)
_CODE = re.compile(r"^[0-9a-f_\-]{6,}$|^\d+$", re.IGNORECASE)
_WORD_CHARS = re.compile(r"[^\W\d_]", re.UNICODE)  # letters, CJK included


def clean_title(title: str) -> str:
    return " ".join((title or "").split())[:TITLE_MAX_CHARS]


def title_tier(title: str) -> int:
    """3 informative, 2 short, 1 generic or filename-like, 0 empty (see the module docstring)."""
    t = clean_title(title)
    if not t:
        return 0
    low = t.lower()
    if (low in _GENERIC_TITLES or _FILENAME.match(t) or _CAMERA.match(t) or _CODE.match(t)
            or low.startswith(("http://", "https://", "www."))):
        return 1
    return 2 if len(_WORD_CHARS.findall(t)) < SHORT_TITLE else 3


def copy_rank(title: str, published_ts: int | None) -> tuple[int, int, int]:
    """Higher is better: title tier, then newer, then longer title (capped)."""
    t = clean_title(title)
    return title_tier(t), published_ts if published_ts is not None else -(2**62), min(len(t), TITLE_LENGTH_CAP)


@dataclass(frozen=True)
class Look:
    aspect: float  # width / height
    colour: tuple[float, float, float]  # mean R, G, B in 0..255


def look_of(image: Image.Image) -> Look:
    small = image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
    r, g, b = np.asarray(small, dtype=np.float64).reshape(-1, 3).mean(axis=0).tolist()
    return Look(image.width / max(1, image.height), (r, g, b))


def same_look(a: Look, b: Look) -> bool:
    """Same shape (aspect ratios within ASPECT_TOLERANCE of each other) and close mean colour."""
    shape = abs(a.aspect / b.aspect - 1.0) <= ASPECT_TOLERANCE
    colour = sum((x - y) ** 2 for x, y in zip(a.colour, b.colour, strict=True)) ** 0.5 <= COLOUR_DISTANCE
    return shape and colour


# -- hashes -----------------------------------------------------------------------------------------------
def perceptual_hash(image: Image.Image) -> int:
    import imagehash

    bits = imagehash.phash(image).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def bands(phash: int) -> list[int]:
    return [(phash >> (8 * (BANDS - 1 - i))) & 0xFF for i in range(BANDS)]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# -- the import path --------------------------------------------------------------------------------------
@dataclass
class _Copy:
    """A checked, decoded copy of one picture, with its page fields."""

    web: WebImage
    image: DecodedImage
    phash: int
    look: Look
    title: str
    published: datetime | None  # the page's own time: ranks copies
    fetched: bool = False  # downloaded here (False: the builder supplied the bytes)
    seen: datetime | None = None  # when the source saw an undated page: shown, not ranked

    @property
    def published_ts(self) -> int | None:
        return int(self.published.timestamp()) if self.published else None

    def rank(self) -> tuple[int, int, int]:
        return copy_rank(self.title, self.published_ts)


@dataclass
class _Group:
    """One item during a batch: the representative so far, and whether it must be (re)written."""

    item_id: str
    stored: dict[str, Any] | None  # the document in the store before this batch
    winner: _Copy | None = None  # a copy from this batch that beats the stored document

    def rank(self) -> tuple[int, int, int]:
        if self.winner is not None:
            return self.winner.rank()
        doc = self.stored or {}
        return copy_rank(str(doc.get("title") or ""), doc.get("published_ts"))


class WebCorpus:
    """Feeds the `web` dataset. One instance per import; `close()` releases its downloader."""

    def __init__(self, mm: Any, dataset_id: str = "web", config: CorpusConfig | None = None) -> None:
        self.mm = mm
        self.dataset_id = dataset_id
        self.config = config or CorpusConfig()
        base = self.config.fetch or mm.fetcher.config
        self.fetcher = Fetcher(dataclasses.replace(base, max_bytes=self.config.max_bytes))
        self._lock = threading.Lock()  # one batch at a time: dedup decisions must see each other

    def close(self) -> None:
        self.fetcher.close()

    def __enter__(self) -> WebCorpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def maintain(self) -> dict[str, Any]:
        """Build missing indexes and fold new rows into them (what `add` does at its end by default)."""
        return dict(self.mm.store.maintain(self.ensure_dataset()))

    def ensure_dataset(self) -> DatasetInfo:
        """The dataset, created with WEB_SCHEMA (type `web`, the engine's vector dimension) when missing."""
        mm = self.mm
        if mm.catalog.has_dataset(self.dataset_id):
            info = mm.dataset(self.dataset_id)
            if info.type != WEB_DATASET_TYPE:
                raise InvalidArgument(
                    f"dataset_id: dataset {self.dataset_id!r} is of type {info.type}, not web; choose another "
                    "--dataset", field="dataset_id")
            return info
        with Session(mm.catalog.engine) as s, s.begin():  # hashes left by a dropped dataset of the same id
            s.execute(delete(WebImageHashRow).where(WebImageHashRow.dataset_id == self.dataset_id))
            s.execute(delete(WebImageLookRow).where(WebImageLookRow.dataset_id == self.dataset_id))
        return mm.create_dataset(self.dataset_id, WEB_SCHEMA, type=WEB_DATASET_TYPE, vector_dim=mm.default_dim())

    def add(
        self,
        images: Iterable[WebImage | SourceError],
        on_progress: Callable[[WebImportReport], None] | None = None,
        maintain: bool = True,
    ) -> WebImportReport:
        """Import images (SourceErrors are counted and reported); `on_progress` gets the report per batch.
        `maintain=False` leaves index upkeep to the caller (`maintain()`), for builders that call `add` often."""
        info = self.ensure_dataset()
        encoder = self.mm.encoder
        if encoder is not None and encoder.dim != info.vector_dim:
            raise InvalidArgument(
                f"dataset {info.id!r} stores {info.vector_dim}-d vectors but the model {encoder.model_id} gives "
                f"{encoder.dim}-d; use another --dataset or set MMSEARCH_CLIP_MODEL", field="dataset_id")
        report = WebImportReport()
        started = time.perf_counter()
        with self._lock:
            for batch in _batches(images, self.config.batch_size):
                todo: list[WebImage] = []
                for entry in batch:
                    if isinstance(entry, SourceError):
                        report.bad_rows += 1
                        report.note({"row": entry.index, "source": entry.source, "reason": entry.reason})
                    else:
                        report.seen += 1
                        todo.append(entry)
                copies = self._check_all(todo, report)
                self._merge(info, copies, report)
                report.seconds = time.perf_counter() - started
                if on_progress:
                    on_progress(report)
        if maintain and (report.imported or report.updated):
            self.mm.store.maintain(info)
        report.seconds = time.perf_counter() - started
        return report

    # -- download and check ----------------------------------------------------------------------------
    def _check_all(self, images: list[WebImage], report: WebImportReport) -> list[_Copy]:
        with ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="mmsearch-web") as pool:
            outcomes = list(pool.map(self._check, images))
        copies = []
        for web, outcome in zip(images, outcomes, strict=True):
            if isinstance(outcome, _Copy):
                copies.append(outcome)
                continue
            kind, reason, downloaded = outcome
            report.downloaded += downloaded
            if kind == "failed":
                report.failed += 1
                report.note({"url": _short(web.image_url), "reason": reason})
            else:
                setattr(report, f"skipped_{kind}", getattr(report, f"skipped_{kind}") + 1)
        report.downloaded += sum(1 for c in copies if c.fetched)
        return copies

    def _check(self, web: WebImage) -> _Copy | tuple[str, str, int]:
        """A decoded copy, or (skip kind or "failed", reason, 1 if bytes were downloaded)."""
        url = (web.image_url or "").strip()
        if is_data_uri(url):
            return "data_uri", "inline data URI", 0
        if web.width and web.height and min(web.width, web.height) < self.config.min_side:
            return "small", f"{web.width}x{web.height} (stated) under {self.config.min_side} px", 0
        data = web.data
        got = 0
        if data is None:
            try:
                data = self.fetcher.fetch(url, field="imageUrl").data
                got = 1
            except FetchError as exc:
                not_image = exc.status is not None and 200 <= exc.status < 300 and "not an image" in exc.message
                return ("not_image" if not_image else "failed"), exc.message, 0
            except UnsafeURL as exc:
                return "failed", exc.message, 0
            except MMSearchError as exc:
                return "failed", exc.message, 0
            except Exception as exc:  # e.g. a malformed URL the HTTP client refuses
                return "failed", f"imageUrl: {type(exc).__name__}: {exc}", 0
        if sniff_image_format(data[:16]) is None:
            return "not_image", "the bytes are not a supported image format", got
        try:
            with Image.open(io.BytesIO(data)) as header:
                w, h = header.size
        except Exception as exc:  # a corrupt header: reported with the URL
            return "failed", f"imageUrl: image header is corrupt: {exc}", got
        if min(w, h) < self.config.min_side:
            return "small", f"{w}x{h} under {self.config.min_side} px", got
        try:
            decoded = decode_image(data, field="imageUrl", max_bytes=self.config.max_bytes)
            phash = perceptual_hash(decoded.image)
            look = look_of(decoded.image)
        except MMSearchError as exc:
            return "failed", exc.message, got
        except Exception as exc:  # a broken picture must not stop the import; the report names it
            return "failed", f"{type(exc).__name__}: {exc}", got
        published, seen = _time_or_none(web.published_time), _time_or_none(web.seen_time)
        return _Copy(web=web, image=decoded, phash=phash, look=look, title=clean_title(web.title or web.alt),
                     published=published,
                     fetched=bool(got), seen=seen)

    # -- dedup, index, write ---------------------------------------------------------------------------
    def _merge(self, info: DatasetInfo, copies: list[_Copy], report: WebImportReport) -> None:
        if not copies:
            return
        groups: dict[str, _Group] = {}
        with Session(self.mm.catalog.engine) as s, s.begin():
            for copy in copies:
                item_id, known = self._find(s, copy)
                group = groups.get(item_id)
                if group is None:
                    stored = self.mm.store.get_many(info, [item_id]).get(item_id) if known else None
                    group = groups[item_id] = _Group(item_id, stored)
                    if stored is None:
                        group.winner = copy
                        continue
                if group.winner is None and self._same_copy(group.stored, copy):
                    report.unchanged += 1
                    continue
                report.duplicates_merged += 1
                if copy.rank() > group.rank():
                    group.winner = copy
            changed = [g for g in groups.values() if g.winner is not None]
            records = self._records(info, changed)
            if records:
                result = self.mm.store.upsert(info, records)
                report.imported += result.inserted
                report.updated += result.replaced
            # the hash rows commit after the items are written: a crash in between re-derives the same ids

    def _same_copy(self, stored: dict[str, Any] | None, copy: _Copy) -> bool:
        doc = stored or {}
        return (doc.get("imageUrl") == copy.web.image_url and doc.get("hostPageUrl") == _host_page(copy.web)
                and doc.get("title", "") == copy.title)

    def _find(self, s: Session, copy: _Copy) -> tuple[str, bool]:
        """(item id, whether the item may already be stored); records this content's hash row."""
        sha = copy.image.sha256
        row = s.get(WebImageHashRow, (self.dataset_id, sha))
        if row is not None:
            return row.item_id, True
        parts = bands(copy.phash)
        cols = [getattr(WebImageHashRow, f"b{i}") for i in range(BANDS)]
        best: tuple[int, str] | None = None
        looks, hashes = WebImageLookRow, WebImageHashRow
        query = (
            select(hashes.item_id, hashes.phash, looks.aspect, looks.red, looks.green, looks.blue)
            .outerjoin(looks, (looks.dataset_id == hashes.dataset_id) & (looks.sha256 == hashes.sha256))
            .where(WebImageHashRow.dataset_id == self.dataset_id,
                   or_(*(c == v for c, v in zip(cols, parts, strict=True))))
        )
        for item_id, hexhash, aspect, red, green, blue in s.execute(query):
            d = hamming(copy.phash, int(hexhash, 16))
            if d > self.config.phash_distance or (best is not None and d >= best[0]):
                continue
            if aspect is not None and not same_look(copy.look, Look(aspect, (red, green, blue))):
                continue  # a close hash, but another shape or colour: another picture
            best = (d, item_id)
        item_id = best[1] if best else sha[:ID_HEX]
        s.add(WebImageHashRow(dataset_id=self.dataset_id, sha256=sha, item_id=item_id, phash=f"{copy.phash:016x}",
                              **{f"b{i}": v for i, v in enumerate(parts)}))
        s.add(WebImageLookRow(dataset_id=self.dataset_id, sha256=sha, aspect=copy.look.aspect,
                              red=copy.look.colour[0], green=copy.look.colour[1], blue=copy.look.colour[2]))
        s.flush()
        return item_id, best is not None

    def _records(self, info: DatasetInfo, groups: list[_Group]) -> list[Record]:
        """Records for the groups whose representative changed; a picture already embedded and read (same
        bytes as the stored copy) keeps its vector and OCR text instead of being processed again."""
        if not groups:
            return []
        previous = self.mm.store.rerank_features(info, [g.item_id for g in groups if g.stored is not None])
        fresh: list[_Copy] = []
        reuse: dict[str, tuple[np.ndarray | None, str]] = {}
        for g in groups:
            assert g.winner is not None
            old = previous.get(g.item_id)
            media = old.media[0] if old is not None and old.media else None
            if media is not None and media.get("sha256") == g.winner.image.sha256:
                reuse[g.item_id] = (old.vector if old is not None else None, str(media.get("ocr") or ""))
            else:
                fresh.append(g.winner)
        vectors: dict[str, np.ndarray] = {}
        encoder = self.mm.encoder
        if encoder is not None and fresh:
            for c, vec in zip(fresh, encoder.encode_image([c.image.image for c in fresh]), strict=True):
                vectors[c.image.sha256] = l2_normalise(np.asarray(vec, dtype=np.float32))
        ocr = self.mm.ocr if info.schema.ocr else None
        texts = {c.image.sha256: (ocr.read(c.image.image).text.strip() if ocr is not None else "") for c in fresh}
        records = []
        for g in groups:
            c = g.winner
            assert c is not None
            vector, ocr_text = reuse.get(g.item_id) or (vectors.get(c.image.sha256), texts.get(c.image.sha256, ""))
            doc = self._doc(g.item_id, c)
            valid, errors = validate_item(info.schema, doc, 0, info.vector_dim)
            if valid is None:  # pragma: no cover - the document is built from checked values
                raise InvalidArgument("; ".join(e.message for e in errors))
            ocr_field = field_text(OCR_FIELD, [ocr_text]) if ocr_text else ""
            text = join_fields([field_text("title", [c.title]), ocr_field])
            media = [{"field": "image", "ref": _short(c.web.image_url), "width": c.image.width,
                      "height": c.image.height, "sha256": c.image.sha256, "ocr": ocr_text}]
            records.append(Record(id=g.item_id, doc=valid.doc, text=text, vector=vector, media=media))
        return records

    def _doc(self, item_id: str, c: _Copy) -> dict[str, Any]:
        page = _host_page(c.web)
        host = page_host(page)
        doc: dict[str, Any] = {
            "id": item_id, "title": c.title, "hostPageUrl": page, "imageUrl": c.web.image_url,
            "width": c.image.width, "height": c.image.height, "site": host, "site_domains": site_domains(host),
            "phash": f"{c.phash:016x}", "image": c.web.image_url,
        }
        if c.published is not None:
            doc["publishedTime"] = format_time(c.published)
            doc["published_ts"] = c.published_ts
        else:  # never empty: when the source saw the page, else now (the import time)
            doc["publishedTime"] = supplied_time(c.seen)
        return doc


def _time_or_none(value: str | None) -> datetime | None:
    try:
        return parse_time(value)
    except (ValueError, OverflowError, OSError):
        return None


def _host_page(web: WebImage) -> str:
    """The page the image was found on; without one (bare image metadata), the image URL's origin."""
    page = (web.host_page_url or "").strip()
    if page:
        return page
    parts = urlsplit(web.image_url.strip())
    return f"{parts.scheme}://{parts.netloc}/" if parts.scheme and parts.netloc else ""


def _short(url: str) -> str:
    return url if len(url) <= 200 else url[:199] + "…"


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def content_id(data: bytes) -> str:
    """The item id a picture gets when it is the first copy seen."""
    return hashlib.sha256(data).hexdigest()[:ID_HEX]
