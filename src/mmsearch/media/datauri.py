"""Strict `data:<mime>;base64,<payload>` parsing, as the AI Search spec defines image queries.

The spec fixes the prefix `data:` and the separator `;base64,` and asks for plain RFC 4648 base64,
so anything looser (whitespace, URL-safe alphabet, missing padding, extra parameters) is an error
rather than guessed at: a client that sends it would fail against the real service too.
"""

from __future__ import annotations

import base64
import binascii
import re

from mmsearch.errors import InvalidArgument

PREFIX = "data:"
SEPARATOR = ";base64,"
DEFAULT_FIELD = "query.image_url"

_MIME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_B64_RE = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


def is_data_uri(s: str) -> bool:
    """True when `s` claims to be a data URI (then `parse_data_uri` decides whether it is a valid one)."""
    return s[:5].lower() == PREFIX


def parse_data_uri(s: str, field: str = DEFAULT_FIELD) -> tuple[str, bytes]:
    """Return `(mime, payload bytes)`; each way of breaking the format gets its own error naming `field`."""
    if not isinstance(s, str):
        raise InvalidArgument(f"{field} must be a string", field=field)
    if not s.startswith(PREFIX):
        raise InvalidArgument(f"{field} must start with the prefix 'data:' (exactly, lower case)", field=field)
    rest = s[len(PREFIX) :]
    idx = rest.find(SEPARATOR)
    if idx < 0:
        raise InvalidArgument(
            f"{field} must have the form data:<mime>;base64,<payload>; the separator ';base64,' is missing",
            field=field,
        )
    mime, payload = rest[:idx], rest[idx + len(SEPARATOR) :]
    if not mime:
        raise InvalidArgument(f"{field} has an empty MIME type before ';base64,'", field=field)
    if not _MIME_RE.match(mime):
        raise InvalidArgument(
            f"{field} has an invalid MIME type {mime[:60]!r}: expected type/subtype with no parameters",
            field=field,
        )
    if not payload:
        raise InvalidArgument(f"{field} has an empty base64 payload", field=field)
    if any(c.isspace() for c in payload):
        raise InvalidArgument(f"{field} base64 payload must not contain whitespace or line breaks", field=field)
    if not _B64_RE.match(payload):
        bad = next((c for c in payload if c not in _ALPHABET), None)
        if bad is not None:
            raise InvalidArgument(
                f"{field} base64 payload has a character outside the standard base64 alphabet: {bad!r}", field=field
            )
        raise InvalidArgument(f"{field} base64 payload has '=' padding before its end", field=field)
    if len(payload) % 4:
        raise InvalidArgument(
            f"{field} base64 payload length {len(payload)} is not a multiple of 4 (padding missing or wrong)",
            field=field,
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"{field} base64 payload is not valid RFC 4648 base64: {exc}", field=field) from exc
    if base64.b64encode(data).decode("ascii") != payload:
        raise InvalidArgument(f"{field} base64 payload has non-canonical padding bits", field=field)
    return mime.lower(), data
