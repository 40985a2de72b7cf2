"""Shared setup for the HTTP tests: an engine with the example catalogue, an application, a key, a server."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from conftest import EXAMPLE_SCHEMA, VECTOR_DIM
from live import LiveServer
from mmsearch.api.app import create_app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder

ADMIN = "admin-token-for-tests"


@dataclass
class Api:
    mm: MMSearch
    server: LiveServer
    key: str
    access_key_id: str
    secret_access_key: str
    client: httpx.Client
    admin: httpx.Client

    def search(self, body: dict[str, Any], app: str = "shop", key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return self.client.post(f"/api/v1/application/{app}/search", json=body, headers=headers, **kw)

    def ok(self, body: dict[str, Any], app: str = "shop") -> dict[str, Any]:
        r = self.search(body, app)
        assert r.status_code == 200, r.text
        return r.json()


def start(home: Path, items: list[dict[str, Any]], config: dict[str, Any] | None = None, **settings: Any):
    mm = MMSearch(Settings(home=home, admin_token=ADMIN, ocr=False, **settings), encoder=HashingEncoder(VECTOR_DIM))
    mm.create_dataset("products", copy.deepcopy(EXAMPLE_SCHEMA), vector_dim=VECTOR_DIM)
    report = mm.import_items("products", copy.deepcopy(items))
    assert report.rejected == 0
    mm.catalog.apps.create("shop", ["products"], config or {})
    new = mm.catalog.keys.create(["shop"], name="tests")
    server = LiveServer(create_app(mm)).__enter__()
    client = httpx.Client(base_url=server.url, timeout=30)
    admin = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {ADMIN}"})
    return Api(mm, server, new.key, new.info.access_key_id, new.secret_access_key, client, admin)


def stop(api: Api) -> None:
    api.client.close()
    api.admin.close()
    api.server.__exit__(None, None, None)


def wait_job(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """Poll the management API until the job ends; its last state."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/admin/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")
