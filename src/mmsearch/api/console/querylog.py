"""The query log page: who searched what, how fast and with what result, over the last hour, day or week.

The table shows the newest searches; the figures and charts (charts.py) summarise the window. A page view reads
at most MAX_POINTS searches, only the columns the figures need, so it stays fast on a busy log; the page says when
that cap cut the window short. The same catalog calls back `GET /admin/v1/query-log`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from mmsearch.api.console.charts import (
    DEFAULT_WINDOW,
    WINDOWS,
    Figures,
    Window,
    bars,
    bucket_labels,
    number,
    span,
    summarize,
)
from mmsearch.api.console.pages import render, signed_in
from mmsearch.api.console.session import PATH
from mmsearch.catalog.querylog import QueryLogEntry

if TYPE_CHECKING:
    from mmsearch.core import MMSearch

router = APIRouter(prefix=PATH)
ROWS = 200  # the table's newest searches
MAX_POINTS = 50_000  # searches read for the figures per page view


@dataclass(frozen=True)
class Bucket:
    """One row of the charts' data table."""

    label: str
    count: int
    p50: str
    p99: str
    zero: str


@router.get("/queries")
async def queries(request: Request, app: Annotated[str, Query(max_length=64)] = "",
                  window: Annotated[str, Query(max_length=8)] = DEFAULT_WINDOW) -> Response:
    session = signed_in(request)
    chosen = WINDOWS.get(window) or WINDOWS[DEFAULT_WINDOW]
    view = await run_in_threadpool(_view, request.app.state.mm, app or None, chosen, time.time())
    return render(request, "queries.html", session, nav="queries", **view)


def _view(mm: MMSearch, app_id: str | None, window: Window, now: float) -> dict[str, Any]:
    """Everything the template shows, read in one worker thread (the catalog calls block)."""
    log = mm.catalog.query_log
    start, _ = span(window, now)
    since = datetime.fromtimestamp(start, UTC)
    rows: list[QueryLogEntry] = log.recent(app_id, limit=ROWS, start=since)  # flushes pending entries first
    points = log.since(since, app_id, limit=MAX_POINTS)
    capped = len(points) >= MAX_POINTS
    total = log.count(since, app_id) if capped else len(points)
    figures = summarize(
        np.fromiter((p.ts.timestamp() for p in points), np.float64, len(points)),
        np.fromiter((p.latency_ms for p in points), np.float64, len(points)),
        np.fromiter((p.total_items for p in points), np.int64, len(points)),
        np.fromiter((p.result_count for p in points), np.int64, len(points)),
        np.fromiter((p.corrected for p in points), bool, len(points)),
        start, window.bucket_s, window.buckets,
    )
    labels = bucket_labels(start, window.bucket_s, window.buckets, window.time_format)
    apps = [a.id for a in mm.catalog.apps.list()]
    if app_id and app_id not in apps:  # an application since deleted keeps its log
        apps.append(app_id)
    return {
        "apps": apps, "app": app_id or "", "windows": list(WINDOWS.values()), "window": window,
        "rows": rows, "total": total, "read": len(points), "capped": capped, "max_points": MAX_POINTS,
        "figures": figures, "totals": _totals(figures), "charts": _charts(figures, labels, window),
        "buckets": _buckets(figures, labels), "number": number,
    }


def _totals(f: Figures) -> list[tuple[str, str, str]]:
    """(id, name, value) of each summary figure."""
    return [
        ("fig-searches", "Searches", number(f.count)),
        ("fig-p50", "Latency p50", number(f.p50, 1, " ms")),
        ("fig-p99", "Latency p99", number(f.p99, 1, " ms")),
        ("fig-zero", "Zero results", number(f.zero_rate * 100, 1, "%")),
        ("fig-corrected", "Spelling corrected", number(f.correction_rate * 100, 1, "%")),
    ]


def _charts(f: Figures, labels: list[str], window: Window) -> list[tuple[str, Markup]]:
    """(caption, svg) of each chart; bars() escapes every text it puts in the SVG."""
    return [
        (f"Searches per {window.per}", bars(f.counts, labels, f"Searches per {window.per}")),
        ("Latency p50 (ms)", bars(f.p50s, labels, "Latency p50", " ms", digits=1)),
        ("Latency p99 (ms)", bars(f.p99s, labels, "Latency p99", " ms", digits=1)),
        ("Zero-result rate (%)", bars(f.zero_rates * 100, labels, "Zero-result rate", "%", digits=1, top=100)),
    ]


def _buckets(f: Figures, labels: list[str]) -> list[Bucket]:
    """The charts' data as table rows, for those who would rather read numbers (only periods with searches)."""
    return [Bucket(labels[i], int(f.counts[i]), number(f.p50s[i], 1), number(f.p99s[i], 1),
                   number(f.zero_rates[i] * 100, 1, "%"))
            for i in np.flatnonzero(f.counts)]
