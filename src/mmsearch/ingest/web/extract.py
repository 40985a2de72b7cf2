"""HTML page -> `PageExtract`: the page's title and published time, its images with titles, its links.

Every builder of the web corpus (crawler, WARC import) reads pages through `extract_page`, so an image found
by any of them gets the same URL choice, title and date. Extraction never raises on a bad page: it returns
what it can find.

Choices made here:

- Charset (`decode_html`): a byte-order mark, then the Content-Type header's charset, then `<meta charset>` /
  `<meta http-equiv>` / the XML declaration, then charset-normalizer's guess; the first one that decodes the
  bytes without error wins (a page declaring UTF-8 but written in GBK falls through to the next source).
  GB2312/GBK are decoded as GB18030 (their superset: pages labelled gb2312 routinely use GBK characters), as
  browsers do; latin-1/ascii as windows-1252, big5 as big5-hkscs. A header saying latin-1 over bytes that are
  valid non-ASCII UTF-8 is taken as a server default and UTF-8 wins.
- Image URL: a lazy-loading attribute (`data-original`, `data-src`, ...) beats `src` (which is then usually a
  placeholder); the largest `srcset`/`data-srcset` candidate beats both; a `<picture>`'s `<source srcset>` is
  used when the `<img>` itself has none. Relative and protocol-relative URLs resolve against `<base href>`
  (itself resolved against the page URL), else the page URL. `og:image`, `twitter:image` and
  `<link rel=image_src>` are images too, titled with the page title.
- Skipped images: non-http(s) URLs (data:, blob:, javascript:), `.svg`/`.ico` and obvious non-image
  extensions, favicon/sprite/spacer/icon names, known tracking hosts, and `<img>` declaring a width or height
  of 2 px or less (tracking pixels). Byte-level size checks are the corpus's job, after download; declared
  integer `width`/`height` attributes are passed on as hints (only when the URL came from `src`, since they
  describe that file's display size, not a srcset candidate's).
- Image title: the first meaningful one of the `alt` text, the `title` attribute, the enclosing `<figure>`'s
  `<figcaption>`, a nearby caption (a caption-like class next to the image, short text sharing the image's
  block, or a short centred paragraph right after it), else the page title. "Meaningful" excludes file
  names, digits-only codes and generic words ("image", "图片"). The same URL seen twice keeps its best title.
- Page title: `<title>`, else `og:title`/`twitter:title`, else the first `<h1>`.
- Published time, first found of: publication metas (`article:published_time` and the usual names such as
  `publishdate`, `pubdate`, `dc.date.issued`), `itemprop=datePublished`, JSON-LD `datePublished` (any nesting,
  lists and `@graph` included) / `dateCreated` / `uploadDate`; then update metas (`og:updated_time`,
  `article:modified_time`, `itemprop=dateModified`, JSON-LD `dateModified`); then `<time datetime>`
  (a `pubdate` one first); then the HTTP `Last-Modified` header. Declarations of publication come before
  declarations of update because the field is the page's publication time.
- Times are ISO 8601 with an offset at seconds precision. A time with its own offset keeps it; a naive time
  (no offset) is taken in `default_tz`, +08:00 by default since the IQS spec's corpus is Chinese sites
  (`default_tz=None` drops naive times instead). Times before 1970 or more than a day in the future are
  rejected as bogus.
"""

from __future__ import annotations

import codecs
import email.utils
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from bs4 import BeautifulSoup, Tag

from mmsearch.ingest.web.types import PageExtract, WebImage

DEFAULT_TZ: tzinfo = timezone(timedelta(hours=8))
"""Naive page times are read in this zone unless the caller says otherwise (the IQS corpus is Chinese sites)."""

MAX_TITLE_CHARS = 300
MAX_CAPTION_CHARS = 120  # longer text next to an image is body text, not its caption
TRACKING_PIXEL_MAX = 2  # an <img> declaring a side of this many px or fewer is a beacon, not a picture

# ------------------------------------------------------------------------------------------------ charset

_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "gb_2312-80": "gb18030", "gb_2312": "gb18030",
    "csgb2312": "gb18030", "chinese": "gb18030", "iso-ir-58": "gb18030", "cp936": "gb18030", "ms936": "gb18030",
    "windows-936": "gb18030", "euc-cn": "gb18030", "x-euc-cn": "gb18030",
    "big5": "big5hkscs", "x-x-big5": "big5hkscs",
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "l1": "cp1252",
    "us-ascii": "cp1252", "ascii": "cp1252",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949",
    "x-user-defined": "cp1252",
}
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_PRESCAN_BYTES = 8192


def _codec(name: str | None) -> str | None:
    """A Python codec for a declared charset label, with the web's supersets; None for an unknown label."""
    if not name:
        return None
    label = name.strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        canonical = codecs.lookup(label).name
    except LookupError:
        return None
    canonical = _CHARSET_ALIASES.get(canonical, canonical)
    if canonical.startswith("utf-16") or canonical.startswith("utf-32"):
        return "utf-8"  # a byte-ASCII document cannot really be UTF-16; browsers read such labels as UTF-8
    return canonical


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return str(value)
    return None


def _is_utf8_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not body.isascii()


def _detected(body: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(body[:200_000]).best()
    except Exception:  # the detector is a best effort; never let it fail a page
        return None
    return _codec(best.encoding) if best is not None else None


def decode_html(body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """Decode an HTML body: BOM, then the Content-Type charset, then the document's own declaration, then
    detection; the first that decodes cleanly wins, else the first candidate with replacement characters."""
    if isinstance(body, str):
        return body
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body.decode(codec, errors="replace")
    candidates: list[str] = []
    content_type = _header(headers, "content-type") or ""
    m = _HEADER_CHARSET.search(content_type)
    header_codec = _codec(m.group(1)) if m else None
    if header_codec == "cp1252" and _is_utf8_text(body):
        header_codec = "utf-8"  # a latin-1 default over real UTF-8 bytes is a server default, not a declaration
    if header_codec:
        candidates.append(header_codec)
    head = body[:_PRESCAN_BYTES]
    for pattern in (_XML_ENCODING, _META_CHARSET):
        m2 = pattern.search(head)
        if m2:
            declared = _codec(m2.group(1).decode("ascii", "replace"))
            if declared and declared not in candidates:
                candidates.append(declared)
    if body.isascii():
        return body.decode("ascii")
    for codec in candidates:
        try:
            return body.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    if "utf-8" not in candidates:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    # Nothing decodes cleanly: keep the declared charset that loses the fewest characters, unless it loses many
    # (a wrong declaration) and the detector's guess decodes cleanly.
    best, lost = "utf-8", len(body)
    for codec in candidates or ["utf-8"]:
        n = body.decode(codec, errors="replace").count("\ufffd")
        if n < lost:
            best, lost = codec, n
    if lost > max(len(body) // 200, 2):
        guess = _detected(body)
        if guess and guess not in candidates:
            try:
                return body.decode(guess)
            except (UnicodeDecodeError, LookupError):
                pass
    return body.decode(best, errors="replace")


# ------------------------------------------------------------------------------------------------ time

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_TZ_PART = r"(?P<tz>Z|(?:UTC|GMT)?\s*[+-]\d{1,2}(?::?\d{2})?|UTC|GMT|CST|北京时间)?"
_TIME_PART = (r"(?:(?:T|\s+|日)*(?P<H>\d{1,2})\s*[:时]\s*(?P<M>\d{1,2})(?:\s*[:分]\s*(?P<S>\d{1,2})(?:[.,]\d+)?\s*秒?)?"
              r"(?:\s*(?P<ampm>[AaPp][Mm]))?)?")
_NUMERIC_DATE = re.compile(
    r"(?<!\d)(?P<y>(?:19|20)\d{2})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})(?!\d)\s*日?"
    + _TIME_PART + r"\s*" + _TZ_PART, re.IGNORECASE)
_COMPACT_DATE = re.compile(r"^(?P<y>(?:19|20)\d{2})(?P<m>\d{2})(?P<d>\d{2})$")
_MONTH_NAME = r"(?P<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DMY_NAMED = re.compile(r"(?<!\d)(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+" + _MONTH_NAME + r",?\s+(?P<y>\d{4})"
                        + _TIME_PART + r"\s*" + _TZ_PART, re.IGNORECASE)
_MDY_NAMED = re.compile(_MONTH_NAME + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})"
                        + _TIME_PART + r"\s*" + _TZ_PART, re.IGNORECASE)
_EPOCH = re.compile(r"^\d{10}(?:\d{3})?$")


def _tz_from(text: str | None) -> tzinfo | bool | None:
    """The zone a matched suffix names: a tzinfo, False when there is none (naive)."""
    if not text:
        return False
    t = text.strip().upper()
    if t in ("Z", "UTC", "GMT"):
        return UTC
    if t in ("CST", "北京时间"):  # on Chinese pages CST is China Standard Time
        return timezone(timedelta(hours=8))
    t = t.removeprefix("UTC").removeprefix("GMT").strip()
    m = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})?", t)
    if not m:
        return False
    hours, minutes = int(m.group(2)), int(m.group(3) or 0)
    if hours > 14 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if m.group(1) == "-" else delta)


def _from_match(m: re.Match[str], month: int | None = None) -> tuple[datetime, tzinfo | bool | None] | None:
    g = m.groupdict()
    try:
        hour = int(g["H"]) if g.get("H") else 0
        if g.get("ampm"):
            hour = hour % 12 + (12 if g["ampm"].lower() == "pm" else 0)
        dt = datetime(int(g["y"]), month or int(g["m"]), int(g["d"]), hour,
                      int(g["M"]) if g.get("M") else 0, int(g["S"]) if g.get("S") else 0)
    except (ValueError, TypeError):
        return None
    return dt, _tz_from(g.get("tz"))


def _parse_any(text: str) -> tuple[datetime, tzinfo | bool | None] | None:
    """A datetime and its zone (False: none given) from the many ways pages write times."""
    if _EPOCH.match(text):
        seconds = int(text) / (1000 if len(text) == 13 else 1)
        return datetime.fromtimestamp(seconds, tz=UTC), UTC
    compact = _COMPACT_DATE.match(text)
    if compact:
        try:
            return datetime(int(compact["y"]), int(compact["m"]), int(compact["d"])), False
        except ValueError:
            return None
    iso = text.replace(" ", "T", 1) if re.match(r"^\d{4}-\d{2}-\d{2} \d", text) else text
    try:
        dt = datetime.fromisoformat(iso.replace("z", "Z"))
        return dt, dt.tzinfo or False
    except ValueError:
        pass
    if re.match(r"^(mon|tue|wed|thu|fri|sat|sun)[a-z]*,\s+\d", text, re.IGNORECASE):  # RFC 2822 (HTTP dates)
        try:
            dt = email.utils.parsedate_to_datetime(text)
            return dt, dt.tzinfo or False
        except (TypeError, ValueError, IndexError):
            pass
    for pattern in (_NUMERIC_DATE, _DMY_NAMED, _MDY_NAMED):
        m = pattern.search(text)
        if m:
            month = _MONTHS[m.group("mon")[:3].lower()] if "mon" in m.groupdict() else None
            return _from_match(m, month)
    return None


def parse_published(value: str | None, default_tz: tzinfo | None = DEFAULT_TZ) -> str | None:
    """ISO 8601 with an offset, at seconds precision, from a page's or header's time text; None when the text
    holds no plausible time. Naive times are read in `default_tz` (None: naive times are dropped)."""
    if value is None:
        return None
    text = re.sub(r"\s+", " ", str(value)).strip()
    if not text or len(text) > 200:
        return None
    parsed = _parse_any(text)
    if parsed is None:
        return None
    dt, tz = parsed
    if tz is None:
        return None  # an impossible offset
    if tz is False:
        if default_tz is None:
            return None
        dt = dt.replace(tzinfo=default_tz)
    elif dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    try:
        if dt.year < 1970 or dt > datetime.now(UTC) + timedelta(days=1):
            return None
    except (OverflowError, ValueError):
        return None
    return dt.replace(microsecond=0).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------ URLs

_SKIP_EXTENSIONS = frozenset({
    "svg", "svgz", "ico", "cur", "js", "css", "html", "htm", "json", "xml", "txt", "pdf", "mp4", "webm", "mp3",
    "m3u8", "swf", "zip", "woff", "woff2", "ttf",
})
_ICON_WORDS = frozenset({"favicon", "favicons", "sprite", "sprites", "spacer", "spacers", "icon", "icons", "emoji",
                         "emoticon", "emoticons", "smiley", "smilies"})
_SPACER_STEMS = frozenset({"blank", "spacer", "pixel", "transparent", "1x1", "placeholder", "clear", "empty"})
_PLACEHOLDER_STEMS = _SPACER_STEMS | {"grey", "gray", "loading", "lazy", "lazyload", "default", "none", "s", "b"}
_TRACKING_HOSTS = ("hm.baidu.com", "tongji.baidu.com", "cnzz.com", "51.la", "mmstat.com", "google-analytics.com",
                   "googletagmanager.com", "doubleclick.net", "scorecardresearch.com", "quantserve.com",
                   "bat.bing.com", "pixel.wp.com", "stats.wp.com", "analytics.twitter.com")
_TRACKING_PATHS = ("facebook.com/tr", "t.co/i/adsct")
_SPLIT_WORDS = re.compile(r"[^a-z0-9]+")


def _resolve(ref: str | None, base: str) -> str | None:
    """An absolute http(s) URL without fragment, or None (empty, data:, javascript:, unparsable)."""
    if not ref:
        return None
    ref = re.sub(r"[\t\r\n]", "", ref).strip().replace(" ", "%20")
    if not ref or ref.lower().startswith(("data:", "javascript:", "mailto:", "tel:", "blob:", "about:", "#")):
        return None
    try:
        url = urljoin(base, ref)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path or "/", parts.query, ""))


def _path_words(url: str) -> tuple[str, str, set[str]]:
    """(stem, extension, words of the whole path), lower-cased."""
    path = urlsplit(url).path.lower()
    name = path.rsplit("/", 1)[-1]
    stem, _, ext = name.rpartition(".") if "." in name else (name, "", "")
    return stem, ext, set(_SPLIT_WORDS.split(path)) - {""}


def skip_reason(url: str) -> str | None:
    """Why an image URL is not worth fetching (icon, sprite, tracker, non-image), or None."""
    stem, ext, words = _path_words(url)
    if ext in _SKIP_EXTENSIONS:
        return f"not a raster image (.{ext})"
    if words & _ICON_WORDS:
        return "icon, sprite or spacer"
    if stem in _SPACER_STEMS or (stem in _PLACEHOLDER_STEMS and ext in ("gif", "")):
        return "placeholder or spacer"
    host = (urlsplit(url).hostname or "").lower()
    if any(host == t or host.endswith("." + t) for t in _TRACKING_HOSTS):
        return "tracking host"
    where = url.lower().split("://", 1)[-1].removeprefix("www.")
    if any(where.startswith(t) for t in _TRACKING_PATHS):
        return "tracking endpoint"
    return None


def _is_placeholder(url: str) -> bool:
    """Whether a `src` looks like a lazy loader's stand-in (blank.gif, loading.png), not the picture."""
    stem, ext, _ = _path_words(url)
    if stem in _SPACER_STEMS or (stem in _PLACEHOLDER_STEMS and ext in ("gif", "")):
        return True
    words = set(_SPLIT_WORDS.split(stem))
    return ext in ("gif", "png", "svg", "") and bool(words & {"placeholder", "lazy", "lazyload", "loading", "blank"})


def pick_srcset(srcset: str | None) -> str | None:
    """The largest candidate of a `srcset`: the biggest `w` descriptor, else the biggest `x` density (a
    candidate without a descriptor is 1x). URLs may contain commas; data: candidates are ignored."""
    if not srcset:
        return None
    best: tuple[float, float, int] | None = None
    best_url: str | None = None
    text = srcset
    pos, n, index = 0, len(text), 0
    while pos < n:
        while pos < n and (text[pos].isspace() or text[pos] == ","):
            pos += 1
        if pos >= n:
            break
        start = pos
        while pos < n and not text[pos].isspace():
            pos += 1
        url = text[start:pos]
        descriptors = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start, depth = pos, 0
            while pos < n:
                ch = text[pos]
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth = max(depth - 1, 0)
                elif ch == "," and depth == 0:
                    break
                pos += 1
            descriptors = text[start:pos]
            pos += 1
        if not url or url.lower().startswith("data:"):
            continue
        w, x = 0.0, 0.0
        for token in descriptors.split():
            token = token.strip().lower()
            try:
                if token.endswith("w"):
                    w = float(token[:-1])
                elif token.endswith("x"):
                    x = float(token[:-1])
            except ValueError:
                continue
        if not w and not x:
            x = 1.0
        key = (w, x, -index)  # the first of equal candidates wins
        index += 1
        if best is None or key > best:
            best, best_url = key, url
    return best_url


# ------------------------------------------------------------------------------------------------ text

_GENERIC = frozenset({
    "image", "images", "img", "photo", "photos", "picture", "pic", "pics", "untitled", "no title", "default",
    "thumbnail", "thumb", "banner", "icon", "placeholder", "null", "none", "undefined", "n/a", "-", "alt",
    "图片", "图像", "照片", "无标题", "未命名", "缩略图", "配图", "图", "点击查看大图", "查看大图", "点击放大",
})
_FILENAME = re.compile(r"^[\w\-. ()]+\.(jpe?g|png|gif|webp|bmp|tiff?|svg|ico|avif|heic)$", re.IGNORECASE)
_CODE = re.compile(r"^[0-9a-f_\-]{8,}$|^[\d\s_\-.]+$", re.IGNORECASE)
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_CAPTION_CLASS = re.compile(r"caption|pic-?desc|img-?desc|image-?desc|photo-?desc|pic_?desc|img_?desc|pictext|"
                            r"pic_?txt|img_?txt|pic-?info|img-?title|pic-?title|photo-?title|img-?note|pic-?note",
                            re.IGNORECASE)
_CENTERED = re.compile(r"text-align\s*:\s*center", re.IGNORECASE)
_INLINE = frozenset({"a", "span", "picture", "font", "strong", "b", "em", "i", "noscript", "u", "small", "source"})


def _clean(text: str | None, limit: int = MAX_TITLE_CHARS) -> str:
    if not text:
        return ""
    return re.sub(r"\s+", " ", str(text)).strip()[:limit].strip()


def _meaningful(text: str) -> bool:
    """Whether a candidate title says something (not a file name, code or generic word)."""
    t = text.strip()
    if not t or t.lower() in _GENERIC or _FILENAME.match(t) or _CODE.match(t):
        return False
    return bool(_LETTER.search(t))


def _text(tag: Tag) -> str:
    return _clean(tag.get_text(" ", strip=True), MAX_TITLE_CHARS * 4)


def _attr(tag: Tag, name: str) -> str:
    value = tag.get(name)
    if isinstance(value, list):
        value = " ".join(value)
    return str(value).strip() if value is not None else ""


# ------------------------------------------------------------------------------------------------ page

class _Page:
    """One parsed page and the helpers that read it; every reader is guarded by the caller."""

    def __init__(self, soup: BeautifulSoup, url: str, default_tz: tzinfo | None) -> None:
        self.soup = soup
        self.url = url
        self.default_tz = default_tz
        self.base = url
        base = soup.find("base", href=True)
        if isinstance(base, Tag):
            resolved = _resolve(_attr(base, "href"), url)
            if resolved:
                self.base = resolved
        self._metas: list[tuple[str, str]] | None = None
        self._ld: list[Any] | None = None

    # -- metas ---------------------------------------------------------------------------------------
    def metas(self) -> list[tuple[str, str]]:
        """(lower-cased property/name/itemprop, content) for every <meta> with content, in order."""
        if self._metas is None:
            out = []
            for meta in self.soup.find_all("meta"):
                content = meta.get("content")
                if content is None:
                    continue
                for key in ("property", "name", "itemprop", "http-equiv"):
                    k = _attr(meta, key).lower()
                    if k:
                        out.append((k, str(content).strip()))
            self._metas = out
        return self._metas

    def meta(self, *names: str) -> str:
        for name in names:
            for key, content in self.metas():
                if key == name and content:
                    return content
        return ""

    # -- title ---------------------------------------------------------------------------------------
    def title(self) -> str:
        tag = self.soup.find("title")
        if isinstance(tag, Tag):
            title = _clean(tag.get_text(" "))
            if title:
                return title
        title = _clean(self.meta("og:title", "twitter:title"))
        if title:
            return title
        h1 = self.soup.find("h1")
        return _clean(h1.get_text(" ", strip=True)) if isinstance(h1, Tag) else ""

    # -- published time ------------------------------------------------------------------------------
    _PUBLISHED_METAS = ("article:published_time", "og:published_time", "og:article:published_time",
                        "article:published", "publishdate", "publish_date", "publish-date", "pubdate",
                        "publication_date", "publishtime", "publish_time", "dc.date.issued", "dcterms.issued",
                        "weibo: article:create_at", "bytedance:published_time", "parsely-pub-date",
                        "sailthru.date", "date")
    _UPDATED_METAS = ("og:updated_time", "article:modified_time", "og:modified_time", "dc.date.modified",
                      "dcterms.modified", "last-modified", "lastmod")

    def _itemprop(self, prop: str) -> Iterator[str]:
        for tag in self.soup.find_all(attrs={"itemprop": re.compile(rf"(^|\s){prop}(\s|$)", re.IGNORECASE)}):
            for key in ("content", "datetime"):
                if tag.get(key):
                    yield _attr(tag, key)
                    break
            else:
                yield _text(tag)

    def _jsonld(self) -> list[Any]:
        if self._ld is not None:
            return self._ld
        self._ld = docs = []
        for script in self.soup.find_all("script", attrs={"type": re.compile(r"ld\+json", re.IGNORECASE)}):
            raw = script.get_text()
            raw = re.sub(r"^\s*(<!--|//\s*<!\[CDATA\[)|(-->|//\s*\]\]>)\s*$", "", raw.strip())
            try:
                docs.append(json.loads(raw, strict=False))
            except ValueError:
                continue
        return docs

    @staticmethod
    def _walk(node: Any, keys: tuple[str, ...]) -> Iterator[str]:
        """Values of `keys` anywhere in a JSON-LD document (lists, @graph, nested objects), in document order."""
        if isinstance(node, list):
            for item in node:
                yield from _Page._walk(item, keys)
        elif isinstance(node, dict):
            for key in keys:
                value = node.get(key)
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    yield str(value)
                elif isinstance(value, list):
                    yield from (str(v) for v in value if isinstance(v, str))
            for value in node.values():
                if isinstance(value, list | dict):
                    yield from _Page._walk(value, keys)

    def published(self, headers: Mapping[str, str] | None) -> str | None:
        sources = (
            lambda: (self.meta(name) for name in self._PUBLISHED_METAS),
            lambda: self._itemprop("datePublished"),
            lambda: (v for doc in self._jsonld() for v in self._walk(doc, ("datePublished",))),
            lambda: (v for doc in self._jsonld() for v in self._walk(doc, ("dateCreated", "uploadDate"))),
            lambda: (self.meta(name) for name in self._UPDATED_METAS),
            lambda: self._itemprop("dateModified"),
            lambda: (v for doc in self._jsonld() for v in self._walk(doc, ("dateModified",))),
            self._times,
            lambda: iter([_header(headers, "last-modified") or ""]),
        )
        for source in sources:
            try:
                for value in source():
                    found = parse_published(value, self.default_tz) if value else None
                    if found:
                        return found
            except Exception:  # a malformed source must not hide the next one
                continue
        return None

    def _times(self) -> Iterator[str]:
        times = [t for t in self.soup.find_all("time") if isinstance(t, Tag)]
        marked = [t for t in times if t.has_attr("pubdate") or re.search("publish", _attr(t, "class"), re.I)]
        for t in marked + [t for t in times if t not in marked]:
            yield _attr(t, "datetime") or _text(t)

    # -- images --------------------------------------------------------------------------------------
    def _img_url(self, img: Tag) -> tuple[str | None, bool]:
        """The best URL of an <img> and whether it is the `src`-family file its width/height describe."""
        for attr in ("data-srcset", "data-lazy-srcset", "srcset"):
            chosen = _resolve(pick_srcset(_attr(img, attr)), self.base)
            if chosen:
                return chosen, False
        for attr in ("data-original", "data-src", "data-lazy-src", "data-actualsrc", "data-original-src",
                     "data-lazy", "data-echo"):
            chosen = _resolve(_attr(img, attr), self.base)
            if chosen:
                return chosen, True
        src = _resolve(_attr(img, "src"), self.base)
        if src and not _is_placeholder(src):
            return src, True
        picture = img.find_parent("picture")  # libxml2 nests the <img> inside the unclosed <source>
        if isinstance(picture, Tag):
            for source in picture.find_all("source"):
                chosen = _resolve(pick_srcset(_attr(source, "srcset") or _attr(source, "data-srcset")), self.base)
                if chosen:
                    return chosen, False
        return None, True

    @staticmethod
    def _size(tag: Tag, name: str) -> int | None:
        m = re.fullmatch(r"\s*(\d{1,5})(?:\.\d+)?\s*(px)?\s*", _attr(tag, name))
        if m:
            return int(m.group(1))
        style = _attr(tag, "style")
        m = re.search(rf"(?:^|[;\s]){name}\s*:\s*(\d{{1,5}})(?:\.\d+)?px", style, re.IGNORECASE)
        return int(m.group(1)) if m else None

    def _block(self, img: Tag) -> Tag | None:
        node = img.parent
        while isinstance(node, Tag) and node.name in _INLINE:
            node = node.parent
        return node if isinstance(node, Tag) and node.name not in ("body", "html", "[document]") else None

    def _caption(self, img: Tag) -> tuple[str, str]:
        """(figcaption, nearby caption) for an <img>."""
        figcaption = ""
        figure = img.find_parent("figure")
        if isinstance(figure, Tag):
            cap = figure.find("figcaption")
            if isinstance(cap, Tag):
                figcaption = _text(cap)
        block = self._block(img)
        if block is None:
            return figcaption, ""
        for scope in (block, block.parent):
            if not isinstance(scope, Tag) or scope.name in ("body", "html", "[document]") \
                    or len(scope.find_all("img", limit=2)) > 1:
                break  # a caption class in a gallery may belong to another image
            for tag in scope.find_all(class_=_CAPTION_CLASS, limit=3):
                if isinstance(tag, Tag) and tag is not img and not tag.find("img"):
                    text = _text(tag)
                    if 0 < len(text) <= MAX_CAPTION_CHARS:
                        return figcaption, text
        if len(block.find_all("img", limit=2)) == 1:
            own = _text(block)
            if 0 < len(own) <= MAX_CAPTION_CHARS:
                return figcaption, own
        nxt = block.find_next_sibling()
        if isinstance(nxt, Tag) and nxt.name in ("p", "div", "span", "center") and not nxt.find("img"):
            text = _text(nxt)
            centered = nxt.name == "center" or _attr(nxt, "align").lower() == "center" \
                or bool(_CENTERED.search(_attr(nxt, "style")))
            if centered and 0 < len(text) <= MAX_CAPTION_CHARS:
                return figcaption, text
        return figcaption, ""

    def images(self, page_title: str, published: str | None) -> list[WebImage]:
        found: dict[str, tuple[int, WebImage]] = {}

        def add(url: str | None, rank: int, image: WebImage) -> None:
            if not url or skip_reason(url):
                return
            seen = found.get(url)
            if seen is None:
                found[url] = (rank, image)
            elif rank < seen[0]:
                image.width = image.width or seen[1].width
                image.height = image.height or seen[1].height
                found[url] = (rank, image)
            elif not seen[1].alt and image.alt:
                seen[1].alt = image.alt

        for i, (url, alt) in enumerate(self._meta_images()):
            first = i == 0  # og:image:width/height describe the first og:image
            add(url, 9, WebImage(image_url=url, host_page_url=self.url, title=page_title, alt=alt,
                                 published_time=published, width=self._og_size("width") if first else None,
                                 height=self._og_size("height") if first else None))
        for img in self.soup.find_all("img"):
            try:
                if not isinstance(img, Tag):
                    continue
                width, height = self._size(img, "width"), self._size(img, "height")
                if (width is not None and width <= TRACKING_PIXEL_MAX) or \
                        (height is not None and height <= TRACKING_PIXEL_MAX):
                    continue
                url, declared = self._img_url(img)
                if not url:
                    continue
                alt = _clean(_attr(img, "alt"))
                figcaption, nearby = self._caption(img)
                candidates = [alt, _clean(_attr(img, "title")), _clean(figcaption), _clean(nearby)]
                rank, title = next(((i, c) for i, c in enumerate(candidates) if _meaningful(c)), (9, page_title))
                add(url, rank, WebImage(image_url=url, host_page_url=self.url, title=title, alt=alt,
                                        published_time=published, width=width if declared else None,
                                        height=height if declared else None))
            except Exception:  # one odd <img> must not lose the page's other images
                continue
        return [image for _, image in found.values()]

    def _meta_images(self) -> list[tuple[str, str]]:
        out = []
        alt = _clean(self.meta("og:image:alt", "twitter:image:alt"))
        for key, content in self.metas():
            if key in ("og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"):
                url = _resolve(content, self.base)
                if url:
                    out.append((url, alt))
        for link in self.soup.find_all("link", href=True):
            if "image_src" in _attr(link, "rel").lower().split():
                url = _resolve(_attr(link, "href"), self.base)
                if url:
                    out.append((url, ""))
        return out

    def _og_size(self, name: str) -> int | None:
        value = self.meta(f"og:image:{name}")
        return int(value) if value.isdigit() and len(value) <= 5 else None

    # -- links ---------------------------------------------------------------------------------------
    def links(self) -> list[str]:
        out: dict[str, None] = {}
        for a in self.soup.find_all(["a", "area"], href=True):
            url = _resolve(_attr(a, "href"), self.base)
            if url:
                out.setdefault(url, None)
        return list(out)


def _guarded(fn: Any, default: Any) -> Any:
    try:
        return fn()
    except Exception:  # extraction returns what it can; a broken part yields its empty value
        return default


def extract_page(body: bytes | str, url: str, headers: Mapping[str, str] | None = None, *,
                 default_tz: tzinfo | None = DEFAULT_TZ) -> PageExtract:
    """Read one HTML page: title, published time, images (absolute URLs, titled) and absolute http(s) links.
    Never raises on a malformed page; parts that cannot be read are left empty."""
    try:
        text = body if isinstance(body, str) else decode_html(body, headers)
        soup = BeautifulSoup(text, "lxml")
        page = _Page(soup, url, default_tz)
    except Exception:
        return PageExtract(url=url, base_url=url,
                           published_time=_guarded(lambda: parse_published(_header(headers, "last-modified"),
                                                                           default_tz), None))
    title = _guarded(page.title, "")
    published = _guarded(lambda: page.published(headers), None)
    return PageExtract(url=url, title=title, published_time=published,
                       images=_guarded(lambda: page.images(title, published), []),
                       links=_guarded(page.links, []), base_url=page.base)
