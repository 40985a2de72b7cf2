"""Every response gets a request id; bodies over the limit are refused with 413 before being read whole; an
exception that escapes the app never takes the connection with it.

Starlette's ServerErrorMiddleware sends the 500 (through `errors.on_unexpected`) and then re-raises, and uvicorn
closes a keep-alive connection when the app raises, without `Connection: close`. RequestContext wraps the
whole app: it swallows an exception that comes after a complete response (so the connection stays usable),
answers a 500 in the path's API shape when nothing was sent yet, and lets uvicorn close the connection only
when a response was cut off half-way (there is no other honest way to end it).

When a request ends, however it ends (answered by the app, refused here with 413, a 500 sent here), the
`observer` gets the scope, the status sent and the seconds until the last byte: api/metrics.py counts it and
writes the access log line. It runs after the response is sent, so it adds nothing to the client's latency."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException

from mmsearch.api.errors import (
    IQS_STATUS_CODES,
    UNEXPECTED_MESSAGE,
    error_body,
    iqs_body,
    is_iqs_path,
    log_unexpected,
)

Scope = dict[str, Any]
Message = dict[str, Any]
Observer = Callable[[Scope, int, float], None]
log = logging.getLogger("mmsearch.api")


class BodyTooLarge(StarletteHTTPException):
    """An HTTPException, so FastAPI's body parsing re-raises it instead of calling it a parse error (400).
    The rest of the body is never read, so the connection cannot be reused: the answer says `close`."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: larger than the limit of {limit} bytes", headers={"Connection": "close"})


class RequestContext:
    """Pure ASGI (no BaseHTTPMiddleware): streams stay streams, and the limit is checked on the
    Content-Length header first and then on the bytes actually received."""

    def __init__(self, app: Any, limit_for: Callable[[str], int], observer: Observer | None = None) -> None:
        self.app = app
        self.limit_for = limit_for
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.observer is None:
            await self._handle(scope, receive, send, [0, 0.0])
            return
        began = time.perf_counter()
        ended = [500, 0.0]  # status sent (500 if none: uvicorn then answers 500 itself), time of the last byte
        try:
            await self._handle(scope, receive, send, ended)
        finally:
            try:
                self.observer(scope, ended[0], (ended[1] or time.perf_counter()) - began)
            except Exception:  # counting must never fail a request
                log.exception("request observer failed")

    async def _handle(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any],
                      ended: list[Any]) -> None:
        rid = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = rid
        path = scope.get("path", "")
        limit = self.limit_for(path)
        started = finished = False

        async def send_with_id(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
                ended[0] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
                await send(message)
                ended[1] = time.perf_counter()
                return
            await send(message)

        length = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(send_with_id, rid, limit, path)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge:
            if not started:
                await self._too_large(send_with_id, rid, limit, path)
        except Exception as exc:
            log_unexpected(rid, scope.get("method", ""), path, exc)
            if finished:
                return  # the 500 (or whatever was answered) is complete: keep the connection
            if started:
                raise  # cut off half-way: uvicorn closes the connection, the only honest end
            message = UNEXPECTED_MESSAGE.format(type(exc).__name__)
            await self._send_json(send_with_id, 500, self._body(path, rid, 500, "InternalError", message, None),
                                  close=False)

    @staticmethod
    def _body(path: str, rid: str, status: int, code: str, message: str, field: str | None) -> dict[str, Any]:
        """The error in the shape of the path's API (`code` is the AI Search one; IQS picks by status)."""
        if is_iqs_path(path):
            return iqs_body(rid, IQS_STATUS_CODES[status], message)
        return error_body(rid, code, message, field)

    @classmethod
    async def _too_large(cls, send: Callable[[Message], Any], rid: str, limit: int, path: str) -> None:
        message = f"body: larger than the limit of {limit} bytes"
        await cls._send_json(send, 413, cls._body(path, rid, 413, "PayloadTooLarge", message, "body"), close=True)

    @staticmethod
    async def _send_json(send: Callable[[Message], Any], status: int, payload: dict[str, Any], close: bool) -> None:
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        if "requestId" in payload:
            headers.append((b"x-acs-request-id", str(payload["requestId"]).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
