"""Mapping errors to HTTP: one JSON error shape everywhere, never an HTML page.

    {"request_id": "...",
     "error": {"code": "InvalidArgument", "message": "page_size: must be in [1, 10]", "field": "page_size"},
     "ResponseMetadata": {"RequestId": "...", "Error": {"Code": "InvalidArgument", "Message": "..."}}}

`error` is mmsearch's own shape; `ResponseMetadata.Error` is where Volcengine's OpenAPI clients look.

The IQS paths (`/search/multimodal`, the SDK's `/linked-retrieval/...`) answer every error, the edge's own
(404, 405, 413, 415, 500) included, in the shape the Alibaba SDK reads into `TeaException`:

    {"requestId": "...", "code": "InvalidParameter", "message": "query: must be 1 to 50 characters, got 51"}

An unexpected exception becomes a 500 in the path's shape, logged once (logger `mmsearch.api`, with the
request id and the traceback); `RequestContext` then keeps the connection usable."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmsearch.api.routing import methods_for
from mmsearch.errors import AlreadyExists, InvalidArgument, MMSearchError, NotFound, Unavailable
from mmsearch.unicode import scrub_all

STATUS: dict[type[MMSearchError], int] = {
    InvalidArgument: 400, NotFound: 404, AlreadyExists: 409, Unavailable: 503,
}

log = logging.getLogger("mmsearch.api")

IQS_HTTP_PATH = "/search/multimodal"
IQS_SDK_PATH = "/linked-retrieval/linked-retrieval-entry/v1/iqs/multimodal/unified"
_IQS_PREFIXES = (IQS_HTTP_PATH + "/", "/linked-retrieval/")

# IQS-style codes for what the edge refuses by HTTP status (Alibaba Cloud's common codes where one exists).
IQS_STATUS_CODES: dict[int, str] = {
    400: "InvalidParameter", 401: "MissingAuthorization", 404: "InvalidAction.NotFound",
    405: "UnsupportedHTTPMethod", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType",
    500: "InternalError", 503: "ServiceUnavailable",
}
# mmsearch's own codes, renamed to the IQS style where they differ.
IQS_CODES: dict[str, str] = {InvalidArgument.code: "InvalidParameter"}


class ApiError(MMSearchError):
    """An error that only exists at the HTTP edge (auth, limits), with its own status and code."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.code = code


def status_of(exc: MMSearchError) -> int:
    status = getattr(exc, "status", None)  # ApiError, SignatureError
    if isinstance(status, int):
        return status
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


def is_iqs_path(path: str) -> bool:
    """Whether errors on `path` take the IQS shape (its two endpoints and anything under them)."""
    return path in (IQS_HTTP_PATH, IQS_SDK_PATH) or path.startswith(_IQS_PREFIXES)


def iqs_code(exc: MMSearchError) -> str:
    """The IQS-style code of an error: the spec's and the edge's own codes as they are, ours renamed."""
    if isinstance(getattr(exc, "status", None), int):  # IqsError, ApiError, SignatureError: already chosen
        return exc.code
    return IQS_CODES.get(exc.code, exc.code)


def iqs_body(rid: str, code: str, message: str) -> dict[str, str]:
    return scrub_all({"requestId": rid, "code": code, "message": message})  # messages may quote what was sent


def iqs_response(rid: str, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(iqs_body(rid, code, message), status_code=status,
                        headers={**(headers or {}), "x-acs-request-id": rid})


def shaped_error(request: Request, status: int, code: str, message: str, field: str | None = None,
                 details: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error in the shape of the API the path belongs to; `code` is mmsearch's, renamed for IQS."""
    rid = request_id(request)
    if is_iqs_path(request.url.path):
        return iqs_response(rid, status, IQS_CODES.get(code) or IQS_STATUS_CODES.get(status, code), message, headers)
    return error_response(rid, status, code, message, field, details, headers)


def error_body(rid: str, code: str, message: str, field: str | None = None, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field:
        err["field"] = field
    if details:
        err["details"] = details
    return scrub_all({"request_id": rid, "error": err,  # messages and fields may quote what was sent
                      "ResponseMetadata": {"RequestId": rid, "Error": {"Code": code, "Message": message}}})


def error_response(rid: str, status: int, code: str, message: str, field: str | None = None,
                   details: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(rid, code, message, field, details), status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


async def on_mmsearch_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MMSearchError)
    retry = getattr(exc, "retry_after", None)  # Overloaded: busy now, the same request may pass later
    headers = {"Retry-After": str(retry)} if isinstance(retry, int) else None
    if is_iqs_path(request.url.path):
        return iqs_response(request_id(request), status_of(exc), iqs_code(exc), exc.message, headers)
    return error_response(request_id(request), status_of(exc), exc.code, exc.message, exc.field, exc.details,
                          headers)


def _rule(error: Any) -> str:
    if error.get("type") == "string_unicode":  # pydantic meets a key or value with a lone surrogate
        return "not valid Unicode (a lone UTF-16 surrogate such as \\ud800); send UTF-8 text"
    return str(error.get("msg", ""))


def describe_validation(errs: Any) -> tuple[str, dict[str, str], list[dict[str, str]]]:
    """Pydantic's errors as (message, first problem, all problems): `field: rule`, the field as a path."""
    details = [{"field": _loc(tuple(e.get("loc", ()))), "rule": _rule(e)} for e in errs]
    first = details[0] if details else {"field": "body", "rule": "invalid request"}
    if errs and errs[0].get("type") == "json_invalid":
        first = {"field": "body", "rule": "body is not valid JSON"}
    return f"{first['field']}: {first['rule']}", first, details


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Pydantic's errors, as ours: the first problem names the field and the rule; all are in details."""
    assert isinstance(exc, RequestValidationError)
    message, first, details = describe_validation(exc.errors())
    media = media_type(request.headers.get("content-type"))
    if isinstance(exc.body, bytes | bytearray) and exc.body and media and not is_json_media_type(media):
        # FastAPI parses a body as JSON only when it is declared so (or not declared at all): say that, not
        # what pydantic makes of the raw bytes
        return shaped_error(request, 415, "UnsupportedMediaType",
                            f"Content-Type: send the body as application/json, got {media!r}", "Content-Type")
    return shaped_error(request, 400, InvalidArgument.code, message, first["field"], details)


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json` ("" when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media_type(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {400: InvalidArgument.code, 404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge",
             401: "Unauthorized"}
    code = codes.get(exc.status_code, "HttpError")
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"path: {request.url.path} is not an endpoint"
    elif exc.status_code == 400:  # FastAPI could not read the body at all (e.g. bytes that are not UTF-8)
        message = f"body: not valid JSON text in UTF-8 ({exc.detail})"
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**{k: v for k, v in (headers or {}).items() if k.lower() != "allow"},
                   "Allow": allowed_methods(request)}
    if is_iqs_path(request.url.path):
        if exc.status_code == 405:
            allowed = (headers or {}).get("Allow") or (headers or {}).get("allow") or "POST"
            message = f"method: {request.method} is not allowed on {request.url.path}; use {allowed}"
        return iqs_response(request_id(request), exc.status_code,
                            IQS_STATUS_CODES.get(exc.status_code, "InvalidParameter"), message, headers)
    field = "body" if exc.status_code in (400, 413) else None
    return error_response(request_id(request), exc.status_code, code, message, field, headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method the path has: Starlette's 405 names only the methods of the one route it tried, though
    several routes may share a path (GET and POST /admin/v1/datasets)."""
    routes = getattr(getattr(request.app, "router", None), "routes", [])
    return ", ".join(sorted(methods_for(routes, request.scope.get("path", request.url.path))))


UNEXPECTED_MESSAGE = "internal error ({}); the request id identifies it in the server log"


def log_unexpected(rid: str, method: str, path: str, exc: BaseException) -> None:
    """Log an unexpected exception once, with the request id and the traceback."""
    if getattr(exc, "_mmsearch_logged", False):
        return
    log.error("request %s: %s %s failed: %s: %s", rid, method, path, type(exc).__name__, exc,
              exc_info=(type(exc), exc, exc.__traceback__), extra={"request_id": rid})
    with contextlib.suppress(AttributeError):  # exceptions with __slots__ take no attribute
        exc._mmsearch_logged = True  # type: ignore[attr-defined]  # RequestContext must not log it again


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """The last handler (Starlette's ServerErrorMiddleware calls it, then re-raises for RequestContext)."""
    log_unexpected(request_id(request), request.method, request.url.path, exc)
    return shaped_error(request, 500, "InternalError", UNEXPECTED_MESSAGE.format(type(exc).__name__))
