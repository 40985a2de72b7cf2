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
from typing import Any, NamedTuple

from sqlalchemy import Engine, Select, func, insert, select
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


class QueryPoint(NamedTuple):
    """One search reduced to what the console's figures need: cheap to read by the ten thousand."""

    ts: datetime
    latency_ms: float
    total_items: int
    result_count: int
    corrected: bool


def _within(q: Select[Any], app_id: str | None, start: datetime | None) -> Select[Any]:
    """`q` narrowed to one application and to searches from `start` on (the (app_id, ts) index serves both)."""
    if app_id:
        q = q.where(QueryLogRow.app_id == app_id)
    if start is not None:
        q = q.where(QueryLogRow.ts >= start)
    return q


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

    def recent(self, app_id: str | None = None, limit: int = 100,
               start: datetime | None = None) -> list[QueryLogEntry]:
        """The newest entries (of one application, from `start` on when given), newest first."""
        self.flush()
        # by time: ids are not always in order (flush() can write queued entries before the one the writer holds)
        q = select(QueryLogRow).order_by(QueryLogRow.ts.desc(), QueryLogRow.id.desc()).limit(limit)
        q = _within(q, app_id, start)
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

    def since(self, start: datetime, app_id: str | None = None, limit: int = 50_000) -> list[QueryPoint]:
        """The searches from `start` on, newest first, at most `limit`: only the columns the console's figures use,
        so a page view reads tens of thousands of them in milliseconds. It does not flush (`recent` does)."""
        q = select(QueryLogRow.ts, QueryLogRow.latency_ms, QueryLogRow.total_items, QueryLogRow.result_count,
                   QueryLogRow.corrected_query.is_not(None))
        q = _within(q, app_id, start).order_by(QueryLogRow.ts.desc(), QueryLogRow.id.desc()).limit(limit)
        with Session(self.engine) as s:
            return [QueryPoint(aware(ts) or utcnow(), lat, total, count, bool(corrected))
                    for ts, lat, total, count, corrected in s.execute(q)]

    def count(self, start: datetime | None = None, app_id: str | None = None) -> int:
        """How many searches there are (of one application, from `start` on): the page's "N of M" when `since` is
        capped."""
        q = _within(select(func.count()).select_from(QueryLogRow), app_id, start)
        with Session(self.engine) as s:
            return int(s.execute(q).scalar_one())
