"""Graceful shutdown: SIGTERM stops taking requests, lets those in flight finish, and hands the import job in
hand back to the queue at its last checkpoint, so another process resumes it at once instead of after the
lease (60 s by default): nothing lost, nothing imported twice."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx

from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.ingest.jobs import JobRunner, submit_body
from processes import serve, stop, worker

N = 3_000
SCHEMA = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                     {"name": "title", "type": "string", "searchable": True}]}


def _items(n: int = N) -> list[dict]:
    return [{"id": f"i{k:05d}", "title": f"商品 {k} running shoe"} for k in range(n)]


def _wait(cond, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (found := cond()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return found


def test_a_stopped_runner_hands_its_job_back_at_the_checkpoint(tmp_path):
    mm = MMSearch(Settings(home=tmp_path, ocr=False, clip_model="none", vector_dim=8), encoder=None)
    mm.create_dataset("many", SCHEMA, vector_dim=8)
    job = submit_body(mm, "many", json.dumps(_items()).encode())
    first = JobRunner(mm, batch_size=25)
    first.start()
    _wait(lambda: mm.catalog.jobs.get(job.id).done >= 100, 60, "the first runner made no progress")
    first.stop(timeout=5)
    handed = mm.catalog.jobs.get(job.id)
    assert handed.status == "queued" and handed.worker is None, handed
    assert 100 <= handed.done < N and handed.attempts == 0  # a shutdown is not a failed attempt
    assert f"released at item {handed.done}" in handed.message
    # claimable at once (no lease to wait out), and resumed where it stopped
    second = JobRunner(mm, batch_size=500)
    claimed = mm.catalog.jobs.claim(second.worker, stale_after_s=3_600)
    assert claimed is not None and claimed.id == job.id and claimed.done == handed.done
    done = second.run(claimed)
    assert done.status == "succeeded" and done.attempts == 1 and done.imported == N
    assert mm.store.count(mm.dataset("many")) == N


def _env(token: str) -> dict[str, str]:
    # the default lease (60 s): a job resumed within the test's 30 s was handed back, not taken over
    return {**os.environ, "MMSEARCH_ADMIN_TOKEN": token, "MMSEARCH_CLIP_MODEL": "none", "MMSEARCH_OCR": "false",
            "MMSEARCH_VECTOR_DIM": "8", "MMSEARCH_SHUTDOWN_GRACE_S": "5"}


def test_a_worker_stopped_with_sigterm_hands_its_job_to_the_next_at_once(tmp_path):
    token = secrets.token_urlsafe(16)
    env = _env(token)
    home = tmp_path / "home"
    server, url = serve(home, env, False)
    workers: list[subprocess.Popen] = []
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    try:
        assert admin.post("/admin/v1/datasets", json={"id": "many", "schema": SCHEMA}).status_code == 201
        job = admin.post("/admin/v1/datasets/many/items", json=_items()).json()["job_id"]
        workers.append(worker(home, env))
        _wait(lambda: admin.get(f"/admin/v1/jobs/{job}").json()["progress"]["processed"] >= 200, 60,
              "the first worker made no progress")
        workers[0].send_signal(signal.SIGTERM)
        assert workers[0].wait(15) == 0
        handed = admin.get(f"/admin/v1/jobs/{job}").json()
        assert handed["status"] == "queued" and 200 <= handed["progress"]["processed"] < N, handed

        workers.append(worker(home, env))
        # claimed as soon as the next worker is up: not after the 60 s lease of the one that stopped
        _wait(lambda: admin.get(f"/admin/v1/jobs/{job}").json()["status"] != "queued", 30,
              "the job was not resumed before the lease would have run out")
        state = _wait(lambda: (s := admin.get(f"/admin/v1/jobs/{job}").json())["status"] == "succeeded" and s, 120,
                      "the resumed job did not finish")
        assert state["attempts"] == 1 and state["progress"]["processed"] == N, state
        assert admin.get("/admin/v1/datasets/many").json()["stats"]["rows"] == N
    finally:
        admin.close()
        stop([*workers, server])


def test_a_server_stopped_with_sigterm_finishes_the_request_in_flight_and_takes_no_more(tmp_path):
    token = secrets.token_urlsafe(16)
    server, url = serve(tmp_path / "home", _env(token), True)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        assert httpx.post(f"{url}/admin/v1/datasets", json={"id": "many", "schema": SCHEMA},
                          headers=headers).status_code == 201
        body = json.dumps(_items(200)).encode()
        sent_half = threading.Event()

        def slowly() -> Iterator[bytes]:  # the request is in flight, its body half sent, when SIGTERM comes
            yield body[: len(body) // 2]
            sent_half.set()
            time.sleep(1.5)
            yield body[len(body) // 2 :]

        answer: dict[str, httpx.Response] = {}
        posting = threading.Thread(target=lambda: answer.setdefault("r", httpx.post(
            f"{url}/admin/v1/datasets/many/items", content=slowly(), headers=headers, timeout=30)))
        posting.start()
        assert sent_half.wait(10)
        time.sleep(0.2)
        server.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
            except httpx.TransportError:
                return True
            return False

        _wait(refused, 3, "the server still took new requests after SIGTERM")
        posting.join(15)
        assert answer["r"].status_code == 202, answer["r"].text  # the one in flight was answered
        assert answer["r"].json()["job_id"]
        # uvicorn re-raises the SIGTERM it caught once it has shut down, as a process manager expects
        assert server.wait(20) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
