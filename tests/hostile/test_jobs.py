"""Import jobs under hostile items and a failing store: an item never fails a job, a store failure is retried
from an exact checkpoint, and the CLI's foreground job cannot be taken by a server on the same home.

The store failures are real: the dataset's table folder is moved away (as root, a read-only folder would not
stop a write) and put back, while the job runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from api_fixtures import ADMIN, wait_job
from live import LiveServer
from mmsearch.api.app import create_app
from mmsearch.catalog.models import utcnow
from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.ingest.jobs import JobRunner, run_file_import, submit_body, submit_file

SCHEMA = {"fields": [
    {"name": "item_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "n", "type": "int32", "filterable": True},
]}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    MMSearch(Settings(home=home), encoder=None).create_dataset("d", SCHEMA, vector_dim=4)
    return home


def engine(home: Path, **settings) -> MMSearch:
    return MMSearch(Settings(home=home, admin_token=ADMIN, ocr=False, **settings), encoder=None)


def write_items(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items))
    return path


def good(i: int) -> dict:
    return {"item_id": f"g{i}", "title": f"item {i}", "n": i}


def stored_ids(mm: MMSearch) -> list[str]:
    info = mm.dataset("d")
    return sorted(row["_id"] for batch in mm.store.scan(info, ["_id"]) for row in _rows(batch))


def _rows(batch: dict[str, list]) -> list[dict]:
    return [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]



# -- an item never fails a job ------------------------------------------------------------------------------


def test_an_item_the_engine_cannot_write_is_bisected_out_and_the_rest_lands(home: Path, tmp_path: Path):
    """Validation passes an unknown field of any shape; nested deep enough, the store's JSON encoder hits the
    recursion limit (a real engine error, not a validation one) on that item alone. Depths around the limit
    either parse and store, fail at parsing (rule `json`), or parse but cannot be stored: that last kind used to
    fail the whole job; now each is reported alone (rule `store`) and every other item lands."""
    mm = engine(home)
    items, deep = [], []
    for depth in range(700, 1001, 2):
        deep.append(f"deep{depth}")
        nest = "[" * depth + "]" * depth
        items.append(f'{{"item_id": "deep{depth}", "title": "t", "nest": {nest}}}')
        items.append(json.dumps(good(depth)))
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(items) + "\n")
    job, report = run_file_import(mm, "d", path, batch_size=200)
    assert job.status == "succeeded", job.message
    assert job.done == job.total == len(items)
    assert job.imported + job.failed == len(items) and job.imported == report.imported
    stored = set(stored_ids(mm))
    assert {f"g{d}" for d in range(700, 1001, 2)} <= stored  # every good item landed
    rejected = {e["index"]: e for e in job.errors}
    assert len(rejected) == job.failed
    for index, item_id in enumerate(deep):  # each deep item either stored or reported at its own index
        assert (item_id in stored) != (2 * index in rejected), item_id
    store_errors = [e for e in job.errors if e["rule"] == "store"]
    assert store_errors, "no item reached the store's failure: the depth window moved"
    assert all(e["id"] and e["id"].startswith("deep") and "RecursionError" in e["message"] for e in store_errors)
    assert job.message == f"{job.imported} imported, {job.failed} rejected"


def test_a_job_whose_items_are_all_rejected_succeeds_with_the_count_api_and_cli(home: Path, tmp_path: Path):
    bad = [{"item_id": "a", "n": "x"}, {"item_id": "b", "n": 2**40}, {"title": "no id"}]
    mm = engine(home)
    with LiveServer(create_app(mm)) as server, httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}
    ) as admin:
        r = admin.post("/admin/v1/datasets/d/items", json=bad)
        assert r.status_code == 202, r.text
        job = wait_job(admin, r.json()["job_id"])
    assert job["status"] == "succeeded" and job["message"] == "0 imported, 3 rejected", job
    assert sorted(e["index"] for e in job["errors"]) == [0, 1, 2]
    # the CLI: the same job semantics, and exit 1 because nothing was imported (the README's promise)
    result = CliRunner().invoke(app, ["--home", str(home), "import", "d", str(write_items(tmp_path / "b.jsonl", bad)),
                                      "--json"])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["rejected"] == 3
    cli_job = mm.catalog.jobs.list(status="succeeded")[0]
    assert cli_job.kind == "file" and cli_job.message == "0 imported, 3 rejected"


# -- a store failure is retried from an exact checkpoint ------------------------------------------------------


class BreakStore:
    """Moves the table folder away after the `after`-th checkpoint (a real store failure), and back on demand."""

    def __init__(self, home: Path, after: int = 1) -> None:
        self.table = home / "tables" / "d.lance"
        self.away = home / "tables-away"
        self.after = after
        self.calls = 0

    def __call__(self, job) -> None:
        self.calls += 1
        if self.calls == self.after:
            os.rename(self.table, self.away)

    def restore(self) -> None:
        os.rename(self.away, self.table)


def test_a_store_failure_mid_job_requeues_at_the_checkpoint_and_the_retry_completes(home: Path, tmp_path: Path):
    mm = engine(home)
    path = write_items(tmp_path / "ten.jsonl", [good(i) for i in range(10)])
    runner = JobRunner(mm, batch_size=3, retry_s=0.5, max_attempts=3)
    job = submit_file(mm, "d", path, worker=runner.worker)
    breaker = BreakStore(home)
    after = runner.run(job, on_progress=breaker)
    # back in the queue, not failed, not silently partial: exactly the first batch is done
    assert after.status == "queued" and after.attempts == 1, after
    assert (after.done, after.imported, after.failed) == (3, 3, 0)
    assert after.retry_at is not None and after.retry_at > utcnow()
    assert after.message.startswith("attempt 1 of 3 failed, retrying at") and "store probe" in after.message
    assert after.as_dict()["retry_at"] == after.retry_at.isoformat()
    assert mm.catalog.jobs.claim("someone", job_id=job.id) is None  # not before its retry time
    breaker.restore()
    time.sleep(max(0.0, (after.retry_at - utcnow()).total_seconds()) + 0.05)
    claimed = mm.catalog.jobs.claim(runner.worker, job_id=job.id, max_attempts=3)
    assert claimed is not None and claimed.attempts == 2 and claimed.done == 3
    done = runner.run(claimed)
    assert done.status == "succeeded" and done.message == "10 imported, 0 rejected", done
    assert (done.done, done.imported, done.failed, done.attempts) == (10, 10, 0, 2)
    assert stored_ids(mm) == sorted(f"g{i}" for i in range(10))  # each item exactly once


def test_a_store_that_stays_broken_fails_the_job_after_max_attempts_with_its_progress(home: Path, tmp_path: Path):
    mm = engine(home)
    path = write_items(tmp_path / "ten.jsonl", [good(i) for i in range(10)])
    runner = JobRunner(mm, batch_size=4, retry_s=0.0, max_attempts=2)
    job = submit_file(mm, "d", path, worker=runner.worker)
    first = runner.run(job, on_progress=BreakStore(home))
    assert first.status == "queued" and first.done == 4
    second = runner.run(mm.catalog.jobs.claim(runner.worker, job_id=job.id, max_attempts=2))
    assert second.status == "failed" and second.attempts == 2
    assert second.message.startswith("gave up after 2 attempts; the items up to the checkpoint"), second.message
    assert (second.done, second.imported) == (4, 4)  # exact: the second batch never landed


def test_the_cli_retries_a_failing_store_itself_and_then_exits_1_naming_the_job(home: Path, tmp_path: Path,
                                                                                monkeypatch):
    """The table folder is gone before the import: every attempt fails; the CLI retries as a server would
    (MMSEARCH_JOB_MAX_ATTEMPTS, MMSEARCH_JOB_RETRY_S), then says the job failed, never that it succeeded."""
    monkeypatch.setenv("MMSEARCH_JOB_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("MMSEARCH_JOB_RETRY_S", "0.1")
    os.rename(home / "tables" / "d.lance", home / "tables-away")
    path = write_items(tmp_path / "two.jsonl", [good(1), good(2)])
    result = CliRunner().invoke(app, ["--home", str(home), "import", "d", str(path)])
    assert result.exit_code == 1
    assert result.stderr.count("failed, retrying at") == 2, result.stderr
    said = " ".join(result.stderr.split())
    assert "failed with 0 of 2 items processed: gave up after 3 attempts; the items up to" in said, said
    job = engine(home).catalog.jobs.list()[0]
    assert (job.status, job.attempts, job.done) == ("failed", 3, 0)


def test_a_stale_job_that_keeps_killing_its_worker_is_failed_not_claimed_forever(home: Path):
    """An item that crashes the process (a segfault in an engine) would otherwise be claimed, crash, go stale
    and be claimed again, taking the server down each time."""
    mm = engine(home)
    job = submit_body(mm, "d", b'{"item_id": "x"}\n')
    for attempt in range(1, 4):  # three workers claim it and die without a word
        claimed = mm.catalog.jobs.claim(f"dead-{attempt}", stale_after_s=0.0, max_attempts=3)
        assert claimed is not None and claimed.attempts == attempt
        time.sleep(0.01)
    assert mm.catalog.jobs.claim("next", stale_after_s=0.0, max_attempts=3) is None
    failed = mm.catalog.jobs.get(job.id)
    assert failed.status == "failed" and "its worker stopped 3 times" in failed.message


# -- the CLI's job cannot be taken by a server on the same home ------------------------------------------------


def test_cli_import_beside_a_polling_server_worker_always_succeeds(home: Path, tmp_path: Path):
    """A server's worker polls with no pause while the CLI imports 30 times: the CLI's job is created already
    claimed by the CLI, so the worker never takes it and the CLI always reports success (it used to exit 1,
    "claimed by another worker", about one run in 18)."""
    server = JobRunner(engine(home), poll_s=0.0)
    server.start()
    runner = CliRunner()
    path = write_items(tmp_path / "two.jsonl", [good(1), good(2)])
    try:
        for _ in range(30):
            result = runner.invoke(app, ["--home", str(home), "import", "d", str(path), "--json"])
            assert result.exit_code == 0, result.stderr
            assert json.loads(result.stdout)["imported"] == 2
    finally:
        server.stop()
    mm = engine(home)
    jobs = mm.catalog.jobs.list(limit=100)
    assert all(j.attempts == 1 for j in jobs)  # never taken over
    assert len(jobs) == 30 and {j.status for j in jobs} == {"succeeded"}
    assert stored_ids(mm) == ["g1", "g2"]


def test_a_job_created_claimed_is_not_claimable_until_its_heartbeat_is_stale(home: Path, tmp_path: Path):
    mm = engine(home)
    path = write_items(tmp_path / "one.jsonl", [good(1)])
    job = submit_file(mm, "d", path, worker="cli")
    assert (job.status, job.attempts) == ("running", 1) and job.started_at is not None
    assert mm.catalog.jobs.claim("server", stale_after_s=60) is None
    time.sleep(0.05)
    taken = mm.catalog.jobs.claim("server", stale_after_s=0.01)  # the CLI died: a server resumes it
    assert taken is not None and taken.id == job.id and taken.attempts == 2


def test_server_worker_retries_a_store_failure_by_itself(home: Path, tmp_path: Path):
    """The server's loop picks a requeued job up again once its retry time has come."""
    mm = engine(home, job_retry_s=0.2)
    breaker = BreakStore(home, after=10**9)
    os.rename(breaker.table, breaker.away)
    runner = JobRunner(mm, poll_s=0.05)
    job = submit_body(mm, "d", b"\n".join(json.dumps(good(i)).encode() for i in range(5)))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while mm.catalog.jobs.get(job.id).attempts < 1 or mm.catalog.jobs.get(job.id).status != "queued":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        breaker.restore()
        while mm.catalog.jobs.get(job.id).status != "succeeded":
            assert time.monotonic() < deadline, mm.catalog.jobs.get(job.id)
            time.sleep(0.05)
    finally:
        runner.stop()
    done = mm.catalog.jobs.get(job.id)
    assert done.attempts >= 2 and done.imported == 5 and stored_ids(mm) == [f"g{i}" for i in range(5)]


# -- a stream of small jobs ---------------------------------------------------------------------------------------
def test_background_worker_maintains_once_the_queue_drains_not_after_every_job(home: Path):
    """Maintenance compacts and re-indexes under the table's write lock; after each of many small upserts it made
    them (and deletes) back up. Six queued jobs: six commits and one maintenance, and every row is indexed."""
    mm = engine(home)
    mm.import_items("d", [good(0)])
    table = mm.store._table(mm.dataset("d"))
    before = table.version
    jobs = [submit_body(mm, "d", json.dumps([good(100 * j + i) for i in range(1, 21)]).encode()) for j in range(6)]
    runner = JobRunner(mm, poll_s=0.05)
    runner.start()
    try:
        for job in jobs:
            deadline = time.monotonic() + 30
            while mm.catalog.jobs.get(job.id).status != "succeeded":
                assert time.monotonic() < deadline, mm.catalog.jobs.get(job.id)
                time.sleep(0.05)
        deadline = time.monotonic() + 30
        while runner._unmaintained:  # the drained queue is noticed within a poll
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        runner.stop()
    table.checkout_latest()
    assert table.index_stats("_id_idx").num_unindexed_rows == 0
    assert table.count_rows() == 121
    # one commit per job plus one maintenance (a few versions); maintaining after each job made 20 or more
    assert table.version - before <= len(jobs) + 4, table.version - before
