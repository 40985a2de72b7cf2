"""Prometheus metrics at `GET /metrics` (the admin token, unless MMSEARCH_METRICS_PUBLIC=true).

Request-time metrics are counted as requests finish (`Observer`, called by `middleware.RequestContext`):
requests by route, application and status, latency by route, the search pipeline's stage timings, zero-result
and spell-corrected searches, IQS charges, refunds and refusals by code. Handlers only leave plain notes on the
request (`note_app`, `note_search`, `note_iqs`); the search layer hands its stage timings over as plain numbers
(`SearchResult.stages`) and knows nothing of Prometheus.

State metrics are read when scraped (`StateCollector`), from where the truth is kept, so they are right whichever
process answers the scrape and however many processes share the catalog: import jobs by state, queue depth,
items pending and items/s from the catalog; items and bytes per dataset from `Store.stats` (kept 10 s, so a
scrape stays cheap); image model and OCR availability from this process's engine.

Several processes (`mmsearch serve --workers N`) use prometheus_client's multiprocess mode: each worker writes
its counters and histograms to memory-mapped files in PROMETHEUS_MULTIPROC_DIR (HOME/run/metrics-<pid of
serve>, made empty at start, removed at exit; `prepare_multiprocess_dir`) and a scrape, which the kernel hands
to any one worker, sums every worker's files. Per-process labels would not do: the workers share one listening
socket, so Prometheus cannot scrape each of them, and every scrape would show one random worker's counts. One
process keeps an ordinary in-memory registry (its own per app, so tests and embedded apps never share counts).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.routing import compile_path

from mmsearch.api import access_log
from mmsearch.api.routing import flat_routes

if TYPE_CHECKING:
    from mmsearch.core import MMSearch
    from mmsearch.search.types import SearchResult

log = logging.getLogger("mmsearch.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # the route label of a path no route matches: raw paths would be unbounded
# searches take milliseconds: finer than prometheus_client's default buckets at the low end
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
DATASET_STATS_TTL_S = 10.0

disable_created_metrics()  # no `_created` series: they double the output and multiprocess mode has none


def multiprocess_enabled() -> bool:
    """Whether prometheus_client chose memory-mapped values, which it does once, at import, when
    PROMETHEUS_MULTIPROC_DIR is set (serve sets it before starting its workers)."""
    return prometheus_values.ValueClass is not prometheus_values.MutexValue


def prepare_multiprocess_dir(home: Path, pid: int | None = None) -> Path:
    """HOME/run/metrics-<pid>, new and empty, for one `serve --workers N`. Folders left by servers that are gone
    (killed before their cleanup) are removed: their counts belong to no running server."""
    run = home / "run"
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in run.glob("metrics-*"):
        other = old.name.removeprefix("metrics-")
        if other.isdigit() and not _alive(int(other)):
            shutil.rmtree(old, ignore_errors=True)
    folder = run / f"metrics-{pid or os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- what handlers note on the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchNote:
    stages: dict[str, float]
    results: int  # hits on the page
    total: int
    corrected: bool


@dataclass
class IqsNote:
    charged: bool = False
    refunded: bool = False
    refused: str | None = None  # the IQS error code answered


def note_app(request: Request, app_id: str) -> None:
    """The application of an authenticated AI Search request: only a key that may search it gets this far, so
    the label holds applications that exist, never a name a caller made up."""
    request.state.metrics_app = app_id


def note_search(request: Request, result: SearchResult, corrected: bool = False) -> None:
    request.state.metrics_search = SearchNote(result.stages, len(result.hits), result.total_items, corrected)


def note_iqs(request: Request, **changes: Any) -> None:
    note = getattr(request.state, "metrics_iqs", None)
    if note is None:
        note = request.state.metrics_iqs = IqsNote()
    for name, value in changes.items():
        setattr(note, name, value)


# -- the metrics --------------------------------------------------------------------------------------------------


class Metrics:
    """The request-time metrics of one app, and the exposition of everything at scrape time."""

    def __init__(self, mm: MMSearch, dataset_ttl_s: float = DATASET_STATS_TTL_S) -> None:
        self.multiprocess = multiprocess_enabled()
        # multiprocess values live in files, whatever the registry; a scrape builds its registry over the files
        registry = None if self.multiprocess else CollectorRegistry()
        self.registry = registry
        self.requests = Counter("mmsearch_http_requests", "HTTP requests by route template, application and status",
                                ["route", "app", "status"], registry=registry)
        self.latency = Histogram("mmsearch_http_request_duration_seconds", "HTTP request latency by route template",
                                 ["route"], buckets=REQUEST_BUCKETS, registry=registry)
        self.stages = Histogram("mmsearch_search_stage_seconds", "search pipeline stage latency: plan (query "
                                "encoding), recall_text, recall_vlm, fuse, rerank, fetch", ["stage"],
                                buckets=STAGE_BUCKETS, registry=registry)
        self.zero_results = Counter("mmsearch_search_zero_results", "searches that found nothing, by application "
                                    "(empty for IQS MultimodalSearch)", ["app"], registry=registry)
        self.spell_corrected = Counter("mmsearch_search_spell_corrected", "searches whose query spell correction "
                                       "changed, by application", ["app"], registry=registry)
        self.iqs_charges = Counter("mmsearch_iqs_charges", "IQS queries charged to an account", registry=registry)
        self.iqs_refunds = Counter("mmsearch_iqs_refunds", "IQS charges refunded (the search failed after the "
                                   "charge)", registry=registry)
        self.iqs_refusals = Counter("mmsearch_iqs_refusals", "IQS requests refused, by IQS error code", ["code"],
                                    registry=registry)
        self.state = StateCollector(mm, dataset_ttl_s)
        if registry is not None:
            registry.register(self.state)
        # label children by value: `.labels()` validates and locks on every call (bounded: templates x apps x codes)
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def exposition(self) -> bytes:
        """The text format, all processes' counts together in multiprocess mode."""
        if not self.multiprocess:
            assert self.registry is not None
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(self.state)
        return generate_latest(registry)

    def close(self) -> None:
        """At a worker's exit: prometheus_client's bookkeeping for a dead process (live gauges; our counters and
        histograms stay, so what the worker counted is still in the sums)."""
        if self.multiprocess:
            mark_process_dead(os.getpid())


class StateCollector(Collector):
    """Gauges computed at scrape time (see the module doc). Each part fails alone: a catalog or store that cannot
    answer leaves its series out and logs why, and the rest of the scrape is served."""

    def __init__(self, mm: MMSearch, dataset_ttl_s: float) -> None:
        self.mm = mm
        self.dataset_ttl_s = dataset_ttl_s
        self._datasets: tuple[float, list[tuple[str, int, int | None]]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # nothing at registration: collect() reads the catalog and the store

    def collect(self) -> Iterator[Metric]:
        for part in (self._jobs, self._datasets_stats, self._models):
            try:
                yield from part()
            except Exception as exc:  # a scrape reports what it can
                log.warning("metrics: %s failed: %s: %s", part.__name__.strip("_"), type(exc).__name__, exc)

    def _jobs(self) -> list[Metric]:
        summary = self.mm.catalog.jobs.summary()
        jobs = GaugeMetricFamily("mmsearch_import_jobs", "import jobs by state", labels=["state"])
        for state, n in sorted(summary.by_status.items()):
            jobs.add_metric([state], n)
        return [
            jobs,
            GaugeMetricFamily("mmsearch_import_queue_depth", "import jobs waiting for a worker (queued)",
                              value=summary.by_status.get("queued", 0)),
            GaugeMetricFamily("mmsearch_import_items_pending", "items not yet applied in queued and running jobs",
                              value=summary.pending_items),
            GaugeMetricFamily("mmsearch_import_items_per_second", "items applied per second by the running jobs "
                              "together (each job's items over its running time)", value=summary.items_per_second),
        ]

    def _datasets_stats(self) -> list[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._datasets is None or now - self._datasets[0] >= self.dataset_ttl_s:
                rows = []
                for info in self.mm.datasets():
                    stats = self.mm.store.stats(info)
                    size = stats.get("disk_bytes")
                    rows.append((info.id, int(stats.get("rows", 0)), int(size) if size is not None else None))
                self._datasets = (now, rows)
            rows = self._datasets[1]
        items = GaugeMetricFamily("mmsearch_dataset_items", "items per dataset", labels=["dataset"])
        size = GaugeMetricFamily("mmsearch_dataset_bytes", "bytes on disk per dataset (every version the store "
                                 "keeps; embedded store only)", labels=["dataset"])
        for dataset, n, disk in rows:
            items.add_metric([dataset], n)
            if disk is not None:
                size.add_metric([dataset], disk)
        return [items, size]

    def _models(self) -> list[Metric]:
        """The image model as /readyz sees it (loaded on first ask, like a search would); OCR when it is on and
        RapidOCR is installed (`mmsearch doctor` loads it to be sure; a scrape does not load 100 MB for a gauge)."""
        model = bool(self.mm.encoder_status()["available"])
        ocr = bool(self.mm.settings.ocr) and find_spec("rapidocr_onnxruntime") is not None
        found = GaugeMetricFamily("mmsearch_model_available", "1 when the component can be used by this process",
                                  labels=["component"])
        found.add_metric(["image_model"], int(model))
        found.add_metric(["ocr"], int(ocr))
        return [found]


# -- per request --------------------------------------------------------------------------------------------------


class Observer:
    """What `RequestContext` calls when a request ends: the metrics, then the access log line."""

    def __init__(self, metrics: Metrics, routes: Callable[[], Iterable[Any]]) -> None:
        self.metrics = metrics
        self._routes = routes
        self._patterns: list[tuple[Any, str]] | None = None

    def route_of(self, scope: dict[str, Any]) -> str:
        """The matched route's template. Starlette leaves it in the scope; a mount (static files) or a request
        answered before routing (413) is matched against the templates here."""
        route = scope.get("route")
        if route is not None:
            path = getattr(route, "path_format", None) or getattr(route, "path", None)
            if path:
                return str(path) if getattr(route, "methods", None) is not None else f"{path}/{{path}}"
        if self._patterns is None:
            self._patterns = []
            for r in flat_routes(list(self._routes())):
                path = getattr(r, "path", None)
                if not path:
                    continue
                if getattr(r, "methods", None) is None:  # a mount: its path and anything under it
                    self._patterns.append((compile_path(path + "/{path:path}")[0], path + "/{path}"))
                else:
                    regex, path_format, _ = compile_path(path)
                    self._patterns.append((regex, path_format))
        path = scope.get("path", "")
        return next((label for regex, label in self._patterns if regex.match(path)), UNMATCHED)

    def __call__(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        m = self.metrics
        state = scope.get("state") or {}
        route = self.route_of(scope)
        app = state.get("metrics_app", "")
        m.child(m.requests, route, app, str(status)).inc()
        m.child(m.latency, route).observe(seconds)
        search: SearchNote | None = state.get("metrics_search")
        if search is not None:
            for stage, took in search.stages.items():
                m.child(m.stages, stage).observe(took)
            if search.total == 0:
                m.child(m.zero_results, app).inc()
            if search.corrected:
                m.child(m.spell_corrected, app).inc()
        iqs: IqsNote | None = state.get("metrics_iqs")
        if iqs is not None:
            if iqs.charged:
                m.iqs_charges.inc()
            if iqs.refunded:
                m.iqs_refunds.inc()
            if iqs.refused:
                m.child(m.iqs_refusals, iqs.refused).inc()
        if access_log.enabled():
            client = scope.get("client")
            access_log.write(state.get("request_id", ""), scope.get("method", ""), route, app, status, seconds,
                             search.results if search is not None else None, client[0] if client else None)


def metrics_endpoint(request: Request) -> Response:
    """`GET /metrics` (a plain function: FastAPI runs it in the thread pool, since the state gauges read the
    catalog and the store)."""
    if not request.app.state.mm.settings.metrics_public:
        request.app.state.auth.admin(request)  # 401 in the management API's error shape
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)
