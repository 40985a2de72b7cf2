"""Memory and start-up of a server's serving index: a fresh process opens a dataset and answers queries.

    python bench/serving_rss.py --home /tmp/b1m            # loads the newest snapshot (a restart)
    python bench/serving_rss.py --home /tmp/b1m --rebuild  # no snapshot: reads every row, trains the IVF

The home must hold bench/engine.py's dataset (`python bench/engine.py --n 1000000 --home /tmp/b1m` leaves one).
Reports the time to a first answer, the peak and current RSS of the process after 200 hybrid+filter+sort and
200 vector queries, the index's own accounting by part, and the query latencies. This is the figure issue 10's
"RSS at 1M items with 512-d vectors <= 3 GB" is about: what a server holds, without an import in the same
process (bench/engine.py's peak RSS includes its import).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from engine import DATASET, World, make_queries
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.search import SearchRequest
from mmsearch.store.serving import snapshot


def rss_mb() -> tuple[float, float]:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open("/proc/self/status", encoding="ascii") as fh:
        now = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024
    return peak, now


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--rebuild", action="store_true", help="delete the snapshots first")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    started = time.perf_counter()
    mm = MMSearch(Settings(home=args.home))
    mm.store.serving.background = False  # train the IVF before answering, so the figures include it
    info = mm.dataset(DATASET)
    if args.rebuild:
        for p in snapshot.folder(mm.settings.tables_dir, DATASET).glob("v*"):
            shutil.rmtree(p)
    index = mm.store.serving_index(info)
    rows = index.view.rows
    q = make_queries(World.make(rows, seed=20240611), args.queries)
    mm.search(DATASET, SearchRequest(text=q.texts[0]))
    first = time.perf_counter() - started
    lat: dict[str, list[float]] = {"vector": [], "text": [], "text+filter+sort": [], "hybrid+filter+sort": []}
    for i in range(args.queries):
        for kind, req in (("vector", SearchRequest(vector=q.vectors[i])), ("text", SearchRequest(text=q.texts[i])),
                          ("text+filter+sort", SearchRequest(text=q.texts[i], filter=q.filters[i], sort_by="sales")),
                          ("hybrid+filter+sort", SearchRequest(text=q.texts[i], vector=q.vectors[i],
                                                               filter=q.filters[i], sort_by="sales"))):
            t = time.perf_counter()
            mm.search(DATASET, req)
            lat[kind].append((time.perf_counter() - t) * 1000)
    peak, now = rss_mb()
    how = "rebuilt" if args.rebuild else "opened (snapshot if any)"
    print(f"rows {rows:,}; {how} and first answer in {first:.1f} s; vectors {index.vectors.matrix.view().dtype}")
    print(f"RSS peak {peak:,.0f} MB, now {now:,.0f} MB")
    print("index parts:", ", ".join(f"{k} {v / 2**20:,.0f} MB" for k, v in index.memory().items()))
    for kind, ts in lat.items():
        print(f"{kind:20s} p50 {np.percentile(ts, 50):6.2f} ms  p99 {np.percentile(ts, 99):6.2f} ms")
    r10, r200 = filtered_recall(mm, q)
    print(f"filtered vector recall (k=200, exact inside the filter): @10 {r10:.3f}, @200 {r200:.3f}")
    return 0


def filtered_recall(mm: MMSearch, q: object, count: int = 50) -> tuple[float, float]:
    """The vector channel inside the hybrid query's filter against an exact scan of the rows the filter keeps."""
    from mmsearch.schema.filters import parse_filter

    info = mm.dataset(DATASET)
    index = mm.store.serving_index(info)
    rows = index.view.rows
    matrix = index.vectors.matrix.view()[:rows]
    hit10 = hit200 = 0
    for i in range(count):
        where = parse_filter(q.filters[i], info.schema)  # type: ignore[attr-defined]
        allowed = np.flatnonzero(index.mask(where) & index.vectors.has.view()[:rows])
        scores = matrix[allowed].astype(np.float32) @ q.vectors[i]  # type: ignore[attr-defined]
        exact = [index.ids[r] for r in allowed[np.argsort(-scores)[:200]]]
        got = [c.id for c in mm.store.vector_search(info, q.vectors[i], 200, where)]  # type: ignore[attr-defined]
        hit10 += len(set(got[:10]) & set(exact[:10]))
        hit200 += len(set(got) & set(exact))
    return hit10 / (10 * count), hit200 / (200 * count)


if __name__ == "__main__":
    raise SystemExit(main())
