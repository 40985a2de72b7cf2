"""Server-side verification of Alibaba Cloud ``ACS3-HMAC-SHA256`` request signatures (AK/SK).

The official SDK ``alibabacloud_iqs20241111`` (1.7.1 and 1.10.2, both on ``alibabacloud_tea_openapi``
0.4.3-0.4.6, ``Client.do_request`` + ``Utils.get_authorization``) signs every call this way. This
module recomputes the signature from the request as the server received it and knows no HTTP
framework: build a :class:`~mmsearch.api.signing.SignedRequest` with ``from_asgi_scope`` / ``from_raw``
(re-exported here) and call :func:`verify_acs3`.

What the SDK sends for ``multimodal_search`` (ROA style, ``POST``, JSON body)::

    POST /linked-retrieval/linked-retrieval-entry/v1/iqs/multimodal/unified
    host: <Config.endpoint>            x-acs-action: MultimodalSearch   x-acs-version: 2024-11-11
    x-acs-date: 2026-01-02T03:04:05Z   x-acs-signature-nonce: <32 hex>  accept: application/json
    content-type: application/json; charset=utf-8                       user-agent: AlibabaCloud (...)
    x-acs-content-sha256: hex(sha256(body))                             x-acs-credentials-provider: static_ak
    Authorization: ACS3-HMAC-SHA256 Credential=<AK>,SignedHeaders=accept;content-type;host;...,Signature=<hex>

What it signs (every header it set itself, i.e. all but ``Authorization`` and what the HTTP library
adds, such as ``Content-Length`` / ``Accept-Encoding``)::

    canonical = METHOD \\n URI \\n QUERY \\n "name:value\\n" per signed header \\n signed;names \\n hex(sha256(body))
    string_to_sign = "ACS3-HMAC-SHA256\\n" + hex(sha256(canonical))
    signature = hex(hmac_sha256(secret, string_to_sign))

- header names lower-cased and sorted, values stripped; no scope, no key derivation, no region.
- ``URI``: the SDK uses the path as given (not encoded); Alibaba's published algorithm percent-encodes
  it (RFC 3986, ``/`` kept). Both forms are accepted (they only differ for paths outside
  ``[A-Za-z0-9/_.~-]``).
- ``QUERY``: ``key=value`` joined by ``&``, keys sorted, values ``quote(v, safe="~")``; the SDK leaves
  keys unencoded, the published algorithm encodes them: both forms are accepted.

Checks made here beyond the signature: ``host``, ``x-acs-date``, ``x-acs-signature-nonce`` and
``x-acs-content-sha256`` must be signed; ``x-acs-content-sha256`` must be the body's SHA-256;
``x-acs-date`` within ``max_skew_s`` of the server clock; with a :class:`ReplayGuard`, a nonce is
accepted once per access key while its date is in the window (recorded only after the signature
verified, so only key holders can fill the guard).

Error codes (:class:`Acs3Error` ``.code`` / ``.status`` / ``.message``), modelled on Alibaba Cloud's
public POP codes. Alibaba answers 400 for several of these; here every authentication failure is 403,
except the unknown key, which is the IQS spec's 404:

=============================== ====== ==============================================================
code                            status when
=============================== ====== ==============================================================
IncompleteSignature             403    no ``Authorization``; it is not ``ACS3-HMAC-SHA256
                                       Credential=..,SignedHeaders=..,Signature=..`` (other ACS3
                                       algorithms such as ``ACS3-HMAC-SM3`` are not supported); a
                                       required header is missing or unsigned; a signed header is
                                       absent (the message names the part)
InvalidTimeStamp.Format         403    ``x-acs-date`` is not ``yyyy-MM-ddTHH:mm:ssZ``
InvalidTimeStamp.Expired        403    ``x-acs-date`` is more than ``max_skew_s`` from server time
InvalidSecurityToken.NotSupported 403  ``x-acs-security-token`` / ``x-acs-bearer-token`` sent: STS and
                                       bearer credentials are not accepted, only long-term AK/SK
InvalidAccessKeyId.NotFound     404    ``lookup_secret`` returned None ("Specified access key is not
                                       found.", the spec's row)
InvalidAccessKeyId.Inactive     403    raised by ``lookup_secret`` via :func:`access_key_inactive`
SignatureDoesNotMatch           403    recomputed signature differs, or ``x-acs-content-sha256`` is
                                       not the body's SHA-256
SignatureNonceUsed              403    this access key already used this nonce within the window
ServiceUnavailable              503    the nonce guard is full (fails closed rather than forgetting)
=============================== ====== ==============================================================

Error bodies the SDK turns into ``TeaException`` (see :func:`error_body`): JSON (any content type but
``text/xml;charset=utf-8``) ``{"requestId", "code", "message"}``; the SDK sets ``e.code`` from
``Code``/``code``, ``e.data`` to the whole body (plus ``statusCode``) and ``e.message`` to
``"code: <status>, <message> request id: <requestId>"``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from mmsearch.api.signing import (
    Remembers,
    ReplayGuard,
    SignatureError,
    SignedRequest,
    accept_once,
    check_skew,
    from_asgi_scope,
    from_raw,
    parse_utc,
)

__all__ = [
    "ALGORITHM",
    "REQUIRED_SIGNED_HEADERS",
    "Acs3Authorization",
    "Acs3Error",
    "ReplayGuard",
    "SignedRequest",
    "access_key_inactive",
    "access_key_not_found",
    "canonical_requests",
    "error_body",
    "from_asgi_scope",
    "from_raw",
    "is_acs3_signed",
    "parse_authorization",
    "signature_for",
    "verify_acs3",
]

ALGORITHM = "ACS3-HMAC-SHA256"
REQUIRED_SIGNED_HEADERS = ("host", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce")
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_HEADER_NAME_RE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_MAX_NONCE_CHARS = 128


class Acs3Error(SignatureError):
    """An ACS3 request that cannot be accepted; `code`, `status`, `message` say why (see module doc)."""

    def __repr__(self) -> str:
        return f"Acs3Error({self.code!r}, {self.status}, {self.message!r})"


def _incomplete(msg: str) -> Acs3Error:
    return Acs3Error("IncompleteSignature", 403, msg)


def _mismatch(msg: str) -> Acs3Error:
    return Acs3Error("SignatureDoesNotMatch", 403, msg)


def access_key_not_found() -> Acs3Error:
    """The spec's row: 404 ``InvalidAccessKeyId.NotFound``, message verbatim."""
    return Acs3Error("InvalidAccessKeyId.NotFound", 404, "Specified access key is not found.")


def access_key_inactive() -> Acs3Error:
    """For `lookup_secret` to raise when the key exists but is disabled."""
    return Acs3Error("InvalidAccessKeyId.Inactive", 403, "Specified access key is disabled.")


def error_body(code: str, message: str, request_id: str) -> dict[str, str]:
    """The JSON error body the SDK reads: ``e.code``, ``e.data["requestId"]``, ``e.data["message"]``."""
    return {"requestId": request_id, "code": code, "message": message}


# --------------------------------------------------------------------------- Authorization header


@dataclass(frozen=True)
class Acs3Authorization:
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def _header_map(headers: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        n = name.decode("latin-1") if isinstance(name, bytes | bytearray) else str(name)
        v = value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)
        out.setdefault(n.lower(), v)
    return out


def is_acs3_signed(headers: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> bool:
    """True when ``Authorization`` starts with ``ACS3-`` (the SDK's AK/SK path; any ACS3 algorithm,
    so that an unsupported one gets a clear :class:`Acs3Error` rather than an API-key error)."""
    return _header_map(headers).get("authorization", "").lstrip().startswith("ACS3-")


def parse_authorization(value: str) -> Acs3Authorization:
    """Parse ``ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex`` or raise IncompleteSignature."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(
            f"Authorization algorithm '{algorithm[:32]}' is not supported; sign with {ALGORITHM} "
            "(the SDK's default signature_algorithm)"
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        part = part.strip()
        name, eq, val = part.partition("=")
        if not eq:
            raise _incomplete(f"Authorization component '{name[:32]}' has no '='")
        if name not in ("Credential", "SignedHeaders", "Signature"):
            raise _incomplete(
                f"Authorization has unknown component '{name[:32]}'; expected Credential, SignedHeaders, Signature"
            )
        if name in fields:
            raise _incomplete(f"Authorization repeats component '{name}'")
        fields[name] = val.strip()
    for name in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(name):
            raise _incomplete(f"Authorization lacks '{name}=' or it is empty")
    if not _SIGNATURE_RE.fullmatch(fields["Signature"]):
        raise _incomplete("Authorization Signature must be 64 lower-case hex characters")
    names = fields["SignedHeaders"].split(";")
    if not all(_HEADER_NAME_RE.fullmatch(n) for n in names):
        raise _incomplete("Authorization SignedHeaders must be lower-case header names separated by ';'")
    if names != sorted(set(names)):
        raise _incomplete("Authorization SignedHeaders must be sorted and without repeats")
    if "authorization" in names:
        raise _incomplete("Authorization SignedHeaders must not list authorization itself")
    return Acs3Authorization(fields["Credential"], tuple(names), fields["Signature"])


# --------------------------------------------------------------------------- canonical request


def _uri_forms(path: str) -> list[str]:
    path = path or "/"
    return list(dict.fromkeys([path, quote(path, safe="/~")]))


def _query_forms(pairs: Iterable[tuple[str, str]]) -> list[str]:
    items = list(pairs)

    def build(encode_keys: bool) -> str:
        keyed = [(quote(k, safe="~") if encode_keys else k, quote(v, safe="~")) for k, v in items]
        keyed.sort(key=lambda kv: kv[0])
        return "&".join(f"{k}={v}" for k, v in keyed)

    return list(dict.fromkeys([build(False), build(True)]))


def _canonical_headers(req: SignedRequest, names: Iterable[str]) -> str:
    lines = []
    for name in names:
        value = req.header(name)
        if value is None:
            raise _incomplete(f"header '{name}' is listed in SignedHeaders but is not in the request")
        lines.append(f"{name}:{value.strip()}\n")
    return "".join(lines)


def canonical_requests(req: SignedRequest, signed_headers: Iterable[str], payload_hash: str) -> list[str]:
    """The canonical request(s) a correct signer may have signed for `req`: the SDK's form first,
    then the published form where it differs (see module doc). Usually one string."""
    names = list(signed_headers)
    header_block = _canonical_headers(req, names)
    out = []
    for uri in _uri_forms(req.path):
        for query in _query_forms(req.query):
            out.append("\n".join([req.method, uri, query, header_block, ";".join(names), payload_hash]))
    return list(dict.fromkeys(out))


def _sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def signature_for(secret: str, canonical_request: str) -> str:
    """hex(HMAC-SHA256(secret, "ACS3-HMAC-SHA256\\n" + hex(sha256(canonical_request))))."""
    string_to_sign = f"{ALGORITHM}\n{_sha256_hex(canonical_request)}"
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- verification


def _parse_date(value: str) -> datetime:
    parsed = parse_utc(value, _DATE_RE, _DATE_FORMAT)
    if parsed is None:
        raise Acs3Error(
            "InvalidTimeStamp.Format", 403,
            f"x-acs-date '{value[:32]}' is not a valid UTC time in the format yyyy-MM-ddTHH:mm:ssZ",
        )
    return parsed


def verify_acs3(
    req: SignedRequest,
    lookup_secret: Callable[[str], str | None],
    *,
    now: datetime | None = None,
    max_skew_s: int = 900,
    nonces: Remembers | None = None,
) -> str:
    """Verify `req`'s ACS3-HMAC-SHA256 signature; return the access key id or raise :class:`Acs3Error`.

    `lookup_secret(access_key_id)` returns the secret, None for an unknown key (404
    ``InvalidAccessKeyId.NotFound``), or raises an :class:`Acs3Error` itself (e.g.
    :func:`access_key_inactive`). `now` defaults to the current UTC time (naive = UTC); ``x-acs-date``
    may differ from it by at most `max_skew_s` either way. With `nonces`, each (access key, nonce) is
    accepted once until ``x-acs-date + max_skew_s``.
    """
    authorization = req.header("authorization")
    if authorization is None or not authorization.strip():
        raise _incomplete("the request has no Authorization header")
    auth = parse_authorization(authorization)

    for name in REQUIRED_SIGNED_HEADERS:
        if req.header(name) is None:
            raise _incomplete(f"the request is missing the {name} header")
        if name not in auth.signed_headers:
            raise _incomplete(f"Authorization SignedHeaders must include {name}")

    date_value = req.header("x-acs-date") or ""
    signed_at = _parse_date(date_value.strip())
    now = check_skew(signed_at, now, max_skew_s, lambda when, seconds: Acs3Error(
        "InvalidTimeStamp.Expired", 403,
        f"Specified time stamp or date value is {when}: x-acs-date {date_value} is {seconds}s from "
        f"the server's time (allowed: {max_skew_s}s); sign with the current UTC time",
    ))

    nonce = (req.header("x-acs-signature-nonce") or "").strip()
    if not nonce or len(nonce) > _MAX_NONCE_CHARS:
        raise _incomplete(f"x-acs-signature-nonce must be 1-{_MAX_NONCE_CHARS} characters")

    for name in ("x-acs-security-token", "x-acs-bearer-token"):
        if req.header(name) is not None:
            raise Acs3Error(
                "InvalidSecurityToken.NotSupported",
                403,
                f"{name} is not supported (STS/bearer credentials); sign with a long-term AccessKey id and secret",
            )

    secret = lookup_secret(auth.access_key_id)
    if secret is None:
        raise access_key_not_found()

    payload_hash = _sha256_hex(req.body)
    declared = (req.header("x-acs-content-sha256") or "").strip()
    if not _SHA256_RE.fullmatch(declared) or not hmac.compare_digest(declared.lower(), payload_hash):
        raise _mismatch("x-acs-content-sha256 is not the hex SHA-256 of the request body")

    candidates = canonical_requests(req, auth.signed_headers, payload_hash)
    matched = False
    for canonical in candidates:  # no early exit: time does not depend on which form matched
        expected = signature_for(secret, canonical)
        matched |= hmac.compare_digest(expected.encode("ascii"), auth.signature.encode("ascii"))
    if not matched:
        raise _mismatch(
            "Specified signature is not matched with our calculation; check your AccessKey secret and signing "
            f"method. Server string to sign is: {ALGORITHM}\\n{_sha256_hex(candidates[0])}"
        )

    accept_once(nonces, f"{auth.access_key_id}\n{nonce}", signed_at, now, max_skew_s, Acs3Error(
        "SignatureNonceUsed", 403,
        "Specified signature nonce was used already; send a fresh x-acs-signature-nonce with every request",
    ))
    return auth.access_key_id
