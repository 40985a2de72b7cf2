"""`mmsearch worker` processes run import jobs for servers started with `--no-jobs`, on a PostgreSQL catalog:
a worker killed with SIGKILL in the middle of a job is replaced by another, which resumes at the last
checkpoint once the lease runs out, and nothing is lost or imported twice."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time

import httpx

import postgres
from processes import serve, stop, worker

N = 3_000


def test_a_killed_worker_is_replaced_and_its_job_finishes_with_nothing_lost(postgres_server, tmp_path):
    home = tmp_path / "home"
    token = secrets.token_urlsafe(16)
    env = {**os.environ, "MMSEARCH_CATALOG_URL": postgres.database(postgres_server), "MMSEARCH_ADMIN_TOKEN": token,
           "MMSEARCH_CLIP_MODEL": "none", "MMSEARCH_OCR": "false", "MMSEARCH_VECTOR_DIM": "8",
           "MMSEARCH_JOB_LEASE_S": "2"}
    server, url = serve(home, env, False)
    workers: list[subprocess.Popen] = []
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    try:
        schema = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                             {"name": "title", "type": "string", "searchable": True}]}
        assert admin.post("/admin/v1/datasets", json={"id": "many", "schema": schema}).status_code == 201
        items = [{"id": f"i{n:05d}", "title": f"商品 {n} running shoe", "_vector": [((n * 7 + k) % 13) / 13.0 + 0.01
                                                                                  for k in range(8)]}
                 for n in range(N)]
        job = admin.post("/admin/v1/datasets/many/items", json=items).json()["job_id"]
        time.sleep(1.0)
        assert admin.get(f"/admin/v1/jobs/{job}").json()["status"] == "queued"  # the server runs no jobs

        workers.append(worker(home, env))
        deadline = time.monotonic() + 60
        while (state := admin.get(f"/admin/v1/jobs/{job}").json())["progress"]["processed"] < 200:
            assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)  # mid-job: no checkpoint, no goodbye
        workers[0].wait(10)
        halted = admin.get(f"/admin/v1/jobs/{job}").json()
        assert halted["status"] == "running" and 0 < halted["progress"]["processed"] < N, halted

        workers.append(worker(home, env))
        deadline = time.monotonic() + 120
        while (state := admin.get(f"/admin/v1/jobs/{job}").json())["status"] != "succeeded":
            assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state["attempts"] == 2 and state["progress"]["processed"] == N, state
        assert state["progress"]["failed"] == 0
        stats = admin.get("/admin/v1/datasets/many").json()["stats"]
        assert stats["rows"] == N, stats  # every item once: the batch in flight was applied again, not twice
        got = admin.get("/admin/v1/datasets/many/items/i02999").json()["item"]
        assert got["title"] == "商品 2999 running shoe"
    finally:
        admin.close()
        stop([*workers, server])
