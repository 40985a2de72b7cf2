"""Console pages: time to first paint in Chromium on the demo data, next to the same page served as a static file.

The demo home is what `mmsearch quickstart --no-serve` builds (the shipped sample catalogue, its application
and key; no image model), plus a few searches for the query log and an IQS account. `mmsearch serve` runs in
its own process; Debian's Chromium (Playwright, `executable_path`) signs in and loads each page N times. The
floor is the same page's HTML, saved once and served with its stylesheet and scripts by `python -m http.server`
on loopback: what the browser needs to paint those bytes with no server work. Pages and the floor are loaded
interleaved, page by page, so drift hits both alike.

    python bench/console.py                 # N=15 loads per page
    python bench/console.py --n 30 --no-record

Figures: first-contentful-paint p50/p95 (ms), the server's answer (requestStart to responseEnd, p50), and the
ratio of the page's FCP p50 to its static copy's. Written to docs/benchmarks.md between
`<!-- bench:console N=... -->` markers.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from docs_section import record_section
from server_process import HOST, ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "src" / "mmsearch" / "api" / "console" / "static"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGES = {
    "sign-in": "/console/login",
    "applications": "/console",
    "app settings": "/console/apps/demo/settings",
    "datasets": "/console/datasets",
    "dataset page": "/console/datasets/demo_products",
    "new dataset": "/console/datasets/new",
    "jobs": "/console/jobs",
    "keys": "/console/keys",
    "playground 运动鞋": "/console/apps/demo?q=" + quote("运动鞋"),
    "playground 运功鞋 (spelling)": "/console/apps/demo?q=" + quote("运功鞋"),
    "playground filtered, sorted": "/console/apps/demo?q=" + quote("女鞋") + "&c0.field=status&c0.op=must&c0.value=1"
                                   "&sort_by=price&sort_order=asc",
    "query log": "/console/queries",
    "web search": "/console/web?q=" + quote("运动鞋"),
    "IQS accounts": "/console/accounts",
}
FCP = """() => new Promise((done) => {
  const nav = performance.getEntriesByType("navigation")[0];
  const read = () => { const p = performance.getEntriesByName("first-contentful-paint")[0];
    if (p) done({fcp: p.startTime, server: nav.responseEnd - nav.requestStart}); else setTimeout(read, 5); };
  read(); })"""


def build_home(home: Path, console: Console) -> None:
    if (home / "quickstart.json").exists():
        console.print(f"reusing the demo home {home}")
        return
    env = {**os.environ, "MMSEARCH_HOME": str(home), "MMSEARCH_CLIP_MODEL": "none", "HF_HUB_OFFLINE": "1"}
    exe = Path(sys.executable).parent / "mmsearch"
    console.print("building the demo home (mmsearch quickstart --no-serve)…")
    subprocess.run([str(exe), "--home", str(home), "quickstart", "--no-serve"], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def seed(server: ServerProcess, home: Path) -> None:
    """Searches for the query log and an IQS account, through the APIs as a user would make them."""
    import json

    key = json.loads((home / "quickstart.json").read_text())["key"]
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for text in ("运动鞋", "女鞋 春夏", "连衣裙", "运功鞋", "running shoes", "红色", "背包", "nothing-like-this"):
            client.post("/api/v1/application/demo/search", headers={"Authorization": f"Bearer {key}"},
                        json={"query": {"text": text}, "dataset_id": "demo_products"})
        if client.get("/admin/v1/accounts/bench", headers=admin).status_code == 404:
            client.post("/admin/v1/accounts", headers=admin, json={"name": "bench", "plan": "paid", "credits": 100})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=15, help="loads per page")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "mmsearch-console-bench")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    console = Console()
    if CHROMIUM is None:
        raise SystemExit("Debian's chromium is needed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    build_home(args.home, console)
    work = Path(tempfile.mkdtemp(prefix="console-floor-"))
    (work / "console").mkdir()
    shutil.copytree(STATIC, work / "console" / "static")
    server = ServerProcess(args.home, "none", work / "server.log")
    floor_port = free_port()
    floor = subprocess.Popen([sys.executable, "-m", "http.server", str(floor_port), "--bind", HOST, "--directory",
                              str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fcp: dict[str, list[float]] = {name: [] for name in PAGES}
    floor_fcp: dict[str, list[float]] = {name: [] for name in PAGES}
    answer: dict[str, list[float]] = {name: [] for name in PAGES}
    try:
        server.wait_ready()
        seed(server, args.home)
        time.sleep(1.0)  # the query log writes in the background
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(f"{server.url}/console/login")
            page.get_by_label("Admin token").fill(server.admin_token)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/console")
            for name, path in PAGES.items():  # warm: the first search loads the serving index, the floor copies
                page.goto(server.url + path)
                copy = work / f"page-{list(PAGES).index(name)}.html"
                copy.write_text(page.content(), encoding="utf-8")
            signed_out = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            for _ in range(args.n):
                for i, (name, path) in enumerate(PAGES.items()):
                    target = signed_out if name == "sign-in" else page
                    target.goto(server.url + path, wait_until="load")
                    got = target.evaluate(FCP)
                    fcp[name].append(got["fcp"])
                    answer[name].append(got["server"])
                    target.goto(f"http://{HOST}:{floor_port}/page-{i}.html", wait_until="load")
                    floor_fcp[name].append(target.evaluate(FCP)["fcp"])
            browser.close()
    finally:
        floor.terminate()
        server.stop()
    table = Table(title=f"console pages, first contentful paint, N={args.n} loads each (ms)")
    for col in ("page", "FCP p50", "FCP p95", "server p50", "static copy FCP p50", "ratio"):
        table.add_column(col, justify="left" if col == "page" else "right")
    rows = []
    for name in PAGES:
        a, f, s = np.array(fcp[name]), np.array(floor_fcp[name]), np.array(answer[name])
        row = (name, np.percentile(a, 50), np.percentile(a, 95), np.percentile(s, 50), np.percentile(f, 50))
        rows.append(row)
        table.add_row(name, f"{row[1]:.0f}", f"{row[2]:.0f}", f"{row[3]:.1f}", f"{row[4]:.0f}",
                      f"{row[1] / row[4]:.2f}x")
    console.print(table)
    if args.no_record:
        return
    lines = [f"<!-- bench:console N={args.n} -->", f"## Console pages: first paint (N={args.n} loads a page)", "",
             f"`python bench/console.py --n {args.n}` ({dt.date.today()}, 2 cores): the demo home "
             "(`quickstart --no-serve`, no image model) served by `mmsearch serve` in its own process, pages "
             "loaded by Debian's Chromium through Playwright, interleaved with the same page's HTML served as a "
             "static file (the floor). Target: every page under 300 ms to first paint.", "",
             "| page | FCP p50 | FCP p95 | server p50 | static copy FCP p50 | ratio |", "|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]:.0f} ms | {r[2]:.0f} ms | {r[3]:.1f} ms | {r[4]:.0f} ms | {r[1] / r[4]:.2f}x |"
              for r in rows]
    lines.append("<!-- /bench:console -->")
    record_section("console", args.n, "\n".join(lines))


if __name__ == "__main__":
    main()
