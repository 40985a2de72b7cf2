"""Video search: the vector channel over segments (multi-vector, a video scored by its best segment) against the
same-run floor, numpy's exact max-sim over every segment.

A synthetic library of `--videos` videos, each with 20-80 segments drawn from the engine bench's clustered
512-d world (a video stays on a few themes, as an episode does), is written to a video dataset through the real
store (LanceDB, then the serving index, whose segment IVF trains once there are `ann_min_rows` segments).
Queries are drawn from the same world. For each query, interleaved: mmsearch's `vector_search` (k = 200, the
recall size) and the floor (`M @ q` over all segments, `np.maximum.reduceat` per video, the filter mask, top k by
argpartition), without and with a filter keeping a quarter of the videos. Recall@10 is mmsearch's top 10 videos
against the floor's; recall@200 the share of the floor's 200 videos mmsearch returns.

    python bench/video_search.py --videos 2000

Figures are printed and written to docs/benchmarks.md between `<!-- bench:video_search ... -->` markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from docs_section import DOC, record_section
from engine import World
from mmsearch.schema.fields import DatasetInfo, parse_schema
from mmsearch.schema.filters import parse_filter
from mmsearch.store.base import Record
from mmsearch.store.lance import AnnConfig, LanceStore

K = 200
GENRES = tuple(f"g{i:02d}" for i in range(20))
SCHEMA = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                     {"name": "genre", "type": "string", "filterable": True},
                     {"name": "video_url", "type": "video"}]}
console = Console()


def library(world: World, videos: int, seed: int = 3) -> tuple[list[Record], np.ndarray, np.ndarray, np.ndarray]:
    """Records, the stacked segment matrix, each video's first segment and each video's genre index."""
    rng = np.random.default_rng(seed)
    records, parts, starts, genres = [], [], [], []
    at = 0
    for n in range(videos):
        count = int(rng.integers(20, 81))
        themes = world.centroids[rng.choice(len(world.centroids), size=3, p=world.cluster_p)]
        offsets = rng.standard_normal((count, themes.shape[1])).astype(np.float32)
        offsets /= np.linalg.norm(offsets, axis=1, keepdims=True)
        vecs = themes[rng.integers(0, 3, count)] + world.noise * offsets
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        spans = np.stack([np.arange(count) * 5.0, np.arange(count) * 5.0 + 5.0], axis=1).astype(np.float32)
        g = int(rng.integers(0, len(GENRES)))
        records.append(Record(id=f"v{n:06d}", doc={"id": f"v{n:06d}", "genre": GENRES[g]}, segments=vecs,
                              spans=spans))
        parts.append(vecs)
        starts.append(at)
        genres.append(g)
        at += count
    return records, np.concatenate(parts).astype(np.float32), np.array(starts), np.array(genres)


def floor(matrix: np.ndarray, starts: np.ndarray, q: np.ndarray, k: int, keep: np.ndarray | None) -> np.ndarray:
    """Exact max-sim: every segment scored, the best per video, top k videos (inside `keep`)."""
    best = np.maximum.reduceat(matrix @ q, starts)
    if keep is not None:
        best = np.where(keep, best, -np.inf)
    k = min(k, int(np.isfinite(best).sum()))
    top = np.argpartition(-best, k - 1)[:k]
    return top[np.argsort(-best[top], kind="stable")]


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    world = World.make(args.videos * 50, 7)
    records, matrix, starts, genres = library(world, args.videos)
    console.print(f"{args.videos} videos, {len(matrix):,} segments ({matrix.nbytes / 2**20:.0f} MB of vectors)")
    with tempfile.TemporaryDirectory(prefix="mmsearch-bench-vsearch-") as tmp:
        store = LanceStore(Path(tmp), AnnConfig())
        info = DatasetInfo("vids", "video", parse_schema(SCHEMA), matrix.shape[1])
        store.create(info)
        started = time.perf_counter()
        for i in range(0, len(records), 500):
            store.upsert(info, records[i : i + 500])
        written = time.perf_counter() - started
        started = time.perf_counter()
        index = store.serving_index(info)
        deadline = time.monotonic() + 600
        while index.moments is not None and index.moments.vectors.ivf is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the segment IVF trains on a background thread
            index = store.serving_index(info)
        built = time.perf_counter() - started
        console.print(f"written in {written:.1f} s; serving index and segment IVF ready in {built:.1f} s")
        rng = np.random.default_rng(11)
        queries = world.vectors(rng, args.queries)
        picked = rng.choice(len(GENRES), size=5, replace=False)
        where = parse_filter({"op": "must", "field": "genre", "conds": [GENRES[g] for g in picked]}, info.schema)
        keep = np.isin(genres, picked)
        rows = []
        for label, w, mask in (("no filter", None, None), ("filter: 5 of 20 genres", where, keep)):
            ours, base, recall, tail = [], [], [], []
            for _ in range(10):  # warm-up
                store.vector_search(info, queries[0], K, w)
            for q in queries:
                t = time.perf_counter()
                found = store.vector_search(info, q, K, w)
                ours.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                exact = floor(matrix, starts, q, K, mask)
                base.append((time.perf_counter() - t) * 1000)
                truth = {f"v{i:06d}" for i in exact[:10].tolist()}
                recall.append(len(truth & {c.id for c in found[:10]}) / 10)
                every = {f"v{i:06d}" for i in exact.tolist()}
                tail.append(len(every & {c.id for c in found}) / max(1, len(every)))
            rows.append((label, pct(ours, 50), pct(ours, 99), pct(base, 50), pct(base, 99), float(np.mean(recall)),
                         float(np.mean(tail))))
    table = Table("query", "mmsearch p50 ms", "p99", "floor p50 ms", "p99", "ratio p50", "recall@10", f"recall@{K}",
                  title=f"video vector channel: {args.videos} videos, {len(matrix):,} segments, k={K}")
    for label, p50, p99, f50, f99, rec, rec_k in rows:
        table.add_row(label, f"{p50:.2f}", f"{p99:.2f}", f"{f50:.2f}", f"{f99:.2f}", f"{p50 / f50:.2f}x", f"{rec:.3f}",
                      f"{rec_k:.3f}")
    console.print(table)
    if args.no_record:
        return
    lines = [f"<!-- bench:video_search N={args.videos} -->",
             f"Run {dt.date.today()} on {platform.machine()}, 2 cores, Python {platform.python_version()}: "
             f"`python bench/video_search.py --videos {args.videos}`. {args.videos} videos with 20-80 segments each "
             f"({len(matrix):,} segment vectors, 512-d, from the engine bench's clustered world); {args.queries} "
             f"queries, each run through mmsearch's `vector_search` (k = {K}; the segment IVF trained) and the "
             "floor (numpy exact max-sim: every segment scored, best per video, top k), interleaved. Written in "
             f"{written:.1f} s; serving index and segment IVF ready in {built:.1f} s.", "",
             f"| query | mmsearch p50 ms | p99 ms | floor p50 ms | floor p99 ms | ratio p50 | recall@10 | recall@{K} |",
             "|---|---|---|---|---|---|---|---|"]
    for label, p50, p99, f50, f99, rec, rec_k in rows:
        lines.append(f"| {label} | {p50:.2f} | {p99:.2f} | {f50:.2f} | {f99:.2f} | {p50 / f50:.2f}x | {rec:.3f} "
                     f"| {rec_k:.3f} |")
    lines.append("<!-- /bench:video_search -->")
    record_section("video_search", args.videos, "\n".join(lines), DOC)


if __name__ == "__main__":
    main()
