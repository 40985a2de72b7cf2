"""HTTP benchmark: concurrent clients against a running `mmsearch serve` at N items (QPS, p50, p99).

The catalogue is bench/engine.py's (seeded, clustered 512-d vectors, Zipf Chinese titles, typed fields),
imported through the real library path. Two applications are bound to it (rerank on, the default, and
rerank off; both `max_page_size` 20, spelling correction off) and one API key serves both.

The server is a separate process (`mmsearch --home H serve`, one uvicorn worker, on 127.0.0.1), so the load
generator does not share its GIL; it loads a tiny CLIP-shaped ONNX model (tests/tiny_clip.py, built here with
512-d outputs to match the dataset), so the `vlm` channel runs for text and image queries. The tiny model
costs almost nothing to run: image-query latency here is the server's own cost (data URI parsing, JPEG decode,
preprocessing, ANN search, rerank, JSON) without a real model's encode cost, which bench/encode.py measures.

The load generator is asyncio + httpx with keep-alive: C clients each send their next request as soon as the
previous answer arrived (closed loop), for a warm-up and then a fixed duration per scenario:

- *text*: one or two title words (`query.text`), so the text and vlm channels both run;
- *text+filter+sort*: the same words plus bench/engine.py's filter (six categories, a price band, in stock:
  about 20% of the items) sorted by sales;
- *image*: `query.image_url`, a base64 data URI of a 640x480 JPEG (~30 KB; the vlm channel only).

A request counts as an error unless it answers 200 with at least one result. Nothing leaves the machine.

    python bench/http_load.py --n 100000 --duration 10 --concurrency 1,4,16
    python bench/http_load.py --n 5000 --duration 3 --no-record          # quick check
    python bench/http_load.py --n 100000 --home /tmp/bench-100k          # keep (and later reuse) the data

Figures are printed as a table and written to docs/benchmarks.md between `<!-- bench:http N=... -->` markers.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the model hub

import sys

# tests/ holds tiny_clip (a CLIP-shaped ONNX model built on the spot).
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import argparse
import base64
import datetime as dt
import io
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from rich.console import Console
from rich.table import Table

import engine
import tiny_clip
from docs_section import DOC, record_section
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from server_process import LoadRun, ServerProcess, measure_load

APP = "bench_http"
APP_NO_RERANK = "bench_http_norerank"
CONFIG: dict[str, Any] = {"max_page_size": 20, "spell_correction": "off", "rerank": True}
PAGE_SIZE = 10
SEED = 20240611  # bench/engine.py's seed: a --home built by engine.py holds the same items


# -- setup ---------------------------------------------------------------------------------------------
@dataclass
class Setup:
    home: Path
    model_dir: Path
    key: str
    built: bool
    import_s: float = 0.0
    maintain_s: float = 0.0


def prepare(home: Path, n: int, batch_size: int, console: Console) -> Setup:
    """The dataset (built, or reused when HOME already holds N rows), both applications, a key, the model."""
    mm = MMSearch(Settings(home=home, clip_model="none", ocr=False))
    built, import_s, maintain_s = False, 0.0, 0.0
    have = {d.id for d in mm.datasets()}
    if engine.DATASET in have and mm.stats(engine.DATASET)["rows"] == n:
        console.log(f"reusing dataset {engine.DATASET} ({n:,} rows) in {home}")
    else:
        for app in (APP, APP_NO_RERANK):
            if app in {a.id for a in mm.catalog.apps.list()}:
                mm.catalog.apps.remove(app)
        if engine.DATASET in have:
            mm.drop_dataset(engine.DATASET)
        world = engine.World.make(n, seed=SEED)
        import_s, _gen, maintain_s, maint = engine.build(mm, world, n, batch_size, console)
        console.log(f"import {import_s:.1f}s, index build {maintain_s:.1f}s: {maint}")
        built = True
    apps = {a.id for a in mm.catalog.apps.list()}
    for app, rerank in ((APP, True), (APP_NO_RERANK, False)):
        config = {**CONFIG, "rerank": rerank}
        if app in apps:
            mm.catalog.apps.update(app, [engine.DATASET], config)
        else:
            mm.catalog.apps.create(app, [engine.DATASET], config)
    key = mm.catalog.keys.create([APP, APP_NO_RERANK], name="bench-http").key
    mm.catalog.engine.dispose()

    model_dir = home / f"tiny-clip-{engine.DIM}"
    if not (model_dir / "config.json").is_file():
        tiny_clip.DIM = engine.DIM  # the tiny towers read DIM when they are built: match the dataset
        tiny_clip.build_immich(model_dir)
    return Setup(home, model_dir, key, built, import_s, maintain_s)


def product_jpeg(i: int) -> bytes:
    """A seeded 640x480 'photo' (gradient, shapes, sensor-like noise), JPEG quality 85: about 30 KB."""
    rng = np.random.default_rng([SEED, 3, i])
    w, h = 640, 480
    top, bottom = rng.integers(60, 256, 3), rng.integers(60, 256, 3)
    ramp = np.linspace(0.0, 1.0, h)[:, None, None]
    pixels = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (h, w, 3)).copy()
    img = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = int(rng.integers(0, w - 120)), int(rng.integers(0, h - 120))
        size = int(rng.integers(60, 240))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + size, y + size), fill=fill)
    img = img.filter(ImageFilter.GaussianBlur(2))
    noisy = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 4.0, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


@dataclass
class Scenario:
    name: str
    app: str
    bodies: list[dict[str, Any]]


def scenarios(n: int, count: int, images: int, rerank_off: bool) -> tuple[list[Scenario], int]:
    """Request bodies per scenario (clients take them in turn), and the average JPEG size in bytes."""
    q = engine.make_queries(engine.World.make(n, seed=SEED), count)
    base = {"dataset_id": engine.DATASET, "page_size": PAGE_SIZE}
    text = [{**base, "query": {"text": t}} for t in q.texts]
    filtered = [{**base, "query": {"text": t}, "filter": f, "sort_by": "sales", "sort_order": "desc"}
                for t, f in zip(q.texts, q.filters, strict=True)]
    jpegs = [product_jpeg(i) for i in range(images)]
    image = [{**base, "query": {"image_url": "data:image/jpeg;base64," + base64.b64encode(j).decode()}}
             for j in jpegs]
    out = [Scenario("text", APP, text), Scenario("text+filter+sort", APP, filtered), Scenario("image", APP, image)]
    if rerank_off:
        out += [Scenario(f"{s.name}, rerank off", APP_NO_RERANK, s.bodies) for s in out]
    return out, sum(len(j) for j in jpegs) // len(jpegs)


def in_process(setup: Setup, scens: list[Scenario], count: int, console: Console) -> dict[str, np.ndarray]:
    """The same handler code without HTTP, one request at a time: body validation, `to_request` (which decodes
    the image), `search_app` and `to_response`. HTTP p50 minus this is the cost of uvicorn, FastAPI and JSON."""
    from mmsearch.api import volc

    mm = MMSearch(Settings(home=setup.home, clip_model=str(setup.model_dir), ocr=False))
    out: dict[str, np.ndarray] = {}
    for sc in scens:
        app = sc.app
        bodies = [sc.bodies[i % len(sc.bodies)] for i in range(count + 10)]
        times = []
        for i, body in enumerate(bodies):
            t = time.perf_counter()
            parsed = volc.SearchBody.model_validate(body)
            found = mm.search_app(app, parsed.dataset_id, volc.to_request(parsed), request_id="bench")
            answer = volc.to_response("bench", found)
            if i >= 10:  # the first ten warm the caches
                times.append((time.perf_counter() - t) * 1000)
            if not answer["result"]["search_results"]:
                raise SystemExit(f"in-process {sc.name}: no results for {body.get('query')}")
        out[sc.name] = np.asarray(times)
        console.log(f"in-process {sc.name:<28} p50 {np.percentile(times, 50):6.1f} ms  "
                    f"p99 {np.percentile(times, 99):6.1f} ms")
    mm.catalog.query_log.flush()
    mm.catalog.engine.dispose()
    return out


# -- the server ----------------------------------------------------------------------------------------
# -- load ----------------------------------------------------------------------------------------------
@dataclass
class Run(LoadRun):
    """errors: non-200, transport errors, or 200 without results."""

    channels: set[str] = field(default_factory=set)  # recall_reason values seen in the answers

    @property
    def server_cores(self) -> float:
        return self.server_cpu_s / self.seconds if self.seconds else float("nan")

    @property
    def server_ms_per_req(self) -> float:
        done = self.ok + self.errors
        return self.server_cpu_s * 1000 / done if done else float("nan")


def measure(server: ServerProcess, key: str, sc: Scenario, concurrency: int, warmup: float, seconds: float) -> Run:
    run = Run(sc.name, concurrency)

    def accept(r: httpx.Response) -> bool:
        hits = r.json().get("result", {}).get("search_results") if r.status_code == 200 else None
        for hit in hits or []:
            run.channels.update(x["recall_reason"] for x in hit.get("recall_info", []))
        return bool(hits)

    return measure_load(server, key, f"/api/v1/application/{sc.app}/search", sc.bodies, run, warmup, seconds, accept)


# -- reporting -----------------------------------------------------------------------------------------
def cells(r: Run) -> list[str]:
    return [
        r.scenario, str(r.concurrency), f"{r.qps:,.1f}", f"{r.pct(50):.1f}", f"{r.pct(99):.1f}",
        f"{r.ok:,}", str(r.errors), f"{r.server_ms_per_req:.1f}", f"{r.server_cores:.2f}",
        f"{r.client_cpu_s / r.seconds:.0%}",
        ", ".join(sorted(r.channels)) or "-",
    ]


HEAD = ["scenario", "clients", "QPS", "p50 ms", "p99 ms", "requests", "errors", "server CPU ms/req",
        "server cores busy", "client CPU", "channels"]


INPROC_HEAD = ["scenario", "in-process p50 ms", "in-process p99 ms", "HTTP p50 ms, 1 client", "HTTP overhead p50"]


def inproc_cells(inproc: dict[str, np.ndarray], runs: list[Run]) -> list[list[str]]:
    rows = []
    for name, lat in inproc.items():
        p50, p99 = np.percentile(lat, [50, 99])
        single = [r for r in runs if r.scenario == name and r.concurrency == 1]
        http50 = single[0].pct(50) if single else float("nan")
        rows.append([name, f"{p50:.1f}", f"{p99:.1f}", f"{http50:.1f}", f"{http50 - p50:+.1f} ms"])
    return rows


def markdown(args: argparse.Namespace, runs: list[Run], inproc: dict[str, np.ndarray], setup: Setup,
             ready: dict[str, Any], jpeg_bytes: int, server_rss: float, load_before: tuple[float, float, float],
             wall_s: float) -> str:
    import fastapi
    import lancedb
    import uvicorn

    today = dt.date.today().isoformat()
    cores = os.cpu_count() or 1
    busy = (f"Other work (test runs) was sharing the machine too (load average {load_before[0]:.1f} when the "
            "benchmark started), so QPS is a floor and p99 is noisy: compare rows of one run rather than runs."
            if load_before[0] > 0.5 * cores else f"Load average {load_before[0]:.1f} when the benchmark started.")
    conc = ",".join(str(c) for c in args.concurrency)
    model = ready.get("model", {})
    built = (f"built by this run: import {setup.import_s:.0f} s, index build {setup.maintain_s:.0f} s"
             if setup.built else "reused from `--home`")
    lines = [
        f"<!-- bench:http N={args.n} -->",
        f"### HTTP server, N = {args.n:,}",
        "",
        f"Run {today} on {engine.machine()}; uvicorn {uvicorn.__version__}, fastapi {fastapi.__version__}, "
        f"httpx {httpx.__version__}, lancedb {lancedb.__version__}. "
        f"`python bench/http_load.py --n {args.n} --duration {args.duration:g} --concurrency {conc}`.",
        "",
        f"`mmsearch serve` (one uvicorn worker) in its own process on 127.0.0.1; the load generator (asyncio + "
        f"httpx, keep-alive, closed loop: each client sends its next request when the previous answer arrives) "
        f"in another. {args.warmup:g} s warm-up, then {args.duration:g} s per row. Dataset: bench/engine.py's "
        f"catalogue ({built}). Application `max_page_size` 20, spelling correction off, page_size "
        f"{PAGE_SIZE}. Model: tiny CLIP-shaped ONNX ({model.get('dim')}-d, tests/tiny_clip.py), so the vlm channel "
        f"runs, but **image and text latencies exclude a real model's encode cost** (a real CLIP image tower is "
        f"tens to hundreds of ms per image on 2 CPU cores; bench/encode.py measures encoding). Image queries are "
        f"base64 data URIs of 640x480 JPEGs, {jpeg_bytes / 1024:.0f} KiB on average (decoded and preprocessed "
        f"by the server).",
        "",
        "| " + " | ".join(HEAD) + " |",
        "|" + "---|" * len(HEAD),
        *["| " + " | ".join(cells(r)) + " |" for r in runs],
        "",
        "- *errors*: non-200 answers, transport errors or answers without results "
        f"({sum(r.errors for r in runs)} in all). *channels*: the `recall_reason`s seen in the answers. "
        "*server CPU ms/req*: the server process's CPU time (all its threads) over the row divided by its "
        f"requests; *server cores busy*: that CPU time per second of the row (at most {cores}). *client CPU*: "
        "the load generator's share of one core.",
        "- Closed-loop clients: once the server is saturated, more clients add queueing, not throughput, so p50 "
        "grows about as clients / QPS. Text queries run on the server's event loop (api/volc.py: the serving "
        "index answers from memory), so one process uses about one core for them; image queries decode and "
        "encode in worker threads, which release the GIL, hence more than one core busy.",
        f"- Client and server share the machine's {cores} cores. {busy}",
        f"- Server peak RSS {server_rss:,.0f} MB; benchmark wall time {wall_s:.0f} s.",
    ]
    if inproc:
        lines += [
            "",
            f"The same handler code without HTTP (`SearchBody` validation, `to_request` including the image decode, "
            f"`search_app`, `to_response`), called in the benchmark process one request at a time before the "
            f"server started, {args.inproc_queries} requests per scenario after 10 warm-up requests. The two "
            "columns were measured at different moments on a shared machine: overheads of a few ms are noise.",
            "",
            "| " + " | ".join(INPROC_HEAD) + " |",
            "|" + "---|" * len(INPROC_HEAD),
            *["| " + " | ".join(row) + " |" for row in inproc_cells(inproc, runs)],
        ]
    lines += [
        "<!-- /bench:http -->",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="items in the dataset")
    parser.add_argument("--home", type=Path, default=None,
                        help="data directory, kept and reused when it already holds N items (default: a temp dir)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario and concurrency")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each measurement")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",") if x.strip()],
                        default=[1, 4, 16], help="comma-separated client counts (default 1,4,16)")
    parser.add_argument("--queries", type=int, default=500, help="distinct text/filter queries (taken in turn)")
    parser.add_argument("--images", type=int, default=16, help="distinct query images (taken in turn)")
    parser.add_argument("--inproc-queries", type=int, default=100,
                        help="queries per scenario for the in-process (no HTTP) comparison; 0 skips it")
    parser.add_argument("--no-rerank-off", action="store_true", help="skip the rows with rerank turned off")
    parser.add_argument("--batch-size", type=int, default=5_000, help="items per import batch")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if args.n < 1 or args.duration <= 0 or not args.concurrency or min(args.concurrency) < 1:
        parser.error("--n, --duration and --concurrency must be positive")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below
    console = Console()
    wall = time.perf_counter()
    load_before = os.getloadavg()
    home = args.home or Path(tempfile.mkdtemp(prefix="mmsearch-bench-http-"))
    home.mkdir(parents=True, exist_ok=True)
    server: ServerProcess | None = None
    try:
        setup = prepare(home, args.n, args.batch_size, console)
        scens, jpeg_bytes = scenarios(args.n, args.queries, args.images, not args.no_rerank_off)
        inproc = in_process(setup, scens, args.inproc_queries, console) if args.inproc_queries else {}
        server = ServerProcess(setup.home, str(setup.model_dir), home / "bench-http-server.log")
        ready = server.wait_ready()
        console.log(f"server ready at {server.url}: channels {ready.get('channels')}, model {ready.get('model')}")
        runs = []
        for sc in scens:
            for c in args.concurrency:
                r = measure(server, setup.key, sc, c, args.warmup, args.duration)
                console.log(f"{sc.name:<28} c={c:<3} {r.qps:7.1f} QPS  p50 {r.pct(50):6.1f} ms  "
                            f"p99 {r.pct(99):6.1f} ms  errors {r.errors}")
                if r.error_samples:
                    console.log(f"  first error: {r.error_samples[0]}")
                runs.append(r)
        server_rss = server.rss_mb()
    finally:
        if server is not None:
            server.stop()
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)

    table = Table(title=f"mmsearch HTTP, N={args.n:,} ({engine.machine()})")
    for i, h in enumerate(HEAD):
        table.add_column(h, justify="left" if i in (0, len(HEAD) - 1) else "right")
    for r in runs:
        table.add_row(*cells(r))
    wide = console if console.is_terminal else Console(width=170)
    wide.print(table)
    if inproc:
        small = Table(title="the same requests in process, without HTTP (one at a time)")
        for i, h in enumerate(INPROC_HEAD):
            small.add_column(h, justify="left" if i == 0 else "right")
        for row in inproc_cells(inproc, runs):
            small.add_row(*row)
        wide.print(small)
    if not args.no_record:
        wall_s = time.perf_counter() - wall
        section = markdown(args, runs, inproc, setup, ready, jpeg_bytes, server_rss, load_before, wall_s)
        record_section("http", args.n, section, DOC)
        console.log(f"recorded in {DOC}")
    return 1 if any(r.errors for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
