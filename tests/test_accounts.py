"""IQS accounts: every error code of the spec's table, with real semantics, on a real catalog database."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

import postgres
from mmsearch.catalog import Catalog
from mmsearch.catalog.accounts import (
    ARREARS,
    DAY_EXCEEDED,
    ERROR_TABLE,
    NOT_ACTIVATE,
    NOT_AUTHORISED,
    NOT_FOUND,
    PERIOD_EXPIRED,
    THROTTLING,
    TRIAL_DAYS,
    TRIAL_QUERIES_PER_DAY,
    Accounts,
    AccountUsageRow,
    IqsError,
    RateLimiter,
)
from mmsearch.errors import AlreadyExists, InvalidArgument, NotFound


class Clock:
    """A settable wall clock (trial age, days) and monotonic clock (token buckets)."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def clock(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request, tmp_path: Path) -> Catalog:
    """Every account test on both catalogs: the concurrent charging tests too (row locks on PostgreSQL)."""
    if request.param == "sqlite":
        return Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    return Catalog(postgres.database(request.getfixturevalue("postgres_server")))


@pytest.fixture
def t() -> Clock:
    return Clock()


@pytest.fixture
def accounts(catalog: Catalog, t: Clock) -> Accounts:
    return Accounts(catalog.engine, now=t.now, clock=t.clock)


def code_of(fn, *args) -> tuple[int, str, str]:
    with pytest.raises(IqsError) as info:
        fn(*args)
    return info.value.status, info.value.code, info.value.message


def test_the_error_table_is_the_specs():
    assert ERROR_TABLE == {
        "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
        "Retrieval.NotActivate": (403, "Please activate AI search service"),
        "Retrieval.Arrears": (403, "Please recharge first."),
        "Retrieval.NotAuthorised": (403, "Please authorize the AliyunIQSFullAccess privilege to the sub-account."),
        "Retrieval.TestUserPeriodExpired": (403, "The test period has expired."),
        "Retrieval.Throttling.User": (429, "Request was denied due to user flow control."),
        "Retrieval.TestUserQueryPerDayExceeded": (429, "The query per day exceed the limit."),
    }
    assert (TRIAL_DAYS, TRIAL_QUERIES_PER_DAY) == (15, 1000)
    err = IqsError.of(ARREARS)
    assert (err.status, err.code, err.message) == (403, ARREARS, "Please recharge first.")
    assert err.as_dict() == {"code": ARREARS, "message": "Please recharge first."}


def test_create_returns_usable_keys_once_and_catalog_wires_accounts(catalog: Catalog):
    new = catalog.accounts.create("acme", plan="paid", qps=5, credits=3)
    assert new.access_key_id.startswith("LTAI") and len(new.access_key_id) == 24
    assert len(new.access_key_secret) == 30 and new.api_key.startswith("iqs_")
    assert new.account.plan == "paid" and new.account.credits == 3 and new.account.qps == 5
    found = catalog.accounts.key_by_access_key_id(new.access_key_id)
    assert found is not None and found[1] == new.access_key_secret and found[0].account == "acme"
    by_api = catalog.accounts.key_by_api_key(new.api_key)
    assert by_api is not None and by_api.access_key_id == new.access_key_id and not by_api.is_sub
    shown = catalog.accounts.get("acme").as_dict()
    assert new.api_key not in str(shown) and new.access_key_secret not in str(shown)
    assert [k["access_key_id"] for k in shown["keys"]] == [new.access_key_id]
    assert catalog.accounts.key_by_api_key(new.api_key + "x") is None
    assert catalog.accounts.key_by_api_key("mms_" + new.api_key[4:]) is None
    charge = catalog.accounts.authorize_api_key(new.api_key)
    assert charge.credits_left == 2 and charge.queries_today == 1


def test_create_validates_and_refuses_duplicates(accounts: Accounts, t: Clock):
    accounts.create("acme")
    with pytest.raises(AlreadyExists, match="name: account 'acme' already exists"):
        accounts.create("acme", plan="paid")
    for kwargs, fld in [({"plan": "gold"}, "plan"), ({"qps": 0}, "qps"), ({"credits": -1}, "credits"),
                        ({"created_at": t.wall + timedelta(days=1)}, "created_at")]:
        with pytest.raises(InvalidArgument) as info:
            accounts.create("other", **kwargs)  # type: ignore[arg-type]
        assert info.value.field == fld and info.value.message.startswith(f"{fld}:")
    with pytest.raises(InvalidArgument, match="name:"):
        accounts.create("has space")
    with pytest.raises(NotFound, match="name: account 'nobody' does not exist"):
        accounts.subkey("nobody")
    assert [a.name for a in accounts.list()] == ["acme"]


def test_unknown_and_revoked_keys_are_not_found(accounts: Accounts):
    assert code_of(accounts.authorize_access_key, "LTAInope") == (404, NOT_FOUND, "Specified access key is not found.")
    assert code_of(accounts.authorize_api_key, "iqs_nope")[1] == NOT_FOUND
    assert code_of(accounts.authorize_query, None)[1] == NOT_FOUND
    new = accounts.create("acme")
    accounts.authorize_access_key(new.access_key_id)
    key = accounts.key_by_api_key(new.api_key)
    accounts.revoke_key(new.access_key_id)
    assert accounts.key_by_access_key_id(new.access_key_id) is None
    assert code_of(accounts.authorize_access_key, new.access_key_id)[1] == NOT_FOUND
    assert code_of(accounts.authorize_api_key, new.api_key)[1] == NOT_FOUND
    assert code_of(accounts.authorize_query, key)[1] == NOT_FOUND  # a key looked up before the revocation


def test_inactive_account_until_activated(accounts: Accounts):
    new = accounts.create("acme", active=False)
    assert code_of(accounts.authorize_access_key, new.access_key_id) == (
        403, NOT_ACTIVATE, "Please activate AI search service")
    accounts.activate("acme")
    assert accounts.authorize_access_key(new.access_key_id).queries_today == 1
    accounts.deactivate("acme")
    assert code_of(accounts.authorize_api_key, new.api_key)[1] == NOT_ACTIVATE
    assert accounts.usage("acme") == 1  # refused queries are not charged


def test_sub_key_needs_the_search_permission(accounts: Accounts):
    accounts.create("acme", plan="paid", credits=10)
    sub = accounts.subkey("acme", can_search=False)
    assert sub.is_sub and not sub.can_search
    assert code_of(accounts.authorize_access_key, sub.access_key_id) == (
        403, NOT_AUTHORISED, "Please authorize the AliyunIQSFullAccess privilege to the sub-account.")
    allowed = accounts.subkey("acme")
    assert accounts.authorize_api_key(allowed.api_key).credits_left == 9
    accounts.grant(sub.access_key_id)
    assert accounts.authorize_access_key(sub.access_key_id).credits_left == 8
    accounts.grant(sub.access_key_id, can_search=False)
    assert code_of(accounts.authorize_api_key, sub.api_key)[1] == NOT_AUTHORISED
    assert [k.is_sub for k in accounts.get("acme").keys] == [False, True, True]


def test_trial_period_expires_after_15_days(accounts: Accounts, t: Clock):
    old = accounts.create("old", created_at=t.wall - timedelta(days=16))
    assert code_of(accounts.authorize_access_key, old.access_key_id) == (
        403, PERIOD_EXPIRED, "The test period has expired.")
    young = accounts.create("young", created_at=t.wall - timedelta(days=14))
    accounts.authorize_access_key(young.access_key_id)
    t.advance(timedelta(days=1, seconds=-1).total_seconds())  # still inside the 15 days
    accounts.authorize_access_key(young.access_key_id)
    t.advance(1)
    assert code_of(accounts.authorize_access_key, young.access_key_id)[1] == PERIOD_EXPIRED
    accounts.update("young", plan="paid")
    accounts.add_credits("young", 1)
    assert accounts.authorize_access_key(young.access_key_id).credits_left == 0  # converted: no trial limits


def test_naive_created_at_is_utc(accounts: Accounts, t: Clock):
    new = accounts.create("acme", created_at=(t.wall - timedelta(days=20)).replace(tzinfo=None))
    assert accounts.get("acme").created_at == t.wall - timedelta(days=20)
    assert code_of(accounts.authorize_access_key, new.access_key_id)[1] == PERIOD_EXPIRED


def test_trial_daily_limit_default_is_1000(accounts: Accounts, t: Clock):
    new = accounts.create("acme", qps=1000)
    day = t.wall.date().isoformat()
    with accounts.engine.begin() as conn:  # 998 queries already served today
        conn.execute(insert(AccountUsageRow).values(account_id=new.account.id, day=day, count=998))
    assert accounts.authorize_access_key(new.access_key_id).queries_today == 999
    assert accounts.authorize_api_key(new.api_key).queries_today == 1000
    assert code_of(accounts.authorize_access_key, new.access_key_id) == (
        429, DAY_EXCEEDED, "The query per day exceed the limit.")
    assert accounts.usage("acme") == 1000
    t.advance(12 * 3600)  # the next UTC day starts a new count
    assert accounts.authorize_access_key(new.access_key_id).queries_today == 1


def test_trial_daily_limit_counts_every_key_of_the_account(catalog: Catalog, t: Clock):
    accounts = Accounts(catalog.engine, now=t.now, clock=t.clock, trial_daily_limit=3)
    main = accounts.create("acme")
    sub = accounts.subkey("acme")
    accounts.authorize_access_key(main.access_key_id)
    accounts.authorize_access_key(sub.access_key_id)
    accounts.authorize_api_key(main.api_key)
    assert code_of(accounts.authorize_access_key, sub.access_key_id)[1] == DAY_EXCEEDED
    assert accounts.get("acme").queries_today == 3


def test_paid_credits_run_out_then_recharge(accounts: Accounts):
    new = accounts.create("acme", plan="paid", credits=3)
    assert [accounts.authorize_access_key(new.access_key_id).credits_left for _ in range(3)] == [2, 1, 0]
    assert code_of(accounts.authorize_access_key, new.access_key_id) == (403, ARREARS, "Please recharge first.")
    assert accounts.get("acme").credits == 0
    accounts.add_credits("acme", 2)
    assert accounts.authorize_api_key(new.api_key).credits_left == 1
    accounts.set_credits("acme", 0)
    assert code_of(accounts.authorize_api_key, new.api_key)[1] == ARREARS
    empty = accounts.create("empty", plan="paid")
    assert code_of(accounts.authorize_access_key, empty.access_key_id)[1] == ARREARS


def test_refund_gives_the_query_back(accounts: Accounts):
    new = accounts.create("acme", plan="paid", credits=1)
    charge = accounts.authorize_access_key(new.access_key_id)
    assert charge.credits_left == 0 and accounts.usage("acme") == 1
    accounts.refund(charge)
    assert accounts.get("acme").credits == 1 and accounts.usage("acme") == 0


def test_concurrent_queries_never_overdraw(accounts: Accounts):
    new = accounts.create("acme", plan="paid", credits=10, qps=1000)
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def query() -> None:
        start.wait()
        try:
            accounts.authorize_access_key(new.access_key_id)
            outcome = "ok"
        except IqsError as exc:
            outcome = exc.code
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=query) for _ in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert Counter(results) == {"ok": 10, ARREARS: 10}
    assert accounts.get("acme").credits == 0 and accounts.usage("acme") == 10


def test_concurrent_trial_queries_stop_at_the_daily_limit(catalog: Catalog, t: Clock):
    accounts = Accounts(catalog.engine, now=t.now, clock=t.clock, trial_daily_limit=7)
    new = accounts.create("acme", qps=1000)
    codes: list[str] = []
    start = threading.Barrier(15)

    def query() -> None:
        start.wait()
        try:
            accounts.authorize_access_key(new.access_key_id)
            codes.append("ok")
        except IqsError as exc:
            codes.append(exc.code)

    threads = [threading.Thread(target=query) for _ in range(15)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert Counter(codes) == {"ok": 7, DAY_EXCEEDED: 8}
    assert accounts.usage("acme") == 7


def test_token_bucket_bursts_then_refills(accounts: Accounts, t: Clock):
    new = accounts.create("acme", qps=3)
    for _ in range(3):  # a full bucket: the burst is the qps
        accounts.authorize_access_key(new.access_key_id)
    assert code_of(accounts.authorize_access_key, new.access_key_id) == (
        429, THROTTLING, "Request was denied due to user flow control.")
    t.advance(0.2)  # 0.6 tokens: still short of one
    assert code_of(accounts.authorize_api_key, new.api_key)[1] == THROTTLING
    t.advance(0.2)  # 1.2 tokens
    accounts.authorize_api_key(new.api_key)
    assert code_of(accounts.authorize_api_key, new.api_key)[1] == THROTTLING
    t.advance(60)  # refills to the burst, not beyond
    for _ in range(3):
        accounts.authorize_access_key(new.access_key_id)
    assert code_of(accounts.authorize_access_key, new.access_key_id)[1] == THROTTLING
    assert accounts.usage("acme") == 7  # throttled queries are not charged


def test_each_key_has_its_own_bucket_and_follows_qps_changes(accounts: Accounts, t: Clock):
    new = accounts.create("acme", qps=1)
    sub = accounts.subkey("acme")
    accounts.authorize_access_key(new.access_key_id)
    assert code_of(accounts.authorize_access_key, new.access_key_id)[1] == THROTTLING
    accounts.authorize_access_key(sub.access_key_id)
    accounts.update("acme", qps=5)
    t.advance(1)
    for _ in range(5):
        accounts.authorize_access_key(new.access_key_id)
    assert code_of(accounts.authorize_access_key, new.access_key_id)[1] == THROTTLING


def test_rate_limiter_is_thread_safe():
    t = Clock()
    limiter = RateLimiter(t.clock)
    allowed: list[bool] = []
    lock = threading.Lock()

    def hit() -> None:
        for _ in range(50):
            ok = limiter.allow("k", 25)
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert allowed.count(True) == 25  # the clock stood still: exactly the burst


def test_checks_run_in_the_documented_order(accounts: Accounts, t: Clock):
    """Inactive beats everything; a sub-key's permission beats the trial's age; the trial's age beats its quota."""
    old = accounts.create("acme", active=False, qps=1, created_at=t.wall - timedelta(days=30))
    sub = accounts.subkey("acme", can_search=False)
    assert code_of(accounts.authorize_access_key, sub.access_key_id)[1] == NOT_ACTIVATE
    accounts.activate("acme")
    assert code_of(accounts.authorize_access_key, sub.access_key_id)[1] == NOT_AUTHORISED
    assert code_of(accounts.authorize_access_key, old.access_key_id)[1] == PERIOD_EXPIRED
    paid = accounts.create("paid", plan="paid", qps=1)
    assert code_of(accounts.authorize_access_key, paid.access_key_id)[1] == ARREARS  # before throttling
    accounts.add_credits("paid", 5)
    accounts.authorize_access_key(paid.access_key_id)
    assert code_of(accounts.authorize_access_key, paid.access_key_id)[1] == THROTTLING
    assert accounts.get("paid").credits == 4
