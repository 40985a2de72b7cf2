"""Console sessions: a signed, expiring cookie after the admin token was shown once, and a CSRF token per session.

The cookie holds `{exp, csrf, n}` and an HMAC-SHA256 over it, keyed by a hash of the admin token: rotating the
token signs everyone out, and the server keeps no session state. It is `HttpOnly` (no script reads it),
`SameSite=Strict` (no other site's page sends it), scoped to `/console`, and `Secure` behind https. Every
state-changing request carries the session's CSRF token in a form field or the `X-CSRF-Token` header; the login
form, before any session, uses a double-submit token (a cookie and a field that must match). The token itself is
never put in a URL, a cookie or a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "mms_console"
LOGIN_COOKIE = "mms_console_login"  # the login form's double-submit CSRF token
PATH = "/console"


@dataclass(frozen=True)
class Session:
    expires: float
    csrf: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, admin_token: str, hours: float = 8.0) -> None:
        self._token = admin_token
        self._key = hashlib.sha256(b"mmsearch console session\0" + admin_token.encode()).digest()
        self.seconds = int(hours * 3600)

    def check_token(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token.encode())

    def issue(self, now: float | None = None) -> tuple[str, Session]:
        """A new session's cookie value and the session."""
        session = Session(expires=(now or time.time()) + self.seconds, csrf=secrets.token_urlsafe(24))
        body = _b64(json.dumps({"exp": session.expires, "csrf": session.csrf, "n": secrets.token_urlsafe(8)},
                               separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None when it is missing, tampered with, malformed or expired."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 1_000:
            return None
        body, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._sign(body)):
            return None
        try:
            data = json.loads(_unb64(body))
            session = Session(expires=float(data["exp"]), csrf=str(data["csrf"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > (now or time.time()) else None

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two tokens, False when either is missing."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())
