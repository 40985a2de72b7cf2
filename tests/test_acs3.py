"""ACS3-HMAC-SHA256 verification against the official Alibaba Cloud SDK's own signer and client.

Unit tests sign with ``alibabacloud_tea_openapi.utils.Utils.get_authorization`` (what
``Client.do_request`` calls) and put the request on the wire with the SDK's URL composition and
``requests``' preparation; end-to-end tests run the real ``alibabacloud_iqs20241111`` client (sync and
async) against a small FastAPI app on loopback that verifies with :func:`verify_acs3`. When SDK 1.7.1
(the spec's version) is installed in a separate folder (``IQS_SDK_171_DIR``, default
``build/sdk/iqs171``), the same end-to-end check runs with it in a subprocess.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from alibabacloud_iqs20241111 import models as iqs_models
from alibabacloud_iqs20241111.client import Client as IqsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.utils import Utils as SdkUtils
from darabonba.core import DaraCore
from darabonba.request import DaraRequest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from Tea.exceptions import TeaException

from live import LiveServer
from mmsearch.api.acs3 import (
    ALGORITHM,
    Acs3Error,
    ReplayGuard,
    SignedRequest,
    access_key_inactive,
    error_body,
    from_asgi_scope,
    from_raw,
    is_acs3_signed,
    verify_acs3,
)
from mmsearch.api.signing import SignatureError

SDK_PATH = "/linked-retrieval/linked-retrieval-entry/v1/iqs/multimodal/unified"
AK, SK = "LTAI5tTestAccessKey", "test-secret-0123456789"
KEYS = {AK: SK, "LTAIother": "other-secret"}
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def lookup(ak: str) -> str | None:
    return KEYS.get(ak)


def sdk_signed(
    *,
    method: str = "POST",
    pathname: str = SDK_PATH,
    query: dict[str, str] | None = None,
    body: bytes | None = None,
    host: str = "iqs.example.test",
    ak: str = AK,
    sk: str = SK,
    at: datetime = T0,
    nonce: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> SignedRequest:
    """Build, sign and prepare a request exactly as ``Client.do_request`` does; return what a server receives."""
    if body is None:
        body = json.dumps({"query": "狮子"}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    dara = DaraRequest()
    dara.protocol = "http"
    dara.method = method
    dara.pathname = pathname
    dara.query = dict(query or {})
    dara.headers = {
        "host": host,
        "x-acs-version": "2024-11-11",
        "x-acs-action": "MultimodalSearch",
        "user-agent": SdkUtils.get_user_agent(None),
        "x-acs-date": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or SdkUtils.get_nonce(),
        "accept": "application/json",
        **(extra_headers or {}),
    }
    payload = SdkUtils.hash(body, ALGORITHM)
    if body:
        dara.body = body
        dara.headers["content-type"] = "application/json; charset=utf-8"
    dara.headers["x-acs-content-sha256"] = payload.hex()
    dara.headers["x-acs-credentials-provider"] = "static_ak"
    dara.headers["Authorization"] = SdkUtils.get_authorization(dara, ALGORITHM, payload.hex(), ak, sk)
    prepared = requests.PreparedRequest()
    prepared.prepare(method=method, url=DaraCore.compose_url(dara), data=dara.body, headers=dara.headers)
    wire = urlsplit(prepared.path_url)
    return from_raw(method, wire.path, wire.query, list(prepared.headers.items()), prepared.body or b"")


def with_headers(req: SignedRequest, **changes: str | None) -> SignedRequest:
    headers = dict(req.headers)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return SignedRequest(req.method, req.path, req.query, headers, req.body)


def verify(req: SignedRequest, **kw: object) -> str:
    kw.setdefault("now", T0)
    return verify_acs3(req, lookup, **kw)  # type: ignore[arg-type]


def rejected(req: SignedRequest, **kw: object) -> Acs3Error:
    with pytest.raises(Acs3Error) as info:
        verify(req, **kw)
    assert isinstance(info.value, SignatureError)
    return info.value


# --------------------------------------------------------------------------- signatures from the SDK's signer


def test_sdk_signed_request_verifies_and_names_the_key() -> None:
    req = sdk_signed()
    assert is_acs3_signed(req.headers)
    assert verify(req) == AK


@pytest.mark.parametrize(
    ("pathname", "query"),
    [
        (SDK_PATH, {"engineType": "Generic", "q": "a b/c+d~e*f'狮子", "empty": ""}),
        ("/api/v1/狮子 and space/it's", {}),
        ("/x", {"a key": "v", "z": "1", "A": "2"}),
    ],
)
def test_sdk_encoding_of_paths_and_queries_verifies(pathname: str, query: dict[str, str]) -> None:
    req = sdk_signed(method="GET", pathname=pathname, query=query, body=b"")
    assert verify(req) == AK


def test_headers_added_after_signing_are_ignored() -> None:
    req = with_headers(sdk_signed(), x_forwarded_for="10.0.0.1", accept_encoding="gzip")
    assert verify(req) == AK


def test_unknown_access_key_is_the_spec_404() -> None:
    err = rejected(sdk_signed(ak="LTAInobody"))
    assert (err.code, err.status, err.message) == (
        "InvalidAccessKeyId.NotFound",
        404,
        "Specified access key is not found.",
    )


def test_inactive_key_raised_by_lookup_propagates() -> None:
    def lookup_inactive(ak: str) -> str | None:
        raise access_key_inactive()

    with pytest.raises(Acs3Error) as info:
        verify_acs3(sdk_signed(), lookup_inactive, now=T0)
    assert (info.value.code, info.value.status) == ("InvalidAccessKeyId.Inactive", 403)


def test_wrong_secret_is_signature_mismatch() -> None:
    err = rejected(sdk_signed(sk="not-the-secret"))
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)
    assert "string to sign" in err.message


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: SignedRequest(r.method, r.path, r.query, r.headers, r.body.replace("狮".encode(), "虎".encode())),
        lambda r: with_headers(r, x_acs_action="DeleteEverything"),
        lambda r: with_headers(r, host="evil.example.test"),
        lambda r: SignedRequest("PUT", r.path, r.query, r.headers, r.body),
        lambda r: SignedRequest(r.method, r.path + "x", r.query, r.headers, r.body),
        lambda r: SignedRequest(r.method, r.path, (("extra", "1"),), r.headers, r.body),
    ],
    ids=["body", "signed-header", "host", "method", "path", "query"],
)
def test_any_change_to_a_signed_part_is_rejected(tamper: Callable[[SignedRequest], SignedRequest]) -> None:
    err = rejected(tamper(sdk_signed()))
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)


def test_body_and_its_hash_swapped_together_still_fail() -> None:
    req = sdk_signed()
    body = b'{"query":"other"}'
    forged = with_headers(
        SignedRequest(req.method, req.path, req.query, req.headers, body),
        x_acs_content_sha256=hashlib.sha256(body).hexdigest(),
    )
    err = rejected(forged)
    assert err.code == "SignatureDoesNotMatch" and "string to sign" in err.message


def test_body_hash_header_must_match_body() -> None:
    req = sdk_signed()
    err = rejected(SignedRequest(req.method, req.path, req.query, req.headers, req.body + b" "))
    assert err.code == "SignatureDoesNotMatch" and "x-acs-content-sha256" in err.message


@pytest.mark.parametrize(
    ("delta_s", "ok"),
    [(0, True), (900, True), (-900, True), (901, False), (-901, False), (3600, False)],
)
def test_clock_skew_window(delta_s: int, ok: bool) -> None:
    req = sdk_signed()
    now = T0 + timedelta(seconds=delta_s)
    if ok:
        assert verify(req, now=now) == AK
    else:
        err = rejected(req, now=now)
        assert (err.code, err.status) == ("InvalidTimeStamp.Expired", 403)
        assert ("expired" if delta_s > 0 else "future") in err.message


def test_narrower_skew_window() -> None:
    err = rejected(sdk_signed(), now=T0 + timedelta(seconds=61), max_skew_s=60)
    assert err.code == "InvalidTimeStamp.Expired"


@pytest.mark.parametrize("value", ["20260102T030405Z", "2026-01-02 03:04:05", "2026-13-40T03:04:05Z", "x"])
def test_malformed_date(value: str) -> None:
    err = rejected(with_headers(sdk_signed(), x_acs_date=value))
    assert (err.code, err.status) == ("InvalidTimeStamp.Format", 403)


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        (None, "no Authorization"),
        ("ACS3-HMAC-SM3 Credential=a,SignedHeaders=host,Signature=" + "0" * 64, "not supported"),
        ("ACS3-HMAC-SHA256 SignedHeaders=host,Signature=" + "0" * 64, "Credential"),
        ("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=XYZ", "64 lower-case hex"),
        ("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=x-acs-date;host,Signature=" + "0" * 64, "sorted"),
        ("ACS3-HMAC-SHA256 Credential=a,Foo=b,SignedHeaders=host,Signature=" + "0" * 64, "unknown component"),
    ],
)
def test_malformed_authorization_is_incomplete_signature(authorization: str | None, fragment: str) -> None:
    err = rejected(with_headers(sdk_signed(), authorization=authorization))
    assert (err.code, err.status) == ("IncompleteSignature", 403)
    assert fragment in err.message


@pytest.mark.parametrize("header", ["host", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"])
def test_required_headers_must_be_present(header: str) -> None:
    err = rejected(with_headers(sdk_signed(), **{header.replace("-", "_"): None}))
    assert err.code == "IncompleteSignature" and header in err.message


def test_required_headers_must_be_signed() -> None:
    # A signer that leaves the nonce out of SignedHeaders (a valid signature over the rest) is refused.
    req = sdk_signed()
    auth = req.header("authorization")
    assert auth is not None
    names = auth.split("SignedHeaders=")[1].split(",")[0]
    unsigned = auth.replace(names, names.replace(";x-acs-signature-nonce", ""))
    err = rejected(with_headers(req, authorization=unsigned))
    assert err.code == "IncompleteSignature" and "x-acs-signature-nonce" in err.message


def test_signed_header_missing_from_request() -> None:
    err = rejected(with_headers(sdk_signed(), user_agent=None))
    assert err.code == "IncompleteSignature" and "user-agent" in err.message


def test_sts_tokens_are_refused() -> None:
    err = rejected(sdk_signed(extra_headers={"x-acs-security-token": "tok", "x-acs-accesskey-id": AK}))
    assert (err.code, err.status) == ("InvalidSecurityToken.NotSupported", 403)


def test_nonce_is_accepted_once_per_key() -> None:
    guard = ReplayGuard()
    first = sdk_signed(nonce="n-1")
    assert verify(first, nonces=guard) == AK
    err = rejected(first, nonces=guard)
    assert (err.code, err.status) == ("SignatureNonceUsed", 403)
    # Same nonce with a fresh signature (different date) is still a reuse.
    err = rejected(sdk_signed(nonce="n-1", at=T0 + timedelta(seconds=1)), nonces=guard, now=T0 + timedelta(seconds=1))
    assert err.code == "SignatureNonceUsed"
    assert verify(sdk_signed(nonce="n-2"), nonces=guard) == AK
    assert verify(sdk_signed(nonce="n-1", ak="LTAIother", sk="other-secret"), nonces=guard) == "LTAIother"


def test_failed_verification_does_not_burn_the_nonce() -> None:
    guard = ReplayGuard()
    rejected(sdk_signed(nonce="n-x", sk="wrong"), nonces=guard)
    assert verify(sdk_signed(nonce="n-x"), nonces=guard) == AK


def test_nonce_forgotten_after_window() -> None:
    guard = ReplayGuard()
    assert verify(sdk_signed(nonce="n-w"), nonces=guard) == AK
    later = T0 + timedelta(seconds=1000)
    assert verify(sdk_signed(nonce="n-w", at=later), nonces=guard, now=later) == AK
    assert len(guard) == 1


def test_full_nonce_guard_fails_closed() -> None:
    guard = ReplayGuard(max_entries=1)
    assert verify(sdk_signed(nonce="a"), nonces=guard) == AK
    err = rejected(sdk_signed(nonce="b"), nonces=guard)
    assert (err.code, err.status) == ("ServiceUnavailable", 503)


def test_concurrent_replays_accept_exactly_one() -> None:
    guard = ReplayGuard()
    req = sdk_signed(nonce="race")
    results: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            results.append(verify(req, nonces=guard))
        except Acs3Error as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [AK] + ["SignatureNonceUsed"] * 7


def test_is_acs3_signed_tells_schemes_apart() -> None:
    assert is_acs3_signed({"Authorization": "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=b"})
    assert is_acs3_signed([(b"authorization", b"ACS3-HMAC-SM3 Credential=a")])
    assert not is_acs3_signed({"Authorization": "Bearer sk-123"})
    assert not is_acs3_signed({"Authorization": "HMAC-SHA256 Credential=a/20260101/cn/svc/request"})
    assert not is_acs3_signed({})


# --------------------------------------------------------------------------- the real SDK end to end

SPEC_ITEM = {
    "title": "狮子一生征战沙场,背后藏着无数生死搏斗的传奇",
    "publishedTime": "2025-04-12T12:47:54+08:00",
    "imageUrl": "http://img.example.test/lion.jpeg",
    "hostPageUrl": "https://page.example.test/lion.html",
    "height": 1280,
    "width": 720,
}


def make_app(guard: ReplayGuard, seen: list[SignedRequest]) -> FastAPI:
    app = FastAPI()

    @app.post(SDK_PATH)
    async def multimodal(request: Request) -> JSONResponse:
        rid = str(uuid.uuid4()).upper()
        signed = from_asgi_scope(request.scope, await request.body())
        seen.append(signed)
        try:
            verify_acs3(signed, lookup, nonces=guard)
        except Acs3Error as exc:
            return JSONResponse(error_body(exc.code, exc.message, rid), status_code=exc.status)
        body = json.loads(signed.body)
        if body["query"] == "throttle":
            msg = "Request was denied due to user flow control."
            return JSONResponse(error_body("Retrieval.Throttling.User", msg, rid), status_code=429)
        return JSONResponse(
            {
                "requestId": rid,
                "imageItems": [SPEC_ITEM],
                "searchInformation": {"searchTime": 12},
                "queryContext": {"originalQuery": {"query": body["query"]}},
            }
        )

    return app


PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK sends through $HTTP_PROXY even to loopback; these tests talk to 127.0.0.1 only.
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def server():
    seen: list[SignedRequest] = []
    with LiveServer(make_app(ReplayGuard(), seen)) as live:
        live.seen = seen  # type: ignore[attr-defined]
        yield live


def client_for(live: LiveServer, ak: str = AK, sk: str = SK) -> IqsClient:
    config = open_api_models.Config(access_key_id=ak, access_key_secret=sk)
    config.endpoint = f"127.0.0.1:{live.port}"
    config.protocol = "http"
    return IqsClient(config)


def spec_request(query: str = "狮子") -> iqs_models.MultimodalSearchRequest:
    return iqs_models.MultimodalSearchRequest(
        body=iqs_models.MultimodalSearchBody(query=query, advanced_params={"excludeSites": "www.360doc.com,weibo.com"})
    )


def assert_spec_response(response: iqs_models.MultimodalSearchResponse) -> None:
    assert response.status_code == 200
    body = response.body
    assert isinstance(body, iqs_models.MultimodalSearchOutput)
    assert body.request_id and body.search_information.search_time == 12
    assert body.query_context.original_query.query == "狮子"
    (item,) = body.image_items
    assert (item.title, item.image_url, item.host_page_url) == (
        SPEC_ITEM["title"],
        SPEC_ITEM["imageUrl"],
        SPEC_ITEM["hostPageUrl"],
    )
    assert (item.published_time, item.width, item.height) == ("2025-04-12T12:47:54+08:00", 720, 1280)


def test_sdk_sync_call_verifies_and_parses(server: LiveServer) -> None:
    response = client_for(server).multimodal_search(spec_request())
    assert_spec_response(response)
    signed = server.seen[-1]  # type: ignore[attr-defined]
    assert (signed.method, signed.path) == ("POST", SDK_PATH)
    assert signed.header("x-acs-action") == "MultimodalSearch" and signed.header("x-acs-version") == "2024-11-11"
    assert json.loads(signed.body) == {"query": "狮子", "advancedParams": {"excludeSites": "www.360doc.com,weibo.com"}}


def test_sdk_async_call_verifies_and_parses(server: LiveServer) -> None:
    response = asyncio.run(client_for(server).multimodal_search_async(spec_request()))
    assert_spec_response(response)


def test_sdk_repeated_calls_get_fresh_nonces(server: LiveServer) -> None:
    client = client_for(server)
    for _ in range(3):
        assert_spec_response(client.multimodal_search(spec_request()))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sdk_unknown_key_reads_as_the_spec_sample(server: LiveServer, mode: str) -> None:
    client = client_for(server, ak="LTAInobody")
    with pytest.raises(TeaException) as info:
        if mode == "sync":
            client.multimodal_search(spec_request())
        else:
            asyncio.run(client.multimodal_search_async(spec_request()))
    e = info.value
    assert e.code == "InvalidAccessKeyId.NotFound"
    assert e.data.get("message") == "Specified access key is not found."
    assert e.data.get("requestId") and e.data["requestId"] in e.message
    assert e.data.get("statusCode") == 404


def test_sdk_wrong_secret_is_a_clear_403(server: LiveServer) -> None:
    with pytest.raises(TeaException) as info:
        client_for(server, sk="wrong-secret").multimodal_search(spec_request())
    e = info.value
    assert e.code == "SignatureDoesNotMatch" and e.data.get("statusCode") == 403
    assert "signature is not matched" in e.data.get("message")


def test_sdk_sm3_signatures_are_refused_clearly(server: LiveServer) -> None:
    client = client_for(server)
    client._signature_algorithm = "ACS3-HMAC-SM3"  # what Config(signature_algorithm=...) sets
    with pytest.raises(TeaException) as info:
        client.multimodal_search(spec_request())
    assert info.value.code == "IncompleteSignature" and "ACS3-HMAC-SM3" in info.value.data["message"]


def test_sdk_throttling_error_keeps_code_and_request_id(server: LiveServer) -> None:
    with pytest.raises(TeaException) as info:
        client_for(server).multimodal_search(spec_request("throttle"))
    e = info.value
    assert e.code == "Retrieval.Throttling.User" and e.data["statusCode"] == 429 and e.data["requestId"]


# --------------------------------------------------------------------------- the spec's SDK version (1.7.1)

SDK_171_DIR = Path(os.environ.get("IQS_SDK_171_DIR", Path(__file__).resolve().parents[1] / "build" / "sdk" / "iqs171"))

SDK_171_SCRIPT = r"""
import asyncio, json, sys
from Tea.exceptions import TeaException
from alibabacloud_iqs20241111 import models
from alibabacloud_iqs20241111.client import Client
from alibabacloud_tea_openapi import models as open_api_models
import alibabacloud_iqs20241111
from importlib.metadata import version

endpoint, ak, sk = sys.argv[1:4]
def client(ak, sk):
    config = open_api_models.Config(access_key_id=ak, access_key_secret=sk)
    config.endpoint = endpoint
    config.protocol = "http"
    return Client(config)
req = models.MultimodalSearchRequest(body=models.MultimodalSearchBody(
    query="狮子", advanced_params={"excludeSites": "www.360doc.com,weibo.com"}))
out = {"sdk": version("alibabacloud_iqs20241111"), "file": alibabacloud_iqs20241111.__file__}
r = client(ak, sk).multimodal_search(req)
out["sync"] = [r.body.request_id, len(r.body.image_items), r.body.image_items[0].width,
               r.body.search_information.search_time, r.body.query_context.original_query.query]
r = asyncio.run(client(ak, sk).multimodal_search_async(req))
out["async"] = [r.body.request_id, len(r.body.image_items), r.body.image_items[0].title]
try:
    client("LTAInobody", sk).multimodal_search(req)
except TeaException as e:
    out["error"] = [e.code, e.data.get("requestId"), e.data.get("message")]
print(json.dumps(out, ensure_ascii=False))
"""


@pytest.mark.skipif(
    not (SDK_171_DIR / "alibabacloud_iqs20241111").is_dir(),
    reason=f"SDK 1.7.1 not installed in {SDK_171_DIR} (pip install --target it alibabacloud_iqs20241111==1.7.1)",
)
def test_spec_sdk_version_1_7_1_end_to_end(server: LiveServer) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SDK_171_DIR), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", SDK_171_SCRIPT, f"127.0.0.1:{server.port}", AK, SK],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["sdk"] == "1.7.1" and out["file"].startswith(str(SDK_171_DIR))
    assert out["sync"][1:] == [1, 720, 12, "狮子"] and out["sync"][0]
    assert out["async"][1:] == [1, SPEC_ITEM["title"]]
    code, request_id, message = out["error"]
    assert (code, message) == ("InvalidAccessKeyId.NotFound", "Specified access key is not found.") and request_id
