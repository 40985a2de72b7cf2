"""Durable import jobs: stage first, then a worker applies the staged items batch by batch.

- Items posted to the API are written to `MMSEARCH_HOME/jobs/<id>.ndjson` (fsynced) before the job row
  exists, so an accepted import is never lost; a CLI import points its job at the user's file.
- A worker claims a job with a lease and heart-beats while it runs; after each batch it checkpoints how
  many staged items are done. A job whose worker died is claimed again and resumes at the checkpoint.
  Upserts are keyed by the primary key, so re-applying a batch (or re-running an import) is idempotent.
- An item never fails a job. Validation rejects most bad items; an item that still makes a batch's write fail
  is found by bisecting the batch, and reported as that item's error (rule `store`) while the rest land. A job
  whose items were all rejected still `succeeded` ("0 imported, N rejected").
- A job fails only when it cannot run at all (dataset dropped, staged file gone) or when the store stays
  unusable: after a write fails and a probe of the store fails too, the job goes back to the queue at its last
  checkpoint, retried after `MMSEARCH_JOB_RETRY_S` (doubling), and ends `failed` after
  `MMSEARCH_JOB_MAX_ATTEMPTS` attempts, its message saying so; `processed` is exact either way.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from mmsearch.catalog.jobs import TERMINAL, Job
from mmsearch.catalog.models import utcnow
from mmsearch.errors import InvalidArgument, MMSearchError, NotFound
from mmsearch.ingest.importer import MAX_REPORTED_ERRORS, ImportReport, import_items
from mmsearch.ingest.readers import SUFFIXES, count_items, read_items
from mmsearch.ingest.staging import staging_of
from mmsearch.schema.validate import ItemError
from mmsearch.unicode import scrub

if TYPE_CHECKING:
    from mmsearch.catalog import Catalog
    from mmsearch.config import Settings
    from mmsearch.ingest.images import ImageIndexer
    from mmsearch.ingest.videos import VideoIndexer, VideoProgress
    from mmsearch.schema.fields import DatasetInfo
    from mmsearch.store.base import Store


class Engine(Protocol):
    """What jobs use of the engine (`core.MMSearch` is one): ingest sits below core and never names it."""

    @property
    def settings(self) -> Settings: ...  # `home` holds the staged files

    @property
    def catalog(self) -> Catalog: ...  # `jobs` is the queue

    @property
    def store(self) -> Store: ...

    def dataset(self, dataset_id: str) -> DatasetInfo: ...

    def image_indexer(self, info: DatasetInfo) -> ImageIndexer | None: ...

    def video_indexer(
        self, info: DatasetInfo, on_progress: Callable[[VideoProgress], None] | None = None
    ) -> VideoIndexer | None: ...

log = logging.getLogger("mmsearch.jobs")

MAX_RETRY_DELAY_S = 300.0  # the doubling backoff between a job's attempts stops growing here
VIDEO_BATCH = 1  # items of a video dataset per batch (checkpoint)
VIDEO_NOTE_S = 2.0  # how often a video import updates its job's message
MAINTAIN_EVERY_S = 30.0  # a busy background worker still folds new rows into the indexes this often


class StoreFailure(Exception):
    """A write failed and the store failed its probe too: not an item's fault; the job is retried later."""


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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        if text[:1] == b"[":  # an array cannot be NDJSON: the whole body is broken
            where = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else exc
            raise InvalidArgument(f"body: invalid JSON at {where}", field="body") from None
        data = None
    if data is not None:
        if isinstance(data, dict):
            data = data["items"] if isinstance(data.get("items"), list) else [data]
        if not isinstance(data, list):
            raise InvalidArgument("body: expected a JSON array of items or NDJSON", field="body")
        return [_item_line(item) for item in data]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _item_line(item: object) -> bytes:
    """One staged NDJSON line. A string with a lone surrogate ("\\ud800") cannot be written as UTF-8: such an
    item is staged \\u-escaped, so the job rejects it alone (rule `unicode`) rather than the request failing."""
    try:
        return json.dumps(item, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(item).encode()


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


def submit_body(mm: Engine, dataset_id: str, body: bytes) -> Job:
    """Stage posted items and queue a job for them; returns the queued job."""
    mm.dataset(dataset_id)  # 404 before anything is written
    lines = parse_items_body(body)
    job_id = secrets.token_hex(8)
    staging = staging_of(mm.settings)
    source = staging.publish(stage(staging.folder, job_id, lines))
    try:
        return mm.catalog.jobs.create(dataset_id, source, len(lines), job_id=job_id)
    except Exception:
        staging.remove(source)
        raise


def submit_file(mm: Engine, dataset_id: str, path: Path, worker: str | None = None) -> Job:
    """A job for a file; with `worker`, created already claimed by it (see `Jobs.create`)."""
    mm.dataset(dataset_id)
    path = Path(path).resolve()
    total = count_items(path)
    if total is None:
        total = sum(1 for _ in read_items(path, mm.dataset(dataset_id).schema))
    return mm.catalog.jobs.create(dataset_id, str(path), total, kind="file", worker=worker)


def submit_upload(mm: Engine, dataset_id: str, filename: str, data: BinaryIO) -> Job:
    """Stage an uploaded file (jsonl, json, csv or parquet, told by its name) and queue a job for it; the staged
    copy is removed once the job succeeds. A file that cannot be read at all is refused here, before a job."""
    mm.dataset(dataset_id)
    suffix = Path(filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidArgument(f"file: {filename!r} is not a supported format; use {', '.join(SUFFIXES)}",
                              field="file")
    job_id = secrets.token_hex(8)
    staging = staging_of(mm.settings)
    staging.folder.mkdir(parents=True, exist_ok=True)
    path = staging.folder / f"{job_id}{suffix}"
    source = str(path)
    try:
        with path.open("wb") as fh:
            shutil.copyfileobj(data, fh, 1 << 20)
            fh.flush()
            os.fsync(fh.fileno())
        total = count_items(path)
        if total is None:
            total = sum(1 for _ in read_items(path, mm.dataset(dataset_id).schema))
        if total == 0:
            raise InvalidArgument(f"file: {filename!r} holds no items", field="file")
        source = staging.publish(path)
        return mm.catalog.jobs.create(dataset_id, source, total, kind="upload", job_id=job_id)
    except Exception:
        path.unlink(missing_ok=True)
        staging.remove(source)
        raise


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
    mm: Engine, dataset_id: str, path: Path, batch_size: int = 1_000, on_progress: Callable[[Job], None] | None = None,
    on_video: Callable[[VideoProgress], None] | None = None,
) -> tuple[Job, ImportReport]:
    """A file import in the foreground, as a job: it is listed with the others and, if this process dies, any
    server on the same home resumes it from its last checkpoint (or a re-run imports again, idempotently)."""
    info = mm.dataset(dataset_id)
    mm.image_indexer(info)  # a model/dataset mismatch fails here, before a job exists
    runner = JobRunner(mm, batch_size=batch_size)
    runner.on_video = on_video
    # created claimed by this process: a server's worker on the same home cannot take it unless we stop beating
    job = submit_file(mm, dataset_id, path, worker=runner.worker)
    report = ImportReport()
    while True:
        job = runner.run(job, on_progress, report)
        if job.status in TERMINAL or job.retry_at is None:
            break
        # the store failed and the job waits for its retry: the CLI retries it itself, like a server would
        if on_progress is not None:
            on_progress(job)
        time.sleep(max(0.0, (job.retry_at - utcnow()).total_seconds()))
        claimed = mm.catalog.jobs.claim(runner.worker, job_id=job.id)
        if claimed is None:  # a server on this home took the retry (or it was cancelled): follow it
            break
        job = claimed
    if job.status not in TERMINAL:
        job = follow(mm, job.id, on_progress)
    return job, _complete(report, job)


def follow(mm: Engine, job_id: str, on_progress: Callable[[Job], None] | None = None, poll_s: float = 0.5) -> Job:
    """Wait for a job another worker runs to end."""
    while True:
        job = mm.catalog.jobs.get(job_id)
        if job.status in TERMINAL:
            return job
        if on_progress is not None:
            on_progress(job)
        time.sleep(poll_s)


def _complete(report: ImportReport, job: Job) -> ImportReport:
    """The job's counts are the truth: when another worker applied part of it, the report says so too."""
    if job.done > report.total:
        report.total, report.rejected = job.done, job.failed
        report.inserted = max(job.imported - report.replaced, 0)
        report.errors = [ItemError(e.get("index", -1), e.get("id"), e.get("field"), e.get("rule", ""),
                                   e.get("message", "")) for e in job.errors]
    return report


class JobRunner:
    """Runs queued jobs on a background thread (the server), or one job in the foreground (the CLI)."""

    def __init__(
        self, mm: Engine, batch_size: int = 500, poll_s: float = 1.0, stale_after_s: float | None = None,
        heartbeat_s: float | None = None, max_attempts: int | None = None, retry_s: float | None = None,
    ) -> None:
        self.mm = mm
        lease = getattr(mm.settings, "job_lease_s", 60.0)
        stale_after_s = stale_after_s if stale_after_s is not None else lease
        heartbeat_s = heartbeat_s if heartbeat_s is not None else min(5.0, stale_after_s / 4)
        self.max_attempts = max_attempts if max_attempts is not None else mm.settings.job_max_attempts
        self.retry_s = retry_s if retry_s is not None else mm.settings.job_retry_s
        self.batch_size = batch_size
        self.on_video: Callable[[VideoProgress], None] | None = None  # each step of a video import (the CLI's bar)
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: set[str] = set()  # jobs this runner is applying now, released when it stops
        # The background loop folds new rows into the indexes once its queue is drained (or every
        # MAINTAIN_EVERY_S while it is not), not after every job: each maintenance compacts and re-indexes
        # the table under its write lock, which made a stream of small upserts wait on it and back up.
        self.defer_maintenance = False
        self._unmaintained: dict[str, float] = {}  # dataset id -> when its first unmaintained job finished

    # -- background loop ----------------------------------------------------------------------------
    def start(self) -> None:
        self.defer_maintenance = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mmsearch-jobs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking jobs and hand back the one in hand, so another process resumes it at once rather than
        after the lease (MMSEARCH_JOB_LEASE_S). The batch being applied may finish and checkpoint within
        `timeout` (MMSEARCH_SHUTDOWN_GRACE_S); past it the job is released at its last checkpoint anyway and the
        batch in flight is applied again by whoever resumes it (upserts by primary key: nothing twice)."""
        grace = timeout if timeout is not None else float(getattr(self.mm.settings, "shutdown_grace_s", 10.0))
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(grace)
            self._thread = None
        for job_id in list(self._held):
            self._release(job_id, "its worker stopped in the middle of a batch")

    def _release(self, job_id: str, why: str) -> None:
        jobs = self.mm.catalog.jobs
        try:
            at = jobs.get(job_id).done
            if jobs.release(job_id, self.worker, f"released at item {at}: {why}; the next worker resumes it there"):
                log.info("job %s released at item %d (%s)", job_id, at, why)
        except Exception:  # the catalog is gone too: the lease runs out instead
            log.exception("job %s could not be released; another worker takes it after the lease", job_id)
        self._held.discard(job_id)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.mm.catalog.jobs.claim(self.worker, self.stale_after_s, max_attempts=self.max_attempts)
                if job is not None:
                    self.run(job)
                    continue
                self.maintain_pending()  # the queue is drained
            except Exception:
                log.exception("job worker error")
            self._wake.wait(self.poll_s)
            self._wake.clear()
        self.maintain_pending()

    def maintain_pending(self, older_than_s: float = 0.0) -> None:
        """Maintain the datasets whose imported rows are not folded into their indexes yet (searches see those rows
        all the same, by a flat scan). A failure is logged and kept for the next round."""
        now = time.monotonic()
        for dataset_id, since in list(self._unmaintained.items()):
            if now - since < older_than_s:
                continue
            try:
                self.mm.store.maintain(self.mm.dataset(dataset_id))
                self._unmaintained.pop(dataset_id, None)
            except NotFound:
                self._unmaintained.pop(dataset_id, None)  # dropped meanwhile
            except Exception:
                log.exception("maintenance of dataset %s failed; retried after the next job", dataset_id)

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
        self._held.add(job.id)
        try:
            status, message = self._apply(job, on_progress, report if report is not None else ImportReport())
        except StoreFailure as exc:
            log.warning("job %s: attempt %d: %s", job.id, job.attempts, exc)
            status, message = self._retry_or_fail(job, str(exc))
        except MMSearchError as exc:  # the job cannot run at all: its dataset was dropped, a file is unreadable
            status, message = "failed", exc.message
        except Exception as exc:  # the catalog, the source file or a bug: retried like a store failure
            log.exception("job %s: attempt %d failed", job.id, job.attempts)
            status, message = self._retry_or_fail(job, f"{type(exc).__name__}: {exc}")
        finally:
            beating.set()
            beat.join()
        if status:
            jobs.finish(job.id, self.worker, status, message)
        self._held.discard(job.id)
        done = jobs.get(job.id)
        if done.status == "succeeded" and done.kind in ("upsert", "upload"):
            staging_of(self.mm.settings).remove(done.source)  # staged copy no longer needed
        return done

    def _retry_or_fail(self, job: Job, reason: str) -> tuple[str, str]:
        """Back to the queue at the checkpoint, to be retried after a doubling delay; `failed` once the attempts
        are spent. The message says which attempt failed and why."""
        reason = reason[:1_000]
        if job.attempts >= self.max_attempts:
            return "failed", (f"gave up after {job.attempts} attempts; the items up to the checkpoint are applied, "
                              f"run the import again for the rest: {reason}")
        delay = min(self.retry_s * 2 ** max(job.attempts - 1, 0), MAX_RETRY_DELAY_S)
        retry_at = utcnow() + timedelta(seconds=delay)
        self.mm.catalog.jobs.requeue(
            job.id, self.worker, retry_at=retry_at,
            message=f"attempt {job.attempts} of {self.max_attempts} failed, retrying at {retry_at.isoformat()}: "
            f"{reason}",
        )
        return "", ""

    def _beat(self, job_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            if not self.mm.catalog.jobs.heartbeat(job_id, self.worker):
                return

    def _apply(self, job: Job, on_progress: Callable[[Job], None] | None, total: ImportReport) -> tuple[str, str]:
        info = self.mm.dataset(job.dataset_id)
        staging = staging_of(self.mm.settings)
        if not staging.exists(job.source):
            return "failed", f"source {job.source} is gone; the items cannot be applied"
        with staging.local(job.source) as source:
            return self._apply_from(job, info, source, on_progress, total)

    def _apply_from(self, job: Job, info: DatasetInfo, source: Path, on_progress: Callable[[Job], None] | None,
                    total: ImportReport) -> tuple[str, str]:
        jobs = self.mm.catalog.jobs
        images = self.mm.image_indexer(info)
        videos = self.mm.video_indexer(info, on_progress=self._video_progress(job))
        # a video takes seconds to minutes: each is its own batch, so a job resumes at the video it stopped in
        batch_size = VIDEO_BATCH if videos is not None and videos.active else self.batch_size
        done, imported, failed, warned = job.done, job.imported, job.failed, job.warned
        run_seconds = job.run_seconds
        items = itertools.islice(read_items(source, info.schema), job.done, None)
        started_all = time.perf_counter()
        while True:
            chunk = list(itertools.islice(items, batch_size))
            if not chunk:
                break
            started = time.perf_counter()
            report = self._import_chunk(info, chunk, images, videos)
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
            if self._stop.is_set():  # shutting down: the checkpoint just written is where the next worker starts
                self._release(job.id, "its worker was shut down")
                return "", ""
        if images is not None and images.active:
            total.images = images.stats.as_dict()
        if videos is not None and videos.active:
            total.videos = videos.stats.as_dict()
        if imported and self.defer_maintenance:
            self._unmaintained.setdefault(info.id, time.monotonic())
            self.maintain_pending(older_than_s=MAINTAIN_EVERY_S)
        elif imported:
            try:
                total.maintenance = self.mm.store.maintain(info)
            except Exception as exc:  # the items are in; the retry (at the checkpoint: the end) maintains again
                raise StoreFailure(f"maintenance after the last batch: {type(exc).__name__}: {exc}") from exc
        total.seconds = time.perf_counter() - started_all
        return "succeeded", f"{imported} imported, {failed} rejected" + (f", {warned} warnings" if warned else "")

    def _video_progress(self, job: Job) -> Callable[[VideoProgress], None]:
        """The job's message says where a long video import is, at most every VIDEO_NOTE_S."""
        last = [0.0]

        def note(p: VideoProgress) -> None:
            now = time.monotonic()
            if self.on_video is not None:
                self.on_video(p)
            if now - last[0] >= VIDEO_NOTE_S:
                last[0] = now
                from mmsearch.ingest.videos import video_message

                self.mm.catalog.jobs.note(job.id, self.worker, video_message(p))

        return note

    def _import_chunk(self, info: DatasetInfo, chunk: list[Any], images: ImageIndexer | None,
                      videos: VideoIndexer | None = None) -> ImportReport:
        """One batch, written in one upsert. When the write fails: a store that fails its probe fails the attempt
        (StoreFailure); otherwise an item is to blame, so the batch is halved until the item that cannot be
        written is alone, tried once more, and reported as that item's error while every other item lands."""
        try:
            return import_items(info, chunk, self.mm.store, batch_size=max(len(chunk), 1), maintain=False,
                                images=images, videos=videos)
        except Exception as exc:
            self._probe(info, exc)
            if len(chunk) > 1:
                mid = len(chunk) // 2
                report = self._import_chunk(info, chunk[:mid], images, videos)
                merge_reports(report, self._import_chunk(info, chunk[mid:], images, videos))
                return report
        try:
            return import_items(info, chunk, self.mm.store, batch_size=1, maintain=False, images=images,
                                videos=videos)
        except Exception as exc:
            self._probe(info, exc)
            index, raw = chunk[0]
            log.warning("job item %s could not be written: %s: %s", index, type(exc).__name__, exc)
            report = ImportReport(total=1, rejected=1)
            report.errors.append(ItemError(
                index, _item_id(info, raw), None, "store",
                f"the store could not write this item: {type(exc).__name__}: {str(exc)[:300]}",
            ))
            return report

    def _probe(self, info: DatasetInfo, exc: BaseException) -> None:
        try:
            self.mm.store.probe(info)
        except Exception as bad:
            raise StoreFailure(
                f"{type(exc).__name__}: {str(exc)[:500]} (store probe: {type(bad).__name__}: {str(bad)[:300]})"
            ) from exc


def _item_id(info: DatasetInfo, raw: Any) -> str | None:
    """The item's primary key as the report shows it, when it has one."""
    value = raw.get(info.schema.primary_key.name) if isinstance(raw, dict) else None
    return scrub(str(value)) if isinstance(value, str | int) and not isinstance(value, bool) else None
