"""Which faiss index serves the vector channel: build time, latency and recall on the engine bench's vectors.

    python bench/vector_index.py --n 100000

The serving engine (mmsearch/store/serving) needs an index that (1) answers k=200 within a filter mask
(IDSelectorBitmap), (2) takes appended rows cheaply (imports land between rebuilds), and (3) builds in
reasonable time on 2 cores. Candidates: HNSW (flat or 8-bit codes) and IVF with 8-bit codes, each with
exact re-scoring of the candidates from the float32 matrix. Recall is against exact search inside the same
mask. Prints a table; the chosen settings and figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import faiss
import numpy as np

from engine import World, make_queries

K = 200


def exact(matrix: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None) -> np.ndarray:
    s = matrix @ q
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    top = np.argpartition(-s, k)[:k]
    return top[np.argsort(-s[top])]


def params_for(kind: str, knob: int, mask: np.ndarray | None) -> faiss.SearchParameters:
    if kind.startswith("hnsw"):
        p = faiss.SearchParametersHNSW()
        ef = max(knob, K)
        if mask is not None:
            ef = int(min(4096, ef / max(mask.mean(), 0.02)))
        p.efSearch = ef
    else:
        p = faiss.SearchParametersIVF()
        p.nprobe = knob
    if mask is not None:
        bits = np.packbits(mask, bitorder="little")
        p.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        p._bits = bits  # keep alive
    return p


def run(n: int, queries: int) -> None:
    world = World.make(n, 7)
    rng = np.random.default_rng([7, 1])
    matrix = np.concatenate([world.vectors(rng, min(10_000, n - s)) for s in range(0, n, 10_000)])
    q = make_queries(world, queries)
    masks = [rng.random(n) < 0.2 for _ in range(queries)]
    truth = {(i, f): exact(matrix, q.vectors[i], K, masks[i] if f else None) for i in range(queries) for f in (0, 1)}
    d = matrix.shape[1]
    nlist = int(4 * np.sqrt(n))
    builders: dict[str, Callable[[], faiss.Index]] = {
        "hnsw32_flat": lambda: faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT),
        "hnsw32_sq8": lambda: faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT),
        f"ivf{nlist}_sq8": lambda: faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT),
    }
    knobs = {"hnsw": (64, 128), "ivf": (8, 16, 32)}
    print(f"n={n} queries={queries} k={K} mask keeps ~20%; threads={faiss.omp_get_max_threads()}")
    for name, make in builders.items():
        index = make()
        if name.startswith("hnsw"):
            index.hnsw.efConstruction = 80
        t = time.perf_counter()
        if not index.is_trained:
            index.train(matrix[rng.choice(n, min(n, 50 * nlist), replace=False)])
        index.add(matrix)
        build = time.perf_counter() - t
        for knob in knobs["hnsw" if name.startswith("hnsw") else "ivf"]:
            for f in (0, 1):
                lat, r10, rk = [], 0, 0
                for i in range(queries):
                    mask = masks[i] if f else None
                    t = time.perf_counter()
                    _, ids = index.search(q.vectors[i : i + 1], K, params=params_for(name, knob, mask))
                    got = ids[0][ids[0] >= 0]
                    s = matrix[got] @ q.vectors[i]  # exact re-score of the candidates
                    got = got[np.argsort(-s)]
                    lat.append((time.perf_counter() - t) * 1000)
                    r10 += len(set(got[:10].tolist()) & set(truth[(i, f)][:10].tolist()))
                    rk += len(set(got.tolist()) & set(truth[(i, f)].tolist()))
                print(f"{name:16s} knob={knob:4d} filter={'20%' if f else 'none':4s} build={build:6.1f}s "
                      f"p50={np.percentile(lat, 50):6.2f}ms p99={np.percentile(lat, 99):6.2f}ms "
                      f"recall@10={r10 / (10 * queries):.3f} @200={rk / (K * queries):.3f}", flush=True)
    t = time.perf_counter()
    for i in range(20):
        exact(matrix, q.vectors[i], K, masks[i])
    print(f"exact numpy scan (masked) {1000 * (time.perf_counter() - t) / 20:.2f} ms", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=100)
    a = ap.parse_args()
    run(a.n, a.queries)
