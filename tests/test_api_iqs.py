"""IQS MultimodalSearch over a real uvicorn on loopback: plain HTTP with an API key, and the official SDK
(`alibabacloud_iqs20241111`, sync and async; 1.7.1 too when installed) signing with ACS3-HMAC-SHA256.
Every error code of the spec's table, with the real account semantics behind it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from alibabacloud_iqs20241111 import models as iqs_models
from alibabacloud_iqs20241111.client import Client as IqsClient
from alibabacloud_tea_openapi import models as open_api_models
from PIL import Image
from Tea.exceptions import TeaException

from live import LiveServer
from mmsearch.api.app import create_app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus
from mmsearch.ingest.web.types import WebImage
from test_acs3 import SDK_171_DIR, SDK_171_SCRIPT

SITES = ["www.a.com", "news.a.com", "b.cn", "img.b.cn", "c.org"]


def picture(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((12, 16, 3)) * 255).astype(np.uint8)  # distinct blocks: distinct perceptual hashes
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((320, 240), Image.NEAREST).save(buf, "PNG")
    return buf.getvalue()


def corpus_images() -> list[WebImage]:
    out = []
    for n in range(25):
        site = SITES[n % len(SITES)]
        out.append(WebImage(
            image_url=f"https://{site}/img/{n}.png", host_page_url=f"https://{site}/page/{n}.html",
            title=f"狮子 第{n}张 草原" if n < 23 else f"大象 第{n}张",
            published_time=f"2025-0{1 + n % 9}-12T12:47:54+08:00",
            data=picture(n),
        ))
    return out


def serve_corpus(home: Path, **settings: Any) -> Iterator[LiveServer]:
    """A live server over a web corpus of the 25 pictures; `live.mm` is its engine."""
    mm = MMSearch(Settings(home=home, ocr=False, **settings), encoder=None)
    with WebCorpus(mm, "web", CorpusConfig(min_side=100)) as corpus:
        corpus.ensure_dataset()
        report = corpus.add(corpus_images())
    assert report.imported == 25, report.as_dict()
    with LiveServer(create_app(mm)) as live:
        live.mm = mm  # type: ignore[attr-defined]
        yield live


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_corpus(tmp_path_factory.mktemp("iqs"))


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def account(server, name: str, **kw):
    return server.mm.catalog.accounts.create(name, **kw)


def sdk(server, ak: str, sk: str) -> IqsClient:
    config = open_api_models.Config(access_key_id=ak, access_key_secret=sk)
    config.endpoint = f"127.0.0.1:{server.port}"
    config.protocol = "http"
    return IqsClient(config)


def request(query: str = "狮子", exclude: str | None = None) -> iqs_models.MultimodalSearchRequest:
    body = iqs_models.MultimodalSearchBody(query=query, advanced_params={"excludeSites": exclude} if exclude else None)
    return iqs_models.MultimodalSearchRequest(body=body)


def post(server, body: dict, key: str) -> httpx.Response:
    return httpx.post(f"{server.url}/search/multimodal", json=body, headers={"Authorization": f"Bearer {key}"})


def test_http_api_key_answers_in_the_spec_shape(server):
    key = account(server, "http-user", plan="paid", credits=100).api_key
    r = post(server, {"query": "狮子"}, key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"requestId", "imageItems", "searchInformation", "queryContext"}
    assert body["queryContext"] == {"originalQuery": {"query": "狮子"}}
    assert isinstance(body["searchInformation"]["searchTime"], int)
    items = body["imageItems"]
    assert len(items) == 20  # the spec's example size; 23 match
    for item in items:
        assert set(item) == {"title", "hostPageUrl", "imageUrl", "publishedTime", "height", "width"}
        assert all(v is not None for v in item.values())
        assert "狮子" in item["title"] and (item["width"], item["height"]) == (320, 240)
        assert datetime.fromisoformat(item["publishedTime"]).utcoffset() == timedelta(hours=8)
    assert r.headers["x-acs-request-id"] == body["requestId"] == r.headers["x-request-id"]


def test_exclude_sites_removes_hosts_and_their_subdomains(server):
    key = account(server, "exclude-user", plan="paid", credits=100).api_key
    body = post(server, {"query": "狮子", "advancedParams": {"excludeSites": "a.com, b.cn"}}, key).json()
    hosts = {httpx.URL(i["hostPageUrl"]).host for i in body["imageItems"]}
    assert hosts == {"c.org"}
    body = post(server, {"query": "狮子", "advancedParams": {"excludeSites": "news.a.com"}}, key).json()
    hosts = {httpx.URL(i["hostPageUrl"]).host for i in body["imageItems"]}
    assert "news.a.com" not in hosts and "www.a.com" in hosts  # a subdomain does not exclude its parent
    body = post(server, {"query": "狮子", "advancedParams": {"excludeSites": "a.co"}}, key).json()
    assert any(httpx.URL(i["hostPageUrl"]).host.endswith("a.com") for i in body["imageItems"])  # no suffix match


@pytest.mark.parametrize(("query", "ok"), [("", False), ("   ", False), ("狮" * 50, True), ("狮" * 51, False),
                                           ("a" * 50, True), ("a" * 51, False)])
def test_query_length_is_counted_in_characters(server, query, ok):
    key = account(server, f"len-{len(query)}-{ok}-{query.isascii()}", plan="paid", credits=100).api_key
    r = post(server, {"query": query}, key)
    if ok:
        assert r.status_code == 200, r.text  # 50 CJK characters are 150 bytes: still allowed
    else:
        assert r.status_code == 400 and r.json()["code"] == "InvalidParameter" and "query" in r.json()["message"]


def test_bad_bodies(server):
    key = account(server, "bodies", plan="paid", credits=100).api_key
    r = httpx.post(f"{server.url}/search/multimodal", content=b"{nope", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"
    r = post(server, {"query": "狮子", "advancedParams": {"excludeSites": 5}}, key)
    assert r.status_code == 400 and "excludeSites" in r.json()["message"]
    assert post(server, {"query": "狮子"}, "iqs_unknown").json()["code"] == "InvalidAccessKeyId.NotFound"
    r = httpx.post(f"{server.url}/search/multimodal", json={"query": "狮子"})
    assert r.status_code == 401
    assert server.mm.catalog.accounts.usage("bodies") == 0  # refused requests are not charged


def test_official_sdk_sync_and_async(server):
    new = account(server, "sdk-user", plan="paid", credits=100)
    client = sdk(server, new.access_key_id, new.access_key_secret)
    response = client.multimodal_search(request("狮子", "c.org"))
    body = response.body
    assert body.request_id and len(body.image_items) == 19  # 23 lions minus the 4 on c.org
    assert all("c.org" not in i.host_page_url for i in body.image_items)
    assert body.query_context.original_query.query == "狮子"
    assert body.search_information.search_time >= 0
    first = body.image_items[0]
    assert first.title and first.image_url and first.published_time and first.width == 320 and first.height == 240
    client = sdk(server, new.access_key_id, new.access_key_secret)
    response = asyncio.run(client.multimodal_search_async(request("大象")))
    assert {i.title for i in response.body.image_items} == {"大象 第23张", "大象 第24张"}
    assert server.mm.catalog.accounts.get("sdk-user").credits == 98


def tea_error(client, req=None) -> TeaException:
    with pytest.raises(TeaException) as info:
        client.multimodal_search(req or request())
    return info.value


def test_every_error_code_reaches_the_sdk(server):
    accounts = server.mm.catalog.accounts

    def check(client, status: int, code: str, message: str) -> None:
        e = tea_error(client)
        assert e.code == code, e.data
        assert e.data.get("message") == message and e.data.get("requestId")
        assert e.data.get("statusCode") == status

    new = account(server, "e-unknown", plan="paid", credits=5)
    check(sdk(server, "LTAInobodyatall00000000", new.access_key_secret), 404, "InvalidAccessKeyId.NotFound",
          "Specified access key is not found.")
    e = tea_error(sdk(server, new.access_key_id, "wrong-secret"))
    assert e.code == "SignatureDoesNotMatch" and e.data.get("statusCode") == 403

    inactive = account(server, "e-inactive", plan="paid", credits=5, active=False)
    check(sdk(server, inactive.access_key_id, inactive.access_key_secret), 403, "Retrieval.NotActivate",
          "Please activate AI search service")
    accounts.activate("e-inactive")
    assert sdk(server, inactive.access_key_id, inactive.access_key_secret).multimodal_search(request()).body.request_id

    broke = account(server, "e-arrears", plan="paid", credits=1)
    client = sdk(server, broke.access_key_id, broke.access_key_secret)
    client.multimodal_search(request())
    check(client, 403, "Retrieval.Arrears", "Please recharge first.")

    account(server, "e-sub", plan="paid", credits=5)
    sub = accounts.subkey("e-sub", can_search=False)
    check(sdk(server, sub.access_key_id, sub.access_key_secret), 403, "Retrieval.NotAuthorised",
          "Please authorize the AliyunIQSFullAccess privilege to the sub-account.")

    old = account(server, "e-old-trial", plan="trial", created_at=datetime.now(UTC) - timedelta(days=16))
    check(sdk(server, old.access_key_id, old.access_key_secret), 403, "Retrieval.TestUserPeriodExpired",
          "The test period has expired.")

    slow = account(server, "e-qps", plan="paid", credits=100, qps=1)
    client = sdk(server, slow.access_key_id, slow.access_key_secret)
    client.multimodal_search(request())
    check(client, 429, "Retrieval.Throttling.User", "Request was denied due to user flow control.")
    time.sleep(1.1)
    assert client.multimodal_search(request()).body.request_id  # the bucket refills

    busy = account(server, "e-daily", plan="trial", qps=100)
    limit = accounts.trial_daily_limit
    accounts.trial_daily_limit = 2  # the real default (1000) is tested in test_accounts.py
    try:
        client = sdk(server, busy.access_key_id, busy.access_key_secret)
        client.multimodal_search(request())
        client.multimodal_search(request())
        check(client, 429, "Retrieval.TestUserQueryPerDayExceeded", "The query per day exceed the limit.")
    finally:
        accounts.trial_daily_limit = limit


def test_server_timeout_is_an_error_not_a_hang(server):
    new = account(server, "e-timeout", plan="paid", credits=10)
    settings = server.mm.settings
    server.mm.settings = settings.model_copy(update={"iqs_timeout_s": 0.000001})
    try:
        r = post(server, {"query": "狮子"}, new.api_key)
    finally:
        server.mm.settings = settings
    assert r.status_code == 504 and r.json()["code"] == "Retrieval.Timeout"
    assert server.mm.catalog.accounts.get("e-timeout").credits == 10  # refunded


def test_no_corpus_yet_is_a_clear_503(tmp_path):
    mm = MMSearch(Settings(home=tmp_path, ocr=False), encoder=None)
    key = mm.catalog.accounts.create("lonely", plan="paid", credits=3).api_key
    with LiveServer(create_app(mm)) as live:
        r = httpx.post(f"{live.url}/search/multimodal", json={"query": "狮子"},
                       headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 503 and r.json()["code"] == "Retrieval.IndexNotReady"
    assert mm.catalog.accounts.get("lonely").credits == 3


@pytest.mark.skipif(not (SDK_171_DIR / "alibabacloud_iqs20241111").is_dir(),
                    reason=f"SDK 1.7.1 not installed in {SDK_171_DIR} (make test installs it)")
def test_the_spec_sdk_version_against_the_real_server(server):
    new = account(server, "sdk171", plan="paid", credits=10)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SDK_171_DIR), os.environ.get("PYTHONPATH", "")]))
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", SDK_171_SCRIPT, f"127.0.0.1:{server.port}", new.access_key_id,
                           new.access_key_secret], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["sdk"] == "1.7.1"
    request_id, count, width, search_time, query = out["sync"]
    assert request_id and count == 20 and width == 320 and query == "狮子" and search_time >= 0
    assert out["error"][0] == "InvalidAccessKeyId.NotFound" and out["error"][1]
    assert Path(out["file"]).is_relative_to(SDK_171_DIR)


def test_accounts_through_the_management_api(server):
    from mmsearch.api.auth import admin_token  # generated for this home: read it back

    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin_token(server.mm.settings)}"})
    r = admin.post("/admin/v1/accounts", json={"name": "via-api", "plan": "paid", "credits": 1, "qps": 50})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["access_key_id"] and made["access_key_secret"] and made["api_key"].startswith("iqs_")
    assert post(server, {"query": "狮子"}, made["api_key"]).status_code == 200
    assert post(server, {"query": "狮子"}, made["api_key"]).json()["code"] == "Retrieval.Arrears"
    assert admin.patch("/admin/v1/accounts/via-api", json={"add_credits": 5}).json()["credits"] == 5
    assert post(server, {"query": "狮子"}, made["api_key"]).status_code == 200
    assert admin.patch("/admin/v1/accounts/via-api", json={"active": False}).json()["active"] is False
    assert post(server, {"query": "狮子"}, made["api_key"]).json()["code"] == "Retrieval.NotActivate"
    admin.patch("/admin/v1/accounts/via-api", json={"active": True})
    sub = admin.post("/admin/v1/accounts/via-api/subkeys", json={"can_search": False}).json()
    assert post(server, {"query": "狮子"}, sub["api_key"]).json()["code"] == "Retrieval.NotAuthorised"
    shown = admin.get("/admin/v1/accounts/via-api").json()
    assert shown["queries_today"] == 2 and len(shown["keys"]) == 2
    assert admin.delete(f"/admin/v1/account-keys/{made['access_key_id']}").status_code == 200
    assert post(server, {"query": "狮子"}, made["api_key"]).json()["code"] == "InvalidAccessKeyId.NotFound"
    r = admin.post("/admin/v1/accounts", json={"name": "via-api"})
    assert r.status_code == 409
    r = admin.post("/admin/v1/accounts", json={"name": "future", "created_at": "2999-01-01T00:00:00Z"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "created_at"
    assert httpx.get(f"{server.url}/admin/v1/accounts").status_code == 401


def test_crawled_pages_answer_through_the_sdk(tmp_path, monkeypatch):
    """The whole path a user takes: `mmsearch crawl` a site, `mmsearch account create`, `mmsearch serve`, the SDK."""
    from typer.testing import CliRunner

    from mmsearch.cli import app
    from web_fixture import FixtureSite

    monkeypatch.setenv("MMSEARCH_ALLOW_PRIVATE_NETWORKS", "true")  # the fixture site is on loopback
    monkeypatch.setenv("MMSEARCH_OCR", "false")
    runner = CliRunner()
    with FixtureSite(slow_seconds=0.5, crawl_delay=0.0) as site:
        done = runner.invoke(app, ["--home", str(tmp_path), "crawl", site.url("/"), "--delay", "0", "--timeout", "0.3",
                                   "--json"])
        assert done.exit_code == 0, (done.stdout, done.stderr)
    made = json.loads(runner.invoke(app, ["--home", str(tmp_path), "account", "create", "reader", "--plan", "paid",
                                          "--credits", "10", "--json"]).stdout)
    mm = MMSearch(Settings(home=tmp_path, ocr=False), encoder=None)
    with LiveServer(create_app(mm)) as live:
        client = sdk(live, made["access_key_id"], made["access_key_secret"])
        items = client.multimodal_search(request("红玫瑰")).body.image_items
    roses = [i for i in items if "rose" in i.image_url]
    assert len(roses) == 1  # rose.jpg and rose-copy.jpg are the same bytes: one result
    rose = roses[0]
    assert rose.title == "红玫瑰 red rose" and rose.host_page_url.endswith("/news/spring.html")
    assert rose.published_time == "2024-12-18T22:24:24+08:00" and (rose.width, rose.height) == (320, 240)
