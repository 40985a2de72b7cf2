"""Mapping errors to HTTP: one JSON error shape everywhere, never an HTML page.

    {"request_id": "...",
     "error": {"code": "InvalidArgument", "message": "page_size: must be in [1, 10]", "field": "page_size"},
     "ResponseMetadata": {"RequestId": "...", "Error": {"Code": "InvalidArgument", "Message": "..."}}}

`error` is mmsearch's own shape; `ResponseMetadata.Error` is where Volcengine's OpenAPI clients look."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmsearch.errors import AlreadyExists, InvalidArgument, MMSearchError, NotFound, Unavailable

STATUS: dict[type[MMSearchError], int] = {
    InvalidArgument: 400, NotFound: 404, AlreadyExists: 409, Unavailable: 503,
}


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


def error_body(rid: str, code: str, message: str, field: str | None = None, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field:
        err["field"] = field
    if details:
        err["details"] = details
    return {"request_id": rid, "error": err,
            "ResponseMetadata": {"RequestId": rid, "Error": {"Code": code, "Message": message}}}


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
    return error_response(request_id(request), status_of(exc), exc.code, exc.message, exc.field, exc.details)


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Pydantic's errors, as ours: the first problem names the field and the rule; all are in details."""
    assert isinstance(exc, RequestValidationError)
    errs = exc.errors()
    details = [{"field": _loc(tuple(e.get("loc", ()))), "rule": e.get("msg", "")} for e in errs]
    first = details[0] if details else {"field": "body", "rule": "invalid request"}
    if errs and errs[0].get("type") == "json_invalid":
        first = {"field": "body", "rule": "body is not valid JSON"}
    message = f"{first['field']}: {first['rule']}"
    return error_response(request_id(request), 400, InvalidArgument.code, message, first["field"], details)


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 401: "Unauthorized"}
    code = codes.get(exc.status_code, "HttpError")
    message = str(exc.detail) if exc.status_code != 404 else f"path: {request.url.path} is not an endpoint"
    field = "body" if exc.status_code == 413 else None
    return error_response(request_id(request), exc.status_code, code, message, field,
                          headers=getattr(exc, "headers", None))


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    return error_response(request_id(request), 500, "InternalError",
                          f"internal error ({type(exc).__name__}); the request id identifies it in the server log")
