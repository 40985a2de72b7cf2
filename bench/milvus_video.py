"""Video datasets on the Milvus store vs the embedded store and the exact floor (numpy max-sim), same videos.

    python bench/milvus_video.py --videos 1000 --segments 40

Each synthetic video has S segment vectors (scenes drawn from clustered themes) and a director field. For the
vector channel (k=100, `Store.vector_search`), unfiltered and filtered to one director in five, it measures
p50/p95 per store, interleaved query by query, and the top-10 agreement of each store's videos with the exact
answer (a video scored by its best segment, computed in numpy). Prints a table; not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mmsearch.schema.fields import DatasetInfo, parse_schema
from mmsearch.schema.filters import parse_filter
from mmsearch.store.base import Record
from mmsearch.store.lance import LanceStore
from mmsearch.store.milvus import MilvusConfig, MilvusStore

SCHEMA = {"fields": [{"name": "content_id", "type": "string", "primary_key": True},
                     {"name": "title", "type": "string", "searchable": True},
                     {"name": "director", "type": "string", "filterable": True},
                     {"name": "video_url", "type": "video"}]}


def unit(m: np.ndarray) -> np.ndarray:
    return (m / np.linalg.norm(m, axis=-1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=1_000)
    ap.add_argument("--segments", type=int, default=40)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--dim", type=int, default=128)
    args = ap.parse_args()
    rng = np.random.default_rng(11)
    n, s, dim = args.videos, args.segments, args.dim
    themes = unit(rng.standard_normal((64, dim)))
    seg = unit(themes[rng.integers(0, 64, (n, s))] + 0.8 * unit(rng.standard_normal((n, s, dim))))
    director = rng.integers(0, 5, n)
    info = DatasetInfo(id="bench-video", type="video", schema=parse_schema(SCHEMA), vector_dim=dim)
    records = [Record(f"v{i}", {"content_id": f"v{i}", "title": f"video {i}", "director": f"d{director[i]}",
                                "video_url": [f"/v/{i}.mkv"]}, text=f"video {i}", segments=seg[i],
                      spans=np.array([[2.0 * j, 2.0 * j + 2] for j in range(s)], np.float32)) for i in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="mm-video-bench-"))
    stores = {"lance": LanceStore(tmp / "tables"), "milvus-lite": MilvusStore(MilvusConfig(str(tmp / "mm.db")))}
    rows: list[tuple[str, str, str]] = []
    for name, store in stores.items():
        store.create(info)
        t = time.perf_counter()
        for at in range(0, n, 200):
            store.upsert(info, records[at : at + 200])
        store.maintain(info)
        rows.append((name, "import + maintain s", f"{time.perf_counter() - t:.1f}"))
    queries = unit(themes[rng.integers(0, 64, args.queries)] + 0.8 * unit(rng.standard_normal((args.queries, dim))))
    where = parse_filter({"op": "must", "field": "director", "conds": ["d1"]}, info.schema)
    best = np.einsum("nsd,qd->qns", seg, queries).max(axis=2)  # [q, videos]: each video's best segment
    for label, flt, keep in (("", None, np.ones(n, bool)), ("filtered ", where, director == 1)):
        exact = [[f"v{i}" for i in np.argsort(-np.where(keep, b, -np.inf))[:10]] for b in best]
        times: dict[str, list[float]] = {name: [] for name in stores}
        agree: dict[str, list[float]] = {name: [] for name in stores}
        for store in stores.values():  # warm: the serving index, the loaded collections
            store.vector_search(info, queries[0], 100, flt)
        for qn, q in enumerate(queries):
            for name, store in stores.items():  # interleaved, so both see the same machine
                t = time.perf_counter()
                found = [c.id for c in store.vector_search(info, q, 100, flt)]
                times[name].append((time.perf_counter() - t) * 1000)
                agree[name].append(len(set(found[:10]) & set(exact[qn])) / 10)
        for name in stores:
            ts = sorted(times[name])
            rows.append((name, f"{label}video vector p50 / p95 ms", f"{statistics.median(ts):.1f} / "
                         f"{ts[int(len(ts) * 0.95) - 1]:.1f}"))
            rows.append((name, f"{label}top-10 agreement with exact", f"{np.mean(agree[name]):.3f}"))
    print(f"videos={n} segments/video={s} dim={dim} queries={args.queries} k=100")
    for r in rows:
        print(f"{r[0]:<14} {r[1]:<40} {r[2]}")


if __name__ == "__main__":
    main()
