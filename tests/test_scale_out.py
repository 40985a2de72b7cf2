"""The scale-out deployment on one machine: a Milvus server (Milvus Lite's standalone gRPC server, reached by
URL as a cluster would be), a PostgreSQL catalog, two `mmsearch serve --no-jobs` processes and `mmsearch worker`
processes. Items posted to one server are imported by a worker and found through the other; a worker killed in
the middle of a job is replaced and nothing is lost; a key revoked on one server is refused by the other; an
IQS key's qps holds across both."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import postgres
from processes import free_port, serve, worker

pytest.importorskip("pymilvus", reason="the Milvus client is a dev dependency")
pytest.importorskip("milvus_lite", reason="Milvus Lite is a dev dependency")
N = 1_200


def _milvus(data: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = Path(sys.executable).parent / "milvus-lite"
    proc = subprocess.Popen([str(exe), "server", "--data-dir", str(data), "--host", "127.0.0.1", "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from pymilvus import MilvusClient

    deadline = time.monotonic() + 60
    while True:
        try:
            MilvusClient(uri=f"http://127.0.0.1:{port}", timeout=2).list_collections()
            return proc, f"http://127.0.0.1:{port}"
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.3)


def test_two_servers_and_workers_on_postgresql_and_milvus(postgres_server, tmp_path):
    milvus, milvus_url = _milvus(tmp_path / "milvus")
    home = tmp_path / "home"
    token = secrets.token_urlsafe(16)
    env = {**os.environ, "MMSEARCH_CATALOG_URL": postgres.database(postgres_server), "MMSEARCH_ADMIN_TOKEN": token,
           "MMSEARCH_STORE": f"milvus:{milvus_url}", "MMSEARCH_CLIP_MODEL": "none", "MMSEARCH_OCR": "false",
           "MMSEARCH_VECTOR_DIM": "8", "MMSEARCH_JOB_LEASE_S": "2"}
    processes: list[subprocess.Popen] = [milvus]
    try:
        first, url_a = serve(home, env, False)
        second, url_b = serve(home, env, False)
        processes += [first, second]
        admin_a = httpx.Client(base_url=url_a, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        admin_b = httpx.Client(base_url=url_b, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        schema = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                             {"name": "title", "type": "string", "searchable": True},
                             {"name": "shelf", "type": "int32", "filterable": True}]}
        assert admin_a.post("/admin/v1/datasets", json={"id": "goods", "schema": schema}).status_code == 201
        assert admin_b.post("/admin/v1/applications", json={"id": "store", "datasets": ["goods"]}).status_code == 201
        key = admin_b.post("/admin/v1/keys", json={"apps": ["store"]}).json()["key"]
        items = [{"id": f"g{n:05d}", "title": f"{'跑步鞋' if n % 100 == 7 else '帆布包'} 款式 {n}", "shelf": n % 3,
                  "_vector": [((n * 5 + k) % 11) / 11.0 + 0.01 for k in range(8)]} for n in range(N)]
        job = admin_a.post("/admin/v1/datasets/goods/items", json=items).json()["job_id"]

        first_worker = worker(home, env)
        processes.append(first_worker)
        deadline = time.monotonic() + 120
        while (state := admin_b.get(f"/admin/v1/jobs/{job}").json())["progress"]["processed"] < 100:
            assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
            time.sleep(0.05)
        first_worker.send_signal(signal.SIGKILL)
        first_worker.wait(10)
        processes.append(worker(home, env))
        deadline = time.monotonic() + 240
        while (state := admin_b.get(f"/admin/v1/jobs/{job}").json())["status"] != "succeeded":
            assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
            time.sleep(0.3)
        assert state["attempts"] == 2 and state["progress"]["imported"] == N, state

        body = {"query": {"text": "跑步鞋"}, "dataset_id": "goods", "page_size": 10,
                "filter": {"op": "must", "field": "shelf", "conds": [1]}}
        bearer = {"Authorization": f"Bearer {key}"}
        found = httpx.post(f"{url_b}/api/v1/application/store/search", json=body, headers=bearer, timeout=60)
        assert found.status_code == 200, found.text
        ids = {r["_id"] for r in found.json()["result"]["search_results"]}
        expected = {f"g{n:05d}" for n in range(N) if n % 100 == 7 and n % 3 == 1}
        assert ids == expected, (ids, expected)  # every running shoe on shelf 1, nothing else

        assert admin_a.delete(f"/admin/v1/keys/{key}").status_code == 200
        deadline = time.monotonic() + 2.5
        while httpx.post(f"{url_b}/api/v1/application/store/search", json=body, headers=bearer,
                         timeout=60).status_code != 401:
            assert time.monotonic() < deadline, "the revoked key still works on the other server"
            time.sleep(0.1)
    finally:
        for proc in reversed(processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
