"""Download images over HTTP(S) with every limit an untrusted URL needs.

One `Fetcher` (httpx, synchronous; `fetch_many` runs a thread pool) enforces: http/https only, the SSRF
guard of `netguard` on every hop with the connection pinned to the checked address, redirects followed by
hand (so each hop is checked and counted), connect/read timeouts plus a total deadline, a byte cap
(Content-Length refused early, the stream aborted past the cap), magic-byte sniffing (the header's
Content-Type is not trusted), retries with exponential backoff for timeouts, connection errors and 5xx
(never 4xx), and a per-host concurrency limit shared by all threads using the fetcher.
`fetch_page` applies the same limits to HTML pages and robots.txt for the crawler: no sniffing, a final
4xx returned rather than raised, bodies of unwanted content types left unread, redirects optionally returned.
`download_to` streams a large body (a video) into a file instead of memory, with its own byte cap and deadline.

httpx is used with `trust_env=False`: an environment proxy would make the pinned address meaningless.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from mmsearch import __version__
from mmsearch.media.errors import FetchError, UnsafeURL
from mmsearch.media.netguard import IPAddress, IPNetwork, Target, parse_networks, resolve_target
from mmsearch.media.sniff import SNIFF_BYTES, sniff_image_format

USER_AGENT = f"mmsearch/{__version__} (+https://github.com/mmsearch)"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchConfig:
    """Every knob of the fetcher; the defaults suit fetching user-supplied image URLs from the internet."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 60.0  # whole download of one hop, so a slow drip cannot hold a worker forever
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    retries: int = 2  # extra attempts after the first, for timeouts, connection errors and 5xx
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    max_backoff: float = 8.0
    per_host: int = 4  # concurrent requests to one host (name as written in the URL)
    allow_private: bool = False  # True admits loopback/private/link-local... (trusted networks only)
    allowed_networks: tuple[str, ...] = ()  # e.g. ("127.0.0.1/32",): admitted even when not public
    user_agent: str = USER_AGENT
    verify_tls: bool | str = True  # False disables checks; a path is a CA bundle to trust (private CAs)


@dataclass(frozen=True)
class FetchResult:
    url: str  # as asked
    final_url: str  # after redirects
    status: int
    content_type: str | None  # as the server declared it (informational only)
    data: bytes
    format: str  # sniffed from the bytes: jpeg, png, ...
    redirects: int = 0
    attempts: int = 1


@dataclass
class FetchOutcome:
    """One item of `fetch_many`: a result or the error that stopped it."""

    url: str
    result: FetchResult | None = None
    error: Exception | None = field(default=None)


@dataclass(frozen=True)
class PageResult:
    """One answer of `Fetcher.fetch_page`: any final status (2xx, 4xx) with its headers; the body only when read."""

    url: str  # as asked
    final_url: str  # after redirects
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes  # b"" for a status >= 400 or a content type outside `content_types`
    redirects: int = 0
    attempts: int = 1

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case ("" when the server sent none)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class _Sink:
    """Where `download_to` writes the body, and the limits that replace the config's for it."""

    file: BinaryIO
    max_bytes: int
    total_timeout: float


class _HostLimiter:
    """A bounded semaphore per host, created on first use and shared by all threads."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = {}

    def get(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._sems.get(host)
            if sem is None:
                sem = self._sems[host] = threading.BoundedSemaphore(self._limit)
            return sem


def _pinned_url(target: Target, address: IPAddress) -> str:
    """The URL with its host replaced by a checked IP, so the connection goes exactly there."""
    parts = urlsplit(target.url)
    ip = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    return urlunsplit((parts.scheme, f"{ip}:{target.port}", parts.path or "/", parts.query, ""))


def _is_certificate_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


class Fetcher:
    """Thread-safe image downloader; reuse one per process so connection pools and host limits are shared."""

    def __init__(self, config: FetchConfig | None = None) -> None:
        self.config = config or FetchConfig()
        self._networks: tuple[IPNetwork, ...] = parse_networks(self.config.allowed_networks)
        self._limiter = _HostLimiter(self.config.per_host)
        c = self.config
        self._client = httpx.Client(
            timeout=httpx.Timeout(connect=c.connect_timeout, read=c.read_timeout, write=c.read_timeout, pool=None),
            follow_redirects=False,
            trust_env=False,
            verify=ssl.create_default_context(cafile=c.verify_tls) if isinstance(c.verify_tls, str) else c.verify_tls,
            headers={"User-Agent": c.user_agent, "Accept": "image/*"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _follow(
        self,
        url: str,
        field: str,
        page: tuple[frozenset[str] | None, str] | None = None,
        follow: bool = True,
        sink: _Sink | None = None,
    ) -> tuple[str, int, httpx.Headers, bytes, int, int]:
        """GET `url`, following redirects (each hop re-checked by the guard): (final url, status, headers, body,
        redirects, attempts). With `follow=False` a 3xx comes back with its absolute Location as the final url."""
        current = url
        attempts_total = 0
        for hop in range(self.config.max_redirects + 1):
            target = resolve_target(current, self.config.allow_private, self._networks, field)
            status, headers, data, attempts = self._get_with_retries(target, field, page=page, sink=sink)
            attempts_total += attempts
            if status in REDIRECT_CODES:
                location = headers.get("location")
                if not location:
                    raise FetchError(
                        f"{field}: HTTP {status} redirect without a Location header", field, current, status
                    )
                if not follow:
                    return urljoin(current, location), status, headers, b"", hop, attempts_total
                current = urljoin(current, location)
                continue
            return current, status, headers, data, hop, attempts_total
        raise FetchError(
            f"{field}: more than {self.config.max_redirects} redirects (last: {current})", field, current, None
        )

    def fetch(self, url: str, field: str = "url") -> FetchResult:
        """Download one image; raises UnsafeURL (refused, nothing sent) or FetchError (download failed)."""
        final, status, headers, data, hops, attempts = self._follow(url, field)
        if status >= 400:
            raise FetchError(f"{field}: HTTP {status} from {final}", field, final, status)
        fmt = sniff_image_format(data[:SNIFF_BYTES])
        if fmt is None:  # pragma: no cover - _download already refused it
            raise FetchError(f"{field}: response from {final} is not an image", field, final, status)
        return FetchResult(
            url=url, final_url=final, status=status, content_type=headers.get("content-type"), data=data,
            format=fmt, redirects=hops, attempts=attempts,
        )

    def download_to(
        self,
        url: str,
        sink: BinaryIO,
        field: str = "url",
        max_bytes: int | None = None,
        total_timeout: float | None = None,
    ) -> FetchResult:
        """Download a large body (a video) into `sink`, a file opened "w+b", chunk by chunk instead of into memory:
        the same guard, redirects, retries and timeouts as `fetch`, no sniffing. `max_bytes` and `total_timeout`
        (seconds per hop: a big video needs more than an image) default to the config's. A retry starts the sink
        over (truncated to 0). The result's `data` is b"" and `format` ""; the body is in `sink`, flushed.
        Raises UnsafeURL or FetchError (HTTP >= 400, timeouts, over `max_bytes`, too many redirects)."""
        c = self.config
        spec = _Sink(
            sink,
            c.max_bytes if max_bytes is None else max_bytes,
            c.total_timeout if total_timeout is None else total_timeout,
        )
        final, status, headers, _, hops, attempts = self._follow(url, field, sink=spec)
        if status >= 400:
            raise FetchError(f"{field}: HTTP {status} from {final}", field, final, status)
        sink.flush()
        return FetchResult(
            url=url, final_url=final, status=status, content_type=headers.get("content-type"), data=b"", format="",
            redirects=hops, attempts=attempts,
        )

    def fetch_page(
        self,
        url: str,
        field: str = "url",
        content_types: Iterable[str] | None = None,
        accept: str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
        follow_redirects: bool = True,
    ) -> PageResult:
        """GET a page (HTML, robots.txt): the same guard, redirects, byte cap, timeouts and retries as `fetch`, but
        no image sniffing, and a final 4xx is returned (status, headers, no body) rather than raised, so a crawler
        can tell a missing robots.txt or page from a failed download. With `content_types` (media types such as
        "text/html") the body of any other type is not read. `follow_redirects=False` returns a 3xx as it is
        (its Location made absolute in `final_url`), for a crawler that schedules each hop itself. Raises
        UnsafeURL or FetchError (timeouts, 5xx after retries, too large, too many redirects)."""
        wanted = frozenset(t.lower() for t in content_types) if content_types is not None else None
        final, status, headers, data, hops, attempts = self._follow(url, field, (wanted, accept), follow_redirects)
        return PageResult(
            url=url, final_url=final, status=status, headers={k.lower(): v for k, v in headers.items()}, body=data,
            redirects=hops, attempts=attempts,
        )

    def fetch_many(self, urls: Sequence[str], concurrency: int = 16) -> list[FetchOutcome]:
        """Fetch many URLs in parallel (per-host limit still applies); errors are returned per URL, not raised."""

        def one(u: str) -> FetchOutcome:
            try:
                return FetchOutcome(u, result=self.fetch(u))
            except (FetchError, UnsafeURL) as exc:
                return FetchOutcome(u, error=exc)

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return list(pool.map(one, urls))

    def _get_with_retries(
        self,
        target: Target,
        field: str,
        page: tuple[frozenset[str] | None, str] | None = None,
        sink: _Sink | None = None,
    ) -> tuple[int, httpx.Headers, bytes, int]:
        c = self.config
        last: FetchError | None = None
        for attempt in range(c.retries + 1):
            if attempt:
                time.sleep(min(c.max_backoff, c.backoff * (2 ** (attempt - 1))))
            if sink is not None:  # a failed attempt may have written part of a body
                sink.file.seek(0)
                sink.file.truncate()
            try:
                status, headers, data = self._download(target, field, page, sink)
            except httpx.TimeoutException as exc:
                last = FetchError(f"{field}: timed out fetching {target.url} ({type(exc).__name__})", field, target.url)
                continue
            except httpx.TransportError as exc:
                last = FetchError(f"{field}: connection failed for {target.url}: {exc}", field, target.url)
                if _is_certificate_error(exc):  # will not change on a retry
                    raise last from exc
                continue
            if status >= 500:
                last = FetchError(f"{field}: HTTP {status} from {target.url}", field, target.url, status)
                continue
            return status, headers, data, attempt + 1
        assert last is not None
        last.message = f"{last.message} (after {c.retries + 1} attempts)"
        last.args = (last.message,)
        raise last

    def _download(
        self,
        target: Target,
        field: str,
        page: tuple[frozenset[str] | None, str] | None = None,
        sink: _Sink | None = None,
    ) -> tuple[int, httpx.Headers, bytes]:
        """One request to the pinned address; the body is read only for a final 2xx answer. `page` (wanted content
        types, Accept header) switches off image sniffing and skips bodies of unwanted types. With `sink` the body
        goes to its file (b"" returned), under its byte cap and deadline, unsniffed."""
        c = self.config
        max_bytes = sink.max_bytes if sink else c.max_bytes
        accept = page[1] if page else "*/*" if sink else None
        with self._limiter.get(target.host):
            response, request = self._connect(target, {"Accept": accept} if accept else None)
            try:
                status = response.status_code
                if status in REDIRECT_CODES or status >= 400:
                    return status, response.headers, b""
                if page and page[0] is not None:
                    ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                    if ctype not in page[0]:
                        return status, response.headers, b""
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise FetchError(
                        f"{field}: {target.url} declares {declared} bytes, over the limit of {max_bytes}",
                        field,
                        target.url,
                        status,
                    )
                total_timeout = sink.total_timeout if sink else c.total_timeout
                deadline = time.monotonic() + total_timeout
                chunks: list[bytes] = []
                size = 0
                sniffed = sink is not None  # a sink's body is not an image: never sniffed
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(
                            f"{field}: {target.url} sent more than the limit of {max_bytes} bytes",
                            field,
                            target.url,
                            status,
                        )
                    if sink is not None:
                        sink.file.write(chunk)
                    else:
                        chunks.append(chunk)
                    if not sniffed and not page and size >= SNIFF_BYTES:
                        self._check_sniff(b"".join(chunks), target, field, response)
                        sniffed = True
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout(f"download took longer than {total_timeout}s", request=request)
                data = b"".join(chunks)
                if not sniffed and not page:
                    self._check_sniff(data, target, field, response)
                return status, response.headers, data
            finally:
                response.close()

    def _connect(
        self, target: Target, headers: dict[str, str] | None = None
    ) -> tuple[httpx.Response, httpx.Request]:
        """Send the request to the first checked address that accepts a connection (never to an unchecked one)."""
        error: httpx.ConnectError | None = None
        for address in target.ips or (target.ip,):
            request = self._client.build_request(
                "GET",
                _pinned_url(target, address),
                headers={"Host": _host_header(target), **(headers or {})},
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )
            try:
                return self._client.send(request, stream=True), request
            except httpx.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    @staticmethod
    def _check_sniff(head: bytes, target: Target, field: str, response: httpx.Response) -> None:
        if sniff_image_format(head[:SNIFF_BYTES]) is None:
            ctype = response.headers.get("content-type", "(none)")
            raise FetchError(
                f"{field}: {target.url} is not an image: the bytes match no supported image signature "
                f"(declared Content-Type {ctype})",
                field,
                target.url,
                response.status_code,
            )


def fetch_all(urls: Iterable[str], config: FetchConfig | None = None, concurrency: int = 16) -> list[FetchOutcome]:
    """Convenience: a one-off fetcher for a batch."""
    with Fetcher(config) as f:
        return f.fetch_many(list(urls), concurrency)
