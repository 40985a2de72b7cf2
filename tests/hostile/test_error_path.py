"""The server's error path against a real uvicorn: an unexpected exception answers a JSON 500 in the API's
shape, is logged once with the request id, and leaves the keep-alive connection usable (a 500 used to make
uvicorn drop it without `Connection: close`); a body without Content-Type is read as JSON, a non-JSON one is
refused with 415 naming Content-Type."""

from __future__ import annotations

import copy
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.responses import StreamingResponse

from conftest import EXAMPLE_SCHEMA, VECTOR_DIM
from live import LiveServer
from mmsearch.api.app import create_app
from mmsearch.api.middleware import RequestContext
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder

ADMIN = "admin-token-for-error-path"


class Boom(RuntimeError):
    pass


def boom() -> None:
    raise Boom("kaboom")


async def boom_async() -> None:
    raise Boom("kaboom, async")


def boom_midstream() -> StreamingResponse:
    def chunks() -> Iterator[bytes]:
        yield b'{"partial": '
        raise Boom("the stream broke")

    return StreamingResponse(chunks(), media_type="application/json")


class Records(logging.Handler):
    """Collects records of one logger whether or not it propagates (uvicorn's do not)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(name)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Records:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)


@pytest.fixture(scope="module")
def server(tmp_path_factory, product_items) -> Iterator[Any]:
    mm = MMSearch(Settings(home=tmp_path_factory.mktemp("errpath"), admin_token=ADMIN, ocr=False),
                  encoder=HashingEncoder(VECTOR_DIM))
    mm.create_dataset("products", copy.deepcopy(EXAMPLE_SCHEMA), vector_dim=VECTOR_DIM)
    assert mm.import_items("products", copy.deepcopy(product_items)).rejected == 0
    mm.catalog.apps.create("shop", ["products"], {})
    app = create_app(mm, run_jobs=False)
    api = app.app  # the FastAPI app inside RequestContext: test-only routes that fail
    api.add_api_route("/test/boom", boom, methods=["GET"])
    api.add_api_route("/test/boom-async", boom_async, methods=["GET"])
    api.add_api_route("/test/boom-midstream", boom_midstream, methods=["GET"])
    with LiveServer(app) as live:
        live.mm = mm  # type: ignore[attr-defined]
        live.key = mm.catalog.keys.create(["shop"], name="errpath").key  # type: ignore[attr-defined]
        yield live


def local_port(r: httpx.Response) -> int:
    """The client-side port of the connection that carried `r` (the same port: the same connection)."""
    return r.extensions["network_stream"].get_extra_info("client_addr")[1]


@pytest.mark.parametrize("path", ["/test/boom", "/test/boom-async"])
def test_a_500_keeps_the_connection_and_is_logged_once_with_the_request_id(server, path, caplog):
    caplog.set_level(logging.ERROR, logger="mmsearch.api")
    with Records("uvicorn.error") as uvicorn_log, httpx.Client(base_url=server.url, timeout=10) as client:
        first = client.get(path)
        first_port = local_port(first)
        second = client.get("/healthz")
        second_port = local_port(second)
    assert first.status_code == 500
    body = first.json()
    rid = first.headers["x-request-id"]
    assert body["request_id"] == rid and body["ResponseMetadata"]["RequestId"] == rid
    assert body["error"]["code"] == "InternalError" and "Boom" in body["error"]["message"]
    assert "kaboom" not in first.text  # the exception's text stays in the log
    assert first.headers.get("connection", "").lower() != "close"
    assert second.status_code == 200 and second_port == first_port  # the same connection
    mine = [r for r in caplog.records if r.name == "mmsearch.api"]
    assert len(mine) == 1, [r.getMessage() for r in mine]
    assert getattr(mine[0], "request_id", None) == rid and rid in mine[0].getMessage()
    assert mine[0].exc_info is not None and mine[0].exc_info[0] is Boom  # with the traceback
    assert not [r for r in uvicorn_log.records if r.levelno >= logging.ERROR]  # not logged a second time


def test_a_response_broken_midstream_closes_the_connection_and_the_server_serves_on(server, caplog):
    caplog.set_level(logging.ERROR, logger="mmsearch.api")
    with httpx.Client(base_url=server.url, timeout=10) as client, pytest.raises(httpx.HTTPError):
        client.get("/test/boom-midstream")  # the status line went out: only closing can say it failed
    mine = [r for r in caplog.records if r.name == "mmsearch.api"]
    assert len(mine) == 1 and mine[0].exc_info is not None and mine[0].exc_info[0] is Boom
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def raw_exchange(port: int, requests: list[bytes]) -> list[bytes]:
    """Send HTTP/1.1 requests one after another on ONE socket; each answer as raw bytes."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        for req in requests:
            sock.sendall(req)
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += reader.readline()
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            answers.append(head + reader.read(length))
    return answers


def test_an_app_that_raises_before_answering_gets_a_json_500_in_the_paths_shape(caplog):
    """RequestContext answers itself when nothing was sent (an app that raises outside Starlette's handlers),
    in the AI Search shape or, on the IQS paths, the IQS one; the connection stays open."""
    caplog.set_level(logging.ERROR, logger="mmsearch.api")

    async def bare(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/ok":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        raise Boom("nothing sent")

    get = "GET {} HTTP/1.1\r\nHost: x\r\n\r\n"
    with LiveServer(RequestContext(bare, lambda path: 1024)) as live:
        ai, iqs, ok = raw_exchange(live.port, [get.format(p).encode() for p in
                                               ("/api/v1/x", "/search/multimodal", "/ok")])
    assert ai.startswith(b"HTTP/1.1 500") and ok.startswith(b"HTTP/1.1 200")  # one socket: still open
    ai_body = json.loads(ai.split(b"\r\n\r\n", 1)[1])
    assert ai_body["error"]["code"] == "InternalError" and ai_body["request_id"]
    iqs_body = json.loads(iqs.split(b"\r\n\r\n", 1)[1])
    assert set(iqs_body) == {"requestId", "code", "message"} and iqs_body["code"] == "InternalError"
    assert b"connection: close" not in ai.lower()
    logged = {getattr(r, "request_id", None) for r in caplog.records if r.name == "mmsearch.api"}
    assert logged == {ai_body["request_id"], iqs_body["requestId"]}


# -- Content-Type ---------------------------------------------------------------------------------------------
def test_json_without_content_type_is_read_as_json(server):
    search = {"query": {"text": "shoe"}, "dataset_id": "products", "page_size": 3}
    r = httpx.post(f"{server.url}/api/v1/application/shop/search", content=json.dumps(search).encode(),
                   headers={"Authorization": f"Bearer {server.key}"})
    assert "content-type" not in r.request.headers
    assert r.status_code == 200, r.text
    assert r.json()["result"]["search_results"]
    r = httpx.post(f"{server.url}/admin/v1/accounts", content=json.dumps({"name": "no-ctype"}).encode(),
                   headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"])
def test_a_non_json_content_type_is_refused_naming_it(server, ctype):
    search = json.dumps({"query": {"text": "shoe"}, "dataset_id": "products"}).encode()
    for url, headers in ((f"{server.url}/api/v1/application/shop/search", {"Authorization": f"Bearer {server.key}"}),
                         (f"{server.url}/admin/v1/accounts", {"Authorization": f"Bearer {ADMIN}"})):
        r = httpx.post(url, content=search, headers={**headers, "Content-Type": ctype})
        assert r.status_code == 415, r.text
        err = r.json()["error"]
        assert err["code"] == "UnsupportedMediaType" and err["field"] == "Content-Type"
        assert err["message"].startswith("Content-Type: ") and "application/json" in err["message"]
    assert httpx.post(f"{server.url}/api/v1/application/shop/search", content=search,  # +json types are JSON
                      headers={"Authorization": f"Bearer {server.key}",
                               "Content-Type": "application/vnd.api+json"}).status_code == 200
