"""The OpenAPI document tells the truth: no 422 (validation errors are 400), every error status an operation sends
with its API's error body, the IQS request body, security schemes, and 405s whose `Allow` lists every method of
the path. Clients are generated from this document.

The shape is checked on the document a live server serves; hand-made hostile requests (the statuses the fuzzer
in test_fuzz.py cannot reach: no credentials, duplicates, oversized and mistyped bodies) are checked against it
with schemathesis: status documented, body and headers as documented."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api_fixtures import ADMIN, Api, start, stop

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
IQS_PATHS = ("/search/multimodal", "/linked-retrieval/linked-retrieval-entry/v1/iqs/multimodal/unified")
SEARCH = "/api/v1/application/{application_id}/search"
METHODS = ("get", "post", "put", "patch", "delete")
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    a = start(tmp_path_factory.mktemp("openapi"), product_items, max_body_bytes=LIMIT)
    a.iqs_key = a.mm.catalog.accounts.create("openapi", plan="paid", credits=100).api_key  # type: ignore[attr-defined]
    yield a
    stop(a)


@pytest.fixture(scope="module")
def doc(api: Api) -> dict[str, Any]:
    r = api.client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


@pytest.fixture(scope="module")
def schema(api: Api) -> Any:
    return schemathesis.openapi.from_url(f"{api.server.url}/openapi.json", config=schemathesis.Config())


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
            if method in METHODS]


def error_ref(op: dict[str, Any], status: int) -> str | None:
    response = op["responses"].get(str(status))
    return response and response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def test_no_422_anywhere(doc):
    for path, method, op in operations(doc):
        assert "422" not in op["responses"], (method, path)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "422" not in json.dumps(doc["paths"])


def test_every_operation_lists_its_errors_with_its_api_error_body(doc):
    for path, method, op in operations(doc):
        if path in ("/healthz", "/readyz"):
            continue
        ref = "#/components/schemas/" + ("IqsErrorResponse" if path in IQS_PATHS else "ErrorResponse")
        has_input = "requestBody" in op or bool(op.get("parameters"))
        expected = {401} | ({400} if has_input else set()) | ({413} if "requestBody" in op else set())
        if path.startswith("/admin/") and "{" in path:
            expected.add(404)  # an id in the path
        for status in expected:
            assert error_ref(op, status) == ref, (method, path, status, op["responses"].get(str(status)))
        for status, response in op["responses"].items():
            assert "X-Request-Id" in response.get("headers", {}), (method, path, status)
    search = doc["paths"][SEARCH]["post"]
    assert {"400", "401", "403", "404", "413", "415", "503"} <= set(search["responses"])
    assert search["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SearchResponse")
    for path, status in [("/admin/v1/datasets", 409), ("/admin/v1/applications", 409), ("/admin/v1/accounts", 409),
                         ("/admin/v1/applications", 404), ("/admin/v1/keys", 404)]:
        assert error_ref(doc["paths"][path]["post"], status) == "#/components/schemas/ErrorResponse", (path, status)
    error = doc["components"]["schemas"]["ErrorResponse"]
    assert set(error["required"]) == {"request_id", "error", "ResponseMetadata"}
    assert doc["components"]["schemas"]["IqsErrorResponse"]["required"] == ["requestId", "code", "message"]


def test_iqs_operations_document_their_body_and_answer(doc):
    body = doc["components"]["schemas"]["MultimodalSearchBody"]
    assert body["required"] == ["query"]
    assert (body["properties"]["query"]["minLength"], body["properties"]["query"]["maxLength"]) == (1, 50)
    assert "excludeSites" in body["properties"]["advancedParams"]["anyOf"][0]["properties"]
    for path in IQS_PATHS:
        op = doc["paths"][path]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/MultimodalSearchBody"}
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/MultimodalSearchResponse")
        assert {"400", "401", "403", "404", "413", "415", "429", "503", "504"} <= set(op["responses"])
    answer = doc["components"]["schemas"]["MultimodalSearchResponse"]
    assert {"requestId", "imageItems"} <= set(answer["required"])
    assert set(doc["components"]["schemas"]["ImageItem"]["required"]) == {
        "title", "hostPageUrl", "imageUrl", "publishedTime", "width", "height"}
    items = doc["paths"]["/admin/v1/datasets/{dataset_id}/items"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(items)


def test_security_schemes_are_declared_and_referenced(doc):
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"]["scheme"] == "bearer" and schemes["ApiKey"]["bearerFormat"].startswith("mms_")
    assert schemes["IqsApiKey"]["bearerFormat"].startswith("iqs_")
    assert "HMAC-SHA256" in schemes["VolcV4"]["description"]
    assert "ACS3-HMAC-SHA256" in schemes["IqsAcs3"]["description"]
    assert schemes["AdminToken"]["scheme"] == "bearer"
    for path, method, op in operations(doc):
        names = {name for requirement in op["security"] for name in requirement}
        if path in IQS_PATHS:
            assert names == {"IqsApiKey", "IqsAcs3"}, path
        elif path.startswith("/admin/"):
            assert names == {"AdminToken", "AdminTokenHeader"}, (method, path)
        elif path.startswith("/api/"):
            assert names == {"ApiKey", "VolcV4"}, path
        elif path == "/metrics":  # the admin token, or none with MMSEARCH_METRICS_PUBLIC=true
            assert names == {"AdminToken", "AdminTokenHeader"} and {} in op["security"], path
        else:
            assert op["security"] == [], path  # liveness and readiness are open
        assert names <= set(schemes)


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/admin/v1/datasets", {"GET", "POST"}),
    ("POST", "/admin/v1/applications/shop", {"GET", "PATCH", "DELETE"}),
    ("GET", "/admin/v1/accounts/x/subkeys", {"POST"}),
    ("GET", "/api/v1/application/shop/search", {"POST"}),
    ("GET", "/search/multimodal", {"POST"}),
])
def test_405_allow_lists_every_method_of_the_path(api, method, path, allowed):
    r = api.admin.request(method, path)
    assert r.status_code == 405, r.text
    assert {m.strip() for m in r.headers["allow"].split(",")} - {"HEAD"} == allowed
    if path in IQS_PATHS:
        assert r.json()["code"] and r.json()["requestId"]
    else:
        assert r.json()["error"]["code"] == "MethodNotAllowed"


def _check(schema: Any, path: str, method: str, response: requests.Response, **case: Any) -> None:
    """The answer's status is listed for the operation, and its body and headers are as documented."""
    schema[path][method].Case(**case).validate_response(response, checks=CHECKS)


def test_hand_made_hostile_requests_get_documented_answers(api, schema):
    url, key, iqs_key = api.server.url, api.key, api.iqs_key
    bearer = {"Authorization": f"Bearer {key}"}
    search_url = f"{url}/api/v1/application/shop/search"
    body = {"dataset_id": "products", "query": {"text": "shoe"}}
    session = requests.Session()
    session.trust_env = False
    admin = {"Authorization": f"Bearer {ADMIN}"}
    cases: list[tuple[str, str, requests.Response, int]] = [
        (SEARCH, "POST", session.post(search_url, json=body), 401),
        (SEARCH, "POST", session.post(search_url, json=body, headers={"Authorization": "Bearer mms_nope"}), 401),
        (SEARCH, "POST", session.post(f"{url}/api/v1/application/nope/search", json=body, headers=bearer), 404),
        (SEARCH, "POST", session.post(search_url, json={**body, "dataset_id": "nope"}, headers=bearer), 404),
        (SEARCH, "POST", session.post(search_url, json={**body, "page_size": 0}, headers=bearer), 400),
        (SEARCH, "POST", session.post(search_url, data=b"{", headers={**bearer, "Content-Type": "application/json"}),
         400),
        (SEARCH, "POST", session.post(search_url, data=json.dumps(body), headers={**bearer,
                                                                                   "Content-Type": "text/plain"}),
         415),
        (SEARCH, "POST", session.post(search_url, json={**body, "pad": "x" * LIMIT}, headers=bearer), 413),
        (SEARCH, "POST", session.post(search_url, json=body, headers=bearer), 200),
        (IQS_PATHS[0], "POST", session.post(f"{url}{IQS_PATHS[0]}", json={"query": "狮子"}), 401),
        (IQS_PATHS[0], "POST", session.post(f"{url}{IQS_PATHS[0]}", json={"query": "狮子"},
                                            headers={"Authorization": "Bearer iqs_nope"}), 404),
        (IQS_PATHS[0], "POST", session.post(f"{url}{IQS_PATHS[0]}", json={"query": "狮" * 51},
                                            headers={"Authorization": f"Bearer {iqs_key}"}), 400),
        (IQS_PATHS[0], "POST", session.post(f"{url}{IQS_PATHS[0]}", json={"query": "狮" * LIMIT},
                                            headers={"Authorization": f"Bearer {iqs_key}"}), 413),
        (IQS_PATHS[0], "POST", session.post(f"{url}{IQS_PATHS[0]}", data=b'{"query": "lion"}', headers={
            "Authorization": f"Bearer {iqs_key}", "Content-Type": "text/plain"}), 415),
        ("/admin/v1/datasets", "GET", session.get(f"{url}/admin/v1/datasets"), 401),
        ("/admin/v1/datasets", "POST", session.post(f"{url}/admin/v1/datasets", headers=admin, json={
            "id": "products", "schema": {"fields": [{"name": "id", "type": "string", "primary_key": True}]}}), 409),
        ("/admin/v1/applications", "POST", session.post(f"{url}/admin/v1/applications", headers=admin, json={
            "id": "other", "datasets": ["nope"]}), 404),
        ("/admin/v1/jobs/{job_id}", "GET", session.get(f"{url}/admin/v1/jobs/nope", headers=admin), 404),
        ("/admin/v1/jobs", "GET", session.get(f"{url}/admin/v1/jobs", params={"limit": "x"}, headers=admin), 400),
    ]
    for path, method, response, status in cases:
        assert response.status_code == status, (method, path, response.status_code, response.text[:300])
        _check(schema, path, method, response)
