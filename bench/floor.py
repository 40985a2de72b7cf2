"""The floor: what off-the-shelf parts do on the same items, for bench/engine.py to compare mmsearch against.

Issue 10 measures mmsearch against the best that plain building blocks manage on the same catalogue in
the same process: tantivy (BM25, in RAM) for text, faiss HNSW for vectors, numpy columns for filters and
the sort key. No catalog, no planning, no Arrow, no per-hit documents: the difference is mmsearch's own
overhead. Text goes through `mmsearch.text` on both sides (index_text for documents, tokenize_query for
queries) and tantivy splits it on whitespace only, so both engines see identical tokens.

Needs the `bench` extra: `pip install -e '.[bench]'` (tantivy, faiss-cpu).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmsearch.text import index_text, tokenize_query

HNSW_M = 32
EF_CONSTRUCTION = 80
EF_CANDIDATES = (32, 48, 64, 96, 128, 192, 256, 384, 512)
RECALL_TARGET = 0.95
MAX_EF = 4096  # cap on the widened beam of a filtered search
RECALL_SIZE = 200  # candidates per channel, as mmsearch's SearchOptions.recall_size


@dataclass
class Floor:
    """tantivy + faiss + numpy over the items of one run. Row i of every column is item `it{i:08d}`."""

    index: Any  # tantivy.Index
    searcher: Any  # tantivy.Searcher
    schema: Any  # tantivy.Schema
    hnsw: Any  # faiss.IndexHNSWFlat (inner product on unit vectors = cosine)
    vectors: np.ndarray  # float32[n, DIM], for exact search in the recall check
    category: np.ndarray  # int16 codes into `categories`
    categories: tuple[str, ...]
    price: np.ndarray
    in_stock: np.ndarray
    sales: np.ndarray
    ef_search: int = 64
    build_s: float = 0.0
    text_build_s: float = 0.0
    vector_build_s: float = 0.0
    docid_is_row: bool = True

    # -- build -----------------------------------------------------------------------------------
    @classmethod
    def build(cls, items: Any, n: int, dim: int, categories: tuple[str, ...]) -> Floor:
        """One pass over the items: tokens into a one-segment in-RAM tantivy index (a single writer thread
        keeps tantivy's doc ids equal to the row numbers), vectors and typed columns into numpy."""
        import faiss
        import tantivy

        started = time.perf_counter()
        sb = tantivy.SchemaBuilder()
        sb.add_text_field("tokens", stored=False, tokenizer_name="ws", index_option="freq")
        sb.add_text_field("category", stored=False, tokenizer_name="raw", index_option="basic")
        sb.add_float_field("price", stored=False, indexed=False, fast=True)
        sb.add_boolean_field("in_stock", stored=False, indexed=True, fast=False)
        sb.add_integer_field("row", stored=True, indexed=False, fast=False)
        schema = sb.build()
        index = tantivy.Index(schema)  # no path: in RAM
        index.register_tokenizer("ws", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
        writer = index.writer(heap_size=512_000_000, num_threads=1)

        vectors = np.empty((n, dim), dtype=np.float32)
        code = {c: i for i, c in enumerate(categories)}
        category = np.empty(n, dtype=np.int16)
        price = np.empty(n, dtype=np.float64)
        in_stock = np.empty(n, dtype=bool)
        sales = np.empty(n, dtype=np.int64)
        for i, item in enumerate(items):
            vectors[i] = item["_vector"]
            category[i] = code[item["category"]]
            price[i] = item["price"]
            in_stock[i] = item["in_stock"]
            sales[i] = item["sales"]
            writer.add_document(tantivy.Document(
                tokens=index_text([item["title"]]), category=item["category"], price=float(item["price"]),
                in_stock=bool(item["in_stock"]), row=i,
            ))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        searcher = index.searcher()
        text_s = time.perf_counter() - started

        t = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = EF_CONSTRUCTION
        hnsw.add(vectors)
        floor = cls(index, searcher, schema, hnsw, vectors, category, categories, price, in_stock, sales,
                    build_s=time.perf_counter() - started, text_build_s=text_s,
                    vector_build_s=time.perf_counter() - t)
        floor.docid_is_row = floor._check_docids()
        return floor

    def _check_docids(self) -> bool:
        """With one segment, a doc address's id is the insertion order; check a sample against the stored row."""
        if self.searcher.num_segments != 1:
            return False
        import tantivy

        res = self.searcher.search(tantivy.Query.all_query(), limit=50)
        return all(self.searcher.doc(addr)["row"][0] == addr.doc for _, addr in res.hits)

    def _rows(self, hits: list[tuple[float, Any]]) -> np.ndarray:
        if self.docid_is_row:
            return np.fromiter((a.doc for _, a in hits), dtype=np.int64, count=len(hits))
        return np.fromiter((self.searcher.doc(a)["row"][0] for _, a in hits), dtype=np.int64, count=len(hits))

    # -- filters ---------------------------------------------------------------------------------
    def mask(self, flt: dict[str, Any]) -> np.ndarray:
        """The bench's filter shape (and of: category in, price range, in_stock) as a numpy mask."""
        m = np.ones(len(self.price), dtype=bool)
        for cond in flt["conds"]:
            if cond["field"] == "category":
                codes = [self.categories.index(c) for c in cond["conds"]]
                m &= np.isin(self.category, codes)
            elif cond["field"] == "price":
                m &= (self.price >= cond["gte"]) & (self.price <= cond["lte"])
            elif cond["field"] == "in_stock":
                m &= self.in_stock == bool(cond["conds"][0])
            else:
                raise ValueError(f"floor: unsupported filter field {cond['field']}")
        return m

    def _tantivy_filter(self, flt: dict[str, Any]) -> Any:
        """The same filter as a tantivy query scoring 0, so BM25 ranks only the items it keeps."""
        import tantivy

        Q, must = tantivy.Query, tantivy.Occur.Must
        clauses = []
        for cond in flt["conds"]:
            if cond["field"] == "category":
                clauses.append((must, Q.term_set_query(self.schema, "category", list(cond["conds"]))))
            elif cond["field"] == "price":
                clauses.append((must, Q.range_query(self.schema, "price", tantivy.FieldType.Float,
                                                    float(cond["gte"]), float(cond["lte"]))))
            elif cond["field"] == "in_stock":
                clauses.append((must, Q.term_query(self.schema, "in_stock", bool(cond["conds"][0]))))
        return Q.const_score_query(Q.boolean_query(clauses), 0.0)

    # -- queries ---------------------------------------------------------------------------------
    def text(self, text: str, k: int, flt: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """BM25 top k, tokens OR-ed (as LanceDB's FTS does), optionally inside the filter."""
        import tantivy

        Q, should = tantivy.Query, tantivy.Occur.Should
        tokens = tokenize_query(text)
        if not tokens:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        query = Q.boolean_query([(should, Q.term_query(self.schema, "tokens", t)) for t in tokens])
        if flt is not None:
            query = Q.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, self._tantivy_filter(flt))])
        hits = self.searcher.search(query, limit=k, count=False).hits
        return self._rows(hits), np.fromiter((s for s, _ in hits), dtype=np.float32, count=len(hits))

    def vector(self, v: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """HNSW top k by inner product (cosine on unit vectors), inside the mask through an IDSelectorBitmap.

        A selector only drops non-matching nodes from the result list, so with a fraction s of the items
        kept the beam must be about 1/s wider to still fill k; without that, a 20% filter returns ~170 of
        200 and misses a third of the exact top 200 (measured at N=20,000), which is not a fair floor."""
        import faiss

        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, k)
        if mask is not None:
            kept = max(np.count_nonzero(mask) / len(mask), 0.02)
            params.efSearch = int(min(MAX_EF, params.efSearch / kept))
            bits = np.packbits(mask, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        scores, ids = self.hnsw.search(np.asarray(v, dtype=np.float32).reshape(1, -1), k, params=params)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]

    def hybrid(self, text: str, v: np.ndarray, flt: dict[str, Any], k: int, page: int = 10) -> np.ndarray:
        """Both channels inside the filter, weighted fusion as search/fuse.py does it (BM25 / best BM25 and
        cosine clipped at 0, weights 0.5 / 0.5), then the whole fused list sorted by sales desc, first page."""
        mask = self.mask(flt)
        t_ids, t_scores = self.text(text, k, flt)
        v_ids, v_scores = self.vector(v, k, mask)
        best = float(t_scores.max()) if len(t_scores) else 0.0
        t_norm = t_scores / best if best > 0 else np.zeros_like(t_scores)
        ran = (len(t_ids) > 0) + (len(v_ids) > 0) or 1
        ids = np.concatenate([t_ids, v_ids])
        contrib = np.concatenate([0.5 * t_norm, 0.5 * np.maximum(v_scores, 0.0)]) / (0.5 * ran)
        uniq, inv = np.unique(ids, return_inverse=True)
        fused = np.zeros(len(uniq), dtype=np.float64)
        np.add.at(fused, inv, contrib)
        order = np.lexsort((uniq, -fused))  # fused order: score desc, then id
        ranked = uniq[order]
        by_sales = np.argsort(-self.sales[ranked], kind="stable")  # sales desc, fused order among equals
        return ranked[by_sales[:page]]

    # -- recall ----------------------------------------------------------------------------------
    def exact(self, v: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
        scores = self.vectors @ np.asarray(v, dtype=np.float32)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        top = np.argpartition(-scores, k)[:k]
        return top[np.argsort(-scores[top])]

    def tune_ef(self, queries: np.ndarray, k: int = 10) -> tuple[int, float]:
        """The smallest efSearch with recall@10 >= RECALL_TARGET against exact search (unfiltered)."""
        exact = [set(self.exact(q, k).tolist()) for q in queries]
        recall = 0.0
        for ef in EF_CANDIDATES:
            self.ef_search = ef
            hit = sum(len(e & set(self.vector(q, k)[0].tolist())) for q, e in zip(queries, exact, strict=True))
            recall = hit / (k * len(queries))
            if recall >= RECALL_TARGET:
                break
        return self.ef_search, recall

    def filtered_recall(self, queries: np.ndarray, filters: list[dict[str, Any]]) -> tuple[float, float]:
        """recall@10 and recall@200 of the filtered HNSW search (as the hybrid query runs it, k=200) against
        exact search inside the mask; @200 matters because the sort by sales reaches deep into the list."""
        hit10 = hit_k = 0
        for q, flt in zip(queries, filters, strict=True):
            mask = self.mask(flt)
            got = self.vector(q, RECALL_SIZE, mask)[0].tolist()
            exact = self.exact(q, RECALL_SIZE, mask).tolist()
            hit10 += len(set(got[:10]) & set(exact[:10]))
            hit_k += len(set(got) & set(exact))
        return hit10 / (10 * len(queries)), hit_k / (RECALL_SIZE * len(queries))
