"""Soak: minutes of mixed traffic against a live `mmsearch serve`, then a check that nothing acknowledged was lost.

A seeded product catalogue is imported through the library, then `mmsearch serve` (its own process, import
jobs on, 127.0.0.1 only) takes C closed-loop clients for a fixed time. Each client turn picks, seeded:

- *search* (70%): a title word or two, half of them with a filter and a sort; one in ten is a hostile body
  (unknown filter field, a lone surrogate, 2,000 filter conditions, an over-long query) that must answer 400;
- *import* (14%): a batch of 20 new items through `POST /admin/v1/datasets/{id}/items` (acknowledged = 202 and
  a job id); a quarter of the batches also re-send 5 items acknowledged earlier with a new title (upserts);
- *delete* (10%): 10 seeded items through `POST .../items/delete`, each id deleted once;
- *key churn* (6%): create a key, search with it, revoke it, then search until it is refused (401); the time
  from the revoke's answer to the first refusal is the revocation delay.

Afterwards every job must have succeeded; the live server's serving index (before it stops) must return every
expected id with its last title and none of the deleted ones; and the table (read from disk after the server
stopped) must hold exactly the seeded items minus the deleted ones plus every acknowledged item, each id once,
re-sent items with their last title. Any 5xx, transport error, unexpected status or verification miss is an error.

    python bench/soak.py --minutes 3 --concurrency 16
    python bench/soak.py --minutes 0.5 --no-record          # quick check

Figures are printed and written to docs/benchmarks.md between `<!-- bench:soak N=... -->` markers.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the model hub

import argparse
import asyncio
import datetime as dt
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from docs_section import DOC, record_section
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from server_process import ServerProcess

DATASET = "soak"
APP = "soak_app"
SCHEMA: dict[str, Any] = {"fields": [
    {"name": "item_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "category", "type": "string", "filterable": True},
    {"name": "price", "type": "float", "filterable": True, "sortable": True},
    {"name": "stock", "type": "int32", "filterable": True},
]}
WORDS = ["运动鞋", "女士", "男士", "跑步", "连衣裙", "耳机", "蓝牙", "手机壳", "背包", "外套", "running", "shoes",
         "wireless", "dress", "jacket", "红色", "黑色", "白色", "春夏", "秋冬"]
CATEGORIES = ["shoes", "clothes", "digital", "bags", "home"]
IMPORT_BATCH = 20
DELETE_BATCH = 10


def item(item_id: str, rng: random.Random, version: int = 0) -> dict[str, Any]:
    words = rng.sample(WORDS, 3)
    return {"item_id": item_id, "title": " ".join(words) + (f" v{version}" if version else ""),
            "category": rng.choice(CATEGORIES), "price": round(rng.uniform(5, 999), 2), "stock": rng.randint(0, 500)}


def hostile_bodies() -> list[dict[str, Any]]:
    """Requests a careful API refuses with 400; none may crash the server or answer 5xx."""
    return [
        {"dataset_id": DATASET, "query": {"text": "鞋"}, "filter": {"op": "must", "field": "nope", "conds": ["x"]}},
        {"dataset_id": DATASET, "query": {"text": "bad \ud800 text"}},
        {"dataset_id": DATASET, "query": {"text": "鞋"}, "filter": {"op": "or", "conds": [
            {"op": "must", "field": "category", "conds": [f"c{i}"]} for i in range(2_000)]}},
        {"dataset_id": DATASET, "query": {"text": "鞋" * 5_000}},
        {"dataset_id": DATASET, "query": {"text": "鞋"}, "filter": {"op": "range", "field": "stock", "lte": 3e9}},
    ]


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)  # ms per kind, answers as expected
    statuses: Counter[str] = field(default_factory=Counter)  # "kind status"
    errors: list[str] = field(default_factory=list)
    revoke_delays: list[float] = field(default_factory=list)  # s from revoke answer to first 401
    jobs: list[tuple[str, list[str]]] = field(default_factory=list)  # acknowledged (job id, item ids)
    latest: dict[str, str] = field(default_factory=dict)  # item id -> last acknowledged title
    deleted: set[str] = field(default_factory=set)

    def ok(self, kind: str, ms: float, status: int) -> None:
        self.latencies.setdefault(kind, []).append(ms)
        self.statuses[f"{kind} {status}"] += 1

    def error(self, kind: str, what: str) -> None:
        self.statuses[f"{kind} error"] += 1
        if len(self.errors) < 50:
            self.errors.append(f"{kind}: {what}")


class Soak:
    def __init__(self, server: ServerProcess, key: str, seed_ids: list[str], tally: Tally, seed: int) -> None:
        self.server = server
        self.key = key
        self.tally = tally
        self.rng = random.Random(seed)
        self.deletable = list(seed_ids)
        self.rng.shuffle(self.deletable)
        self.next_id = 0
        self.admin = {"Authorization": f"Bearer {server.admin_token}"}
        self.search_path = f"/api/v1/application/{APP}/search"
        self.hostile = hostile_bodies()

    async def run(self, concurrency: int, seconds: float) -> None:
        limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
        async with httpx.AsyncClient(base_url=self.server.url, limits=limits, timeout=60) as client:
            deadline = time.perf_counter() + seconds
            await asyncio.gather(*(self._client(client, deadline) for _ in range(concurrency)))

    async def _client(self, client: httpx.AsyncClient, deadline: float) -> None:
        while time.perf_counter() < deadline:
            r = self.rng.random()
            try:
                if r < 0.70:
                    await self._search(client)
                elif r < 0.84:
                    await self._import(client)
                elif r < 0.94:
                    await self._delete(client)
                else:
                    await self._key_churn(client)
            except httpx.HTTPError as exc:
                self.tally.error("transport", f"{type(exc).__name__}: {exc}")

    async def _timed(self, kind: str, expect: int, call: Any) -> httpx.Response | None:
        t = time.perf_counter()
        resp: httpx.Response = await call
        ms = (time.perf_counter() - t) * 1000
        if resp.status_code == expect:
            self.tally.ok(kind, ms, resp.status_code)
            return resp
        self.tally.error(kind, f"{resp.status_code} (expected {expect}): {resp.text[:160]}")
        return None

    def _search_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"dataset_id": DATASET, "page_size": 10,
                                "query": {"text": " ".join(self.rng.sample(WORDS, self.rng.randint(1, 2)))}}
        if self.rng.random() < 0.5:
            body["filter"] = {"op": "and", "conds": [
                {"op": "must", "field": "category", "conds": self.rng.sample(CATEGORIES, 2)},
                {"op": "range", "field": "price", "gte": 50, "lt": 800}]}
            body["sort_by"], body["sort_order"] = "price", "asc"
        return body

    async def _search(self, client: httpx.AsyncClient, key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {key or self.key}", "Content-Type": "application/json"}
        if key is None and self.rng.random() < 0.1:
            body = self.rng.choice(self.hostile)
            content = json.dumps(body).encode()  # ensure_ascii keeps a lone surrogate as the JSON escape \ud800
            await self._timed("hostile", 400, client.post(self.search_path, content=content, headers=headers))
            return
        content = json.dumps(self._search_body(), ensure_ascii=False).encode()
        await self._timed("search", 200, client.post(self.search_path, content=content, headers=headers))

    async def _import(self, client: httpx.AsyncClient) -> None:
        batch = []
        for _ in range(IMPORT_BATCH):
            self.next_id += 1
            batch.append(item(f"s{self.next_id:07d}", self.rng))
        if self.tally.latest and self.rng.random() < 0.25:
            for old in self.rng.sample(sorted(self.tally.latest), min(5, len(self.tally.latest))):
                batch.append(item(old, self.rng, version=self.next_id))
        resp = await self._timed("import", 202, client.post(
            f"/admin/v1/datasets/{DATASET}/items", json=batch, headers=self.admin))
        if resp is not None:
            self.tally.jobs.append((resp.json()["job_id"], [b["item_id"] for b in batch]))
            for b in batch:
                self.tally.latest[b["item_id"]] = b["title"]

    async def _delete(self, client: httpx.AsyncClient) -> None:
        ids = [self.deletable.pop() for _ in range(min(DELETE_BATCH, len(self.deletable)))]
        if not ids:
            return
        resp = await self._timed("delete", 200, client.post(
            f"/admin/v1/datasets/{DATASET}/items/delete", json={"ids": ids}, headers=self.admin))
        if resp is not None:
            self.tally.deleted.update(ids)

    async def _key_churn(self, client: httpx.AsyncClient) -> None:
        resp = await self._timed("key create", 201, client.post(
            "/admin/v1/keys", json={"apps": [APP], "name": "soak"}, headers=self.admin))
        if resp is None:
            return
        key = resp.json()["key"]
        await self._search(client, key)
        if await self._timed("key revoke", 200, client.delete(f"/admin/v1/keys/{key}", headers=self.admin)) is None:
            return
        revoked = time.perf_counter()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        while time.perf_counter() - revoked < 10:
            r = await client.post(self.search_path, json=self._search_body(), headers=headers)
            if r.status_code == 401:
                self.tally.revoke_delays.append(time.perf_counter() - revoked)
                return
            if r.status_code != 200:
                self.tally.error("revoked key", f"{r.status_code}: {r.text[:160]}")
                return
            await asyncio.sleep(0.2)
        self.tally.error("revoked key", "still accepted 10 s after the revoke")


def wait_jobs(server: ServerProcess, tally: Tally, timeout: float) -> dict[str, int]:
    """Every acknowledged job to an end; the counts of their final statuses."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    final: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        while len(final) < len(tally.jobs) and time.monotonic() < deadline:
            for job_id, ids in tally.jobs:
                if job_id in final:
                    continue
                job = client.get(f"/admin/v1/jobs/{job_id}").json()
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    final[job_id] = job["status"]
                    if job["status"] != "succeeded" or job["progress"]["imported"] != len(ids):
                        tally.error("job", f"{job_id} {job['status']}: {job['progress']} {job['message']}")
            time.sleep(0.5)
    for job_id, _ids in tally.jobs:
        if job_id not in final:
            tally.error("job", f"{job_id} not finished after {timeout:.0f} s")
    return dict(Counter(final.values()))


def verify(home: Path, seed_ids: list[str], tally: Tally) -> dict[str, int]:
    """The table as the server left it: each expected id exactly once, deleted ids gone, last titles kept."""
    mm = MMSearch(Settings(home=home, clip_model="none", ocr=False))
    table = mm.store.db.open_table(DATASET).to_arrow().select(["_id", "_doc"])
    ids = table["_id"].to_pylist()
    counts = Counter(ids)
    expected = (set(seed_ids) - tally.deleted) | set(tally.latest)
    titles = {i: json.loads(d)["title"] for i, d in zip(ids, table["_doc"].to_pylist(), strict=True)}
    out = {
        "expected": len(expected), "rows": len(ids),
        "missing": len(expected - counts.keys()),
        "duplicated": sum(1 for c in counts.values() if c > 1),
        "unexpected": len(counts.keys() - expected),
        "stale_title": sum(1 for i, t in tally.latest.items() if titles.get(i) != t),
    }
    for what in ("missing", "duplicated", "unexpected", "stale_title"):
        if out[what]:
            tally.error("verify", f"{out[what]} {what}")
    mm.catalog.engine.dispose()
    return out


def verify_live(server: ServerProcess, seed_ids: list[str], tally: Tally) -> dict[str, int]:
    """The running server's own view, before it stops: its in-memory serving index followed every job and delete
    through the journal, so every expected id must come back from it with its last title, and no deleted id."""
    expected = (set(seed_ids) - tally.deleted) | set(tally.latest)
    wrong = stale = resurrected = 0
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"},
                      timeout=30) as client:
        for item_id in sorted(expected):
            r = client.get(f"/admin/v1/datasets/{DATASET}/items/{item_id}")
            if r.status_code != 200:
                wrong += 1
            elif item_id in tally.latest and r.json()["item"]["title"] != tally.latest[item_id]:
                stale += 1
        for item_id in sorted(tally.deleted - set(tally.latest)):
            resurrected += client.get(f"/admin/v1/datasets/{DATASET}/items/{item_id}").status_code != 404
    out = {"live_missing": wrong, "live_stale_title": stale, "live_deleted_present": resurrected}
    for what, n in out.items():
        if n:
            tally.error("verify live", f"{n} {what}")
    return out


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--items", type=int, default=5_000, help="seeded items before the load starts")
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--home", type=Path, default=None, help="data directory (default: a temp dir, removed)")
    ap.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args()
    console = Console(stderr=True)
    home = args.home or Path(tempfile.mkdtemp(prefix="mmsearch-soak-"))
    rng = random.Random(args.seed)
    seed_ids = [f"p{i:07d}" for i in range(args.items)]
    mm = MMSearch(Settings(home=home, clip_model="none", ocr=False))
    if DATASET in {d.id for d in mm.datasets()}:
        mm.drop_dataset(DATASET)
    if APP in {a.id for a in mm.catalog.apps.list()}:
        mm.catalog.apps.remove(APP)
    mm.create_dataset(DATASET, SCHEMA)
    mm.import_items(DATASET, [item(i, rng) for i in seed_ids])
    mm.catalog.apps.create(APP, [DATASET], {"spell_correction": "off"})
    key = mm.catalog.keys.create([APP], name="soak").key
    mm.catalog.engine.dispose()

    server = ServerProcess(home, "none", home / "server.log", jobs=True)
    tally = Tally()
    try:
        server.wait_ready()
        rss_start = server.rss_mb("VmRSS")
        console.log(f"{args.items:,} items; {args.concurrency} clients for {args.minutes:g} min on {server.url}")
        started = time.perf_counter()
        asyncio.run(Soak(server, key, seed_ids, tally, args.seed).run(args.concurrency, args.minutes * 60))
        seconds = time.perf_counter() - started
        rss_end, rss_peak = server.rss_mb("VmRSS"), server.rss_mb("VmHWM")
        job_states = wait_jobs(server, tally, timeout=300)
        live = verify_live(server, seed_ids, tally)
    finally:
        server.stop()
    check = verify(home, seed_ids, tally)
    check.update(live)
    if args.home is None:
        shutil.rmtree(home, ignore_errors=True)

    searches = tally.latencies.get("search", [])
    table = Table(title=f"soak: {args.concurrency} clients, {seconds:.0f} s, {args.items:,} seeded items")
    for col in ("kind", "answers", "per s", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right" if col != "kind" else "left")
    rows = []
    for kind, lat in sorted(tally.latencies.items()):
        row = (kind, f"{len(lat):,}", f"{len(lat) / seconds:.1f}", f"{pct(lat, 50):.1f}", f"{pct(lat, 99):.1f}")
        rows.append(row)
        table.add_row(*row)
    console.print(table)
    errors = sum(v for k, v in tally.statuses.items() if k.endswith(" error"))
    summary = {
        "search_qps": round(len(searches) / seconds, 1), "search_p99_ms": round(pct(searches, 99), 1),
        "errors": errors, "jobs": job_states, "acknowledged_items": len(tally.latest), "deleted": len(tally.deleted),
        "revocation_delay_max_s": round(max(tally.revoke_delays, default=float("nan")), 2),
        "rss_mb": {"start": round(rss_start), "end": round(rss_end), "peak": round(rss_peak)},
        "verify": check,
    }
    console.print_json(data=summary)
    for e in tally.errors[:20]:
        console.print(f"[red]{e}")

    if not args.no_record:
        lines = [
            f"<!-- bench:soak N={args.items} -->",
            f"### Soak: {args.concurrency} clients for {seconds / 60:.1f} min, {args.items:,} seeded items",
            "",
            f"`python bench/soak.py --minutes {args.minutes:g} --concurrency {args.concurrency} --items {args.items}`"
            f" ({dt.date.today().isoformat()}, {os.cpu_count()} cores; server and clients share them)",
            "",
            "| kind | answers | per s | p50 ms | p99 ms |", "|---|---|---|---|---|",
            *[f"| {' | '.join(r)} |" for r in rows],
            "",
            f"- errors (5xx, transport, unexpected status, failed jobs, verification): **{errors}**",
            f"- jobs: {job_states}; acknowledged items {len(tally.latest):,}, deleted {len(tally.deleted):,}",
            f"- after the run: {check['rows']:,} rows for {check['expected']:,} expected; missing {check['missing']},"
            f" duplicated {check['duplicated']}, unexpected {check['unexpected']}, stale titles {check['stale_title']}",
            f"- the live server's serving index before it stopped (each expected id fetched, each deleted id asked"
            f" for): missing {check['live_missing']}, stale titles {check['live_stale_title']}, deleted but present"
            f" {check['live_deleted_present']}",
            f"- key revocation: refused within {summary['revocation_delay_max_s']} s at most"
            f" ({len(tally.revoke_delays)} keys)",
            f"- server RSS: {round(rss_start)} MB at start, {round(rss_end)} MB at the end, peak {round(rss_peak)} MB",
            "<!-- /bench:soak -->",
        ]
        record_section("soak", args.items, "\n".join(lines), DOC)
    raise SystemExit(1 if errors else 0)


if __name__ == "__main__":
    main()
