"""Who may call what: application API keys (bearer or V4-signed AK/SK) on the AI Search endpoint, IQS account keys
(bearer or ACS3-signed AK/SK) on MultimodalSearch, the admin token on the management API."""

from __future__ import annotations

import hmac
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from mmsearch.api.acs3 import is_acs3_signed, verify_acs3
from mmsearch.api.errors import ApiError
from mmsearch.api.signing import ReplayGuard, from_asgi_scope, is_volc_signed, verify_v4
from mmsearch.catalog.accounts import NOT_FOUND, AccountKey, Charge, IqsError
from mmsearch.catalog.keys import ApiKey
from mmsearch.catalog.shared import SharedReplayGuard
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.home import make_home


def admin_token(settings: Settings, announce: bool = True) -> str:
    """`MMSEARCH_ADMIN_TOKEN`, else the token kept in HOME/admin_token, else a new one (printed once)."""
    if settings.admin_token:
        return settings.admin_token
    path = Path(settings.home) / "admin_token"
    if path.is_file():
        return path.read_text().strip()
    token = "mmsa_" + secrets.token_urlsafe(32)
    make_home(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    if announce:
        print(f"mmsearch: generated an admin token (kept in {path}):\n  {token}", file=sys.stderr)
    return token


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass(frozen=True)
class Caller:
    key: ApiKey
    via: str  # "api_key" or "signature"


class KeyCache:
    """Bearer keys are checked on every search; a short cache keeps the catalog off the hot path.
    A key revoked by another process (the CLI) stops working within `ttl_s`; one revoked through this server's
    catalog (the management API) at once."""

    def __init__(self, mm: MMSearch, ttl_s: float = 2.0) -> None:
        self.mm = mm
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, int, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def bearer(self, key: str) -> ApiKey | None:
        now = time.monotonic()
        keys = self.mm.catalog.keys
        revocations = keys.revocations  # read before the lookup: a revoke racing it leaves no stale entry
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s and hit[1] == revocations:
            return hit[2]
        found = keys.by_bearer(key)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, revocations, found)
        return found


def replay_guard(mm: MMSearch) -> ReplayGuard | SharedReplayGuard:
    """In memory for one process; in the catalog when processes share it (a signature used on one is used)."""
    return SharedReplayGuard(mm.catalog.engine) if mm.catalog.shared else ReplayGuard()


class Authenticator:
    def __init__(self, mm: MMSearch) -> None:
        self.mm = mm
        self.settings = mm.settings
        self.keys = KeyCache(mm)
        self.replay = replay_guard(mm)
        self._admin = admin_token(self.settings)

    def admin(self, request: Request) -> None:
        token = _bearer(request) or request.headers.get("x-admin-token")
        if not token:
            raise ApiError(401, "MissingAuthorization",
                           "Authorization: management endpoints need 'Bearer <admin token>'", "Authorization")
        if not hmac.compare_digest(token.encode(), self._admin.encode()):
            raise ApiError(401, "InvalidAdminToken", "Authorization: the admin token is not valid", "Authorization")

    async def search(self, request: Request, app_id: str) -> Caller:
        """A bearer API key, or a V4 signature made with the key's AK/SK; either way scoped to `app_id`."""
        if is_volc_signed(request.headers.items()):
            body = await request.body()
            found: dict[str, ApiKey] = {}

            def secret_of(ak: str) -> str | None:
                pair = self.mm.catalog.keys.by_access_key(ak)
                if pair is None or not pair[0].active:
                    return None
                found["key"] = pair[0]
                return pair[1]

            verify_v4(
                from_asgi_scope(request.scope, body), secret_of, service=self.settings.volc_service,
                region=self.settings.volc_region, max_skew_s=self.settings.signature_max_skew_s, replay=self.replay,
            )
            caller = Caller(found["key"], "signature")
        else:
            token = _bearer(request)
            if token is None:
                raise ApiError(401, "MissingAuthorization",
                               "Authorization: send 'Bearer <API key>' or a V4 (HMAC-SHA256) signature",
                               "Authorization")
            key = self.keys.bearer(token)
            if key is None or not key.active:
                raise ApiError(401, "InvalidApiKey", "Authorization: the API key is not valid or was revoked",
                               "Authorization")
            caller = Caller(key, "api_key")
        if not caller.key.allows(app_id):
            self.mm.catalog.apps.get(app_id)  # an unknown application is a 404 for any valid key
            raise ApiError(403, "AccessDenied",
                           f"Authorization: this key may not search application {app_id!r}", "Authorization")
        return caller


class IqsAuth:
    """An account key from a bearer API key (`iqs_…`) or an ACS3-HMAC-SHA256 signature made with its AK/SK."""

    def __init__(self, mm: MMSearch) -> None:
        self.accounts = mm.catalog.accounts
        self.settings = mm.settings
        self.nonces = replay_guard(mm)  # ACS3 nonces: the same guard as V4 signatures

    def authenticate(self, request: Request, raw: bytes) -> AccountKey:
        headers = request.headers
        if is_acs3_signed(headers.items()):
            found: dict[str, AccountKey] = {}

            def secret_of(ak: str) -> str | None:
                pair = self.accounts.key_by_access_key_id(ak)
                if pair is None:
                    return None
                found["key"] = pair[0]
                return pair[1]

            verify_acs3(from_asgi_scope(request.scope, raw), secret_of,
                        max_skew_s=self.settings.signature_max_skew_s, nonces=self.nonces)
            return found["key"]
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise IqsError(401, "MissingAuthorization",
                           "Authorization: send 'Bearer <API key>' or sign the request with ACS3-HMAC-SHA256")
        key = self.accounts.key_by_api_key(token.strip())
        if key is None:
            raise IqsError.of(NOT_FOUND)
        return key

    def charge(self, key: AccountKey) -> Charge:
        return self.accounts.authorize_query(key)

    def refund(self, charge: Charge) -> None:
        self.accounts.refund(charge)
