"""What the metrics and the access log cost a search: the same in-process searches with and without them.

An engine on a temporary home with N generated items (the model-free hashing encoder), one application and key;
the app from `create_app` is called through httpx's ASGI transport (no sockets, no server: what remains is the
app's own work), one request at a time, in four variants interleaved block by block so that drift hits all alike,
timed in this process's CPU seconds (`time.process_time`: other work on a shared machine does not count):

- *off*: `RequestContext.observer = None` (no metrics, no access log: the code before issue 15);
- *metrics*: the observer, with the access logger below INFO (a server started with `--log-level warning`);
- *metrics + JSON log*: also one JSON line per request, written to /dev/null by a StreamHandler;
- *metrics + text log*: the same with the plain formatter.

It also times the observer alone (`Observer.__call__` on a search's scope, 20,000 calls), which is the cost
without the noise of the searches around it. `--multiprocess` re-runs itself with PROMETHEUS_MULTIPROC_DIR set,
so prometheus_client writes memory-mapped files as under `serve --workers N`.

    python bench/metrics_overhead.py                   # 2,000 searches per variant, in-process registry
    python bench/metrics_overhead.py --multiprocess    # the same with multiprocess mode

Figures are printed and written to docs/benchmarks.md between `<!-- bench:metrics-overhead N=... -->` markers
(one section per mode).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = ("off", "metrics", "metrics + JSON log", "metrics + text log")
WORDS = ["running", "shoe", "canvas", "bag", "red", "dress", "leather", "coat", "wool", "kids", "trail", "sock"]


def build(home: Path, n: int) -> tuple[Any, str]:
    from mmsearch.api.app import create_app
    from mmsearch.config import Settings
    from mmsearch.core import MMSearch
    from mmsearch.encoders.hashing import HashingEncoder

    mm = MMSearch(Settings(home=home, admin_token="bench", ocr=False), encoder=HashingEncoder(8))
    schema = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                         {"name": "title", "type": "string", "searchable": True},
                         {"name": "shelf", "type": "int32", "filterable": True}]}
    mm.create_dataset("goods", schema, vector_dim=8)
    items = [{"id": f"g{i}", "title": " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7)), "shelf": i % 5}
             for i in range(n)]
    mm.import_items("goods", items)
    mm.catalog.apps.create("shop", ["goods"], {})
    return create_app(mm, run_jobs=False), mm.catalog.keys.create(["shop"]).key


def configure(variant: str, handler: logging.Handler) -> None:
    from mmsearch.api.access_log import LOGGER, JsonFormatter, TextFormatter

    logger = logging.getLogger(LOGGER)
    logger.propagate = False
    if handler not in logger.handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if "log" in variant else logging.WARNING)
    handler.setFormatter(JsonFormatter() if "JSON" in variant else TextFormatter())


async def run(app: Any, key: str, searches: int, block: int) -> dict[str, list[float]]:
    import httpx

    observer = app.observer
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the run)
    body = {"query": {"text": "running shoe"}, "dataset_id": "goods", "page_size": 10}
    headers = {"Authorization": f"Bearer {key}"}
    per_request: dict[str, list[float]] = {v: [] for v in VARIANTS}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        for _ in range(200):  # warm-up: serving index, caches, label children
            assert (await client.post("/api/v1/application/shop/search", json=body, headers=headers)).status_code == 200
        for _ in range(searches // block):
            for variant in VARIANTS:
                app.observer = None if variant == "off" else observer
                configure(variant, handler)
                started = time.process_time()
                for _ in range(block):
                    r = await client.post("/api/v1/application/shop/search", json=body, headers=headers)
                    assert r.status_code == 200, r.text
                per_request[variant].append((time.process_time() - started) / block)
    app.observer = observer
    return per_request


def observer_alone(app: Any, calls: int = 20_000) -> dict[str, float]:
    """µs per `Observer.__call__` for a search's scope, with the access log off and with each formatter."""
    from mmsearch.api.metrics import SearchNote
    from mmsearch.api.routing import flat_routes

    route = next(getattr(r, "original_route", r) for r in flat_routes(app.app.routes)
                 if (getattr(r, "path", None) or "").endswith("/search"))
    scope = {"type": "http", "method": "POST", "path": "/api/v1/application/shop/search", "route": route,
             "client": ("127.0.0.1", 5000), "state": {
                 "request_id": "0f0e4b8e-7d0c-4a8a-9d8c-0c2f4f7a5b11", "metrics_app": "shop",
                 "metrics_search": SearchNote({"plan": 3e-4, "recall_vlm": 4e-4, "recall_text": 5e-4, "fuse": 5e-5,
                                               "rerank": 6e-4, "fetch": 1e-5}, 10, 42, False)}}
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    out = {}
    for variant in VARIANTS[1:]:
        configure(variant, handler)
        started = time.process_time()
        for _ in range(calls):
            app.observer(scope, 200, 0.004)
        out[variant] = (time.process_time() - started) / calls * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000, help="items in the dataset")
    parser.add_argument("--searches", type=int, default=2_000, help="searches per variant")
    parser.add_argument("--block", type=int, default=20, help="searches per variant in turn")
    parser.add_argument("--multiprocess", action="store_true", help="prometheus_client's multiprocess mode")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if args.multiprocess and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        with tempfile.TemporaryDirectory() as folder:  # set before prometheus_client is imported: a new process
            env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder}
            sys.exit(subprocess.call([sys.executable, *sys.argv], env=env))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("MMSEARCH_CLIP_MODEL", "none")
    from mmsearch.api.metrics import multiprocess_enabled

    mode = "multiprocess (mmap files)" if multiprocess_enabled() else "one process (in-memory registry)"
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as home:
        app, key = build(Path(home), args.n)
        per_request = asyncio.run(run(app, key, args.searches, args.block))
        alone = observer_alone(app)
    rows = []
    for variant in VARIANTS:
        median = statistics.median(per_request[variant])
        # paired: each block against the `off` block of the same round, so slow spells of the machine cancel
        paired = statistics.median(a - b for a, b in zip(per_request[variant], per_request["off"], strict=True))
        extra = "" if variant == "off" else f"{paired * 1e6:+.0f} µs"
        rows.append(f"| {variant} | {median * 1e3:.3f} ms | {extra} | {alone.get(variant, 0.0):.1f} µs |"
                    if variant != "off" else f"| off | {median * 1e3:.3f} ms | | |")
    flags = " --multiprocess" if args.multiprocess else ""
    section = "\n".join([
        f"<!-- bench:metrics-overhead N={2 if args.multiprocess else 1} -->",
        f"### Metrics and logging overhead: {mode}",
        "",
        f"Run {dt.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load:.1f}: `python bench/metrics_overhead.py{flags}`. "
        f"{args.searches:,} text searches per variant ({args.n:,} items, rerank on) through httpx's ASGI transport, "
        f"CPU time of the process, variants interleaved in blocks of {args.block}; per search: the median "
        "block's time per request; vs off: the median, over rounds, of a block's time per request minus the "
        "`off` block's of the same round. "
        "The last column times the observer alone (20,000 calls on a search's scope): the figure to read, since "
        "the searches around it vary by more than it costs.",
        "",
        "| variant | per search | vs off (median of paired blocks) | observer alone |",
        "|---|---|---|---|",
        *rows,
        "<!-- /bench:metrics-overhead -->",
    ])
    print(section)
    if not args.no_record:
        from docs_section import record_section

        record_section("metrics-overhead", 2 if args.multiprocess else 1, section)


if __name__ == "__main__":
    main()
