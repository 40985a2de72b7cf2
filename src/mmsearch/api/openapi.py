"""The OpenAPI document at `/openapi.json`, made to tell the truth about what the server sends.

FastAPI's generated document declares 422 for every operation with parameters (mmsearch answers 400), knows
nothing of the errors raised by dependencies and middleware (401/403/404/409/413/503), has no security schemes,
and cannot see the request bodies of routes that read raw bytes (IQS, which verifies signatures over the exact
bytes, and item uploads). Clients are generated from this document, so `build` post-processes FastAPI's output
once, generically, per API face:

- each operation lists the statuses it can really send, each error with its API's body schema
  (`ErrorResponse` for AI Search and management, `IqsErrorResponse` for IQS);
- 413 wherever a request body is accepted (the body limit is enforced for every path), 415 where FastAPI
  parses the body as JSON;
- security schemes (bearer keys, Volcengine V4, ACS3-HMAC-SHA256, the admin token), referenced per operation;
- the IQS request and success bodies, and the AI Search success body.

405 is not listed per operation: it is only sent for methods an operation does not have; its `Allow` header
lists every method of the path (see `errors.on_http_error`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from mmsearch.api import admin, iqs
from mmsearch.api.routing import flat_routes

JSON = "application/json"
REF = "#/components/schemas/"

# -- component schemas -------------------------------------------------------------------------------------------

ERROR_RESPONSE: dict[str, Any] = {
    "type": "object",
    "title": "ErrorResponse",
    "description": "Every AI Search and management error. `error` is mmsearch's own shape; "
    "`ResponseMetadata.Error` is where Volcengine's OpenAPI clients look.",
    "required": ["request_id", "error", "ResponseMetadata"],
    "properties": {
        "request_id": {"type": "string", "description": "also sent as the X-Request-Id header"},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["InvalidArgument"]},
                "message": {"type": "string", "description": "'<field>: <rule>'",
                            "examples": ["page_size: must be in [1, 10]"]},
                "field": {"type": "string", "description": "the request field at fault, when there is one"},
                "details": {"description": "more about the error, e.g. every invalid field as {field, rule}"},
            },
        },
        "ResponseMetadata": {
            "type": "object",
            "required": ["RequestId", "Error"],
            "properties": {
                "RequestId": {"type": "string"},
                "Error": {
                    "type": "object",
                    "required": ["Code", "Message"],
                    "properties": {"Code": {"type": "string"}, "Message": {"type": "string"}},
                },
            },
        },
    },
}

IQS_ERROR_RESPONSE: dict[str, Any] = {
    "type": "object",
    "title": "IqsErrorResponse",
    "description": "Every IQS MultimodalSearch error, in the shape the official SDK reads into TeaException "
    "(`e.code`, `e.message`, `e.data`).",
    "required": ["requestId", "code", "message"],
    "properties": {
        "requestId": {"type": "string"},
        "code": {"type": "string", "examples": ["Retrieval.Arrears", "InvalidParameter"]},
        "message": {"type": "string", "examples": ["Please recharge first."]},
    },
}

IMAGE_ITEM: dict[str, Any] = {
    "type": "object",
    "title": "ImageItem",
    "required": ["title", "hostPageUrl", "imageUrl", "publishedTime", "width", "height"],
    "properties": {
        "title": {"type": "string"},
        "hostPageUrl": {"type": "string", "description": "the page the image was found on"},
        "imageUrl": {"type": "string"},
        "publishedTime": {"type": "string", "description": "when the page was published (or crawled)"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
    },
}

IQS_RESPONSE: dict[str, Any] = {
    "type": "object",
    "title": "MultimodalSearchResponse",
    "required": ["requestId", "imageItems", "searchInformation", "queryContext"],
    "properties": {
        "requestId": {"type": "string"},
        "imageItems": {"type": "array", "items": {"$ref": REF + "ImageItem"}},
        "searchInformation": {
            "type": "object", "required": ["searchTime"],
            "properties": {"searchTime": {"type": "integer", "description": "milliseconds"}},
        },
        "queryContext": {
            "type": "object", "required": ["originalQuery"],
            "properties": {"originalQuery": {"type": "object", "required": ["query"],
                                             "properties": {"query": {"type": "string"}}}},
        },
    },
}

_SPELL: dict[str, Any] = {
    "type": "object", "required": ["mode"],
    "properties": {"mode": {"type": "string"}, "corrected_query": {"type": "string"}},
}

SEARCH_RESPONSE: dict[str, Any] = {
    "type": "object",
    "title": "SearchResponse",
    "description": "The spec's table puts spell_correction and total_items beside `result`, its example inside "
    "it: both are sent.",
    "required": ["request_id", "result", "spell_correction", "total_items"],
    "properties": {
        "request_id": {"type": "string"},
        "result": {
            "type": "object",
            "required": ["search_results", "total_items", "spell_correction"],
            "properties": {
                "search_results": {"type": "array", "items": {"$ref": REF + "SearchResultItem"}},
                "total_items": {"type": "integer", "minimum": 0},
                "spell_correction": _SPELL,
            },
        },
        "spell_correction": _SPELL,
        "total_items": {"type": "integer", "minimum": 0},
    },
}

SEARCH_RESULT_ITEM: dict[str, Any] = {
    "type": "object",
    "title": "SearchResultItem",
    "required": ["_id", "display_fields", "score", "recall_info", "rerank_info"],
    "properties": {
        "_id": {"type": ["string", "integer"], "description": "the item's primary key"},
        "display_fields": {"type": "object", "description": "the item's fields (output_fields, if given)"},
        "score": {"type": "number"},
        "recall_info": {"type": "array", "items": {
            "type": "object", "required": ["recall_reason", "recall_score"],
            "properties": {"recall_reason": {"type": "string", "examples": ["text", "vlm"]},
                           "recall_score": {"type": "number"}},
        }},
        "rerank_info": {"type": "object", "required": ["is_reranked"],
                        "properties": {"is_reranked": {"type": "boolean"}, "rerank_score": {"type": "number"}}},
    },
}

ITEMS_BODY: dict[str, Any] = {
    "required": True,
    "description": "A JSON array of items, `{\"items\": [...]}`, or NDJSON (one item per line). Each item is an "
    "object with the dataset's fields; an invalid item is rejected and reported in the job, the rest import.",
    "content": {
        JSON: {"schema": {"anyOf": [
            {"type": "array", "items": {"type": "object"}},
            {"type": "object", "required": ["items"],
             "properties": {"items": {"type": "array", "items": {"type": "object"}}}},
        ]}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "ApiKey": {
        "type": "http", "scheme": "bearer", "bearerFormat": "mms_…",
        "description": "An application API key (`mmsearch key create`): `Authorization: Bearer mms_…`.",
    },
    "VolcV4": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "Volcengine V4 signature with the key's AK/SK: `Authorization: HMAC-SHA256 "
        "Credential=AK/YYYYMMDD/region/service/request, SignedHeaders=…, Signature=…` plus `X-Date` "
        "(and `X-Content-Sha256`), as the volcengine SDK signs.",
    },
    "IqsApiKey": {
        "type": "http", "scheme": "bearer", "bearerFormat": "iqs_…",
        "description": "An IQS account API key (`mmsearch account create`): `Authorization: Bearer iqs_…`.",
    },
    "IqsAcs3": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "ACS3-HMAC-SHA256 with the account's AccessKey pair, as the official SDK "
        "`alibabacloud_iqs20241111` signs: `Authorization: ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=…,"
        "Signature=…` plus `x-acs-date`, `x-acs-signature-nonce`, `x-acs-content-sha256`.",
    },
    "AdminToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "mmsa_…",
        "description": "The admin token (`MMSEARCH_ADMIN_TOKEN`, or the one kept in MMSEARCH_HOME/admin_token).",
    },
    "AdminTokenHeader": {
        "type": "apiKey", "in": "header", "name": "X-Admin-Token",
        "description": "The admin token in its own header, for clients that cannot send Authorization.",
    },
}

REQUEST_ID_HEADER: dict[str, Any] = {
    "X-Request-Id": {"description": "the request's id, also in the body and the server log",
                     "required": True, "schema": {"type": "string"}},
}


def _error_response(description: str, schema: str, status: int = 400) -> dict[str, Any]:
    headers = copy.deepcopy(REQUEST_ID_HEADER)
    if status in (429, 503):
        headers["Retry-After"] = {"description": "seconds to wait before retrying, when the server knows",
                                  "required": False, "schema": {"type": "string"}}
    return {"description": description, "headers": headers, "content": {JSON: {"schema": {"$ref": REF + schema}}}}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "headers": copy.deepcopy(REQUEST_ID_HEADER),
            "content": {JSON: {"schema": schema}}}


UNLISTED = (
    "\n\nNot listed per operation: 405 for a method a path does not have (its `Allow` header lists those it "
    "has), 404 for a path that is not an endpoint, and 500 for an unexpected failure (a defect: logged with the "
    "request id). Each has the path's error body: `IqsErrorResponse` on the IQS paths, `ErrorResponse` elsewhere."
)

# -- the API faces -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    """One API face: who may call it, its error body, and the errors every operation of it can send."""

    security: list[dict[str, list[str]]]
    error_schema: str
    errors: dict[int, str]
    body_errors: dict[int, str] = field(default_factory=dict)  # only where a request has a body or parameters


AI_SEARCH = Face(
    security=[{"ApiKey": []}, {"VolcV4": []}],
    error_schema="ErrorResponse",
    errors={
        400: "invalid request (InvalidArgument): the message names the field and the rule",
        401: "missing or invalid credentials (MissingAuthorization, InvalidApiKey, V4 signature errors)",
        403: "the key may not search this application (AccessDenied), or a stale or replayed V4 signature",
        404: "unknown application or dataset (NotFound)",
        413: "body over the limit (PayloadTooLarge, MMSEARCH_MAX_BODY_BYTES)",
        503: "an image query without an image model, or every image decode slot busy (ServiceUnavailable, "
        "with Retry-After)",
    },
)

IQS = Face(
    security=[{"IqsApiKey": []}, {"IqsAcs3": []}],
    error_schema="IqsErrorResponse",
    errors={
        400: "invalid request (InvalidParameter): the message names the field",
        401: "no credentials (MissingAuthorization)",
        403: "account not active, out of credits, trial expired, sub-account not allowed, or an ACS3 signature "
        "that cannot be accepted (Retrieval.*, IncompleteSignature, SignatureDoesNotMatch, …)",
        404: "unknown key (InvalidAccessKeyId.NotFound)",
        413: "body over the limit (MMSEARCH_MAX_BODY_BYTES)",
        415: "a Content-Type other than JSON (UnsupportedMediaType); a body without one is read as JSON",
        429: "over the key's QPS or the trial's queries per day (Retrieval.Throttling.User, "
        "Retrieval.TestUserQueryPerDayExceeded)",
        503: "no web image corpus yet (Retrieval.IndexNotReady), or the nonce guard is full",
        504: "the search did not finish in time (Retrieval.Timeout; not charged)",
    },
)

ADMIN = Face(
    security=[{"AdminToken": []}, {"AdminTokenHeader": []}],
    error_schema="ErrorResponse",
    errors={401: "missing or invalid admin token (MissingAuthorization, InvalidAdminToken)"},
    body_errors={400: "invalid request (InvalidArgument): the message names the field and the rule"},
)

OPS = Face(security=[], error_schema="ErrorResponse", errors={})

# /metrics: the admin token, or nothing when MMSEARCH_METRICS_PUBLIC=true (`{}`: no credential)
METRICS = Face(security=[*ADMIN.security, {}], error_schema="ErrorResponse",
               errors={401: "missing or invalid admin token (MissingAuthorization, InvalidAdminToken), unless "
                       "MMSEARCH_METRICS_PUBLIC=true"})

# Errors only some operations send, beyond their face's: (method, path) -> {status: description}.
EXTRA_ERRORS: dict[tuple[str, str], dict[int, str]] = {
    ("post", "/admin/v1/datasets"): {409: "a dataset with this id exists (AlreadyExists)"},
    ("post", "/admin/v1/applications"): {404: "a listed dataset does not exist (NotFound)",
                                         409: "an application with this id exists (AlreadyExists)"},
    ("post", "/admin/v1/keys"): {404: "a listed application does not exist (NotFound)"},
    ("post", "/admin/v1/accounts"): {409: "an account with this name exists (AlreadyExists)"},
}

READY: dict[str, Any] = {
    "type": "object", "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ready", "not ready"]}},
    "description": "also catalog, store, model, channels and ocr, each with its own status",
}

# Responses in a shape of their own: (method, path) -> {status: response}.
EXTRA_RESPONSES: dict[tuple[str, str], dict[int, dict[str, Any]]] = {
    ("get", "/readyz"): {
        200: _json_response("ready", READY),
        503: _json_response("not ready: the catalog or the store cannot be used", READY),
    },
    ("get", "/metrics"): {
        200: {"description": "Prometheus text exposition format 0.0.4", "headers": copy.deepcopy(REQUEST_ID_HEADER),
              "content": {"text/plain": {"schema": {"type": "string"}}}},
    },
}

PATH_ID_404 = "an id in the path names nothing (NotFound)"


def face_of(path: str, iqs_paths: set[str]) -> Face:
    if path in iqs_paths:
        return IQS
    if path.startswith("/admin/"):
        return ADMIN
    if path.startswith("/api/"):
        return AI_SEARCH
    if path == "/metrics":
        return METRICS
    return OPS


def iqs_request_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """`MultimodalSearchBody` as the handler checks it (it parses the raw bytes itself, after authentication)."""
    schema = iqs.MultimodalSearchBody.model_json_schema(ref_template=REF + "{model}")
    defs = schema.pop("$defs", {})
    props = schema.setdefault("properties", {})
    props["query"] = {
        **props.get("query", {}), "type": "string", "minLength": 1, "maxLength": iqs.MAX_QUERY_CHARS,
        "pattern": r"\S",
        "description": f"the text query: 1 to {iqs.MAX_QUERY_CHARS} characters once surrounding spaces are removed",
    }
    props["advancedParams"] = {
        "anyOf": [{
            "type": "object",
            "properties": {"excludeSites": {
                "type": "string",
                "description": "comma-separated hosts; each excludes that host and its subdomains; at most "
                "MMSEARCH_IQS_MAX_EXCLUDE_SITES hosts (1,024 by default)",
                "examples": ["www.360doc.com,weibo.com"],
            }},
        }, {"type": "null"}],
        "description": "advanced parameters; unknown keys are ignored",
    }
    schema["required"] = ["query"]
    return schema, defs


def _request_body_ops(doc: dict[str, Any], paths: set[str], body: dict[str, Any], method: str = "post") -> None:
    for path in paths:
        op = doc["paths"].get(path, {}).get(method)
        if op is not None and "requestBody" not in op:
            op["requestBody"] = copy.deepcopy(body)


def _endpoint_paths(api: FastAPI, endpoint: Any) -> set[str]:
    return {r.path for r in flat_routes(api.routes) if getattr(r, "endpoint", None) is endpoint}


def build(api: FastAPI) -> dict[str, Any]:
    """FastAPI's document, corrected: see the module doc."""
    doc = get_openapi(title=api.title, version=api.version, openapi_version=api.openapi_version,
                      description=api.description, routes=api.routes, tags=api.openapi_tags, servers=api.servers)
    doc["info"]["description"] = (doc["info"].get("description") or "") + UNLISTED
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    iqs_body, iqs_defs = iqs_request_schema()
    schemas.update(iqs_defs)
    schemas.update({
        "ErrorResponse": ERROR_RESPONSE, "IqsErrorResponse": IQS_ERROR_RESPONSE, "ImageItem": IMAGE_ITEM,
        "MultimodalSearchBody": iqs_body, "MultimodalSearchResponse": IQS_RESPONSE,
        "SearchResponse": SEARCH_RESPONSE, "SearchResultItem": SEARCH_RESULT_ITEM,
    })
    components["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)

    # bodies FastAPI parses as JSON (it refuses another media type with 415); raw-byte bodies are added below
    parsed = {(p, m) for p, item in doc.get("paths", {}).items() for m, op in item.items() if "requestBody" in op}
    iqs_paths = _endpoint_paths(api, iqs.handle)
    _request_body_ops(doc, iqs_paths, {
        "required": True, "description": "read as raw bytes: signatures cover the exact body",
        "content": {JSON: {"schema": {"$ref": REF + "MultimodalSearchBody"}}},
    })
    _request_body_ops(doc, _endpoint_paths(api, admin.upsert_items), ITEMS_BODY)

    for path, item in doc.get("paths", {}).items():
        face = face_of(path, iqs_paths)
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            _fix_operation(path, method, op, face, json_parsed=(path, method) in parsed)
    return doc


def _fix_operation(path: str, method: str, op: dict[str, Any], face: Face, json_parsed: bool) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    responses.pop("422", None)
    for status, resp in responses.items():  # what FastAPI generated: add the request id header
        if status.startswith("2"):
            resp.setdefault("headers", {}).update(copy.deepcopy(REQUEST_ID_HEADER))
    op["security"] = copy.deepcopy(face.security)
    if face is IQS:
        responses["200"] = _json_response("the images found", {"$ref": REF + "MultimodalSearchResponse"})
    elif face is AI_SEARCH and method == "post" and "200" in responses:
        responses["200"] = _json_response("the page of results", {"$ref": REF + "SearchResponse"})

    has_body = "requestBody" in op
    has_params = bool(op.get("parameters")) or has_body
    errors = dict(face.errors)
    if has_params:
        errors.update({s: d for s, d in face.body_errors.items() if s not in errors})
    if not has_body:
        errors.pop(413, None)
    elif face is not OPS:
        errors.setdefault(413, "body over the limit (PayloadTooLarge, MMSEARCH_MAX_BODY_BYTES / "
                               "MMSEARCH_MAX_IMPORT_BODY_BYTES for item uploads)")
    if json_parsed:
        errors.setdefault(415, "the body is not sent as application/json (UnsupportedMediaType)")
    if face is ADMIN and re.search(r"\{[^}]+\}", path):
        errors.setdefault(404, PATH_ID_404)
    for status, description in EXTRA_ERRORS.get((method, path), {}).items():
        errors.setdefault(status, description)
    for status, description in sorted(errors.items()):
        responses[str(status)] = _error_response(description, face.error_schema, status)
    for status, response in EXTRA_RESPONSES.get((method, path), {}).items():
        responses[str(status)] = copy.deepcopy(response)
    op["responses"] = dict(sorted(responses.items()))


def install(api: FastAPI) -> None:
    """Serve `build(api)` at /openapi.json (computed once, on first request)."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = build(api)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
