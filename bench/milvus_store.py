"""Milvus store vs the embedded store, and the Milvus text channel's two designs, on the same synthetic items.

    python bench/milvus_store.py --n 10000

For N items (Zipf CJK + English titles, clustered vectors, a category field) it measures, per store, text and
vector search p50/p95 (k=100, library calls: `Store.text_search` / `vector_search`), and for the text channel
two Milvus designs: (a) BM25-weighted sparse vectors computed by mmsearch, inner product (what store/milvus.py
does) and (b) Milvus's BM25 function over a VARCHAR of the same terms as ASCII words (`term_word`), searched by
query text. Top-10 agreement is measured against the embedded store's BM25. Prints a table; not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mmsearch.ingest.importer import searchable_text
from mmsearch.schema.fields import DatasetInfo, parse_schema
from mmsearch.store.base import Record
from mmsearch.store.lance import LanceStore
from mmsearch.store.milvus import MilvusConfig, MilvusStore, collection_name, term_word
from mmsearch.text import search_terms, stream_tokens, tokenize_query

CJK_WORDS = "运动鞋 女士 男士 儿童 跑步 篮球 连衣裙 夏季 冬季 羽绒服 外套 手提包 皮革 帆布 袜子 帽子 眼镜 手表"
LATIN_WORDS = "shoe running dress summer winter coat leather bag canvas sock hat watch phone red blue white black"
WORDS = (CJK_WORDS + " " + LATIN_WORDS).split(" ")
SCHEMA = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                     {"name": "title", "type": "string", "searchable": True},
                     {"name": "category", "type": "string", "filterable": True}]}


def items(n: int, dim: int, rng: np.random.Generator) -> list[dict]:
    p = 1 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    centers = rng.standard_normal((32, dim))
    out = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)), p=p))
        v = centers[i % 32] + 0.5 * rng.standard_normal(dim)
        out.append({"id": f"i{i}", "title": title, "category": f"c{i % 10}", "_v": v / np.linalg.norm(v)})
    return out


def timed(fn, queries) -> tuple[float, float, list]:
    times, results = [], []
    for q in queries:
        t = time.perf_counter()
        results.append(fn(q))
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], results


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    return float(np.mean([len(set(x[:10]) & set(y[:10])) / max(1, min(10, len(x))) for x, y in zip(a, b, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--dim", type=int, default=128)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    tmp = Path(tempfile.mkdtemp(prefix="mm-milvus-bench-"))
    info = DatasetInfo(id="bench", type="image_text", schema=parse_schema(SCHEMA), vector_dim=args.dim)
    data = items(args.n, args.dim, rng)
    records = [Record(d["id"], {k: v for k, v in d.items() if k != "_v"},
                      searchable_text(info, d), d["_v"].astype(np.float32)) for d in data]
    lance = LanceStore(tmp / "tables")
    milvus = MilvusStore(MilvusConfig(str(tmp / "mm.db")))
    rows = []
    for name, store in (("lance", lance), ("milvus-lite", milvus)):
        store.create(info)
        t = time.perf_counter()
        for s in range(0, len(records), 2_000):
            store.upsert(info, records[s : s + 2_000])
        store.maintain(info)
        rows.append((name, "import + maintain s", round(time.perf_counter() - t, 1)))
    texts = [" ".join(rng.choice(WORDS[:20], size=2, replace=False)) for _ in range(args.queries)]
    toks = [tokenize_query(t) for t in texts]
    vecs = [d["_v"].astype(np.float32) for d in data[: args.queries]]
    found = {}
    for name, store in (("lance", lance), ("milvus-lite", milvus)):
        store.text_search(info, toks[0], 100)
        p50, p95, res = timed(lambda q, s=store: [c.id for c in s.text_search(info, q, 100)], toks)
        found[name] = res
        rows.append((name, "text p50 / p95 ms", f"{p50:.1f} / {p95:.1f}"))
        p50, p95, _ = timed(lambda q, s=store: s.vector_search(info, q, 100), vecs)
        rows.append((name, "vector p50 / p95 ms", f"{p50:.1f} / {p95:.1f}"))
    agree = overlap(found["lance"], found["milvus-lite"])
    rows.append(("milvus-lite sparse IP", "top-10 agreement with lance", f"{agree:.3f}"))
    for r in rows:
        print(f"{r[0]:<24} {r[1]:<30} {r[2]}", flush=True)

    # (b) Milvus's BM25 function over the same terms, as words its `standard` analyzer keeps whole
    from pymilvus import DataType, Function, FunctionType

    c = milvus.client
    schema = c.create_schema(auto_id=False)
    schema.add_field("_id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("words", DataType.VARCHAR, max_length=65_535, enable_analyzer=True,
                     analyzer_params={"tokenizer": "standard"})
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["words"],
                                 output_field_names=["sparse"]))
    index = c.prepare_index_params()
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                    params={"bm25_k1": 1.2, "bm25_b": 0.75})
    c.create_collection("bm25fn", schema=schema, index_params=index)
    t = time.perf_counter()
    docs = [{"_id": r.id, "words": " ".join(term_word(x) for x in search_terms(stream_tokens(r.text)))}
            for r in records]
    for s in range(0, len(docs), 2_000):
        c.insert("bm25fn", docs[s : s + 2_000])
    c.load_collection("bm25fn")
    rows.append(("milvus-lite BM25 fn", "import s", round(time.perf_counter() - t, 1)))
    qtexts = [" ".join(term_word(x) for x in search_terms(q)) for q in toks]
    p50, p95, res = timed(lambda q: [h["entity"]["_id"] for h in c.search(
        "bm25fn", data=[q], anns_field="sparse", limit=100, output_fields=["_id"],
        search_params={"metric_type": "BM25"})[0]], qtexts)
    rows.append(("milvus-lite BM25 fn", "text p50 / p95 ms", f"{p50:.1f} / {p95:.1f}"))
    rows.append(("milvus-lite BM25 fn", "top-10 agreement with lance", f"{overlap(found['lance'], res):.3f}"))
    print(f"N={args.n} dim={args.dim} queries={args.queries} collection={collection_name(info.id)}")
    for r in rows:
        print(f"{r[0]:<24} {r[1]:<30} {r[2]}")


if __name__ == "__main__":
    main()
