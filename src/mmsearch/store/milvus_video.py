"""A video dataset's segments and transcripts on Milvus: two collections beside the dataset's own.

A video is many pictures, so the vector channel scores a video by its best segment (max-sim), as the embedded
store does (store/serving/moments.py). Here the segments are rows of their own collection; each video found
keeps its best MOMENTS_PER_ITEM segments as moments. Segments are asked for as the embedded store asks its own
index, WIDEN per video wanted, widening until enough distinct videos are found: Milvus's grouping search would
do this inside the engine, but Milvus Lite 3.2's returned only the first group for a group size above 1.

- `mmsearch_seg_<dataset>`: `_pk` (`<item id>#<n>`), `_item` (INVERTED), `_start`/`_end` seconds, `_vec` (the
  dataset's vector index, COSINE) and a copy of the item's filterable and sortable `f_<name>` fields, so a filter
  runs inside the same search instead of as a second round trip.
- `mmsearch_cue_<dataset>`: each video's timed transcript (`split_cues` columns, as the embedded store keeps
  them apart from the media rerank parses), as ASCII JSON in parts of at most CUE_PART characters: a two-hour
  film's lines are ~160 KB, more than one VARCHAR holds.

Rerank needs a video's best segment for the query, not its hundreds of segment vectors: `best_segments` asks a
search restricted to the reranked ids, one call for the 50 hits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from mmsearch.schema.fields import DatasetInfo
from mmsearch.schema.filters import Filter
from mmsearch.store.base import Record
from mmsearch.store.milvus_filter import column, string_literal, to_expr
from mmsearch.store.serving.moments import MOMENTS_PER_ITEM, WIDEN

CUE_PART = 60_000  # characters of ASCII JSON per row (a VARCHAR holds 65,535 bytes)
ID_CHUNK = 500
QUERY_LIMIT = 16_384  # Milvus's largest limit (offset + limit) of a query or search
DATASET_PREFIX = "mmsearch_ds_"  # store/milvus.py's collection names; a dataset's others share its suffix

Moment = tuple[float, float, float]


def segment_rows(info: DatasetInfo, r: Record) -> list[dict[str, Any]]:
    """One row per segment of a record, with the record's filterable fields copied beside its vector."""
    if r.segments is None or r.spans is None or len(r.segments) == 0:
        return []
    if len(r.segments) != len(r.spans):  # written together by the importer; a mismatch is a bug
        raise ValueError(f"item {r.id!r}: {len(r.segments)} segment vectors but {len(r.spans)} time spans")
    scalars = {column(f.name): r.doc.get(f.name) for f in info.schema.columns}
    vectors = np.asarray(r.segments, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    return [{"_pk": f"{r.id}#{n}", "_item": r.id, "_start": float(s), "_end": float(e), "_vec": v.tolist(), **scalars}
            for n, (v, (s, e), norm) in enumerate(zip(vectors, r.spans, norms, strict=True)) if norm > 0]


def cue_rows(item_id: str, cues: bytes) -> list[dict[str, Any]]:
    """A video's transcript columns as parts of ASCII JSON (so characters are bytes and a part fits a VARCHAR)."""
    if not cues:
        return []
    text = json.dumps(json.loads(cues), ensure_ascii=True, separators=(",", ":"))
    return [{"_pk": f"{item_id}#{n}", "_item": item_id, "_part": n, "_json": text[at : at + CUE_PART],
             "_v": [0.0, 0.0]} for n, at in enumerate(range(0, len(text), CUE_PART))]


def items_expr(ids: Iterable[str]) -> str:
    return "_item in [" + ", ".join(string_literal(i) for i in ids) + "]"


class VideoCollections:
    """The segment and cue collections of video datasets, through the dataset store's client."""

    def __init__(self, client: Any, vector_index: str) -> None:
        self.client = client
        self.vector_index = vector_index

    def create(self, name: str, info: DatasetInfo, vec_plan: tuple[str, str, dict[str, Any]],
               scalar_type: Any, lite: bool) -> None:
        from pymilvus import DataType

        c = self.client
        seg = c.create_schema(auto_id=False, enable_dynamic_field=False)
        seg.add_field("_pk", DataType.VARCHAR, is_primary=True, max_length=600)
        seg.add_field("_item", DataType.VARCHAR, max_length=512)
        seg.add_field("_start", DataType.FLOAT)
        seg.add_field("_end", DataType.FLOAT)
        seg.add_field("_vec", DataType.FLOAT_VECTOR, dim=info.vector_dim)
        index = c.prepare_index_params()
        field, kind, params = vec_plan
        index.add_index(field, index_type=kind, **params)
        index.add_index("_item", index_type="INVERTED")
        for f in info.schema.columns:
            seg.add_field(column(f.name), **scalar_type(f), nullable=True)
            if not (f.is_array and lite):
                index.add_index(column(f.name), index_type="INVERTED")
        seg_name, cue_name = self.names(name)
        c.create_collection(seg_name, schema=seg, index_params=index)

        cue = c.create_schema(auto_id=False, enable_dynamic_field=False)
        cue.add_field("_pk", DataType.VARCHAR, is_primary=True, max_length=600)
        cue.add_field("_item", DataType.VARCHAR, max_length=512)
        cue.add_field("_part", DataType.INT32)
        cue.add_field("_json", DataType.VARCHAR, max_length=CUE_PART)
        cue.add_field("_v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
        index = c.prepare_index_params()
        index.add_index("_v", index_type="FLAT", metric_type="L2")
        index.add_index("_item", index_type="INVERTED")
        c.create_collection(cue_name, schema=cue, index_params=index)

    @staticmethod
    def names(name: str) -> tuple[str, str]:
        """The segment and cue collections of the dataset whose collection is `name`."""
        suffix = name.removeprefix(DATASET_PREFIX)
        return f"mmsearch_seg_{suffix}", f"mmsearch_cue_{suffix}"

    def drop(self, name: str) -> None:
        for other in self.names(name):
            if self.client.has_collection(other):
                self.client.drop_collection(other)

    def write(self, name: str, info: DatasetInfo, records: list[Record], cues: list[bytes]) -> None:
        """Replace the records' segments and transcripts: the old ones go first, so a re-import that finds fewer
        segments leaves none behind (a failed call is repaired by re-running the idempotent upsert)."""
        seg, cue = self.names(name)
        self.delete(name, [r.id for r in records])
        rows = [row for r in records for row in segment_rows(info, r)]
        for start in range(0, len(rows), 1_000):
            self.client.insert(seg, rows[start : start + 1_000])
        parts = [row for r, c in zip(records, cues, strict=True) for row in cue_rows(r.id, c)]
        for start in range(0, len(parts), 100):  # ~6 MB a call
            self.client.insert(cue, parts[start : start + 100])

    def delete(self, name: str, ids: list[str]) -> None:
        for other in self.names(name):
            for start in range(0, len(ids), ID_CHUNK):
                self.client.delete(other, filter=items_expr(ids[start : start + ID_CHUNK]))

    def count_segments(self, name: str) -> int:
        return int(self.client.query(self.names(name)[0], filter="", output_fields=["count(*)"])[0]["count(*)"])

    def search(self, name: str, q: list[float], k: int, where: Filter | None, fields: tuple[str, ...]
               ) -> list[tuple[str, float, tuple[Moment, ...], dict[str, Any]]]:
        """The best `k` videos by their best segment, best first: (id, cosine, best segments, field values of
        `fields` when they are typed columns)."""
        expr = to_expr(where) if where is not None else ""
        hits = self._nearest(name, q, k, expr, ["_start", "_end", *(column(f) for f in fields)])
        found: dict[str, tuple[float, list[Moment], dict[str, Any]]] = {}
        for item, score, e in hits:  # best first, so a video's first segment is its best
            moment = (round(float(e["_start"]), 2), round(float(e["_end"]), 2), score)
            if item in found:
                if len(found[item][1]) < MOMENTS_PER_ITEM:
                    found[item][1].append(moment)
            elif len(found) < k:
                found[item] = (score, [moment], {f: v for f in fields if (v := e.get(column(f))) is not None})
        return [(i, best, tuple(moments), values) for i, (best, moments, values) in found.items()]

    def best_segments(self, name: str, ids: list[str], q: np.ndarray) -> dict[str, np.ndarray]:
        """Each id's segment nearest the query (float32 [dim]); ids without segments are left out."""
        out: dict[str, np.ndarray] = {}
        query = np.asarray(q, dtype=np.float32).reshape(-1).tolist()
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), ID_CHUNK):
            chunk = unique[start : start + ID_CHUNK]
            for item, _, e in self._nearest(name, query, len(chunk), items_expr(chunk), ["_vec"]):
                if item not in out:
                    out[item] = np.asarray(e["_vec"], dtype=np.float32)
        return out

    def _nearest(self, name: str, q: list[float], k: int, expr: str, output: list[str]
                 ) -> list[tuple[str, float, dict[str, Any]]]:
        """Segments nearest the query, best first, until they hold `k` videos or there are no more: (video id,
        cosine, the segment's `output` fields). Asks for WIDEN * k segments and widens as the embedded store's
        moments do. (Milvus Lite 3.2's grouping search with a group size above 1 returned only the first
        group on a small collection, so videos are grouped here.)"""
        seg = self.names(name)[0]
        want = min(WIDEN * max(k, 1), QUERY_LIMIT)
        while True:
            hits = self.client.search(
                seg, data=[q], anns_field="_vec", limit=want, filter=expr, output_fields=["_item", *output],
                search_params={"metric_type": "COSINE", "params": self._params(want, bool(expr))})[0]
            out = [(str(h["entity"]["_item"]), float(h["distance"]), h["entity"]) for h in hits]
            if len(out) < want or want >= QUERY_LIMIT or len({i for i, _, _ in out}) >= k:
                return out
            want = min(want * WIDEN, QUERY_LIMIT)

    def cues(self, name: str, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each id's transcript entries ({field, kind, start[], end[], text[], source[]}); ids without are left out."""
        parts: dict[str, list[tuple[int, str]]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 50):
            it = self.client.query_iterator(self.names(name)[1], batch_size=1_000,
                                            filter=items_expr(unique[start : start + 50]),
                                            output_fields=["_item", "_part", "_json"])
            try:
                while rows := it.next():
                    for r in rows:
                        parts.setdefault(str(r["_item"]), []).append((int(r["_part"]), r["_json"]))
            finally:
                it.close()
        return {i: json.loads("".join(text for _, text in sorted(parts[i]))) for i in unique if i in parts}

    def _params(self, k: int, filtered: bool) -> dict[str, Any]:
        """As the dataset's own vector search (store/milvus.py `_search`): a filtered walk looks wider."""
        if self.vector_index == "HNSW":
            return {"ef": min(max(4 * k, 512), QUERY_LIMIT) if filtered else min(max(k, 64), QUERY_LIMIT)}
        return {"nprobe": 128 if filtered else 32}
