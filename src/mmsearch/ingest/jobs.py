"""Durable import jobs: stage first, then a worker applies the staged items batch by batch.

- Items posted to the API are written to `MMSEARCH_HOME/jobs/<id>.ndjson` (fsynced) before the job row
  exists, so an accepted import is never lost; a CLI import points its job at the user's file.
- A worker claims a job with a lease and heart-beats while it runs; after each batch it checkpoints how
  many staged items are done. A job whose worker died is claimed again and resumes at the checkpoint.
  Upserts are keyed by the primary key, so re-applying a batch (or re-running an import) is idempotent.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mmsearch.catalog.jobs import Job
from mmsearch.errors import InvalidArgument, MMSearchError
from mmsearch.ingest.importer import MAX_REPORTED_ERRORS, ImportReport, import_items
from mmsearch.ingest.readers import count_items, read_items

if TYPE_CHECKING:
    from mmsearch.core import MMSearch

log = logging.getLogger("mmsearch.jobs")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_items_body(body: bytes) -> list[bytes]:
    """A JSON array (or {"items": [...]}) or NDJSON, as one NDJSON line per item. NDJSON lines are kept
    as sent: a line that is not valid JSON becomes that item's error when the job runs, not the batch's."""
    text = body.lstrip()
    if text.startswith(b"\xef\xbb\xbf"):
        text = text[3:].lstrip()
    if not text:
        raise InvalidArgument("body: no items; send a JSON array of items or NDJSON (one item per line)",
                              field="body")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if text[:1] == b"[":  # an array cannot be NDJSON: the whole body is broken
            where = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else exc
            raise InvalidArgument(f"body: invalid JSON at {where}", field="body") from None
        data = None
    if data is not None:
        if isinstance(data, dict):
            data = data["items"] if isinstance(data.get("items"), list) else [data]
        if not isinstance(data, list):
            raise InvalidArgument("body: expected a JSON array of items or NDJSON", field="body")
        return [json.dumps(item, ensure_ascii=False).encode() for item in data]
    return [line.strip() for line in text.splitlines() if line.strip()]


def stage(jobs_dir: Path, job_id: str, lines: list[bytes]) -> Path:
    jobs_dir.mkdir(parents=True, exist_ok=True)
    final = jobs_dir / f"{job_id}.ndjson"
    part = final.with_suffix(".part")
    with part.open("wb") as fh:
        for line in lines:
            fh.write(line.replace(b"\n", b" ") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, final)
    _fsync_dir(jobs_dir)
    return final


def submit_body(mm: MMSearch, dataset_id: str, body: bytes) -> Job:
    """Stage posted items and queue a job for them; returns the queued job."""
    mm.dataset(dataset_id)  # 404 before anything is written
    lines = parse_items_body(body)
    job_id = secrets.token_hex(8)
    path = stage(mm.settings.home / "jobs", job_id, lines)
    try:
        return mm.catalog.jobs.create(dataset_id, str(path), len(lines), job_id=job_id)
    except Exception:
        path.unlink(missing_ok=True)
        raise


def submit_file(mm: MMSearch, dataset_id: str, path: Path) -> Job:
    mm.dataset(dataset_id)
    path = Path(path).resolve()
    total = count_items(path)
    if total is None:
        total = sum(1 for _ in read_items(path, mm.dataset(dataset_id).schema))
    return mm.catalog.jobs.create(dataset_id, str(path), total, kind="file")


def merge_reports(total: ImportReport, part: ImportReport) -> None:
    total.total += part.total
    total.inserted += part.inserted
    total.replaced += part.replaced
    total.rejected += part.rejected
    room = MAX_REPORTED_ERRORS - len(total.errors)
    total.errors.extend(part.errors[: max(room, 0)])
    total.errors_truncated |= part.errors_truncated or len(part.errors) > room
    total.warnings.extend(part.warnings[: max(MAX_REPORTED_ERRORS - len(total.warnings), 0)])


def run_file_import(
    mm: MMSearch, dataset_id: str, path: Path, batch_size: int = 1_000, on_progress: Callable[[Job], None] | None = None
) -> tuple[Job, ImportReport]:
    """A file import in the foreground, as a job: it is listed with the others and, if this process dies, any
    server on the same home resumes it from its last checkpoint (or a re-run imports again, idempotently)."""
    info = mm.dataset(dataset_id)
    mm.image_indexer(info)  # a model/dataset mismatch fails here, before a job exists
    job = submit_file(mm, dataset_id, path)
    runner = JobRunner(mm, batch_size=batch_size)
    claimed = mm.catalog.jobs.claim(runner.worker, job_id=job.id)
    if claimed is None:  # cannot happen unless another worker raced us to a job created a moment ago
        raise MMSearchError(f"job {job.id} was claimed by another worker", field="job_id")
    report = ImportReport()
    return runner.run(claimed, on_progress, report), report


class JobRunner:
    """Runs queued jobs on a background thread (the server), or one job in the foreground (the CLI)."""

    def __init__(
        self, mm: MMSearch, batch_size: int = 500, poll_s: float = 1.0, stale_after_s: float = 60.0,
        heartbeat_s: float = 5.0,
    ) -> None:
        self.mm = mm
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- background loop ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mmsearch-jobs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.mm.catalog.jobs.claim(self.worker, self.stale_after_s)
                if job is not None:
                    self.run(job)
                    continue
            except Exception:
                log.exception("job worker error")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # -- one job ------------------------------------------------------------------------------------
    def run(
        self, job: Job, on_progress: Callable[[Job], None] | None = None, report: ImportReport | None = None
    ) -> Job:
        """Apply a claimed job from its checkpoint to the end; `report`, when given, collects what this run did
        (the CLI prints it)."""
        jobs = self.mm.catalog.jobs
        beating = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job.id, beating), daemon=True)
        beat.start()
        try:
            status, message = self._apply(job, on_progress, report if report is not None else ImportReport())
        except MMSearchError as exc:
            status, message = "failed", exc.message
        except Exception as exc:  # a bug or an engine failure: the job says so rather than hanging
            log.exception("job %s failed", job.id)
            status, message = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            beating.set()
            beat.join()
        if status:
            jobs.finish(job.id, self.worker, status, message)
        done = jobs.get(job.id)
        if done.status == "succeeded" and done.kind == "upsert":
            Path(done.source).unlink(missing_ok=True)  # staged copy no longer needed
        return done

    def _beat(self, job_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            if not self.mm.catalog.jobs.heartbeat(job_id, self.worker):
                return

    def _apply(self, job: Job, on_progress: Callable[[Job], None] | None, total: ImportReport) -> tuple[str, str]:
        jobs = self.mm.catalog.jobs
        info = self.mm.dataset(job.dataset_id)
        source = Path(job.source)
        if not source.is_file():
            return "failed", f"source {source} is gone; the items cannot be applied"
        images = self.mm.image_indexer(info)
        done, imported, failed, warned = job.done, job.imported, job.failed, job.warned
        run_seconds = job.run_seconds
        items = itertools.islice(read_items(source, info.schema), job.done, None)
        started_all = time.perf_counter()
        while True:
            chunk = list(itertools.islice(items, self.batch_size))
            if not chunk:
                break
            started = time.perf_counter()
            report = import_items(info, chunk, self.mm.store, batch_size=self.batch_size, maintain=False,
                                  images=images)
            run_seconds += time.perf_counter() - started
            merge_reports(total, report)
            done += report.total
            imported += report.imported
            failed += report.rejected
            warned += len(report.warnings)
            ok = jobs.checkpoint(
                job.id, self.worker, done=done, imported=imported, failed=failed, warned=warned,
                errors=[e.as_dict() for e in report.errors], warnings=[w.as_dict() for w in report.warnings],
                run_seconds=run_seconds,
            )
            if not ok:
                return "", ""  # cancelled, or another worker took the job over: stop quietly
            if on_progress is not None:
                on_progress(jobs.get(job.id))
        if images is not None and images.active:
            total.images = images.stats.as_dict()
        if imported:
            total.maintenance = self.mm.store.maintain(info)
        total.seconds = time.perf_counter() - started_all
        if failed and not imported:
            return "failed", f"none of the {failed} items could be imported; see errors"
        return "succeeded", f"{imported} imported, {failed} rejected" + (f", {warned} warnings" if warned else "")
