"""API keys: a bearer key (only its SHA-256 is stored) plus an AK/SK pair, scoped to applications."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from mmsearch.catalog.models import ApplicationRow, KeyAppRow, KeyRow, aware, require, utcnow
from mmsearch.errors import InvalidArgument, NotFound

KEY_PREFIX = "mms_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    access_key_id: str
    apps: list[str]
    name: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, app_id: str) -> bool:
        return self.active and app_id in self.apps

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "access_key_id": self.access_key_id, "apps": self.apps, "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


@dataclass(frozen=True)
class NewKey:
    """Returned once, at creation: the secrets are not stored in a form that can be shown again."""

    key: str
    secret_access_key: str
    info: ApiKey = field(repr=False)

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "secret_access_key": self.secret_access_key, **self.info.as_dict()}


class Keys:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.revocations = 0  # revokes made through this object: caches of keys compare it to drop stale entries

    def create(self, apps: list[str], name: str = "") -> NewKey:
        if not apps:
            raise InvalidArgument("apps: a key must be scoped to at least one application", field="apps")
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
        ak = "AK" + secrets.token_hex(10).upper()
        sk = secrets.token_urlsafe(30)
        with Session(self.engine) as s, s.begin():
            scoped: list[str] = []
            for app_id in apps:
                require(s, ApplicationRow, app_id, "apps", "application")
                if app_id not in scoped:
                    scoped.append(app_id)
            s.add(KeyRow(id=key_id, key_hash=hash_key(key), access_key_id=ak, secret_access_key=sk, name=name))
            s.flush()
            s.add_all(KeyAppRow(key_id=key_id, app_id=a) for a in scoped)
        return NewKey(key=key, secret_access_key=sk, info=self.get(key_id))

    def get(self, key_id: str) -> ApiKey:
        with Session(self.engine) as s:
            row = require(s, KeyRow, key_id, "key", "key")
            return self._key(s, row)

    def list(self) -> list[ApiKey]:
        with Session(self.engine) as s:
            return [self._key(s, row) for row in s.scalars(select(KeyRow).order_by(KeyRow.created_at))]

    def revoke(self, key_or_id: str) -> ApiKey:
        """Takes the full key, its id, or its access key id."""
        key_id = self._resolve(key_or_id)
        with Session(self.engine) as s, s.begin():
            row = s.get(KeyRow, key_id)
            assert row is not None
            if row.revoked_at is None:
                row.revoked_at = utcnow()
        self.revocations += 1
        return self.get(key_id)

    def _resolve(self, key_or_id: str) -> str:
        with Session(self.engine) as s:
            if key_or_id.startswith(KEY_PREFIX):
                row = s.scalar(select(KeyRow).where(KeyRow.key_hash == hash_key(key_or_id)))
            else:
                row = s.get(KeyRow, key_or_id) or s.scalar(select(KeyRow).where(KeyRow.access_key_id == key_or_id))
            if row is None:
                raise NotFound("key: no such key", field="key")
            return row.id

    def by_bearer(self, key: str) -> ApiKey | None:
        if not key.startswith(KEY_PREFIX):
            return None
        digest = hash_key(key)
        with Session(self.engine) as s:
            row = s.scalar(select(KeyRow).where(KeyRow.key_hash == digest))
            if row is None or not hmac.compare_digest(row.key_hash, digest):
                return None
            return self._key(s, row)

    def by_access_key(self, access_key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its secret, for signature verification."""
        with Session(self.engine) as s:
            row = s.scalar(select(KeyRow).where(KeyRow.access_key_id == access_key_id))
            return None if row is None else (self._key(s, row), row.secret_access_key)

    def touch(self, key_id: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(update(KeyRow).where(KeyRow.id == key_id).values(last_used_at=utcnow()))

    @staticmethod
    def _key(s: Session, row: KeyRow) -> ApiKey:
        apps = list(s.scalars(select(KeyAppRow.app_id).where(KeyAppRow.key_id == row.id).order_by(KeyAppRow.app_id)))
        return ApiKey(
            id=row.id, access_key_id=row.access_key_id, apps=apps, name=row.name,
            created_at=aware(row.created_at) or utcnow(), revoked_at=aware(row.revoked_at),
            last_used_at=aware(row.last_used_at),
        )
