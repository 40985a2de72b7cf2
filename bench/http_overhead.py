"""HTTP overhead per search: the same request through the library and over HTTP, interleaved, one at a time.

bench/http_load.py's setup (bench/engine.py's seeded catalogue, its two applications, one API key and a tiny
CLIP-shaped ONNX model) at a small N, then, query by query in turn:

- *library*: what the search handler does without HTTP, in this process: `volc.SearchBody.model_validate`,
  `to_request`, `MMSearch.search_app`, `to_response` (as http_load.in_process does; the answer is not encoded);
- *HTTP*: the same body POSTed to `mmsearch serve` in its own process (one uvicorn worker) by one keep-alive
  httpx client, the answer read and parsed;
- *HTTP, http.client*: the same body on a keep-alive `http.client` connection (the standard library's client,
  in C where it matters): httpx spends ~0.7 ms of client CPU a request more on this machine, which is the
  client's cost, not the server's, so the overhead is reported with both clients;
- *round trip*: `GET /healthz` on each connection (uvicorn + FastAPI + the client with no work at all).

Interleaving query by query means the engine's own time, which dominates both, drifts the same way in both
columns; the overhead is reported as the median of the per-query differences (HTTP minus library) as well as
the difference of the p50s. On a shared machine the engine in the server process can run slower or faster than
the same engine in this one, so the script also reports the time *outside* `search_app` on each side: for
HTTP, the client's time minus the server's own `search_app` latency for that request (from the query log,
matched by request id); for the library, the call's time minus its `search_app` time. Their difference is the
HTTP overhead with the engine taken out of both.

    python bench/http_overhead.py                       # N=20,000, 300 requests per scenario
    python bench/http_overhead.py --home /tmp/ov --no-record

Figures are printed and written to docs/benchmarks.md between `<!-- bench:http-overhead N=... -->` markers.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the model hub

import argparse
import datetime as dt
import http.client
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console

import engine
import http_load
from docs_section import DOC, record_section
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from server_process import ServerProcess

SCENARIOS = ("text, rerank off", "text+filter+sort, rerank off", "text")


def library_call(mm: MMSearch, app: str, body: dict[str, Any]) -> float:
    """The handler's work without HTTP, as bench/http_load.py's `in_process` times it; returns the seconds spent
    in `search_app`."""
    from mmsearch.api import volc

    parsed = volc.SearchBody.model_validate(body)
    request = volc.to_request(parsed)
    t = time.perf_counter()
    found = mm.search_app(app, parsed.dataset_id, request, request_id="bench")
    inner = time.perf_counter() - t
    volc.to_response("bench", found)
    return inner


def measure(mm: MMSearch, client: httpx.Client, plain: http.client.HTTPConnection, scens: list[http_load.Scenario],
            count: int, console: Console) -> dict[str, dict[str, np.ndarray]]:
    """Per scenario: library ms, HTTP ms (httpx and http.client) and round-trip ms, one of each per query, in
    turn."""
    out: dict[str, dict[str, np.ndarray]] = {}
    headers = dict(client.headers)
    for sc in scens:
        path = f"/api/v1/application/{sc.app}/search"
        lib, lib_inner, http, bare, rids = [], [], [], [], []
        http_plain, bare_plain, rids_plain = [], [], []
        for i in range(count + 20):
            body = sc.bodies[i % len(sc.bodies)]
            payload = json.dumps(body, ensure_ascii=False).encode()
            t = time.perf_counter()
            inner = library_call(mm, sc.app, body)
            t_lib = time.perf_counter() - t
            t = time.perf_counter()
            r = client.post(path, content=payload)
            answer = r.json()
            t_http = time.perf_counter() - t
            if r.status_code != 200 or not answer["result"]["search_results"]:
                raise SystemExit(f"HTTP {sc.name}: {r.status_code} {r.text[:300]}")
            t = time.perf_counter()
            plain.request("POST", path, body=payload, headers=headers)
            response = plain.getresponse()
            answer_plain = json.loads(response.read())
            t_plain = time.perf_counter() - t
            if response.status != 200:
                raise SystemExit(f"HTTP (http.client) {sc.name}: {response.status} {answer_plain}")
            t = time.perf_counter()
            client.get("/healthz").json()
            t_bare = time.perf_counter() - t
            t = time.perf_counter()
            plain.request("GET", "/healthz")
            json.loads(plain.getresponse().read())
            t_bare_plain = time.perf_counter() - t
            if i >= 20:  # the first twenty warm both sides' caches
                lib.append(t_lib * 1000)
                lib_inner.append(inner * 1000)
                http.append(t_http * 1000)
                bare.append(t_bare * 1000)
                rids.append(answer["request_id"])
                http_plain.append(t_plain * 1000)
                bare_plain.append(t_bare_plain * 1000)
                rids_plain.append(answer_plain["request_id"])
        out[sc.name] = {"library": np.asarray(lib), "library_inner": np.asarray(lib_inner), "http": np.asarray(http),
                        "bare": np.asarray(bare), "rids": np.asarray(rids), "http_plain": np.asarray(http_plain),
                        "bare_plain": np.asarray(bare_plain), "rids_plain": np.asarray(rids_plain)}
    return out


def add_server_times(results: dict[str, dict[str, np.ndarray]], mm: MMSearch, console: Console) -> None:
    """The server's own `search_app` latency of each HTTP request, from the query log (after the server stopped,
    so its last entries are written)."""
    by_rid = {e.request_id: e.latency_ms for e in mm.catalog.query_log.recent(limit=100_000)}
    for name, m in results.items():
        m["http_inner"] = np.asarray([by_rid.get(r, np.nan) for r in m["rids"]], dtype=float)
        m["plain_inner"] = np.asarray([by_rid.get(r, np.nan) for r in m["rids_plain"]], dtype=float)
        row = figures(m)
        console.log(f"{name:<30} library p50 {row[0]:6.2f} ms  HTTP p50 {row[1]:6.2f} ms  "
                    f"overhead {row[2]:+5.2f} ms (median of differences {row[3]:+5.2f}, outside the engine "
                    f"{row[4]:+5.2f}; http.client {row[6]:+5.2f})  round trip {row[5]:.2f} ms "
                    f"(http.client {row[7]:.2f} ms)")


def figures(m: dict[str, np.ndarray]) -> tuple[float, ...]:
    """library p50, HTTP p50, their difference, median per-query difference, the difference of the medians of
    the time outside `search_app` (HTTP side minus library side), /healthz p50; then the time outside the engine
    and the /healthz p50 with http.client as the client."""
    lib50, http50 = float(np.median(m["library"])), float(np.median(m["http"]))
    lib_outside = np.median(m["library"] - m["library_inner"])
    outside = float(np.nanmedian(m["http"] - m["http_inner"]) - lib_outside)
    outside_plain = float(np.nanmedian(m["http_plain"] - m["plain_inner"]) - lib_outside)
    return (lib50, http50, http50 - lib50, float(np.median(m["http"] - m["library"])), outside,
            float(np.median(m["bare"])), outside_plain, float(np.median(m["bare_plain"])))


HEAD = ["scenario", "library p50 ms", "HTTP p50 ms (httpx)", "HTTP − library (p50s)", "median per-query difference",
        "**overhead outside the engine, httpx**", "GET /healthz p50 ms, httpx",
        "**overhead outside the engine, http.client**", "GET /healthz p50 ms, http.client"]


def rows(label: str, table: dict[str, list[float]]) -> list[str]:
    out = []
    for name, (lib50, http50, diff, paired, outside, bare, *plain) in table.items():
        outside_plain, bare_plain = (f"**{plain[0]:+.2f} ms**", f"{plain[1]:.2f}") if plain else ("–", "–")
        out.append(f"| {label} | {name} | {lib50:.2f} | {http50:.2f} | {diff:+.2f} ms | {paired:+.2f} ms | "
                   f"**{outside:+.2f} ms** | {bare:.2f} | {outside_plain} | {bare_plain} |")
    return out


def markdown(args: argparse.Namespace, results: dict[str, dict[str, np.ndarray]], load: float, label: str,
             before: dict[str, Any] | None) -> str:
    today = dt.date.today().isoformat()
    now = {name: list(figures(m)) for name, m in results.items()}
    lines = rows(label or "this run", now)
    if before:
        lines = rows(before["label"], before["figures"]) + lines
    return "\n".join([
        f"<!-- bench:http-overhead N={args.n} -->",
        f"### HTTP overhead per search, N = {args.n:,}",
        "",
        f"Run {today} on {engine.machine()}: `python bench/http_overhead.py --n {args.n} --queries {args.count}`. "
        f"Library call and HTTP request interleaved query by query ({args.count} of each per scenario after 20 "
        "warm-up), one client, keep-alive, server in its own process (one uvicorn worker), tiny CLIP-shaped model. "
        f"Load average {load:.1f} when it started (2 cores shared with other work: ±0.5 ms is noise)."
        + (f" The `{before['label']}` rows: {before['note']}." if before else ""),
        "",
        "| code | " + " | ".join(HEAD) + " |",
        "|" + "---|" * (len(HEAD) + 1),
        *lines,
        "<!-- /bench:http-overhead -->",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="items in the dataset")
    parser.add_argument("--home", type=Path, default=None, help="data directory, kept and reused (default: temp)")
    parser.add_argument("--queries", dest="count", type=int, default=300, help="requests per scenario")
    parser.add_argument("--label", default="", help="a note for the section title (e.g. 'before')")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--save", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--before", type=Path, default=None,
                        help="a --save file of an earlier run (e.g. the code before a change) to show beside this one")
    args = parser.parse_args(argv)

    console = Console()
    load = os.getloadavg()[0]
    home = args.home or Path(tempfile.mkdtemp(prefix="mmsearch-bench-overhead-"))
    home.mkdir(parents=True, exist_ok=True)
    server: ServerProcess | None = None
    try:
        setup = http_load.prepare(home, args.n, 5_000, console)
        scens, _ = http_load.scenarios(args.n, 200, 1, rerank_off=True)
        by_name = {s.name: s for s in scens}
        chosen = [by_name[name] for name in SCENARIOS]
        mm = MMSearch(Settings(home=setup.home, clip_model=str(setup.model_dir), ocr=False))
        try:
            server = ServerProcess(setup.home, str(setup.model_dir), home / "bench-overhead-server.log")
            server.wait_ready()
            headers = {"Authorization": f"Bearer {setup.key}", "Content-Type": "application/json"}
            host, port = server.url.split("//")[1].split(":")
            plain = http.client.HTTPConnection(host, int(port), timeout=60)
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                results = measure(mm, client, plain, chosen, args.count, console)
            plain.close()
        finally:
            if server is not None:
                server.stop()  # its query log is written on the way out
        add_server_times(results, mm, console)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    if args.save:
        note = f"load average {load:.1f}, run {dt.datetime.now().isoformat(timespec='minutes')}"
        args.save.write_text(json.dumps({"label": args.label or "earlier run", "note": note,
                                         "figures": {k: list(figures(m)) for k, m in results.items()}}))
    if not args.no_record:
        before = json.loads(args.before.read_text()) if args.before else None
        record_section("http-overhead", args.n, markdown(args, results, load, args.label, before), DOC)
        console.log(f"recorded in {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
