"""Volcengine V4 signature verification, with the official `volcengine` SDK's signer as the client."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import requests
from volcengine.auth.SignerV4 import SignerV4
from volcengine.base.Request import Request
from volcengine.Credentials import Credentials

from mmsearch.api.signing import (
    ReplayCacheFull,
    ReplayGuard,
    SignatureError,
    SignedRequest,
    from_asgi_scope,
    from_raw,
    is_volc_signed,
    verify_v4,
)

AK = "AKLTtestaccesskey0001"
SK = "c2VjcmV0LWtleS1mb3ItdGVzdHM="
SERVICE = "aisearch"
REGION = "cn-beijing"
PATH = "/api/v1/application/app1/search"
BODY = json.dumps({"query": {"text": "科幻片 三体"}, "page_number": 1, "page_size": 5}, ensure_ascii=False)
SECRETS = {AK: SK, "AKLTother": "other-secret"}


def lookup(ak: str) -> str | None:
    return SECRETS.get(ak)


def sdk_request(
    *,
    method: str = "POST",
    path: str = PATH,
    query: dict | None = None,
    body: str | bytes = BODY,
    headers: dict | None = None,
    ak: str = AK,
    sk: str = SK,
    service: str = SERVICE,
    region: str = REGION,
    session_token: str = "",
) -> Request:
    """A request signed by the SDK's own SignerV4, exactly as a client would produce it."""
    r = Request()
    r.set_method(method)
    r.set_schema("http")
    r.set_host("127.0.0.1:8000")
    r.set_path(path)
    r.set_query(OrderedDict(query if query is not None else {"trace": "1"}))
    r.set_headers(OrderedDict(headers if headers is not None else {"Content-Type": "application/json"}))
    r.set_body(body)
    SignerV4.sign(r, Credentials(ak, sk, service, region, session_token))
    return r


def on_wire(r: Request) -> SignedRequest:
    """What a server sees: let `requests` prepare the URL/headers/body (no traffic), then parse it raw."""
    body = r.body.encode("utf-8") if isinstance(r.body, str) else r.body
    prepared = requests.Request(r.method, r.build(), headers=dict(r.headers), data=body).prepare()
    parts = urlsplit(prepared.path_url)
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in prepared.headers.items()]
    return from_raw(prepared.method, parts.path.encode("ascii"), parts.query.encode("ascii"), headers, body or b"")


def signed_at(r: Request) -> datetime:
    return datetime.strptime(r.headers["X-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def verify(req: SignedRequest, **kw):
    kw.setdefault("service", SERVICE)
    kw.setdefault("region", REGION)
    return verify_v4(req, kw.pop("lookup", lookup), **kw)


def expect(code: str, status: int, req: SignedRequest, **kw) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        verify(req, **kw)
    assert info.value.code == code, info.value.message
    assert info.value.status == status
    assert info.value.as_dict()["code"] == code
    return info.value


def with_headers(req: SignedRequest, **changes: str | None) -> SignedRequest:
    headers = dict(req.headers)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return SignedRequest(req.method, req.path, req.query, headers, req.body)


# --------------------------------------------------------------------------- accepted


def test_sdk_signed_post_verifies():
    r = sdk_request(query={"trace": "1", "lang": "zh"})
    auth = r.headers["Authorization"]
    assert auth.startswith(f"HMAC-SHA256 Credential={AK}/")
    assert "SignedHeaders=content-type;x-content-sha256;x-date," in auth
    req = on_wire(r)
    assert is_volc_signed(req.headers)
    assert verify(req).access_key_id == AK


def test_signed_request_from_plain_values_verifies():
    r = sdk_request()
    req = SignedRequest("POST", PATH, [("trace", "1")], dict(r.headers), r.body.encode("utf-8"))
    assert verify(req, now=signed_at(r)).access_key_id == AK


def test_sdk_service_style_request_with_host_and_default_port():
    # volcengine.base.Service adds Host and User-Agent; Host is signed with :80/:443 dropped.
    headers = {"Content-Type": "application/json", "Host": "search.example.com:80", "User-Agent": "volc-sdk-python"}
    r = sdk_request(headers=headers)
    assert "SignedHeaders=content-type;host;x-content-sha256;x-date," in r.headers["Authorization"]
    req = on_wire(r)
    assert req.header("host") == "search.example.com:80"
    assert verify(req).access_key_id == AK
    expect("SignatureDoesNotMatch", 401, with_headers(req, host="other.example.com"))


def test_bytes_body_and_other_key():
    body = json.dumps({"query": {"text": "郭帆"}}, ensure_ascii=False).encode("utf-8")
    r = sdk_request(body=body, ak="AKLTother", sk="other-secret")
    assert verify(on_wire(r)).access_key_id == "AKLTother"


def test_get_with_empty_body():
    r = sdk_request(method="GET", body="", headers={}, query={"q": "三体"})
    req = on_wire(r)
    assert req.body == b""
    assert verify(req).access_key_id == AK


@pytest.mark.parametrize(
    "query",
    [
        {"q": "科幻片 三体", "filter": "a+b=c&d", "x": "~-_.!*'();:@$,/?#[]%"},
        {"empty": "", "Zeta": "1", "alpha": "2", "_u": "3", "中文键": "中文值"},
        {"tags": ["b", "a", "b"], "k": "v"},
        {},
    ],
    ids=["special", "blank-and-unicode-keys", "repeated", "none"],
)
def test_query_encoding_matches_sdk(query):
    r = sdk_request(query=query)
    if any(isinstance(v, list) for v in query.values()):
        # Request.build() uses urlencode(doseq=0); a real client sends repeated keys, as here.
        body = r.body.encode("utf-8")
        prepared = requests.Request("POST", f"http://127.0.0.1:8000{PATH}", params=query, data=body).prepare()
        raw_query = urlsplit(prepared.path_url).query
        req = from_raw("POST", PATH, raw_query, r.headers, body)
    else:
        req = on_wire(r)
    assert verify(req).access_key_id == AK


def test_path_with_spaces_and_chinese():
    r = sdk_request(path="/api/v1/application/应用 1/search")
    req = on_wire(r)
    assert req.path == "/api/v1/application/应用 1/search"
    assert verify(req).access_key_id == AK


def test_from_asgi_scope_as_uvicorn_builds_it():
    r = sdk_request(query={"q": "三体 科幻", "n": "5"})
    body = r.body.encode("utf-8")
    prepared = requests.Request("POST", r.build(), headers=dict(r.headers), data=body).prepare()
    parts = urlsplit(prepared.path_url)
    scope = {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "raw_path": parts.path.encode("ascii"),
        "root_path": "",
        "query_string": parts.query.encode("ascii"),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in prepared.headers.items()],
    }
    assert verify(from_asgi_scope(scope, body)).access_key_id == AK
    del scope["raw_path"]
    assert verify(from_asgi_scope(scope, body), now=signed_at(r)).access_key_id == AK


def test_clock_skew_window_both_ways():
    r = sdk_request()
    req = on_wire(r)
    t = signed_at(r)
    assert verify(req, now=t + timedelta(seconds=900)).access_key_id == AK
    assert verify(req, now=t - timedelta(seconds=900)).access_key_id == AK
    assert verify(req, now=(t + timedelta(seconds=60)).replace(tzinfo=None)).access_key_id == AK


# --------------------------------------------------------------------------- rejected


def test_wrong_secret():
    err = expect("SignatureDoesNotMatch", 401, on_wire(sdk_request(sk="not-the-secret")))
    assert "does not match" in err.message


def test_unknown_access_key():
    err = expect("InvalidAccessKey", 401, on_wire(sdk_request(ak="AKLTnobody")))
    assert "AKLTnobody" in err.message


def test_tampered_body():
    req = on_wire(sdk_request())
    tampered = SignedRequest(req.method, req.path, req.query, req.headers, req.body.replace("三体".encode(), b"x"))
    err = expect("SignatureDoesNotMatch", 401, tampered)
    assert "X-Content-Sha256" in err.message
    # Even when the attacker also fixes up X-Content-Sha256, the signature covers that header.
    fixed = with_headers(tampered, x_content_sha256=hashlib.sha256(tampered.body).hexdigest())
    expect("SignatureDoesNotMatch", 401, fixed)


def test_tampered_path():
    req = on_wire(sdk_request())
    expect(
        "SignatureDoesNotMatch",
        401,
        SignedRequest(req.method, PATH.replace("app1", "app2"), req.query, req.headers, req.body),
    )


def test_tampered_method():
    req = on_wire(sdk_request())
    expect("SignatureDoesNotMatch", 401, SignedRequest("PUT", req.path, req.query, req.headers, req.body))


@pytest.mark.parametrize(
    "query",
    [(("trace", "2"),), (("trace", "1"), ("extra", "x")), ()],
    ids=["changed-value", "added-param", "removed-param"],
)
def test_tampered_query(query):
    req = on_wire(sdk_request())
    expect("SignatureDoesNotMatch", 401, SignedRequest(req.method, req.path, query, req.headers, req.body))


def test_tampered_signed_header():
    req = on_wire(sdk_request())
    expect("SignatureDoesNotMatch", 401, with_headers(req, content_type="text/plain"))
    err = expect("SignatureDoesNotMatch", 401, with_headers(req, content_type=None))
    assert "content-type" in err.message


def test_wrong_service():
    err = expect("InvalidCredential", 401, on_wire(sdk_request(service="iam")))
    assert "service 'iam'" in err.message


def test_wrong_region():
    err = expect("InvalidCredential", 401, on_wire(sdk_request(region="cn-shanghai")))
    assert "region 'cn-shanghai'" in err.message


def test_expired_and_future_dates():
    r = sdk_request()
    req = on_wire(r)
    err = expect("InvalidTimestamp", 403, req, now=signed_at(r) + timedelta(seconds=901))
    assert "expired" in err.message
    err = expect("InvalidTimestamp", 403, req, now=signed_at(r) - timedelta(hours=1))
    assert "future" in err.message
    expect("InvalidTimestamp", 403, req, now=signed_at(r) + timedelta(seconds=61), max_skew_s=60)


def test_replay_rejected_on_second_use():
    guard = ReplayGuard()
    r = sdk_request()
    assert verify(on_wire(r), replay=guard).access_key_id == AK
    err = expect("ReplayedRequest", 403, on_wire(r), replay=guard)
    assert "already" in err.message
    # A fresh signature of the same content (a later second) is accepted.
    r2 = sdk_request(query={"trace": "2"})
    assert verify(on_wire(r2), replay=guard).access_key_id == AK
    assert len(guard) == 2


def test_failed_verification_is_not_remembered():
    guard = ReplayGuard()
    r = sdk_request()
    req = on_wire(r)
    expect("InvalidAccessKey", 401, req, replay=guard, lookup=lambda ak: None)
    assert len(guard) == 0
    assert verify(req, replay=guard).access_key_id == AK


def test_replay_guard_expires_and_bounds_memory():
    guard = ReplayGuard(max_entries=2)
    assert guard.remember("a", expires_at=100.0, now=0.0)
    assert not guard.remember("a", expires_at=100.0, now=50.0)
    assert guard.remember("b", expires_at=200.0, now=50.0)
    with pytest.raises(ReplayCacheFull):
        guard.remember("c", expires_at=200.0, now=60.0)
    # after "a" expires there is room again, and "a" may be seen anew
    assert guard.remember("a", expires_at=300.0, now=150.0)
    assert len(guard) == 2
    with pytest.raises(ValueError):
        ReplayGuard(max_entries=0)


def test_full_replay_guard_fails_closed():
    guard = ReplayGuard(max_entries=1)
    r = sdk_request()
    far = signed_at(r).timestamp() + 10_000
    assert guard.remember("someone-else", expires_at=far, now=0.0)
    expect("ServiceUnavailable", 503, on_wire(r), replay=guard)


def test_replay_guard_is_thread_safe():
    guard = ReplayGuard()
    r = sdk_request()
    req = on_wire(r)
    results: list[str] = []

    def attempt():
        try:
            verify(req, replay=guard)
            results.append("ok")
        except SignatureError as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ReplayedRequest"] * 15 + ["ok"]


def test_missing_authorization():
    req = with_headers(on_wire(sdk_request()), authorization=None)
    assert not is_volc_signed(req.headers)
    expect("MissingAuthenticationToken", 401, req)


def test_missing_x_date():
    err = expect("MissingRequestInfo", 401, with_headers(on_wire(sdk_request()), x_date=None))
    assert "X-Date" in err.message


@pytest.mark.parametrize("x_date", ["2025-01-01T00:00:00Z", "20250101T000000", "20251301T000000Z"])
def test_malformed_x_date(x_date):
    expect("InvalidTimestamp", 403, with_headers(on_wire(sdk_request()), x_date=x_date))


def test_credential_date_must_match_x_date():
    r = sdk_request()
    req = on_wire(r)
    day = signed_at(r) + timedelta(days=1)
    expect("InvalidCredential", 401, with_headers(req, x_date=day.strftime("%Y%m%dT%H%M%SZ")), now=day)


def test_session_token_not_supported():
    r = sdk_request(session_token="sts-token")
    assert r.headers["X-Security-Token"] == "sts-token"
    expect("InvalidSecretToken", 401, on_wire(r))


def _auth(req: SignedRequest) -> str:
    return req.headers["authorization"]


@pytest.mark.parametrize(
    ("mutate", "code", "words"),
    [
        (lambda a: a.replace("HMAC-SHA256", "HMAC-SHA1", 1), "InvalidAuthorization", "algorithm"),
        (lambda a: a.replace("HMAC-SHA256 ", "Bearer ", 1), "InvalidAuthorization", "algorithm"),
        (lambda a: a.split(", Signature=")[0], "MissingSignature", "Signature"),
        (lambda a: a.split(", Signature=")[0] + ", Signature=", "MissingSignature", "Signature"),
        (lambda a: a[:-1], "InvalidAuthorization", "64"),
        (lambda a: a[:-64] + a[-64:].upper(), "InvalidAuthorization", "64"),
        (lambda a: a.replace("SignedHeaders=", "Headers=", 1), "InvalidAuthorization", "unknown component"),
        (lambda a: a.replace(", SignedHeaders=", ", SignedHeaders", 1), "InvalidAuthorization", "no '='"),
        (lambda a: a + ", Signature=" + "0" * 64, "InvalidAuthorization", "repeats"),
        (lambda a: a.replace(", ", ",, ", 1), "InvalidAuthorization", "empty component"),
        (
            lambda a: a.replace("content-type;x-content-sha256", "x-content-sha256;content-type", 1),
            "InvalidAuthorization",
            "sorted",
        ),
        (lambda a: a.replace("content-type;", "Content-Type;", 1), "InvalidAuthorization", "lower-case"),
        (
            lambda a: a.replace("content-type;x-content-sha256;x-date", "content-type", 1),
            "MissingRequestInfo",
            "x-date",
        ),
        (lambda a: a.replace("/request,", "/req,", 1), "InvalidCredential", "request"),
        (lambda a: a.replace(f"Credential={AK}/", "Credential=", 1), "InvalidCredential", "AccessKeyId"),
        (lambda a: a.replace(f"Credential={AK}/2", "Credential=/2", 1), "InvalidCredential", "AccessKeyId"),
        (lambda a: a.replace(f"{AK}/20", f"{AK}/x0", 1), "InvalidCredential", "YYYYMMDD"),
        (lambda a: a.replace(f"/{REGION}/", "//", 1), "InvalidCredential", "empty"),
        (lambda a: "HMAC-SHA256", "InvalidAuthorization", ""),
    ],
)
def test_malformed_authorization(mutate, code, words):
    req = on_wire(sdk_request())
    err = expect(code, 401, with_headers(req, authorization=mutate(_auth(req))))
    assert words in err.message


def test_signed_header_not_sent():
    # The client signed a header that never reached the server (e.g. dropped by a proxy).
    r = sdk_request(headers={"Content-Type": "application/json", "X-Custom": "v"})
    req = on_wire(r)
    assert verify(req, replay=None).access_key_id == AK
    err = expect("SignatureDoesNotMatch", 401, with_headers(req, x_custom=None))
    assert "x-custom" in err.message


def test_is_volc_signed():
    assert is_volc_signed({"Authorization": "HMAC-SHA256 Credential=a"})
    assert is_volc_signed([(b"authorization", b"HMAC-SHA256 x")])
    assert not is_volc_signed({"authorization": "Bearer key"})
    assert not is_volc_signed({})
