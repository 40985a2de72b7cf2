"""IQS accounts: who may call the MultimodalSearch API, on which plan, and how much.

An account has a plan (`trial`: free, 15 days from creation, 1000 queries a UTC day; `paid`: one credit per
query), an activation flag and a queries-per-second limit. Its keys are an AK/SK pair (for the official SDK's
ACS3 signatures, so the secret is kept) plus a bearer API key (only its SHA-256 is kept). Sub-account keys need
the search permission. These are separate from the application keys in `keys.py`, which scope the Volc-style API.

`Accounts.authorize_query` reproduces the spec's error table with real semantics. Checks run in this order, the
first that fails answers:

    1. unknown or revoked key            404 InvalidAccessKeyId.NotFound
    2. account not activated             403 Retrieval.NotActivate
    3. sub-account key, no permission    403 Retrieval.NotAuthorised
    4. trial older than 15 days          403 Retrieval.TestUserPeriodExpired
    5. trial at 1000 queries today       429 Retrieval.TestUserQueryPerDayExceeded
    6. paid with no credits left         403 Retrieval.Arrears
    7. key over its QPS (token bucket)   429 Retrieval.Throttling.User

then the query is charged: today's counter goes up by one and a paid account loses one credit. The charge is a
conditional UPDATE (`... WHERE credits > 0`, `... WHERE count < limit`) checked by its row count, so concurrent
requests (threads or processes sharing the database) never overdraw a balance or a daily quota.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import BigInteger, Boolean, DateTime, Engine, ForeignKey, Integer, String, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from mmsearch.catalog.models import Base, aware, utcnow
from mmsearch.catalog.shared import SharedRateLimiter
from mmsearch.errors import AlreadyExists, InvalidArgument, MMSearchError, NotFound

Plan = Literal["trial", "paid"]
PLANS: tuple[str, ...] = ("trial", "paid")
TRIAL_DAYS = 15
TRIAL_QUERIES_PER_DAY = 1000
DEFAULT_QPS = 10
MAX_QPS = 100_000
MAX_CREDITS = 2**63 - 1  # a signed 64-bit column: the most any balance (or one recharge) can hold
API_KEY_PREFIX = "iqs_"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_ALNUM = string.ascii_letters + string.digits

# -- the spec's error table ---------------------------------------------------------------------------------

NOT_FOUND = "InvalidAccessKeyId.NotFound"
NOT_ACTIVATE = "Retrieval.NotActivate"
ARREARS = "Retrieval.Arrears"
NOT_AUTHORISED = "Retrieval.NotAuthorised"
PERIOD_EXPIRED = "Retrieval.TestUserPeriodExpired"
THROTTLING = "Retrieval.Throttling.User"
DAY_EXCEEDED = "Retrieval.TestUserQueryPerDayExceeded"

ERROR_TABLE: dict[str, tuple[int, str]] = {
    NOT_FOUND: (404, "Specified access key is not found."),
    NOT_ACTIVATE: (403, "Please activate AI search service"),
    ARREARS: (403, "Please recharge first."),
    NOT_AUTHORISED: (403, "Please authorize the AliyunIQSFullAccess privilege to the sub-account."),
    PERIOD_EXPIRED: (403, "The test period has expired."),
    THROTTLING: (429, "Request was denied due to user flow control."),
    DAY_EXCEEDED: (429, "The query per day exceed the limit."),
}


class IqsError(MMSearchError):
    """An error in the IQS API's shape: HTTP status, the spec's code and its message (the API edge renders it)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.code = code

    @classmethod
    def of(cls, code: str) -> IqsError:
        """One of the spec's errors, with its status and verbatim message."""
        status, message = ERROR_TABLE[code]
        return cls(status, code, message)


# -- tables -------------------------------------------------------------------------------------------------


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    plan: Mapped[str] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    credits: Mapped[int] = mapped_column(BigInteger, default=0)  # paid balance, in queries (up to MAX_CREDITS)
    qps: Mapped[int] = mapped_column(Integer, default=DEFAULT_QPS)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  # trial age counts from it
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AccountKeyRow(Base):
    __tablename__ = "account_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    access_key_id: Mapped[str] = mapped_column(String(64), unique=True)
    access_key_secret: Mapped[str] = mapped_column(String(128))  # kept: HMAC verification needs it
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256; the key is shown once
    is_sub: Mapped[bool] = mapped_column(Boolean, default=False)
    can_search: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AccountUsageRow(Base):
    """Charged queries per account and UTC day (the trial's daily quota, and usage for paid accounts)."""

    __tablename__ = "account_usage"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    count: Mapped[int] = mapped_column(Integer, default=0)


# -- values -------------------------------------------------------------------------------------------------


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


@dataclass(frozen=True)
class AccountKey:
    """A key without its secrets. `active` is False once revoked."""

    id: str
    account_id: str
    account: str
    access_key_id: str
    is_sub: bool
    can_search: bool
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "access_key_id": self.access_key_id, "account": self.account, "is_sub": self.is_sub,
            "can_search": self.can_search, "created_at": _iso(self.created_at), "revoked_at": _iso(self.revoked_at),
        }


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    plan: str
    active: bool
    credits: int
    qps: int
    created_at: datetime
    queries_today: int = 0
    keys: list[AccountKey] = field(default_factory=list)

    @property
    def trial_expires_at(self) -> datetime | None:
        return self.created_at + timedelta(days=TRIAL_DAYS) if self.plan == "trial" else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "plan": self.plan, "active": self.active, "credits": self.credits, "qps": self.qps,
            "created_at": _iso(self.created_at), "trial_expires_at": _iso(self.trial_expires_at),
            "queries_today": self.queries_today, "keys": [k.as_dict() for k in self.keys],
        }


@dataclass(frozen=True)
class NewAccountKey:
    """Returned once, at creation: the API key is stored only as a hash, so it cannot be shown again."""

    access_key_id: str
    access_key_secret: str
    api_key: str
    account: Account = field(repr=False)
    is_sub: bool = False
    can_search: bool = True

    def as_dict(self) -> dict[str, Any]:
        info = {k: v for k, v in self.account.as_dict().items() if k != "keys"}
        return {**info, "access_key_id": self.access_key_id, "access_key_secret": self.access_key_secret,
                "api_key": self.api_key, "is_sub": self.is_sub, "can_search": self.can_search}


@dataclass(frozen=True)
class Charge:
    """One admitted, charged query. `refund` undoes it (e.g. when the search itself then fails)."""

    account_id: str
    account: str
    access_key_id: str
    plan: str
    day: str
    queries_today: int
    credits_left: int | None  # None for trial accounts


# -- rate limiting ------------------------------------------------------------------------------------------


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; one token per query."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    """Per-key token buckets, in memory (per process) and thread-safe. A key's bucket follows its account's qps."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, qps: int) -> bool:
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(qps, qps, now)
            elif bucket.rate != qps:  # the plan changed: keep what was saved, within the new burst
                bucket.rate, bucket.burst = qps, qps
                bucket.tokens = min(bucket.tokens, qps)
            return bucket.take(now)


# -- the repository -----------------------------------------------------------------------------------------


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _token(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"name: {name!r} must be 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit",
            field="name",
        )
    return name


def _check_plan(plan: str) -> str:
    if plan not in PLANS:
        raise InvalidArgument(f"plan: {plan!r} must be one of {', '.join(PLANS)}", field="plan")
    return plan


def _check_qps(qps: int) -> int:
    if isinstance(qps, bool) or not isinstance(qps, int) or not 1 <= qps <= MAX_QPS:
        raise InvalidArgument(f"qps: {qps!r} must be an integer from 1 to {MAX_QPS}", field="qps")
    return qps


def _check_credits(credits: int, what: str = "credits") -> int:
    if isinstance(credits, bool) or not isinstance(credits, int) or not 0 <= credits <= MAX_CREDITS:
        raise InvalidArgument(f"{what}: {credits!r} must be an integer from 0 to {MAX_CREDITS}", field=what)
    return credits


class Accounts:
    """Accounts, their keys and their quotas. `now` (trial age, day boundaries) and `clock` (token buckets, in
    seconds) are injectable for tests; `trial_days` and `trial_daily_limit` default to the spec's 15 and 1000."""

    def __init__(
        self, engine: Engine, *, now: Callable[[], datetime] = utcnow, clock: Callable[[], float] = time.monotonic,
        trial_days: int = TRIAL_DAYS, trial_daily_limit: int = TRIAL_QUERIES_PER_DAY, shared: bool = False,
    ) -> None:
        self.engine = engine
        self.now = now
        self.trial_days = trial_days
        self.trial_daily_limit = trial_daily_limit
        # shared: processes on one catalog count each key's queries together (catalog/shared.py)
        self.limiter: RateLimiter | SharedRateLimiter = SharedRateLimiter(engine) if shared else RateLimiter(clock)

    # -- management ---------------------------------------------------------------------------------------

    def create(
        self, name: str, plan: str = "trial", qps: int = DEFAULT_QPS, credits: int = 0, active: bool = True,
        created_at: datetime | None = None,
    ) -> NewAccountKey:
        """A new account and its main key pair; `created_at` (default now) is settable for migrations."""
        _check_name(name)
        _check_plan(plan)
        _check_qps(qps)
        _check_credits(credits)
        now = self.now()
        if created_at is not None:
            created_at = aware(created_at)
            assert created_at is not None
            if created_at > now:
                raise InvalidArgument(f"created_at: {created_at.isoformat()} is in the future", field="created_at")
        account_id = secrets.token_hex(8)
        try:
            with Session(self.engine) as s, s.begin():
                if s.scalar(select(AccountRow.id).where(AccountRow.name == name)) is not None:
                    raise AlreadyExists(f"name: account {name!r} already exists", field="name")
                s.add(AccountRow(id=account_id, name=name, plan=plan, active=active, credits=credits, qps=qps,
                                 created_at=created_at or now, updated_at=now))
                s.flush()
                ak, sk, api_key = self._add_key(s, account_id, is_sub=False, can_search=True)
        except IntegrityError:
            raise AlreadyExists(f"name: account {name!r} already exists", field="name") from None
        return NewAccountKey(ak, sk, api_key, self.get(name))

    def subkey(self, name: str, can_search: bool = True) -> NewAccountKey:
        """A sub-account key pair (and API key); without `can_search` it gets Retrieval.NotAuthorised."""
        with Session(self.engine) as s, s.begin():
            row = self._row(s, name)
            ak, sk, api_key = self._add_key(s, row.id, is_sub=True, can_search=can_search)
        return NewAccountKey(ak, sk, api_key, self.get(name), is_sub=True, can_search=can_search)

    def activate(self, name: str) -> Account:
        return self._set(name, active=True)

    def deactivate(self, name: str) -> Account:
        return self._set(name, active=False)

    def update(self, name: str, plan: str | None = None, qps: int | None = None) -> Account:
        """Change the plan (e.g. trial to paid) or the QPS limit."""
        values: dict[str, Any] = {}
        if plan is not None:
            values["plan"] = _check_plan(plan)
        if qps is not None:
            values["qps"] = _check_qps(qps)
        return self._set(name, **values)

    def set_credits(self, name: str, credits: int) -> Account:
        return self._set(name, credits=_check_credits(credits))

    def add_credits(self, name: str, credits: int) -> Account:
        """A recharge: adds atomically, so it cannot lose a concurrent query's charge; refused when the balance
        would pass MAX_CREDITS."""
        _check_credits(credits, "add_credits")
        with Session(self.engine) as s, s.begin():
            row = self._row(s, name)
            added = s.execute(update(AccountRow).where(AccountRow.id == row.id,
                                                       AccountRow.credits <= MAX_CREDITS - credits)
                              .values(credits=AccountRow.credits + credits, updated_at=self.now())).rowcount
            if added != 1:
                raise InvalidArgument(f"add_credits: the balance would pass {MAX_CREDITS}", field="add_credits")
        return self.get(name)

    def grant(self, access_key_id: str, can_search: bool = True) -> AccountKey:
        """Give (or take back) a sub-account key's search permission."""
        with Session(self.engine) as s, s.begin():
            row = self._key_row(s, access_key_id)
            row.can_search = can_search
        return self.key(access_key_id)

    def revoke_key(self, access_key_id: str) -> AccountKey:
        """A revoked key answers InvalidAccessKeyId.NotFound from then on."""
        with Session(self.engine) as s, s.begin():
            row = self._key_row(s, access_key_id)
            if row.revoked_at is None:
                row.revoked_at = self.now()
        return self.key(access_key_id)

    def get(self, name: str) -> Account:
        with Session(self.engine) as s:
            return self._account(s, self._row(s, name))

    def list(self) -> list[Account]:
        with Session(self.engine) as s:
            return [self._account(s, r) for r in s.scalars(select(AccountRow).order_by(AccountRow.name))]

    def key(self, access_key_id: str) -> AccountKey:
        with Session(self.engine) as s:
            return self._key(s, self._key_row(s, access_key_id))

    # -- lookups for the API edge ---------------------------------------------------------------------------

    def key_by_access_key_id(self, access_key_id: str) -> tuple[AccountKey, str] | None:
        """The key and its secret (for signature verification); None when unknown or revoked."""
        with Session(self.engine) as s:
            row = s.scalar(select(AccountKeyRow).where(AccountKeyRow.access_key_id == access_key_id))
            if row is None or row.revoked_at is not None:
                return None
            return self._key(s, row), row.access_key_secret

    def key_by_api_key(self, api_key: str) -> AccountKey | None:
        """The key a bearer API key belongs to; None when unknown or revoked."""
        if not isinstance(api_key, str) or not api_key.startswith(API_KEY_PREFIX):
            return None
        digest = hash_api_key(api_key)
        with Session(self.engine) as s:
            row = s.scalar(select(AccountKeyRow).where(AccountKeyRow.api_key_hash == digest))
            if row is None or row.revoked_at is not None or not hmac.compare_digest(row.api_key_hash, digest):
                return None
            return self._key(s, row)

    # -- admission and charging -----------------------------------------------------------------------------

    def authorize_query(self, key: AccountKey | None) -> Charge:
        """Admit and charge one query for `key`, or raise the spec's IqsError (order in the module docstring)."""
        if key is None or not key.active:
            raise IqsError.of(NOT_FOUND)
        now = self.now()
        day = now.astimezone(UTC).date().isoformat()
        with Session(self.engine) as s:
            row = s.get(AccountRow, key.account_id)
            krow = s.get(AccountKeyRow, key.id)
            if row is None or krow is None or krow.revoked_at is not None:
                raise IqsError.of(NOT_FOUND)
            plan, active, credits, qps = row.plan, row.active, row.credits, row.qps
            created_at = aware(row.created_at) or now
            is_sub, can_search = krow.is_sub, krow.can_search
            used = s.scalar(select(AccountUsageRow.count).where(
                AccountUsageRow.account_id == row.id, AccountUsageRow.day == day)) or 0
        if not active:
            raise IqsError.of(NOT_ACTIVATE)
        if is_sub and not can_search:
            raise IqsError.of(NOT_AUTHORISED)
        if plan == "trial":
            if now >= created_at + timedelta(days=self.trial_days):
                raise IqsError.of(PERIOD_EXPIRED)
            if used >= self.trial_daily_limit:
                raise IqsError.of(DAY_EXCEEDED)
        elif credits <= 0:
            raise IqsError.of(ARREARS)
        if not self.limiter.allow(key.access_key_id, qps):
            raise IqsError.of(THROTTLING)
        return self._charge(key, plan, day)

    def authorize_access_key(self, access_key_id: str) -> Charge:
        found = self.key_by_access_key_id(access_key_id)
        return self.authorize_query(found[0] if found else None)

    def authorize_api_key(self, api_key: str) -> Charge:
        return self.authorize_query(self.key_by_api_key(api_key))

    def refund(self, charge: Charge) -> None:
        """Give a charged query back (the search failed on our side, so the caller should not pay for it)."""
        with self.engine.begin() as conn:
            conn.execute(update(AccountUsageRow)
                         .where(AccountUsageRow.account_id == charge.account_id, AccountUsageRow.day == charge.day,
                                AccountUsageRow.count > 0)
                         .values(count=AccountUsageRow.count - 1))
            if charge.plan == "paid":
                conn.execute(update(AccountRow).where(AccountRow.id == charge.account_id)
                             .values(credits=AccountRow.credits + 1))

    def usage(self, name: str, day: str | None = None) -> int:
        """Charged queries on a UTC day (YYYY-MM-DD; default today)."""
        day = day or self.now().astimezone(UTC).date().isoformat()
        with Session(self.engine) as s:
            row = self._row(s, name)
            return s.scalar(select(AccountUsageRow.count).where(
                AccountUsageRow.account_id == row.id, AccountUsageRow.day == day)) or 0

    def _charge(self, key: AccountKey, plan: str, day: str) -> Charge:
        # the day's row first, in its own transaction: a concurrent insert of the same row is fine
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(AccountUsageRow).values(account_id=key.account_id, day=day, count=0))
        except IntegrityError:
            pass
        # write-only until the charge is taken, so SQLite's writers queue on the lock instead of failing
        with self.engine.begin() as conn:
            bump = update(AccountUsageRow).where(AccountUsageRow.account_id == key.account_id,
                                                 AccountUsageRow.day == day)
            if plan == "trial":
                taken = conn.execute(bump.where(AccountUsageRow.count < self.trial_daily_limit)
                                     .values(count=AccountUsageRow.count + 1)).rowcount
                if taken != 1:
                    raise IqsError.of(DAY_EXCEEDED)
            else:
                taken = conn.execute(update(AccountRow).where(AccountRow.id == key.account_id, AccountRow.credits > 0)
                                     .values(credits=AccountRow.credits - 1)).rowcount
                if taken != 1:
                    raise IqsError.of(ARREARS)
                conn.execute(bump.values(count=AccountUsageRow.count + 1))
            used = conn.execute(select(AccountUsageRow.count).where(
                AccountUsageRow.account_id == key.account_id, AccountUsageRow.day == day)).scalar_one()
            left = conn.execute(select(AccountRow.credits).where(AccountRow.id == key.account_id)).scalar_one()
        return Charge(account_id=key.account_id, account=key.account, access_key_id=key.access_key_id, plan=plan,
                      day=day, queries_today=used, credits_left=left if plan == "paid" else None)

    # -- helpers --------------------------------------------------------------------------------------------

    def _add_key(self, s: Session, account_id: str, is_sub: bool, can_search: bool) -> tuple[str, str, str]:
        ak = "LTAI" + _token(20)
        sk = _token(30)
        api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        s.add(AccountKeyRow(id=secrets.token_hex(8), account_id=account_id, access_key_id=ak, access_key_secret=sk,
                            api_key_hash=hash_api_key(api_key), is_sub=is_sub, can_search=can_search,
                            created_at=self.now()))
        return ak, sk, api_key

    def _set(self, name: str, **values: Any) -> Account:
        with Session(self.engine) as s, s.begin():
            row = self._row(s, name)
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = self.now()
        return self.get(name)

    @staticmethod
    def _row(s: Session, name: str) -> AccountRow:
        row = s.scalar(select(AccountRow).where(AccountRow.name == name))
        if row is None:
            raise NotFound(f"name: account {name!r} does not exist", field="name")
        return row

    @staticmethod
    def _key_row(s: Session, access_key_id: str) -> AccountKeyRow:
        row = s.scalar(select(AccountKeyRow).where(AccountKeyRow.access_key_id == access_key_id))
        if row is None:
            raise NotFound(f"access_key_id: key {access_key_id!r} does not exist", field="access_key_id")
        return row

    @staticmethod
    def _key(s: Session, row: AccountKeyRow) -> AccountKey:
        name = s.scalar(select(AccountRow.name).where(AccountRow.id == row.account_id)) or ""
        return AccountKey(
            id=row.id, account_id=row.account_id, account=name, access_key_id=row.access_key_id, is_sub=row.is_sub,
            can_search=row.can_search, created_at=aware(row.created_at) or utcnow(), revoked_at=aware(row.revoked_at),
        )

    def _account(self, s: Session, row: AccountRow) -> Account:
        day = self.now().astimezone(UTC).date().isoformat()
        used = s.scalar(select(AccountUsageRow.count).where(
            AccountUsageRow.account_id == row.id, AccountUsageRow.day == day)) or 0
        keys = [self._key(s, k) for k in s.scalars(
            select(AccountKeyRow).where(AccountKeyRow.account_id == row.id)
            .order_by(AccountKeyRow.is_sub, AccountKeyRow.created_at, AccountKeyRow.id))]
        return Account(id=row.id, name=row.name, plan=row.plan, active=row.active, credits=row.credits, qps=row.qps,
                       created_at=aware(row.created_at) or utcnow(), queries_today=used, keys=keys)
