"""The query log: who searched what, how long it took and how much came back.

Rows are written by a background thread in small batches, so logging adds no database round trip
to a search; `flush()` writes what is pending (on shutdown, and in tests). One caller's entry never costs
the others theirs: strings are scrubbed (a lone surrogate becomes U+FFFD) and, should a batch still fail,
its entries are written one by one and only the one the database refuses is dropped (and logged)."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from mmsearch.catalog.models import QueryLogRow, aware, utcnow
from mmsearch.unicode import scrub

log = logging.getLogger("mmsearch.querylog")


@dataclass
class QueryLogEntry:
    request_id: str
    app_id: str
    dataset_id: str
    latency_ms: float
    total_items: int
    result_count: int
    user_id: str | None = None
    query_text: str | None = None
    has_image: bool = False
    corrected_query: str | None = None
    status: int = 200
    ts: datetime = field(default_factory=utcnow)


def _row(entry: QueryLogEntry) -> dict[str, Any]:
    """The entry as a row, every string valid Unicode (the database cannot encode a lone surrogate)."""
    return {k: scrub(v) if isinstance(v, str) else v for k, v in asdict(entry).items()}


class QueryLog:
    def __init__(self, engine: Engine, flush_interval_s: float = 0.5) -> None:
        self.engine = engine
        self._queue: queue.Queue[QueryLogEntry] = queue.Queue(maxsize=100_000)
        self._interval = flush_interval_s
        self._wake = threading.Event()  # set by flush(): write what is pending now
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def record(self, entry: QueryLogEntry) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:  # the database is far behind; searches must not wait on it
            log.warning("query log queue full; dropping entry %s", entry.request_id)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="mmsearch-querylog", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._interval)
            except queue.Empty:
                continue
            # Gather what arrives in the next interval into one transaction: writing each entry as it came cost
            # every search a SQLite commit in this thread, contending for the GIL with the answer on its way out
            # (~1 ms per HTTP search, bench/http_overhead.py).
            self._wake.wait(self._interval)
            self._wake.clear()
            self._write([first])

    def _drain(self) -> list[QueryLogEntry]:
        out: list[QueryLogEntry] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def _write(self, entries: list[QueryLogEntry]) -> None:
        with self._lock:
            batch = entries + self._drain()
            if not batch:
                return
            try:
                rows = [_row(e) for e in batch]
                try:
                    self._insert(rows)
                except Exception:
                    log.warning("could not write %d query log entries at once; writing them one by one", len(rows))
                    for row in rows:
                        try:
                            self._insert([row])
                        except Exception:
                            log.exception("dropped query log entry %r", row.get("request_id"))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(insert(QueryLogRow), rows)

    def flush(self) -> None:
        """Returns once every entry recorded so far is written (including one the writer thread holds)."""
        self._wake.set()
        self._write([])
        self._queue.join()

    def recent(self, app_id: str | None = None, limit: int = 100) -> list[QueryLogEntry]:
        self.flush()
        q = select(QueryLogRow).order_by(QueryLogRow.id.desc()).limit(limit)
        if app_id:
            q = q.where(QueryLogRow.app_id == app_id)
        with Session(self.engine) as s:
            return [
                QueryLogEntry(
                    request_id=r.request_id, app_id=r.app_id, dataset_id=r.dataset_id, latency_ms=r.latency_ms,
                    total_items=r.total_items, result_count=r.result_count, user_id=r.user_id,
                    query_text=r.query_text, has_image=r.has_image, corrected_query=r.corrected_query,
                    status=r.status, ts=aware(r.ts) or utcnow(),
                )
                for r in s.scalars(q)
            ]
