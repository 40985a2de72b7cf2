"""One access line per request on `mmsearch.access`: its fields (time, request id, method, route template,
application, status, latency, result count, client), the plain-text form, and what it never holds: API keys,
signatures in the query string, bodies and image bytes. Then `mmsearch serve` with MMSEARCH_LOG_FORMAT=json, where
every line it writes is JSON and uvicorn's own access log (raw paths, query strings) is off."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from api_fixtures import Api, start, stop
from mmsearch.api.access_log import LOGGER, JsonFormatter, TextFormatter
from processes import free_port

SEARCH = "/api/v1/application/{application_id}/search"
SIGNATURE = "X-Signature=" + "5e" * 32  # what a query-string-signed call carries


def noisy_png() -> str:
    """A data URI whose base64 is unlike anything else in a log."""
    pixels = (np.random.default_rng(7).random((40, 40, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Iterator[Api]:
    a = start(tmp_path_factory.mktemp("access"), product_items)
    yield a
    stop(a)


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    """The access logger into a buffer, as JSON (the server configures it in `serve`; a test does it here)."""
    logger = logging.getLogger(LOGGER)
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield buf, handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def lines_of(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def wait_for_line(buf: io.StringIO, request_id: str) -> dict:
    """The line is written once the last byte is sent: a moment after the client has the answer."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [x for x in lines_of(buf) if x["request_id"] == request_id]
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"no access line for {request_id}: {buf.getvalue()}")


def test_a_search_line_has_every_field(api: Api, captured):
    buf, _ = captured
    r = api.search({"query": {"text": "running shoe"}, "dataset_id": "products", "page_size": 3})
    assert r.status_code == 200
    line = wait_for_line(buf, r.headers["x-request-id"])
    assert set(line) == {"time", "level", "logger", "request_id", "method", "route", "app", "status", "latency_ms",
                         "results", "client", "pid"}
    assert line["time"].endswith("Z") and datetime.fromisoformat(line["time"]).utcoffset().total_seconds() == 0
    assert (line["logger"], line["level"], line["method"], line["route"]) == ("mmsearch.access", "info", "POST", SEARCH)
    assert (line["app"], line["status"], line["client"], line["pid"]) == ("shop", 200, "127.0.0.1", os.getpid())
    assert line["results"] == len(r.json()["result"]["search_results"]) == 3
    assert 0 < line["latency_ms"] < 30_000


def test_other_requests_have_no_result_count_and_unknown_paths_no_path(api: Api, captured):
    buf, _ = captured
    r = api.client.get("/healthz")
    line = wait_for_line(buf, r.headers["x-request-id"])
    assert (line["route"], line["status"], line["results"], line["app"]) == ("/healthz", 200, None, None)
    r = api.client.get("/no/such/secret-path")
    line = wait_for_line(buf, r.headers["x-request-id"])
    assert (line["route"], line["status"]) == ("unmatched", 404)
    assert "secret-path" not in buf.getvalue()


def test_keys_signatures_bodies_and_images_are_never_logged(api: Api, captured):
    buf, handler = captured
    image = noisy_png()
    body = {"query": {"text": "canvas", "image_url": image}, "dataset_id": "products",
            "user": {"_user_id": "user-secret-42"}}
    r = api.client.post(f"/api/v1/application/shop/search?{SIGNATURE}", json=body,
                        headers={"Authorization": f"Bearer {api.key}", "X-Api-Key": api.key})
    assert r.status_code == 200, r.text
    line = wait_for_line(buf, r.headers["x-request-id"])
    assert line["route"] == SEARCH and line["results"] == len(r.json()["result"]["search_results"])
    r = api.client.post("/api/v1/application/shop/search", json=body, headers={"Authorization": "Bearer wrong-key-77"})
    assert r.status_code == 401
    wait_for_line(buf, r.headers["x-request-id"])
    handler.setFormatter(TextFormatter())  # the plain form holds no more than the JSON one
    r = api.search({"query": {"text": "canvas"}, "dataset_id": "products"}, params={"sig": SIGNATURE})
    assert r.status_code == 200
    time.sleep(0.2)
    text = buf.getvalue()
    plain = text.splitlines()[-1]
    assert plain.endswith(" client=127.0.0.1") and f" POST {SEARCH} 200 " in plain and " app=shop " in plain
    assert r.headers["x-request-id"] in plain
    payload = image.split(",", 1)[1]
    for secret in (api.key, "wrong-key-77", "5e5e5e5e", "X-Signature", "user-secret-42", "canvas",
                   "data:image", payload[:16], payload[len(payload) // 2:][:16], payload[-16:]):
        assert secret not in text, secret


# -- mmsearch serve --------------------------------------------------------------------------------------------------


def test_serve_writes_json_lines_and_no_uvicorn_access_log(tmp_path, product_items):
    home = tmp_path / "home"
    a = start(home, product_items)  # makes the dataset, application and key on the home; its own server is not used
    key = a.key
    stop(a)
    token = secrets.token_urlsafe(16)
    env = {**os.environ, "MMSEARCH_ADMIN_TOKEN": token, "MMSEARCH_CLIP_MODEL": "none", "MMSEARCH_OCR": "false",
           "MMSEARCH_LOG_FORMAT": "json"}
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    port = free_port()
    exe = Path(sys.executable).parent / "mmsearch"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([str(exe), "--home", str(home), "serve", "--port", str(port), "--log-level", "info"],
                                env=env, stdout=o, stderr=e)
    url = f"http://127.0.0.1:{port}"
    polls = 0
    try:
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline, err.read_text()[-2000:]
            try:
                polls += 1
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                polls -= 1  # never reached the server
                time.sleep(0.2)
        body = {"query": {"text": "running shoe", "image_url": noisy_png()}, "dataset_id": "products"}
        r = httpx.post(f"{url}/api/v1/application/shop/search?{SIGNATURE}", json=body, timeout=30,
                       headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 503, r.text  # no image model in this server: answered, and logged
        rid = r.headers["x-request-id"]
        time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(30)
    records, other = [], []
    for name in (out, err):
        for raw in name.read_text().splitlines():
            (records if raw.startswith("{") else other).append(raw)
    assert all(x.startswith("mmsearch: data in") for x in other), other  # the banner; every log line is JSON
    parsed = [json.loads(x) for x in records]
    access = [x for x in parsed if x["logger"] == "mmsearch.access"]
    assert len(access) == polls + 1, access  # one line per request, none from uvicorn.access
    assert [x["route"] for x in access] == ["/healthz"] * polls + [SEARCH]
    assert access[-1]["request_id"] == rid and access[-1]["status"] == 503 and access[-1]["app"] == "shop"
    assert any(x["logger"] == "uvicorn.error" and "Started server process" in x["message"] for x in parsed)
    everything = out.read_text() + err.read_text()
    for secret in (key, token, "X-Signature", "5e5e5e5e", "base64", "HTTP/1.1"):
        assert secret not in everything, secret
