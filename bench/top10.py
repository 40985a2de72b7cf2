"""Top-10 of the same queries on two versions of mmsearch, over the same data: did an engine change move results?

    # 1. make the data once (demo catalogue, or N synthetic items from bench/engine.py)
    python bench/top10.py make --home /tmp/ab --n 20000
    # 2. dump each version's answers (run the old one from a `git worktree` of the old commit)
    PYTHONPATH=/tmp/old/src python bench/top10.py dump --home /tmp/ab --out /tmp/old.json
    python bench/top10.py dump --home /tmp/ab --out /tmp/new.json
    # 3. compare: mean top-10 overlap per query kind, and every query whose top 10 differ
    python bench/top10.py compare /tmp/old.json /tmp/new.json

Both versions read the same LanceDB table (the old one queries it directly; the new one builds its serving
index from it), so any difference is the engine's. Queries: the synthetic bench's text, vector and
hybrid+filter+sort queries, plus the shoppers' queries of the demo catalogue when it is there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engine import CATEGORIES, DATASET, DIM, SCHEMA, World, make_queries  # noqa: F401

SHOPPER = ["女鞋", "鞋子", "运动鞋", "running shoes", "红色连衣裙", "背包", "耳机", "手表", "咖啡", "羽绒服",
           "儿童", "黑色", "dress", "bag", "coffee"]


def make(home: Path, n: int) -> None:
    from rich.console import Console

    from engine import build
    from mmsearch.config import Settings
    from mmsearch.core import MMSearch

    mm = MMSearch(Settings(home=home))
    if DATASET not in {d.id for d in mm.datasets()}:
        build(mm, World.make(n, seed=20240611), n, 5_000, Console())


def dump(home: Path, n: int, queries: int, out: Path) -> None:
    from mmsearch.config import Settings
    from mmsearch.core import MMSearch
    from mmsearch.search import SearchRequest

    mm = MMSearch(Settings(home=home))
    q = make_queries(World.make(n, seed=20240611), queries)
    kinds: dict[str, list[SearchRequest]] = {
        "text": [SearchRequest(text=t) for t in q.texts] + [SearchRequest(text=t) for t in SHOPPER],
        "vector": [SearchRequest(vector=v) for v in q.vectors],
        "hybrid+filter+sort": [SearchRequest(text=t, vector=v, filter=f, sort_by="sales", sort_order="desc")
                               for t, v, f in zip(q.texts, q.vectors, q.filters, strict=True)],
    }
    answers: dict[str, list[dict[str, Any]]] = {}
    for kind, reqs in kinds.items():
        answers[kind] = []
        for r in reqs:
            res = mm.search(DATASET, r)
            answers[kind].append({"query": r.text or "(vector)", "ids": [h.id for h in res.hits],
                                  "scores": [round(h.score, 6) for h in res.hits], "total": res.total_items})
    out.write_text(json.dumps(answers, ensure_ascii=False), encoding="utf-8")


def compare(old: Path, new: Path) -> None:
    a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (old, new))
    for kind in a:
        overlaps = []
        for x, y in zip(a[kind], b[kind], strict=True):
            overlap = len(set(x["ids"]) & set(y["ids"])) / len(x["ids"]) if x["ids"] else float(not y["ids"])
            overlaps.append(overlap)
            if x["ids"] != y["ids"]:
                print(f"{kind}: {x['query']!r} total {x['total']} -> {y['total']}, overlap {overlap:.1f}\n"
                      f"  old {list(zip(x['ids'], x['scores'], strict=True))}\n"
                      f"  new {list(zip(y['ids'], y['scores'], strict=True))}")
        same = sum(1 for x, y in zip(a[kind], b[kind], strict=True) if x["ids"] == y["ids"])
        print(f"== {kind}: {len(overlaps)} queries, identical top 10: {same}, mean overlap "
              f"{np.mean(overlaps):.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--home", type=Path, required=True)
    m.add_argument("--n", type=int, default=20_000)
    d = sub.add_parser("dump")
    d.add_argument("--home", type=Path, required=True)
    d.add_argument("--n", type=int, default=20_000)
    d.add_argument("--queries", type=int, default=200)
    d.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.home, args.n)
    elif args.cmd == "dump":
        dump(args.home, args.n, args.queries, args.out)
    else:
        compare(args.old, args.new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
