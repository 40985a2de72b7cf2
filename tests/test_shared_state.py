"""Processes sharing a catalog share its limits: per-key throttling and the replay guard count in the catalog
(catalog/shared.py), and two real `mmsearch serve` processes on one PostgreSQL catalog hold them together."""

from __future__ import annotations

import copy
import os
import secrets
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

import postgres
from conftest import EXAMPLE_SCHEMA, VECTOR_DIM
from mmsearch.catalog.db import Catalog
from mmsearch.catalog.shared import SharedRateLimiter, SharedReplayGuard
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder
from processes import serve


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path: Path):
    url = (f"sqlite:///{tmp_path / 'c.sqlite3'}" if request.param == "sqlite"
           else postgres.database(request.getfixturevalue("postgres_server")))
    Catalog(url)  # the schema
    return create_engine(url)


def test_limiters_on_one_catalog_count_a_key_together(engine):
    now = [1_000.2]
    a, b = SharedRateLimiter(engine, clock=lambda: now[0]), SharedRateLimiter(engine, clock=lambda: now[0])
    assert [a.allow("k", 2), b.allow("k", 2), a.allow("k", 2), b.allow("k", 2)] == [True, True, False, False]
    assert a.allow("other", 2)  # each key its own count
    now[0] = 1_001.0  # the next second
    assert b.allow("k", 2) and a.allow("k", 2) and not b.allow("k", 2)


def test_concurrent_queries_get_exactly_the_qps(engine):
    limiters = [SharedRateLimiter(engine, clock=lambda: 5_000.5) for _ in range(2)]
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer(limiter: SharedRateLimiter) -> None:
        for _ in range(10):
            ok = limiter.allow("hot", 5)
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=hammer, args=(limiters[n % 2],)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 5 and len(allowed) == 60


def test_a_signature_accepted_by_one_process_is_refused_by_another(engine):
    a, b = SharedReplayGuard(engine), SharedReplayGuard(engine)
    assert a.remember("AK\nsig1", expires_at=100.0, now=10.0)
    assert not b.remember("AK\nsig1", expires_at=100.0, now=20.0)  # a replay, through the other process
    assert b.remember("AK\nsig2", expires_at=100.0, now=20.0)
    assert b.remember("AK\nsig1", expires_at=300.0, now=150.0)  # the first record expired: taken over


def test_shared_state_follows_the_catalog():
    assert not Settings().shares_state
    assert Settings(catalog_url="postgresql+psycopg://u@h/db").shares_state
    assert Settings(shared_state="catalog").shares_state
    assert not Settings(catalog_url="postgresql+psycopg://u@h/db", shared_state="memory").shares_state


# -- two server processes on one PostgreSQL catalog ------------------------------------------------------------


def test_two_servers_on_one_postgresql_catalog_share_keys_throttling_and_data(postgres_server, tmp_path,
                                                                              product_items):
    catalog_url = postgres.database(postgres_server)
    home = tmp_path / "home"
    token = secrets.token_urlsafe(16)
    mm = MMSearch(Settings(home=home, catalog_url=catalog_url, ocr=False), encoder=HashingEncoder(VECTOR_DIM))
    mm.create_dataset("products", copy.deepcopy(EXAMPLE_SCHEMA), vector_dim=VECTOR_DIM)
    mm.catalog.apps.create("shop", ["products"], {})
    key = mm.catalog.keys.create(["shop"], name="both").key
    account = mm.catalog.accounts.create("acme", plan="paid", qps=2, credits=1_000)
    env = {**os.environ, "MMSEARCH_CATALOG_URL": catalog_url, "MMSEARCH_ADMIN_TOKEN": token,
           "MMSEARCH_CLIP_MODEL": "none", "MMSEARCH_OCR": "false", "MMSEARCH_VECTOR_DIM": str(VECTOR_DIM)}
    first, url_a = serve(home, env, jobs=True)
    second, url_b = serve(home, env, jobs=False)
    try:
        admin = {"Authorization": f"Bearer {token}"}
        # items posted to one server are imported by its job runner and found through the other
        posted = httpx.post(f"{url_a}/admin/v1/datasets/products/items", headers=admin, timeout=30,
                            json=copy.deepcopy(product_items))
        assert posted.status_code == 202, posted.text
        job = posted.json()["job_id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{url_b}/admin/v1/jobs/{job}", headers=admin).json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        body = {"query": {"text": "running shoe"}, "dataset_id": "products"}
        bearer = {"Authorization": f"Bearer {key}"}
        deadline = time.monotonic() + 10  # the second server sees the new table version within its interval
        while True:
            found = httpx.post(f"{url_b}/api/v1/application/shop/search", json=body, headers=bearer, timeout=30)
            if (found.status_code == 200 and found.json()["result"]["total_items"] > 0) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert found.status_code == 200, found.text
        assert {"p01", "p10"} <= {r["_id"] for r in found.json()["result"]["search_results"]}

        # qps=2 for the account's key is 2 a second in total, not 2 per process
        iqs = {"Authorization": f"Bearer {account.api_key}"}
        time.sleep(1.05 - time.time() % 1)  # just after a second starts
        codes = [httpx.post(f"{url}/search/multimodal", json={"query": "跑鞋"}, headers=iqs, timeout=10)
                 .json().get("code") for url in (url_a, url_b, url_a, url_b, url_a, url_b)]
        assert codes.count("Retrieval.Throttling.User") == 4, codes

        # a key revoked through one server is refused by the other within 2 s
        assert httpx.delete(f"{url_a}/admin/v1/keys/{key}", headers=admin).status_code == 200
        deadline = time.monotonic() + 2.5
        while httpx.post(f"{url_b}/api/v1/application/shop/search", json=body, headers=bearer).status_code != 401:
            assert time.monotonic() < deadline, "still accepted by the other server"
            time.sleep(0.1)
    finally:
        for proc in (first, second):
            proc.terminate()
        for proc in (first, second):
            proc.wait(20)


def test_serve_workers_count_a_key_together_on_the_sqlite_catalog(tmp_path):
    home = tmp_path / "home"
    mm = MMSearch(Settings(home=home, ocr=False), encoder=HashingEncoder(VECTOR_DIM))
    account = mm.catalog.accounts.create("acme", plan="paid", qps=2, credits=1_000)
    env = {**os.environ, "MMSEARCH_ADMIN_TOKEN": secrets.token_urlsafe(16), "MMSEARCH_CLIP_MODEL": "none",
           "MMSEARCH_OCR": "false"}
    env.pop("MMSEARCH_SHARED_STATE", None)
    proc, url = serve(home, env, True, "--workers", "2")
    try:
        import psutil

        serving = [c for c in psutil.Process(proc.pid).children(recursive=True) if "python" in c.name().lower()
                   or "mmsearch" in " ".join(c.cmdline())]
        assert len(serving) >= 2, serving  # two worker processes under the supervisor
        iqs = {"Authorization": f"Bearer {account.api_key}"}
        time.sleep(1.05 - time.time() % 1)
        codes = []
        for _ in range(6):  # a new connection each: either worker may take it
            with httpx.Client(timeout=10) as client:
                codes.append(client.post(f"{url}/search/multimodal", json={"query": "跑鞋"}, headers=iqs)
                             .json().get("code"))
        assert codes.count("Retrieval.Throttling.User") == 4, codes
    finally:
        proc.terminate()
        proc.wait(30)

