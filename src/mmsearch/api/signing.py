"""Server-side verification of Volcengine V4 (``HMAC-SHA256``) request signatures.

Clients sign with the official ``volcengine`` Python SDK (``volcengine.auth.SignerV4.SignerV4.sign``)
or any signer that produces the same canonical request. This module recomputes that signature from
the request as the server received it; it knows no HTTP framework (see :func:`from_asgi_scope` and
:func:`from_raw` for turning what a web server sees into a :class:`SignedRequest`).

What the SDK signs (``SignerV4.sign`` / ``hashed_canonical_request_v4``, volcengine 1.0.x):

- It sets ``X-Date: YYYYMMDD'T'HHMMSS'Z'`` (UTC) and ``X-Content-Sha256: hex(sha256(body))``, and
  ``X-Security-Token`` when the credentials carry a session token.
- Signed headers are the request's headers named exactly ``Content-Type``, ``Content-Md5``, ``Host``
  or starting with ``X-`` (case-sensitive on the client), lower-cased, sorted, values verbatim;
  for ``host`` a ``:80`` / ``:443`` port is dropped. The list travels in ``SignedHeaders=``.
- Canonical request::

      METHOD \\n quote(path, safe="/") \\n canonical_query \\n
      "name:value\\n" for each signed header (sorted) \\n signed_header_names \\n hex(sha256(body))

  where ``canonical_query`` is ``key=value`` pairs joined by ``&``, keys sorted (values of one key
  in their given order), both percent-encoded with ``quote(..., safe="-_.~")`` over UTF-8.
  Note the blank line: the header block ends with ``\\n`` and is then joined with ``\\n``.
- String to sign: ``"HMAC-SHA256\\n" + X-Date + "\\n" + scope + "\\n" + hex(sha256(canonical))`` with
  ``scope = YYYYMMDD/region/service/request``; key = HMAC chain ``SK -> date -> region -> service ->
  "request"``; signature = lower-case hex.
- Header: ``Authorization: HMAC-SHA256 Credential=AK/scope, SignedHeaders=a;b, Signature=hex``.

Error codes (``SignatureError.code`` / ``.status``), modelled on Volcengine's public error codes.
Every authentication failure is 401 or 403 here (Volcengine itself answers 400 for some malformed
headers):

=========================== ====== ==========================================================
code                        status when
=========================== ====== ==========================================================
MissingAuthenticationToken  401    no ``Authorization`` header at all
InvalidAuthorization        401    ``Authorization`` is not ``HMAC-SHA256 Credential=..,
                                   SignedHeaders=.., Signature=..`` (message names the part)
MissingSignature            401    ``Signature=`` is empty
InvalidCredential           401    ``Credential=`` is not ``AK/YYYYMMDD/region/service/request``,
                                   its date is not X-Date's date, or its service/region is not
                                   this endpoint's
MissingRequestInfo          401    ``X-Date`` header missing, or ``x-date`` not in SignedHeaders
InvalidTimestamp            403    ``X-Date`` malformed, or outside the clock-skew window
InvalidSecretToken          401    ``X-Security-Token`` sent: STS session tokens are not supported
InvalidAccessKey            401    the access key id is unknown (or disabled)
SignatureDoesNotMatch       401    recomputed signature differs, a signed header is absent, or
                                   ``X-Content-Sha256`` is not the body's SHA-256
ReplayedRequest             403    this exact signature was already accepted within the window
ServiceUnavailable          503    the replay guard is full (fails closed rather than forgetting)
=========================== ====== ==========================================================
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote

from mmsearch.errors import MMSearchError

__all__ = [
    "ALGORITHM",
    "ReplayCacheFull",
    "ReplayGuard",
    "SignatureError",
    "SignedRequest",
    "VerifiedCaller",
    "canonical_query",
    "canonical_request",
    "from_asgi_scope",
    "from_raw",
    "is_volc_signed",
    "signing_key",
    "verify_v4",
]

ALGORITHM = "HMAC-SHA256"
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_X_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_HEADER_NAME_RE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_SCOPE_TERMINATOR = "request"


class SignatureError(MMSearchError):
    """A request whose V4 signature cannot be accepted; `code` and `status` say why (see module doc)."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def __repr__(self) -> str:
        return f"SignatureError({self.code!r}, {self.status}, {self.message!r})"


class ReplayCacheFull(Exception):
    """The replay guard holds `max_entries` live signatures and will not forget one early."""


def _missing_auth(msg: str) -> SignatureError:
    return SignatureError("MissingAuthenticationToken", 401, msg)


def _bad_auth(msg: str) -> SignatureError:
    return SignatureError("InvalidAuthorization", 401, msg)


def _bad_credential(msg: str) -> SignatureError:
    return SignatureError("InvalidCredential", 401, msg)


def _mismatch(msg: str) -> SignatureError:
    return SignatureError("SignatureDoesNotMatch", 401, msg)


# --------------------------------------------------------------------------- request model


def _normalise_headers(headers: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> dict[str, str]:
    """Lower-case names; bytes decoded as latin-1 (as HTTP/ASGI carry them); repeated names joined by ','."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        n = name.decode("latin-1") if isinstance(name, bytes | bytearray) else str(name)
        v = value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)
        n = n.lower()
        out[n] = f"{out[n]},{v}" if n in out else v
    return out


@dataclass(frozen=True)
class SignedRequest:
    """A request as the server received it.

    - `method`: the HTTP method (upper case, as on the request line).
    - `path`: the *percent-decoded* path (``/api/v1/application/app 1/search``), like ASGI's
      ``scope["path"]``; the SDK signs ``quote(path, safe="/")`` of the path it was given.
    - `query`: decoded ``(key, value)`` pairs in the order received (``parse_qsl`` of the raw query
      string with blank values kept; ``+`` means space, as ``urlencode`` sends it).
    - `headers`: any mapping or ``(name, value)`` pairs; stored with lower-case names.
    - `body`: the raw body bytes.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "query", tuple((str(k), str(v)) for k, v in self.query))
        object.__setattr__(self, "headers", _normalise_headers(self.headers))
        body = self.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        object.__setattr__(self, "body", bytes(body))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def _text(value: str | bytes | bytearray) -> str:
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else value


def from_raw(
    method: str,
    raw_path: str | bytes,
    raw_query: str | bytes,
    headers: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
    body: bytes,
) -> SignedRequest:
    """Build a :class:`SignedRequest` from what is on the wire.

    `raw_path` is the path as sent on the request line, still percent-encoded (ASGI
    ``scope["raw_path"]``); `raw_query` is the text after ``?`` (ASGI ``scope["query_string"]``,
    Starlette ``request.url.query``). Header names may be in any case; bytes are accepted.
    """
    path = unquote(_text(raw_path), encoding="utf-8", errors="replace") or "/"
    query = parse_qsl(_text(raw_query), keep_blank_values=True, encoding="utf-8", errors="replace")
    return SignedRequest(method=method, path=path, query=tuple(query), headers=headers, body=body)


def from_asgi_scope(scope: Mapping[str, Any], body: bytes) -> SignedRequest:
    """Build a :class:`SignedRequest` from an ASGI HTTP scope (Starlette/FastAPI ``request.scope``).

    Uses ``raw_path`` when the server provides it (uvicorn does), which is the full path the
    client sent (including any ``root_path`` prefix); falls back to ``root_path + path``.
    """
    raw_path = scope.get("raw_path")
    if raw_path is None:
        raw_path = quote(scope.get("root_path", "") + scope["path"], safe="/")
    return from_raw(scope["method"], raw_path, scope.get("query_string", b""), scope.get("headers", []), body)


# --------------------------------------------------------------------------- canonical form (mirrors SignerV4)


def _sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The SDK's key derivation: HMAC chain over date (YYYYMMDD), region, service, ``"request"``."""
    k_date = _hmac(secret_key.encode("utf-8"), date)
    return _hmac(_hmac(_hmac(k_date, region), service), _SCOPE_TERMINATOR)


def canonical_uri(path: str) -> str:
    """``Util.norm_uri``: ``quote(path)`` (``/`` kept), ``+`` -> ``%20``."""
    return quote(path or "/").replace("%2F", "/").replace("+", "%20")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """``Util.norm_query``: keys sorted, each key's values in received order, RFC 3986 encoding."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    parts = [
        f"{quote(key, safe='-_.~')}={quote(value, safe='-_.~')}" for key in sorted(grouped) for value in grouped[key]
    ]
    return "&".join(parts).replace("+", "%20")


def _canonical_host(value: str) -> str:
    # Same rule (and same quirks) as SignerV4: split on ':' and drop a default port.
    if ":" in value:
        parts = value.split(":")
        if parts[1] in ("80", "443"):
            return parts[0]
    return value


def canonical_request(req: SignedRequest, signed_headers: list[str], body_hash: str) -> str:
    """The canonical request string for `req`, signing `signed_headers` (lower-case, sorted)."""
    lines = []
    for name in signed_headers:
        value = req.header(name)
        if value is None:
            raise _mismatch(f"header '{name}' is listed in SignedHeaders but is not in the request")
        if name == "host":
            value = _canonical_host(value)
        lines.append(f"{name}:{value}\n")
    return "\n".join(
        [
            req.method,
            canonical_uri(req.path),
            canonical_query(req.query),
            "".join(lines),
            ";".join(signed_headers),
            body_hash,
        ]
    )


# --------------------------------------------------------------------------- replay protection


class Remembers(Protocol):
    """A replay guard: this module's in-memory `ReplayGuard`, or `catalog.shared.SharedReplayGuard`."""

    def remember(self, key: str, *, expires_at: float, now: float) -> bool: ...


class ReplayGuard:
    """Remembers accepted signatures until their X-Date leaves the skew window.

    Thread-safe; memory is bounded by `max_entries` live signatures. When full of live entries it
    refuses new ones (:class:`ReplayCacheFull`) instead of forgetting one that could then be replayed.
    Only signatures that verified are recorded, so only holders of a valid secret can fill it.
    State is per process: with several worker processes each has its own guard.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def _purge(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if expiry.get(key) == when:
                del expiry[key]

    def remember(self, key: str, *, expires_at: float, now: float) -> bool:
        """Record `key` until `expires_at` (epoch seconds); False if it is already live (a replay)."""
        with self._lock:
            self._purge(now)
            if key in self._expiry:
                return False
            if len(self._expiry) >= self.max_entries:
                raise ReplayCacheFull(f"replay guard holds {self.max_entries} live signatures")
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerifiedCaller:
    access_key_id: str


@dataclass(frozen=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def is_volc_signed(headers: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> bool:
    """True when the request carries ``Authorization: HMAC-SHA256 ...`` (the AK/SK path)."""
    value = _normalise_headers(headers).get("authorization", "")
    return value.startswith(ALGORITHM + " ")


def _parse_authorization(value: str) -> _Authorization:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _bad_auth(f"Authorization must start with '{ALGORITHM} ', got algorithm '{algorithm[:32]}'")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        part = part.strip()
        if not part:
            raise _bad_auth("Authorization has an empty component (stray ',')")
        name, eq, val = part.partition("=")
        if not eq:
            raise _bad_auth(f"Authorization component '{name[:32]}' has no '='")
        if name not in ("Credential", "SignedHeaders", "Signature"):
            raise _bad_auth(
                f"Authorization has unknown component '{name[:32]}'; expected Credential, SignedHeaders, Signature"
            )
        if name in fields:
            raise _bad_auth(f"Authorization repeats component '{name}'")
        fields[name] = val.strip()
    for name in ("Credential", "SignedHeaders"):
        if name not in fields:
            raise _bad_auth(f"Authorization lacks '{name}='")
    if not fields.get("Signature"):
        raise SignatureError("MissingSignature", 401, "Authorization lacks 'Signature=' or it is empty")
    signature = fields["Signature"]
    if not _SIGNATURE_RE.fullmatch(signature):
        raise _bad_auth("Signature must be 64 lower-case hex characters")

    credential = fields["Credential"].split("/")
    if len(credential) < 5 or not credential[0]:
        raise _bad_credential("Credential must be 'AccessKeyId/YYYYMMDD/region/service/request'")
    access_key_id = "/".join(credential[:-4])
    date, region, service, terminator = credential[-4:]
    if not re.fullmatch(r"\d{8}", date):
        raise _bad_credential(f"Credential date '{date[:16]}' is not YYYYMMDD")
    if not region or not service:
        raise _bad_credential("Credential region and service must not be empty")
    if terminator != _SCOPE_TERMINATOR:
        raise _bad_credential(f"Credential scope must end with '/{_SCOPE_TERMINATOR}'")

    names = fields["SignedHeaders"].split(";")
    if not all(_HEADER_NAME_RE.fullmatch(n) for n in names):
        raise _bad_auth("SignedHeaders must be lower-case header names separated by ';'")
    if names != sorted(set(names)):
        raise _bad_auth("SignedHeaders must be sorted and without repeats")
    return _Authorization(access_key_id, date, region, service, names, signature)


def parse_utc(value: str, pattern: re.Pattern[str], fmt: str) -> datetime | None:
    """A signing time in its scheme's exact format, as aware UTC; None when it is not one."""
    if not pattern.fullmatch(value):
        return None
    try:
        return datetime.strptime(value, fmt).replace(tzinfo=UTC)
    except ValueError:
        return None


def check_skew(signed_at: datetime, now: datetime | None, max_skew_s: int,
               too_far: Callable[[str, int], SignatureError]) -> datetime:
    """The server's time (UTC); `too_far(when, seconds)` is raised when `signed_at` is further than `max_skew_s`
    from it ("expired" or "in the future")."""
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    skew = (now - signed_at).total_seconds()
    if abs(skew) > max_skew_s:
        raise too_far("in the future" if skew < 0 else "expired", abs(int(skew)))
    return now


def accept_once(guard: Remembers | None, key: str, signed_at: datetime, now: datetime, max_skew_s: int,
                replayed: SignatureError) -> None:
    """Record a verified signature (or nonce) until it leaves the skew window; `replayed` if it was seen."""
    if guard is None:
        return
    try:
        fresh = guard.remember(key, expires_at=signed_at.timestamp() + max_skew_s, now=now.timestamp())
    except ReplayCacheFull as exc:
        raise type(replayed)("ServiceUnavailable", 503, f"cannot accept signed requests now: {exc}") from None
    if not fresh:
        raise replayed


def _parse_x_date(value: str) -> datetime:
    parsed = parse_utc(value, _X_DATE_RE, _DATE_FORMAT)
    if parsed is None:
        raise SignatureError(
            "InvalidTimestamp", 403, f"X-Date '{value[:32]}' is not a valid UTC time in the format YYYYMMDD'T'HHMMSS'Z'"
        )
    return parsed


def verify_v4(
    req: SignedRequest,
    lookup_secret: Callable[[str], str | None],
    *,
    service: str,
    region: str,
    now: datetime | None = None,
    max_skew_s: int = 900,
    replay: Remembers | None = None,
) -> VerifiedCaller:
    """Verify `req`'s V4 signature; return the caller or raise :class:`SignatureError`.

    `lookup_secret(access_key_id)` returns the secret access key, or None for an unknown/disabled
    key. `service` and `region` are what this endpoint expects in the credential scope. `now`
    defaults to the current UTC time (naive datetimes are taken as UTC). X-Date may differ from
    `now` by at most `max_skew_s` either way. With `replay`, a signature is accepted only once
    (recorded only after it verified, until X-Date + `max_skew_s`).
    """
    authorization = req.header("authorization")
    if authorization is None or not authorization.strip():
        raise _missing_auth("the request has no Authorization header")
    auth = _parse_authorization(authorization)

    x_date_value = req.header("x-date")
    if x_date_value is None:
        raise SignatureError("MissingRequestInfo", 401, "the request is missing the X-Date header")
    if "x-date" not in auth.signed_headers:
        raise SignatureError("MissingRequestInfo", 401, "SignedHeaders must include x-date")
    x_date = _parse_x_date(x_date_value)
    if auth.date != x_date_value[:8]:
        raise _bad_credential(f"Credential date {auth.date} is not the date of X-Date {x_date_value}")
    if auth.service != service:
        raise _bad_credential(f"Credential service '{auth.service[:64]}' is not this endpoint's service '{service}'")
    if auth.region != region:
        raise _bad_credential(f"Credential region '{auth.region[:64]}' is not this endpoint's region '{region}'")

    now = check_skew(x_date, now, max_skew_s, lambda when, seconds: SignatureError(
        "InvalidTimestamp", 403,
        f"the signature is {when}: X-Date {x_date_value} is {seconds}s from the server's time "
        f"(allowed: {max_skew_s}s); sign with the current UTC time",
    ))

    if req.header("x-security-token") is not None:
        raise SignatureError("InvalidSecretToken", 401, "X-Security-Token (STS session credentials) is not supported")

    secret = lookup_secret(auth.access_key_id)
    if secret is None:
        raise SignatureError("InvalidAccessKey", 401, f"the access key [{auth.access_key_id[:64]}] is invalid")

    body_hash = _sha256_hex(req.body)
    declared = req.header("x-content-sha256")
    if declared is not None and not hmac.compare_digest(declared.strip().lower().encode(), body_hash.encode()):
        raise _mismatch("X-Content-Sha256 is not the SHA-256 of the request body")

    canonical = canonical_request(req, auth.signed_headers, body_hash)
    scope = f"{auth.date}/{auth.region}/{auth.service}/{_SCOPE_TERMINATOR}"
    string_to_sign = "\n".join([ALGORITHM, x_date_value, scope, _sha256_hex(canonical)])
    key = signing_key(secret, auth.date, auth.region, auth.service)
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), auth.signature.encode("ascii")):
        raise _mismatch(
            "the request signature we calculated does not match the signature you provided; "
            "check your secret access key and signing method"
        )

    accept_once(replay, f"{auth.access_key_id}/{auth.signature}", x_date, now, max_skew_s, SignatureError(
        "ReplayedRequest", 403, "this signed request was already received; sign every request afresh"
    ))
    return VerifiedCaller(access_key_id=auth.access_key_id)
