"""Engine benchmark: import, index build, query latency, ANN recall and memory at N items.

Everything goes through the real library path (`MMSearch.create_dataset`, `import_items`, `search`) so
the figures are what a deployment sees, not what LanceDB alone can do. The data are synthetic but
shaped like a product catalogue: clustered 512-d embeddings (uniform random vectors make every
neighbour equally far, so ANN recall would mean nothing), Zipf-distributed Chinese title words, and
typed fields for filters and sorting. Generation is seeded, so two runs index the same items.

    python bench/engine.py --n 100000
    python bench/engine.py --n 1000000 --home /data/bench   # keep the data for a look afterwards

With `--floor` (the default) the same items also go into the floor of bench/floor.py (tantivy BM25 +
faiss HNSW + numpy columns, in this process), and every query runs on both, interleaved query by query
(the order alternates), so both see the same machine load; the ratio mmsearch p50 / floor p50 is
mmsearch's overhead over plain parts. `--no-floor` measures mmsearch alone (no tantivy or faiss needed).

Figures are printed as a table and written to docs/benchmarks.md between
`<!-- bench:engine N=... -->` markers, so a re-run at the same N replaces its own section only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from docs_section import DOC, record_section
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.search import SearchRequest

DIM = 512
DATASET = "bench_engine"
WARMUP = 20

# Product-title vocabulary; frequencies follow a Zipf law, so a few words are in most titles (as
# 新款 and 正品 are in real catalogues) and most words are rare: full-text postings are realistically skewed.
_WORD_TEXT = (
    "新款 正品 包邮 热卖 官方 旗舰 经典 时尚 简约 百搭 休闲 运动 男士 女士 儿童 宝宝 学生 商务 户外 家用 "
    "夏季 冬季 春秋 加厚 轻薄 透气 防水 保暖 纯棉 真皮 羊毛 丝绸 不锈钢 陶瓷 玻璃 实木 竹制 塑料 硅胶 合金 "
    "红色 黑色 白色 蓝色 绿色 黄色 粉色 灰色 紫色 棕色 大号 小号 中号 加大 迷你 便携 折叠 多功能 智能 无线 "
    "蓝牙 充电 电动 手动 自动 数码 高清 降噪 耳机 手机 电脑 键盘 鼠标 显示器 相机 镜头 音箱 手表 手环 平板 "
    "连衣裙 衬衫 外套 羽绒服 毛衣 卫衣 牛仔裤 短裤 裙子 西装 运动鞋 皮鞋 凉鞋 拖鞋 靴子 帆布鞋 背包 钱包 手提包 "
    "行李箱 帽子 围巾 手套 袜子 眼镜 项链 耳环 戒指 手链 口红 面膜 香水 洗发水 沐浴露 牙膏 毛巾 枕头 被子 床垫 "
    "沙发 椅子 桌子 书架 台灯 窗帘 地毯 花瓶 锅具 炒锅 电饭煲 微波炉 冰箱 洗衣机 空调 风扇 加湿器 净化器 吸尘器 "
    "茶叶 咖啡 牛奶 零食 饼干 巧克力 坚果 水果 大米 食用油 蜂蜜 月饼 粽子 玩具 积木 拼图 画笔 笔记本 书包 文具 "
    "篮球 足球 羽毛球 跑步机 瑜伽垫 哑铃 自行车 帐篷 钓鱼 登山 露营 宠物 猫粮 狗粮 猫砂 鱼缸 花盆 种子 工具 螺丝刀"
)
WORDS = tuple(_WORD_TEXT.split())
CATEGORIES = (
    "服饰", "鞋靴", "箱包", "数码", "家电", "家居", "厨具", "美妆", "个护", "食品",
    "饮料", "母婴", "玩具", "文具", "运动", "户外", "宠物", "园艺", "汽车", "图书",
)
TAGS = tuple(f"标签{i:02d}" for i in range(40))

SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "item_id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
        {"name": "category", "type": "string", "filterable": True, "sortable": True},
        {"name": "brand_id", "type": "int32", "filterable": True, "sortable": True},
        {"name": "sales", "type": "int64", "filterable": True, "sortable": True},
        {"name": "price", "type": "float", "filterable": True, "sortable": True},
        {"name": "in_stock", "type": "bool", "filterable": True, "sortable": True},
        {"name": "tags", "type": "array<string>", "filterable": True},
    ]
}


# -- synthetic data ----------------------------------------------------------------------------------
@dataclass
class World:
    """The fixed generative model every item and query is drawn from (seeded, small in memory)."""

    seed: int
    centroids: np.ndarray  # float32[C, DIM], unit rows
    cluster_p: np.ndarray  # cluster popularity (lognormal: some clusters are much bigger)
    word_p: np.ndarray  # Zipf word frequencies
    noise: float = 0.75  # norm of an item's offset from its cluster centre

    @classmethod
    def make(cls, n: int, seed: int) -> World:
        rng = np.random.default_rng(seed)
        clusters = int(min(4096, max(64, n // 100)))
        # Two levels: 64 broad themes, each with many tight clusters, so that near clusters exist too.
        themes = _unit(rng.standard_normal((64, DIM), dtype=np.float32))
        centroids = _unit(themes[rng.integers(0, 64, clusters)] + 0.9 * _unit(
            rng.standard_normal((clusters, DIM), dtype=np.float32)))
        sizes = rng.lognormal(0.0, 1.0, clusters)
        ranks = np.arange(1, len(WORDS) + 1, dtype=np.float64)
        zipf = 1.0 / ranks**0.9
        return cls(seed, centroids, sizes / sizes.sum(), zipf / zipf.sum())

    def vectors(self, rng: np.random.Generator, count: int) -> np.ndarray:
        which = rng.choice(len(self.centroids), size=count, p=self.cluster_p)
        offset = _unit(rng.standard_normal((count, DIM), dtype=np.float32)) * self.noise
        return _unit(self.centroids[which] + offset)

    def title(self, rng: np.random.Generator) -> str:
        words = rng.choice(len(WORDS), size=int(rng.integers(3, 8)), p=self.word_p)
        return "".join(WORDS[w] for w in words)

    def items(self, n: int, chunk: int = 10_000) -> Iterator[dict[str, Any]]:
        """Items in seeded chunks, so 1M items never sit in memory at once (their vectors alone are 2 GB)."""
        for start in range(0, n, chunk):
            rng = np.random.default_rng([self.seed, 1, start])
            count = min(chunk, n - start)
            vecs = self.vectors(rng, count)
            brand = rng.integers(1, 5_000, count)
            sales = rng.lognormal(8.0, 2.5, count).astype(np.int64)
            price = np.round(rng.lognormal(4.5, 1.0, count), 2)
            stock = rng.random(count) < 0.8
            cat = rng.integers(0, len(CATEGORIES), count)
            for j in range(count):
                tags = rng.choice(len(TAGS), size=int(rng.integers(0, 4)), replace=False)
                yield {
                    "item_id": f"it{start + j:08d}",
                    "title": self.title(rng),
                    "category": CATEGORIES[cat[j]],
                    "brand_id": int(brand[j]),
                    "sales": int(sales[j]),
                    "price": float(price[j]),
                    "in_stock": bool(stock[j]),
                    "tags": [TAGS[t] for t in tags],
                    "_vector": vecs[j].tolist(),
                }


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class Queries:
    vectors: np.ndarray
    texts: list[str]
    filters: list[dict[str, Any]]


def make_queries(world: World, count: int) -> Queries:
    """Query vectors are fresh draws from the item distribution (a photo like, but not in, the catalogue).

    Text queries are one or two words chosen uniformly, so both head and tail words are asked for. The
    hybrid filter (six of 20 categories, a 500-wide price band, in stock) keeps about 20% of the items.
    """
    rng = np.random.default_rng([world.seed, 2])
    vectors = world.vectors(rng, count)
    texts = [" ".join(WORDS[w] for w in rng.choice(len(WORDS), size=int(rng.integers(1, 3)), replace=False))
             for _ in range(count)]
    filters = []
    for _ in range(count):
        cats = [CATEGORIES[c] for c in rng.choice(len(CATEGORIES), size=6, replace=False)]
        low = float(rng.choice([0.0, 20.0, 50.0]))
        filters.append({"op": "and", "conds": [
            {"op": "must", "field": "category", "conds": cats},
            {"op": "range", "field": "price", "gte": low, "lte": low + 500.0},
            {"op": "must", "field": "in_stock", "conds": [True]},
        ]})
    return Queries(vectors, texts, filters)


# -- measuring ---------------------------------------------------------------------------------------
@dataclass
class Results:
    n: int
    queries: int
    import_s: float = 0.0
    generate_s: float = 0.0  # of import_s, spent making the synthetic items (not library work)
    maintain_s: float = 0.0
    maintenance: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, np.ndarray] = field(default_factory=dict)
    recall_pipeline: float = 0.0
    recall_store: float = 0.0
    recall_queries: int = 0
    exact_ms: float = 0.0
    peak_rss_mb: float = 0.0
    rows: int = 0
    wall_s: float = 0.0
    # the floor (bench/floor.py), when run: same queries, interleaved with mmsearch's
    floor_latency: dict[str, np.ndarray] = field(default_factory=dict)
    floor_build_s: float = 0.0
    floor_ef: int = 0
    floor_recall: float = 0.0  # HNSW k=10 at floor_ef, unfiltered, vs exact
    floor_recall_filtered: float = 0.0  # the hybrid query's filtered HNSW leg vs exact inside the filter, @10
    floor_recall_filtered_k: float = 0.0  # the same @200 (the whole candidate list the sort reorders)
    hybrid_overlap: float = 0.0  # |mmsearch top 10 & floor top 10| / 10, hybrid+filter+sort
    serving_build_s: float = 0.0  # the serving index from a full table scan (no snapshot)
    ivf_build_s: float = 0.0
    serving_memory: dict[str, int] = field(default_factory=dict)
    store: str = "lance"  # MMSEARCH_STORE of the run (`--store`)

    @property
    def import_rate(self) -> float:
        """Items per second of library work: validation, tokenising, Arrow conversion, merge_insert."""
        spent = self.import_s - self.generate_s
        return self.n / spent if spent > 0 else 0.0


def peak_rss_mb() -> float:
    """ru_maxrss is the process's high-water mark (KiB on Linux), so the import peak counts too."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_items(items: Iterator[dict[str, Any]], clock: dict[str, float]) -> Iterator[dict[str, Any]]:
    """Pass items through, adding the time spent generating them to clock["s"]."""
    while True:
        t = time.perf_counter()
        item = next(items, None)
        clock["s"] += time.perf_counter() - t
        if item is None:
            return
        yield item


def build(
    mm: MMSearch, world: World, n: int, batch_size: int, console: Console
) -> tuple[float, float, float, dict]:
    """Import, then time the index build on its own.

    `import_items` calls `store.maintain` (FTS, scalar and vector indexes, then optimize) after its last
    batch; the last progress callback fires right after the last batch is written, so the time after it
    is index building.
    """
    mm.create_dataset(DATASET, SCHEMA, vector_dim=DIM)
    last = {"t": 0.0, "done": 0}
    started = time.perf_counter()

    def progress(count: int) -> None:
        last["t"] = time.perf_counter()
        last["done"] += count
        if count and (last["done"] % (batch_size * 20) == 0 or last["done"] == n):
            rate = last["done"] / (last["t"] - started)
            console.log(f"imported {last['done']:,} / {n:,} ({rate:,.0f} items/s)")

    clock = {"s": 0.0}
    report = mm.import_items(
        DATASET, timed_items(world.items(n), clock), batch_size=batch_size, on_progress=progress
    )
    ended = time.perf_counter()
    if report.rejected or report.imported != n:
        raise SystemExit(f"import rejected {report.rejected} items: {report.errors[:3]}")
    return last["t"] - started, clock["s"], ended - last["t"], report.maintenance


def timed(mm: MMSearch, requests: list[SearchRequest]) -> tuple[np.ndarray, list[Any]]:
    """Milliseconds per request, after a warm-up that loads indexes into the caches."""
    for req in requests[:WARMUP]:
        mm.search(DATASET, req)
    times, results = [], []
    for req in requests:
        t = time.perf_counter()
        results.append(mm.search(DATASET, req))
        times.append((time.perf_counter() - t) * 1000)
    return np.asarray(times), results


def timed_pair(
    mm: MMSearch, requests: list[SearchRequest], floor_call: Callable[[int], Any]
) -> tuple[np.ndarray, list[Any], np.ndarray, list[Any]]:
    """mmsearch and the floor on the same query one after the other, the order alternating every query, so
    drift in machine load (other processes, CPU frequency) falls on both alike."""
    for i, req in enumerate(requests[:WARMUP]):
        mm.search(DATASET, req)
        floor_call(i)
    mm_times, mm_results, fl_times, fl_results = [], [], [], []
    for i, req in enumerate(requests):
        for who in ((0, 1) if i % 2 == 0 else (1, 0)):
            t = time.perf_counter()
            if who == 0:
                mm_results.append(mm.search(DATASET, req))
                mm_times.append((time.perf_counter() - t) * 1000)
            else:
                fl_results.append(floor_call(i))
                fl_times.append((time.perf_counter() - t) * 1000)
    return np.asarray(mm_times), mm_results, np.asarray(fl_times), fl_results


def stored_vectors(mm: MMSearch, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every stored vector (and which rows have one), for the exact top 10: from the serving index on LanceDB,
    through the store protocol (`rerank_features`, by the bench's ids) on any other store."""
    store, info = mm.store, mm.dataset(DATASET)
    if hasattr(store, "serving_index"):
        index = store.serving_index(info)
        matrix = index.vectors.matrix.view()[: index.view.rows].astype(np.float32)  # float16 from 250k rows
        return matrix, index.view.alive & index.vectors.has.view()[: index.view.rows], list(index.ids)
    ids = [f"it{i:08d}" for i in range(n)]
    matrix = np.zeros((n, DIM), np.float32)
    alive = np.zeros(n, bool)
    for start in range(0, n, 1_000):
        found = store.rerank_features(info, ids[start:start + 1_000])
        for j, item in enumerate(ids[start:start + 1_000]):
            feats = found.get(item)
            if feats is not None and feats.vector is not None:
                matrix[start + j], alive[start + j] = feats.vector, True
    return matrix, alive, ids


def measure_recall(mm: MMSearch, q: Queries, pipeline_top: list[list[str]], count: int,
                   n: int) -> tuple[float, float, float]:
    """recall@10 of the pipeline (which asks the store for recall_size candidates) and of a bare k=10
    vector search, both against the exact top 10 of a numpy scan over every stored vector."""
    store, info = mm.store, mm.dataset(DATASET)
    matrix, alive, row_ids = stored_vectors(mm, n)
    hit_pipe = hit_store = 0
    exact_ms = 0.0
    for i in range(count):
        t = time.perf_counter()
        scores = np.where(alive, matrix @ q.vectors[i], -np.inf)
        exact = {row_ids[r] for r in np.argpartition(-scores, 10)[:10]}
        exact_ms += (time.perf_counter() - t) * 1000
        ann = {c.id for c in store.vector_search(info, q.vectors[i], 10)}
        hit_pipe += len(exact & set(pipeline_top[i]))
        hit_store += len(exact & ann)
    return hit_pipe / (10 * count), hit_store / (10 * count), exact_ms / count


def load_serving(mm: MMSearch, console: Console) -> tuple[float, float, dict[str, int]]:
    """Build the serving index from the table (what a server does on first use without a snapshot), then
    train its IVF, both inline so they can be timed; returns (build s, IVF s, memory by part)."""
    mm.store.serving.background = False
    info = mm.dataset(DATASET)
    from mmsearch.store.serving.vectors import VectorIndex

    t = time.perf_counter()
    trained: dict[str, float] = {}
    original = VectorIndex.build_ivf

    def timed_build(self: VectorIndex, rows: int) -> Any:
        started = time.perf_counter()
        try:
            return original(self, rows)
        finally:
            trained["s"] = time.perf_counter() - started

    VectorIndex.build_ivf = timed_build  # type: ignore[method-assign]
    try:
        index = mm.store.serving_index(info)
    finally:
        VectorIndex.build_ivf = original  # type: ignore[method-assign]
    total = time.perf_counter() - t
    ivf_s = trained.get("s", 0.0)
    console.log(f"serving index: {total - ivf_s:.1f}s from the table, IVF {ivf_s:.1f}s; memory {index.memory()}")
    mm.store.serving.background = True
    return total - ivf_s, ivf_s, index.memory()


def run(
    n: int, queries: int, recall_queries: int, home: Path, batch_size: int, console: Console, floor: bool = True,
    store: str = "lance",
) -> Results:
    wall = time.perf_counter()
    res = Results(n=n, queries=queries, store=store)
    mm = MMSearch(Settings(home=home, store=store))
    if DATASET in {d.id for d in mm.datasets()}:
        mm.drop_dataset(DATASET)
    world = World.make(n, seed=20240611)
    res.import_s, res.generate_s, res.maintain_s, res.maintenance = build(mm, world, n, batch_size, console)
    console.log(f"import {res.import_s:.1f}s, index build {res.maintain_s:.1f}s: {res.maintenance}")
    res.rows = mm.stats(DATASET)["rows"]
    if store == "lance":  # the embedded store's in-memory serving index (another store serves from itself)
        res.serving_build_s, res.ivf_build_s, res.serving_memory = load_serving(mm, console)

    q = make_queries(world, queries)
    res.recall_queries = min(recall_queries, queries)
    vec_req = [SearchRequest(vector=v) for v in q.vectors]
    text_req = [SearchRequest(text=t) for t in q.texts]
    hybrid_req = [SearchRequest(text=t, vector=v, filter=f, sort_by="sales", sort_order="desc")
                  for t, v, f in zip(q.texts, q.vectors, q.filters, strict=True)]
    if not floor:
        res.latency["vector"], vec_results = timed(mm, vec_req)
        console.log("vector queries done")
        res.latency["text"], _ = timed(mm, text_req)
        console.log("text queries done")
        res.latency["hybrid+filter+sort"], _ = timed(mm, hybrid_req)
        console.log("hybrid queries done")
        res.peak_rss_mb = peak_rss_mb()
    else:
        res.peak_rss_mb = peak_rss_mb()  # mmsearch's import and index build, before the floor adds its own
        vec_results = run_with_floor(mm, world, q, n, res, (vec_req, text_req, hybrid_req), console)

    top = [[h.id for h in r.hits] for r in vec_results]
    res.recall_pipeline, res.recall_store, res.exact_ms = measure_recall(mm, q, top, res.recall_queries, n)
    res.wall_s = time.perf_counter() - wall
    return res


def run_with_floor(
    mm: MMSearch, world: World, q: Queries, n: int, res: Results, reqs: tuple[list[SearchRequest], ...],
    console: Console,
) -> list[Any]:
    """Build the floor from the same seeded items, tune its efSearch, then time both side by side."""
    from floor import RECALL_SIZE, Floor

    clock = {"s": 0.0}
    fl = Floor.build(timed_items(world.items(n), clock), n, DIM, CATEGORIES)
    res.floor_build_s = fl.build_s - clock["s"]
    console.log(f"floor built in {res.floor_build_s:.1f}s (tantivy {fl.text_build_s - clock['s']:.1f}s, "
                f"HNSW {fl.vector_build_s:.1f}s; one segment, doc id = row: {fl.docid_is_row})")
    rq = res.recall_queries
    res.floor_ef, res.floor_recall = fl.tune_ef(q.vectors[:rq])
    res.floor_recall_filtered, res.floor_recall_filtered_k = fl.filtered_recall(q.vectors[:rq], q.filters[:rq])
    console.log(f"floor efSearch={res.floor_ef}: recall@10 {res.floor_recall:.3f}, filtered "
                f"{res.floor_recall_filtered:.3f} (@{RECALL_SIZE}: {res.floor_recall_filtered_k:.3f})")

    vec_req, text_req, hybrid_req = reqs
    k = RECALL_SIZE
    calls: dict[str, tuple[list[SearchRequest], Callable[[int], Any]]] = {
        "vector": (vec_req, lambda i: fl.vector(q.vectors[i], k)),
        "text": (text_req, lambda i: fl.text(q.texts[i], k)),
        "hybrid+filter+sort": (hybrid_req, lambda i: fl.hybrid(q.texts[i], q.vectors[i], q.filters[i], k)),
    }
    vec_results: list[Any] = []
    for name, (requests, call) in calls.items():
        res.latency[name], mm_results, res.floor_latency[name], fl_results = timed_pair(mm, requests, call)
        console.log(f"{name} queries done (mmsearch and floor)")
        if name == "vector":
            vec_results = mm_results
        if name == "hybrid+filter+sort":
            same = [len({int(h.id[2:]) for h in r.hits} & set(f.tolist()))
                    for r, f in zip(mm_results, fl_results, strict=True)]
            res.hybrid_overlap = sum(same) / (10 * len(same))
    return vec_results


# -- reporting ---------------------------------------------------------------------------------------
def pct(a: np.ndarray) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def figures(res: Results) -> list[tuple[str, str]]:
    rows = [
        ("items", f"{res.n:,} (rows in table: {res.rows:,})"),
        ("import rate", f"{res.import_rate:,.0f} items/s ({res.import_s - res.generate_s:.1f} s; "
                        f"+{res.generate_s:.1f} s generating items)"),
        ("index build (maintain)", f"{res.maintain_s:.1f} s"),
    ]
    if res.store == "lance":
        rows += [
            ("serving index from the table / IVF training", f"{res.serving_build_s:.1f} s / {res.ivf_build_s:.1f} s"),
            ("serving index memory", ", ".join(f"{k} {v / 2**20:,.0f} MB" for k, v in res.serving_memory.items())),
        ]
    for name, lat in res.latency.items():
        p50, p95, p99 = pct(lat)
        rows.append((f"{name} latency p50 / p95 / p99", f"{p50:.1f} / {p95:.1f} / {p99:.1f} ms"))
        if name in res.floor_latency:
            f50, f95, f99 = pct(res.floor_latency[name])
            rows.append((f"{name} floor p50 / p95 / p99 (ratio p50)",
                         f"{f50:.2f} / {f95:.2f} / {f99:.2f} ms ({p50 / f50:.1f}x)"))
    rows += [
        ("recall@10, pipeline (k=recall_size)", f"{res.recall_pipeline:.3f}"),
        ("recall@10, vector search k=10", f"{res.recall_store:.3f}"),
        ("exact (flat) search, mean", f"{res.exact_ms:.1f} ms"),
    ]
    if res.floor_latency:
        rows += [
            ("floor build (tantivy + faiss HNSW, M=32)", f"{res.floor_build_s:.1f} s"),
            (f"floor recall@10, HNSW efSearch={res.floor_ef}", f"{res.floor_recall:.3f}"),
            ("floor recall@10 / @200, filtered HNSW (hybrid leg)",
             f"{res.floor_recall_filtered:.3f} / {res.floor_recall_filtered_k:.3f}"),
            ("hybrid top-10 overlap, mmsearch vs floor", f"{res.hybrid_overlap:.3f}"),
        ]
    rows += [
        ("peak RSS" + (" (mmsearch, before the floor)" if res.floor_latency else ""), f"{res.peak_rss_mb:,.0f} MB"),
        ("benchmark wall time", f"{res.wall_s:.0f} s"),
    ]
    return rows


# The targets for 1M items on 2 cores: (figure, limit, measured value, unit, higher is better).
def targets(res: Results) -> list[tuple[str, float, float, str, bool]]:
    p50, _, p99 = pct(res.latency["hybrid+filter+sort"])
    out = [
        ("hybrid+filter+sort p50", 15.0, p50, "ms", False),
        ("hybrid+filter+sort p99", 60.0, p99, "ms", False),
        ("text p50", 5.0, pct(res.latency["text"])[0], "ms", False),
        ("recall@10 (pipeline)", 0.95, res.recall_pipeline, "", True),
        ("peak RSS", 3072.0, res.peak_rss_mb, "MB", False),
    ]
    if "hybrid+filter+sort" in res.floor_latency:
        ratio = p50 / pct(res.floor_latency["hybrid+filter+sort"])[0]
        out.append(("hybrid+filter+sort p50 / floor p50", 2.0, ratio, "x", False))
    return out


def target_lines(res: Results) -> list[str]:
    """Met or missed, and by how much, so a reader need not do the arithmetic."""
    out = []
    for name, limit, got, unit, higher in targets(res):
        ok = got >= limit if higher else got <= limit
        sign = "≥" if higher else "≤"
        miss = f"{_fmt(abs(got - limit), unit)} ({abs(got / limit - 1):.0%})"
        verdict = "met" if ok else f"**missed** by {miss}"
        out.append(f"| {name} | {sign} {_fmt(limit, unit)} | {_fmt(got, unit)} | {verdict} |")
    return out


def _fmt(v: float, unit: str) -> str:
    return f"{v:,.1f} {unit}" if unit else f"{v:.3f}"


def floor_lines(res: Results) -> list[str]:
    """mmsearch against the floor, kind by kind, for the section (empty with --no-floor)."""
    if not res.floor_latency:
        return []
    from importlib.metadata import version

    out = [
        "",
        f"Same-run floor (bench/floor.py: tantivy {version('tantivy')} BM25 in RAM over the same tokens, "
        f"faiss-cpu {version('faiss-cpu')} HNSW M=32 efSearch={res.floor_ef} inner product, numpy masks and sort key; "
        "hybrid: both channels inside the filter, weighted fusion as search/fuse.py, sort by sales, page of 10; "
        "the two channels run one after the other). Each query runs on mmsearch and the floor back to back, "
        "the order alternating, so both see the same load.",
        "",
        "| kind | mmsearch p50 / p99 | floor p50 / p99 | ratio (p50) |",
        "|---|---|---|---|",
    ]
    for name, lat in res.latency.items():
        p50, _, p99 = pct(lat)
        f50, _, f99 = pct(res.floor_latency[name])
        out.append(f"| {name} | {p50:.1f} / {p99:.1f} ms | {f50:.2f} / {f99:.2f} ms | {p50 / f50:.1f}x |")
    out += [
        "",
        f"Floor recall: {res.floor_recall:.3f} @10 (HNSW k=10, unfiltered); filtered, k=200 as in the hybrid "
        f"query: {res.floor_recall_filtered:.3f} @10, {res.floor_recall_filtered_k:.3f} @200; against exact "
        "search (inside the filter when filtered). The filtered search widens efSearch by 1 / (fraction kept), "
        "capped at 4096, or it returns fewer than 200. Hybrid top-10 overlap mmsearch vs floor: "
        f"{res.hybrid_overlap:.3f} (the sort by sales picks from the whole fused list, so any difference in "
        "the deep candidates shows on the page).",
    ]
    return out


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def markdown(res: Results, store_ann: str) -> str:
    import lance
    import lancedb

    today = dt.date.today().isoformat()
    built = ", ".join(f"`{k}` {v}" for k, v in res.maintenance.items()) or "no new index"
    lines = [
        f"<!-- bench:{bench_name(res.store)} N={res.n} -->",
        f"### Engine, N = {res.n:,}" + ("" if res.store == "lance" else f", store `{res.store.split(':')[0]}`"),
        "",
        f"Run {today} on {machine()}; lancedb {lancedb.__version__}, pylance {lance.__version__}. "
        f"`python bench/engine.py --n {res.n} --queries {res.queries}"
        f"{'' if res.floor_latency else ' --no-floor'}{'' if res.store == 'lance' else ' --store ' + res.store}`.",
        "",
        f"Built by `maintain()` after the import: {built}. Serving index: {store_ann}.",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in figures(res)],
        "",
        f"Targets (stated for N = 1,000,000 on 2 cores{'' if res.n == 1_000_000 else '; shown for reference'}):",
        "",
        "| target | limit | measured | verdict |",
        "|---|---|---|---|",
        *target_lines(res),
        "",
        f"Latency is per `MMSearch.search` call (catalog lookup, planning, recall, fusion, sort, paging), "
        f"{res.queries} queries of each kind after {WARMUP} warm-up queries, one at a time. Recall is over "
        f"{res.recall_queries} queries.",
        *floor_lines(res),
        f"<!-- /bench:{bench_name(res.store)} -->",
    ]
    return "\n".join(lines)


INTRO = """# Benchmarks

Figures written by the scripts in `bench/` (see each script's docstring for what it measures and how).
Each benchmark owns the sections between its `<!-- bench:... -->` markers; a re-run replaces them.

## Engine (`bench/engine.py`)

Synthetic catalogue through the real library path: `MMSearch.create_dataset`, `import_items` (512-d
clustered, L2-normalised vectors in `_vector`; Zipf-distributed Chinese titles; int32, int64, float,
string, bool and array<string> fields), then `MMSearch.search`. Query kinds: *vector* (a query
embedding only), *text* (one or two title words), *hybrid+filter+sort* (text + vector, a filter on
category, price range and stock keeping about 20% of the items, sorted by sales). Recall@10 is
measured against an exact numpy scan over every stored vector. The import rate counts library
work only; the time spent generating the synthetic items is shown beside it. "Index build" is the
`maintain()` call at the end of the import (scalar indexes, `optimize`); "serving index" is what a server
does on first use without a snapshot: read every row from the table into the in-memory index
(store/serving), then train the IVF.
"""


def bench_name(store: str) -> str:
    """The docs marker of a run: `engine` for the embedded store, `engine-milvus` for Milvus."""
    return "engine" if store == "lance" else f"engine-{store.split(':')[0]}"


def record(section: str, n: int, path: Path = DOC, store: str = "lance") -> None:
    record_section(bench_name(store), n, section, path, intro=INTRO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="items to index")
    parser.add_argument("--queries", type=int, default=300, help="timed queries of each kind")
    parser.add_argument("--recall-queries", type=int, default=100, help="queries for recall@10 (exact is slow)")
    parser.add_argument("--batch-size", type=int, default=5_000, help="items per import batch")
    parser.add_argument("--home", type=Path, default=None, help="data directory (default: a temp dir, removed)")
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the tantivy + faiss + numpy floor (bench/floor.py), interleaved")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--store", default="lance", help="MMSEARCH_STORE: lance, or milvus:<uri> (a Milvus server, "
                        "or a Milvus Lite .db path); recorded as its own section")
    args = parser.parse_args(argv)
    if args.queries < 1 or args.n < 1:
        parser.error("--n and --queries must be positive")

    console = Console()
    home = args.home or Path(tempfile.mkdtemp(prefix="mmsearch-bench-"))
    try:
        res = run(args.n, args.queries, args.recall_queries, home, args.batch_size, console, args.floor, args.store)
        if args.store == "lance":
            ann = MMSearch(Settings(home=home)).store.ann
            store_ann = f"IVF-SQ8 past min_rows={ann.min_rows} vectors, nprobe={ann.nprobe} (more under a filter: " \
                        f"about 10 x k allowed rows scanned), exact re-scoring"
        else:
            store_ann = f"none: `{args.store}` searches in Milvus (HNSW, BM25 sparse vectors; store/milvus.py)"
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)

    table = Table(title=f"mmsearch engine, N={args.n:,} ({machine()})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in figures(res):
        table.add_row(k, v)
    console.print(table)
    if not args.no_record:
        record(markdown(res, store_ann), args.n, store=args.store)
        console.log(f"recorded in {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
