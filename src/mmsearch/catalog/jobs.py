"""The import job queue. A job is claimed with a lease (worker + heartbeat), so a job whose worker died
(server killed, machine restarted) goes back to the queue and resumes from its last checkpoint.

Statuses: `queued` (waiting; a job put back after a store failure waits until `retry_at`), `running`,
`succeeded` (every item was applied or reported as rejected), `failed` (the job could not run: dataset gone,
source gone, or the store stayed unusable for `max_attempts` attempts), `cancelled`."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session

from mmsearch.catalog.models import JobRow, aware, require, utcnow
from mmsearch.errors import InvalidArgument

MAX_STORED_ERRORS = 1_000  # per job; the counts stay exact beyond it
TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("queued", "running", *TERMINAL)


@dataclass(frozen=True)
class JobSummary:
    """The queue at a glance, read from the catalog (so every process on it says the same): jobs per status,
    items not yet applied in queued and running jobs, and the running jobs' combined rate."""

    by_status: dict[str, int]
    pending_items: int
    items_per_second: float


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    dataset_id: str
    status: str
    source: str
    total: int
    done: int
    imported: int
    failed: int
    warned: int
    errors: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    message: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_seconds: float
    retry_at: datetime | None = None  # a queued job put back after a store failure is not claimed before it
    worker: str | None = None  # who holds a running job (host:pid:random)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Items applied per second of running time (all attempts)."""
        return self.done / self.run_seconds if self.run_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.id, "kind": self.kind, "dataset_id": self.dataset_id, "status": self.status,
            "progress": {
                "total": self.total, "processed": self.done, "imported": self.imported, "failed": self.failed,
                "warnings": self.warned, "percent": round(100.0 * self.done / self.total, 1) if self.total else 100.0,
                "items_per_second": round(self.rate, 1),
            },
            "errors": self.errors, "warnings": self.warnings, "message": self.message, "attempts": self.attempts,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def _job(row: JobRow) -> Job:
    return Job(
        id=row.id, kind=row.kind, dataset_id=row.dataset_id, status=row.status, source=row.source,
        total=row.total, done=row.done, imported=row.imported, failed=row.failed, warned=row.warned,
        errors=json.loads(row.errors_json), warnings=json.loads(row.warnings_json), message=row.message,
        attempts=row.attempts, created_at=aware(row.created_at) or utcnow(), started_at=aware(row.started_at),
        finished_at=aware(row.finished_at), run_seconds=row.run_seconds,
        retry_at=aware(row.heartbeat_at) if row.status == "queued" else None, worker=row.worker,
    )


class Jobs:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self, dataset_id: str, source: str, total: int, kind: str = "upsert", job_id: str | None = None,
        worker: str | None = None,
    ) -> Job:
        """A queued job; with `worker`, one already claimed by it (running, heart-beaten now, attempt 1) in the
        same insert, so no other worker can take it in between (the CLI runs its import in the foreground)."""
        job_id = job_id or secrets.token_hex(8)
        row = JobRow(id=job_id, kind=kind, dataset_id=dataset_id, status="queued", source=source, total=total)
        if worker is not None:
            now = utcnow()
            row.status, row.worker, row.heartbeat_at, row.attempts, row.started_at = "running", worker, now, 1, now
        with Session(self.engine) as s, s.begin():
            s.add(row)
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        with Session(self.engine) as s:
            row = require(s, JobRow, job_id, "job_id", "job")
            return _job(row)

    def list(self, dataset_id: str | None = None, status: str | None = None, limit: int = 100) -> list[Job]:
        q = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
        if dataset_id:
            q = q.where(JobRow.dataset_id == dataset_id)
        if status:
            q = q.where(JobRow.status == status)
        with Session(self.engine) as s:
            return [_job(r) for r in s.scalars(q)]

    def claim(
        self, worker: str, stale_after_s: float = 30.0, job_id: str | None = None, max_attempts: int | None = None
    ) -> Job | None:
        """The oldest queued job (or `job_id`) whose retry time has come, or a running one whose worker stopped
        heart-beating. A stale job that already had `max_attempts` attempts is failed instead of run again, so an
        item that kills its worker (a crash in the engine) cannot take the server down over and over."""
        now = utcnow()
        stale = now - timedelta(seconds=stale_after_s)
        due = or_(JobRow.heartbeat_at.is_(None), JobRow.heartbeat_at <= now)  # a queued job's retry time
        claimable = or_(and_(JobRow.status == "queued", due),
                        and_(JobRow.status == "running", JobRow.heartbeat_at < stale))
        if job_id is not None:
            claimable = and_(claimable, JobRow.id == job_id)
        with Session(self.engine) as s:
            ids = list(s.scalars(select(JobRow.id).where(claimable).order_by(JobRow.created_at).limit(5)))
        if ids and max_attempts is not None:  # a write only when there is something to claim
            self._abandon(claimable, max_attempts)
        for job_id in ids:
            now = utcnow()
            with Session(self.engine) as s, s.begin():
                res = s.execute(
                    update(JobRow).where(JobRow.id == job_id, claimable)
                    .values(status="running", worker=worker, heartbeat_at=now, attempts=JobRow.attempts + 1)
                )
                if res.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # another worker won it
                row = s.get(JobRow, job_id)
                assert row is not None
                if row.started_at is None:
                    row.started_at = now
            return self.get(job_id)
        return None

    def _abandon(self, claimable: Any, max_attempts: int) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(
                update(JobRow).where(claimable, JobRow.status == "running", JobRow.attempts >= max_attempts)
                .values(status="failed", finished_at=utcnow(), worker=None,
                        message=f"gave up: its worker stopped {max_attempts} times while running it; the items "
                        "before the checkpoint are applied, the rest are not (run the import again to resume)")
            )

    def requeue(self, job_id: str, worker: str, message: str, retry_at: datetime) -> bool:
        """Put a running job back in the queue, not to be claimed before `retry_at` (a store failure: its
        checkpoint stays where the last good batch left it). False = the lease was lost (or the job cancelled)."""
        with Session(self.engine) as s, s.begin():
            res = s.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker, JobRow.status == "running")
                .values(status="queued", worker=None, heartbeat_at=retry_at, message=message)
            )
            return res.rowcount == 1  # type: ignore[attr-defined]

    def release(self, job_id: str, worker: str, message: str) -> bool:
        """Hand a running job back to the queue at its checkpoint, claimable at once (a process shutting down):
        not a failed attempt, so the attempt it was counted as is given back. False = the lease was lost."""
        with Session(self.engine) as s, s.begin():
            res = s.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker, JobRow.status == "running")
                .values(status="queued", worker=None, heartbeat_at=None, message=message[:1_000],
                        attempts=JobRow.attempts - 1)
            )
            return res.rowcount == 1  # type: ignore[attr-defined]

    def checkpoint(
        self, job_id: str, worker: str, *, done: int, imported: int, failed: int, warned: int,
        errors: list[dict[str, Any]], warnings: list[dict[str, Any]], run_seconds: float,
    ) -> bool:
        """Record progress after a batch was written. False = the lease was lost (or the job cancelled)."""
        with Session(self.engine) as s, s.begin():
            row = s.get(JobRow, job_id)
            if row is None or row.worker != worker or row.status != "running":
                return False
            row.done, row.imported, row.failed, row.warned = done, imported, failed, warned
            if errors:
                kept = json.loads(row.errors_json)
                row.errors_json = json.dumps((kept + errors)[:MAX_STORED_ERRORS], ensure_ascii=False)
            if warnings:
                kept = json.loads(row.warnings_json)
                row.warnings_json = json.dumps((kept + warnings)[:MAX_STORED_ERRORS], ensure_ascii=False)
            row.run_seconds = run_seconds
            row.heartbeat_at = utcnow()
            return True

    def note(self, job_id: str, worker: str, message: str) -> bool:
        """Say how a running job is getting on (a long video: frames decoded, segments found); also a heartbeat."""
        with Session(self.engine) as s, s.begin():
            res = s.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker, JobRow.status == "running")
                .values(message=message[:1_000], heartbeat_at=utcnow())
            )
            return res.rowcount == 1  # type: ignore[attr-defined]

    def heartbeat(self, job_id: str, worker: str) -> bool:
        with Session(self.engine) as s, s.begin():
            res = s.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker, JobRow.status == "running")
                .values(heartbeat_at=utcnow())
            )
            return res.rowcount == 1  # type: ignore[attr-defined]

    def finish(self, job_id: str, worker: str, status: str, message: str = "") -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(JobRow, job_id)
            if row is None or row.worker != worker or row.status != "running":
                return
            row.status, row.message, row.finished_at = status, message, utcnow()

    def cancel(self, job_id: str) -> Job:
        with Session(self.engine) as s, s.begin():
            row = require(s, JobRow, job_id, "job_id", "job")
            if row.status in TERMINAL:
                raise InvalidArgument(f"job_id: job {job_id!r} already {row.status}", field="job_id")
            row.status, row.message, row.finished_at = "cancelled", "cancelled by request", utcnow()
        return self.get(job_id)

    def summary(self) -> JobSummary:
        """Two aggregate queries, cheap enough for every metrics scrape (the status column is indexed)."""
        with Session(self.engine) as s:
            counts = {status: 0 for status in STATUSES}
            counts.update({str(k): int(n) for k, n in s.execute(
                select(JobRow.status, func.count()).group_by(JobRow.status))})
            active = s.execute(select(JobRow.status, JobRow.total, JobRow.done, JobRow.run_seconds)
                               .where(JobRow.status.in_(("queued", "running")))).all()
        pending = sum(max(0, total - done) for _, total, done, _ in active)
        rate = sum(done / secs for status, _, done, secs in active if status == "running" and secs > 0)
        return JobSummary(by_status=counts, pending_items=pending, items_per_second=rate)
