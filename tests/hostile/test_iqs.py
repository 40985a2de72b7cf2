"""Hostile IQS MultimodalSearch requests against a real uvicorn, with plain HTTP and the official SDK
(`alibabacloud_iqs20241111`): a refused query is never charged, whatever refuses it (the body, a value the search
rejects, an engine failure); every error on the IQS paths, the edge's own 404/405/413/415/500 included, has the
shape `{requestId, code, message}` with an IQS-style code, so the SDK's `e.code` is never None. And
`publishedTime` is never empty: a page without a date gets its WARC record's date, the crawl's fetch time or
the import time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from Tea.exceptions import TeaException
from warcio.archiveiterator import ArchiveIterator

from live import LiveServer
from mmsearch.api.app import create_app
from mmsearch.api.iqs import SDK_PATH
from mmsearch.config import Settings
from mmsearch.errors import InvalidArgument, Unavailable
from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus
from mmsearch.ingest.web.laion import read_laion
from mmsearch.ingest.web.warc import import_warcs
from mmsearch.media import FetchConfig
from test_api_iqs import _no_proxy, corpus_images, request, sdk, serve_corpus  # noqa: F401 (autouse fixture)
from test_web_crawl import LOOPBACK, Run, engine, items_by_path
from web_fixture import LAST_MODIFIED, FixtureSite

BODY_LIMIT = 64 * 1024
CST = timezone(timedelta(hours=8))
IQS_KEYS = {"requestId", "code", "message"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_corpus(tmp_path_factory.mktemp("iqs-hostile"), max_body_bytes=BODY_LIMIT)


_made = iter(range(10**6))


def account(server, credits: int = 10):
    return server.mm.catalog.accounts.create(f"hostile-{next(_made)}", plan="paid", credits=credits)


def post(server, body: dict | bytes, key: str, path: str = "/search/multimodal", **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}{path}", content=content,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers})


def iqs_error(r: httpx.Response, status: int, code: str) -> str:
    """Assert the IQS error shape; the message."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == IQS_KEYS, body
    assert body["code"] == code, body
    assert body["requestId"] == r.headers["x-request-id"] == r.headers["x-acs-request-id"]
    return body["message"]


def uncharged(server, acct) -> bool:
    got = server.mm.catalog.accounts.get(acct.account.name)
    return got.credits == acct.account.credits and server.mm.catalog.accounts.usage(acct.account.name) == 0


def hosts(n: int) -> str:
    return ",".join(f"h{i}.example.com" for i in range(n))


# -- excludeSites ------------------------------------------------------------------------------------------
def test_too_many_excluded_sites_are_refused_before_the_charge(server):
    acct = account(server)
    r = post(server, {"query": "狮子", "advancedParams": {"excludeSites": hosts(1025)}}, acct.api_key)
    message = iqs_error(r, 400, "InvalidParameter")
    assert message.startswith("advancedParams.excludeSites: at most 1024 hosts"), message
    assert uncharged(server, acct)
    client = sdk(server, acct.access_key_id, acct.access_key_secret)
    with pytest.raises(TeaException) as info:
        client.multimodal_search(request("狮子", hosts(1025)))
    assert info.value.code == "InvalidParameter" and info.value.data["statusCode"] == 400
    assert uncharged(server, acct)
    r = post(server, {"query": "狮子", "advancedParams": {"excludeSites": hosts(1024) + ",c.org"}}, acct.api_key)
    assert r.status_code == 400  # 1025 distinct hosts
    r = post(server, {"query": "狮子", "advancedParams": {"excludeSites": hosts(1023) + ",c.org"}}, acct.api_key)
    assert r.status_code == 200, r.text  # exactly 1024: answered, and c.org is excluded
    assert r.json()["imageItems"] and all("c.org" not in i["hostPageUrl"] for i in r.json()["imageItems"])
    assert server.mm.catalog.accounts.usage(acct.account.name) == 1


def test_the_exclude_sites_limit_is_a_setting_and_bounds_the_raw_string(server, monkeypatch):
    monkeypatch.setenv("MMSEARCH_IQS_MAX_EXCLUDE_SITES", "2")
    assert Settings().iqs_max_exclude_sites == 2
    acct = account(server)
    settings = server.mm.settings
    server.mm.settings = settings.model_copy(update={"iqs_max_exclude_sites": 2})
    try:
        three = post(server, {"query": "狮子", "advancedParams": {"excludeSites": "a.com,b.cn,c.org"}}, acct.api_key)
        padded = post(server, {"query": "狮子", "advancedParams": {"excludeSites": "a.com," + " " * 600}},
                      acct.api_key)
        two = post(server, {"query": "狮子", "advancedParams": {"excludeSites": "a.com, b.cn,a.com"}}, acct.api_key)
    finally:
        server.mm.settings = settings
    assert "at most 2 hosts" in iqs_error(three, 400, "InvalidParameter")
    assert "at most 512 characters, got 606" in iqs_error(padded, 400, "InvalidParameter")  # before splitting
    assert two.status_code == 200, two.text  # duplicates count once
    long_host = "a" * 254 + ".com"
    r = post(server, {"query": "狮子", "advancedParams": {"excludeSites": long_host}}, acct.api_key)
    assert "is not a host name" in iqs_error(r, 400, "InvalidParameter")
    assert server.mm.catalog.accounts.usage(acct.account.name) == 1


# -- bodies refused before the charge ---------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "field"), [
    (b'{"query": "\\ud800"}', "query"),
    (b'{"query": "lion \\udfff"}', "query"),
    (b'{"query": "\xe7\x8b\xae\xe5\xad\x90", "advancedParams": {"excludeSites": "a.com,\\udc00.cn"}}',
     "advancedParams.excludeSites"),
])
def test_lone_surrogates_are_refused_naming_the_field(server, raw, field):
    acct = account(server)
    message = iqs_error(post(server, raw, acct.api_key), 400, "InvalidParameter")
    assert message.startswith(f"{field}: not valid Unicode"), message
    assert uncharged(server, acct)


@pytest.mark.parametrize(("raw", "start"), [
    (b"{nope", "body: not valid JSON"),
    (b"[1, 2]", "body: must be a JSON object"),
    (b"[" * 20_000 + b"]" * 20_000, "body: "),  # deeper than the parser recurses: still a 400
    (b"\xff\xfe\x00garbage", "body: not valid JSON"),
    (b'{"query": 5}', "query: "),
    (b'{"query": "\xe7\x8b\xae\xe5\xad\x90", "advancedParams": "a.com"}', "advancedParams: "),
])
def test_malformed_bodies_are_invalid_parameter(server, raw, start):
    acct = account(server)
    message = iqs_error(post(server, raw, acct.api_key), 400, "InvalidParameter")
    assert message.startswith(start), message
    assert uncharged(server, acct)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_non_json_content_type_is_415(server, ctype):
    acct = account(server)
    r = post(server, {"query": "狮子"}, acct.api_key, **{"Content-Type": ctype})
    message = iqs_error(r, 415, "UnsupportedMediaType")
    assert message.startswith("Content-Type: ") and ctype in message
    assert uncharged(server, acct)
    r = httpx.post(f"{server.url}/search/multimodal", content=json.dumps({"query": "狮子"}).encode(),
                   headers={"Authorization": f"Bearer {acct.api_key}"})  # no Content-Type: read as JSON
    assert r.status_code == 200, r.text


# -- refused or failed after the charge: refunded ----------------------------------------------------------------
def test_a_value_the_search_refuses_is_refunded(server, tmp_path):
    """`web_dataset` pointing at a dataset without `site_domains`: the search itself refuses the excludeSites
    filter (InvalidArgument, after the charge), and the answer is an uncharged IQS InvalidParameter."""
    other = server.mm.create_dataset("not-web", {"fields": [{"name": "id", "type": "string", "primary_key": True},
                                                            {"name": "title", "type": "string",
                                                             "searchable": True}]})
    acct = account(server)
    settings = server.mm.settings
    server.mm.settings = settings.model_copy(update={"web_dataset": other.id})
    try:
        r = post(server, {"query": "狮子", "advancedParams": {"excludeSites": "a.com"}}, acct.api_key)
    finally:
        server.mm.settings = settings
    assert "site_domains" in iqs_error(r, 400, "InvalidParameter")
    assert uncharged(server, acct)


@pytest.mark.parametrize(("error", "status", "code"), [
    (Unavailable("vlm: no image model is loaded"), 503, "ServiceUnavailable"),
    (InvalidArgument("filter: refused", field="filter"), 400, "InvalidParameter"),
    (RuntimeError("the engine fell over"), 500, "InternalError"),
    (MemoryError(), 500, "InternalError"),
])
def test_any_failure_after_the_charge_is_refunded_and_reaches_the_sdk(server, monkeypatch, error, status, code):
    """Fault injection at the engine's edge (the one call the IQS handler makes after charging)."""
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(server.mm, "search", failing)
    acct = account(server)
    iqs_error(post(server, {"query": "狮子"}, acct.api_key), status, code)
    client = sdk(server, acct.access_key_id, acct.access_key_secret)
    with pytest.raises(TeaException) as info:
        client.multimodal_search(request())
    assert info.value.code == code and info.value.data["statusCode"] == status and info.value.data["requestId"]
    assert uncharged(server, acct)
    monkeypatch.undo()
    assert client.multimodal_search(request()).body.image_items  # the server serves on
    assert server.mm.catalog.accounts.get(acct.account.name).credits == acct.account.credits - 1


# -- the edge's own errors, in the IQS shape ---------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/search/multimodal", SDK_PATH])
def test_405_and_404_on_iqs_paths(server, path):
    for method in ("GET", "PUT", "DELETE"):
        r = httpx.request(method, f"{server.url}{path}")
        message = iqs_error(r, 405, "UnsupportedHTTPMethod")
        assert method in message and "POST" in message and r.headers["allow"] == "POST"
    message = iqs_error(httpx.post(f"{server.url}{path}/extra"), 404, "InvalidAction.NotFound")
    assert f"{path}/extra" in message


@pytest.mark.parametrize("path", ["/search/multimodal", SDK_PATH])
def test_413_on_iqs_paths_declared_and_streamed(server, path):
    acct = account(server)
    big = json.dumps({"query": "狮子", "pad": "x" * BODY_LIMIT}).encode()
    r = post(server, big, acct.api_key, path=path)
    assert "larger than the limit" in iqs_error(r, 413, "RequestEntityTooLarge")
    assert r.headers["connection"] == "close"

    def chunks():  # no Content-Length: the limit is found while reading
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    r = httpx.post(f"{server.url}{path}", content=chunks(),
                   headers={"Authorization": f"Bearer {acct.api_key}", "Content-Type": "application/json"})
    assert "transfer-encoding" in r.request.headers
    assert "larger than the limit" in iqs_error(r, 413, "RequestEntityTooLarge")
    assert r.headers["connection"] == "close"
    assert uncharged(server, acct)


def test_413_reaches_the_sdk_with_a_code(server):
    acct = account(server)
    client = sdk(server, acct.access_key_id, acct.access_key_secret)
    with pytest.raises(TeaException) as info:
        client.multimodal_search(request("狮" * (BODY_LIMIT // 2)))
    assert info.value.code == "RequestEntityTooLarge" and info.value.data["statusCode"] == 413
    assert info.value.data["requestId"] and "larger than the limit" in info.value.data["message"]
    assert uncharged(server, acct)


# -- publishedTime is never empty ---------------------------------------------------------------------------------
def warc_date(warc: Path, path: str) -> datetime:
    with open(warc, "rb") as fh:
        for record in ArchiveIterator(fh):
            if record.rec_type == "response" and record.rec_headers.get_header("WARC-Target-URI").endswith(path):
                return datetime.fromisoformat(record.rec_headers.get_header("WARC-Date").replace("Z", "+00:00"))
    raise AssertionError(f"no response record for {path}")


def test_published_time_of_an_undated_page_in_a_warc_is_the_record_date(tmp_path):
    site = FixtureSite()  # not started: the WARC carries every byte
    warc = site.write_warc(tmp_path / "site.warc.gz", ["/news/moved.html", "/img/moved.png", "/gallery/",
                                                       "/media/sea.jpg", "/news/spring.html", "/img/rose.jpg"])
    mm = engine(tmp_path / "home")
    with WebCorpus(mm, "web", CorpusConfig(fetch=FetchConfig(allowed_networks=LOOPBACK, retries=0))) as c:
        import_warcs([warc], c)
    items = items_by_path(mm)
    moved = items["/img/moved.png"]  # the page has no date and its record no Last-Modified
    expected = warc_date(warc, "/news/moved.html").astimezone(CST).replace(microsecond=0).isoformat()
    assert moved["publishedTime"] == expected and expected.endswith("+08:00")
    assert moved.get("published_ts") is None  # shown, but not ranked as the page's own date
    assert items["/media/sea.jpg"]["publishedTime"] == "2024-06-05T08:30:00+00:00"  # the record's Last-Modified
    assert items["/img/rose.jpg"]["publishedTime"] == "2024-12-18T22:24:24+08:00"  # the page's own date first
    with WebCorpus(mm, "web", CorpusConfig(fetch=FetchConfig(allowed_networks=LOOPBACK, retries=0))) as c:
        again = import_warcs([warc], c)  # re-importing changes nothing, undated pages included
    assert again.corpus["imported"] == again.corpus["updated"] == 0


def test_published_time_of_an_undated_crawled_page_is_the_fetch_time_and_reaches_the_sdk(tmp_path):
    with FixtureSite(crawl_delay=None) as site:
        run = Run(tmp_path / "home")
        before = datetime.now(UTC).replace(microsecond=0)
        run.crawl([site.url("/news/moved.html"), site.url("/gallery/")])
        after = datetime.now(UTC)
    items = items_by_path(run.mm)
    moved = datetime.fromisoformat(items["/img/moved.png"]["publishedTime"])
    assert moved.utcoffset() == timedelta(hours=8) and before <= moved <= after
    assert items["/media/sea.jpg"]["publishedTime"] == datetime.strptime(
        LAST_MODIFIED, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC).isoformat()  # Last-Modified comes first
    acct = run.mm.catalog.accounts.create("dates", plan="paid", credits=5)
    with LiveServer(create_app(run.mm)) as live:
        found = sdk(live, acct.access_key_id, acct.access_key_secret).multimodal_search(request("搬家"))
    boxes = [i for i in found.body.image_items if i.image_url.endswith("/img/moved.png")]
    assert boxes and boxes[0].published_time == items["/img/moved.png"]["publishedTime"]


def test_published_time_of_a_laion_row_without_a_date_is_the_import_time(tmp_path):
    with FixtureSite(crawl_delay=None) as site:
        rows = [{"url": site.url("/img/rose.jpg"), "caption": "rose", "date": "2021-05-06T07:08:09+08:00"},
                {"url": site.url("/img/snow.png"), "caption": "snow"}]
        path = tmp_path / "meta.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows))
        mm = engine(tmp_path / "home")
        before = datetime.now(UTC).replace(microsecond=0)
        with WebCorpus(mm, "web", CorpusConfig(fetch=FetchConfig(allowed_networks=LOOPBACK, retries=0))) as c:
            assert c.add(read_laion(path)).imported == 2
        after = datetime.now(UTC)
    items = items_by_path(mm)
    assert items["/img/rose.jpg"]["publishedTime"] == "2021-05-06T07:08:09+08:00"  # the date column
    snow = datetime.fromisoformat(items["/img/snow.png"]["publishedTime"])
    assert snow.utcoffset() == timedelta(hours=8) and before <= snow <= after
