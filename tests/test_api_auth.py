"""Credentials on the search endpoint (bearer keys; V4 signatures made by the official volcengine SDK) and the
admin token on management endpoints, over a real uvicorn on loopback; plus the body limit."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from volcengine.ApiInfo import ApiInfo
from volcengine.base.Service import Service
from volcengine.Credentials import Credentials
from volcengine.ServiceInfo import ServiceInfo

from api_fixtures import ADMIN, Api, start, stop

QUERY = {"query": {"text": "运动鞋 running"}, "dataset_id": "products", "page_size": 3}


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    a = start(tmp_path_factory.mktemp("auth"), product_items, max_body_bytes=64 * 1024)
    yield a
    stop(a)


class AISearch(Service):
    """The official SDK's generic client, pointed at mmsearch: it signs every request with SignerV4."""

    def __init__(self, url: str, ak: str, sk: str, app: str = "shop", service: str = "aisearch",
                 region: str = "cn-beijing") -> None:
        host = url.removeprefix("http://")
        info = ServiceInfo(host, {"Accept": "application/json"}, Credentials(ak, sk, service, region), 10, 10, "http")
        super().__init__(info, {"Search": ApiInfo("POST", f"/api/v1/application/{app}/search", {}, {}, {})})

    def search(self, body: dict) -> dict:
        return json.loads(self.json("Search", {}, json.dumps(body)))


def test_bearer_key_required(api: Api):
    r = api.client.post("/api/v1/application/shop/search", json=QUERY)
    assert r.status_code == 401 and r.json()["error"]["code"] == "MissingAuthorization"
    r = api.client.post("/api/v1/application/shop/search", json=QUERY, headers={"Authorization": "Bearer mms_x_y"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidApiKey"
    r = api.client.post("/api/v1/application/shop/search", json=QUERY, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_revoked_key_stops_working(api: Api):
    new = api.mm.catalog.keys.create(["shop"])
    assert api.search(QUERY, key=new.key).status_code == 200
    r = api.admin.delete(f"/admin/v1/keys/{new.info.id}")
    assert r.status_code == 200 and r.json()["revoked_at"]
    time.sleep(2.1)  # the key cache's ttl
    r = api.search(QUERY, key=new.key)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidApiKey"


def test_key_scoped_to_other_application_is_refused(api: Api):
    api.mm.catalog.apps.create("other", ["products"])
    key = api.mm.catalog.keys.create(["other"]).key
    r = api.search(QUERY, key=key)
    assert r.status_code == 403 and r.json()["error"]["code"] == "AccessDenied"
    assert api.search(QUERY, app="other", key=key).status_code == 200


def test_official_sdk_signature_is_accepted(api: Api):
    client = AISearch(api.server.url, api.access_key_id, api.secret_access_key)
    body = client.search(QUERY)
    assert body["result"]["search_results"]
    assert len(body["result"]["search_results"]) == 3


def test_sdk_signature_with_wrong_secret_or_scope_is_refused(api: Api):
    for client, code in [
        (AISearch(api.server.url, api.access_key_id, "wrong-secret"), "SignatureDoesNotMatch"),
        (AISearch(api.server.url, "AKUNKNOWN", "x"), "InvalidAccessKey"),
        (AISearch(api.server.url, api.access_key_id, api.secret_access_key, region="cn-shanghai"),
         "InvalidCredential"),
        (AISearch(api.server.url, api.access_key_id, api.secret_access_key, service="iam"), "InvalidCredential"),
    ]:
        with pytest.raises(Exception) as info:
            client.search(QUERY)
        raw = info.value.args[0]
        err = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        assert err["error"]["code"] == code
        assert err["ResponseMetadata"]["Error"]["Code"] == code


def test_signed_request_cannot_be_replayed(api: Api):
    client = AISearch(api.server.url, api.access_key_id, api.secret_access_key)
    api_info = client.api_info["Search"]
    r = client.prepare_request(api_info, {})
    r.headers["Content-Type"] = "application/json"
    r.body = json.dumps({**QUERY, "page_size": 4})  # unlike the other tests' requests in this second
    from volcengine.auth.SignerV4 import SignerV4

    SignerV4.sign(r, client.service_info.credentials)
    url = r.build()
    first = httpx.post(url, headers=r.headers, content=r.body.encode())
    assert first.status_code == 200, first.text
    again = httpx.post(url, headers=r.headers, content=r.body.encode())
    assert again.status_code == 403 and again.json()["error"]["code"] == "ReplayedRequest"
    tampered = httpx.post(url, headers={**r.headers, "X-Date": r.headers["X-Date"]},
                          content=r.body.replace("4", "5").encode())
    assert tampered.status_code == 401 and tampered.json()["error"]["code"] == "SignatureDoesNotMatch"


def test_admin_token_required_on_management(api: Api):
    anon = httpx.Client(base_url=api.server.url)
    for method, path in [("GET", "/admin/v1/datasets"), ("GET", "/admin/v1/keys"), ("POST", "/admin/v1/applications"),
                         ("GET", "/admin/v1/jobs"), ("GET", "/admin/v1/query-log")]:
        r = anon.request(method, path)
        assert r.status_code == 401, (path, r.text)
        r = anon.request(method, path, headers={"Authorization": f"Bearer {api.key}"})  # an API key is not admin
        assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAdminToken"
    assert anon.get("/admin/v1/datasets", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_body_limit_is_413_before_reading(api: Api):
    big = {**QUERY, "query": {"text": "x" * (70 * 1024)}}
    r = api.search(big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "PayloadTooLarge"
    assert r.headers["x-request-id"] == r.json()["request_id"]

    def chunks():  # no Content-Length: the limit is enforced on the bytes received
        yield b'{"query": {"text": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}, "dataset_id": "products"}'

    r = api.client.post("/api/v1/application/shop/search", content=chunks(),
                        headers={"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"})
    assert r.status_code == 413
    assert api.search(QUERY).status_code == 200
