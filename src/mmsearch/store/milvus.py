"""Milvus store: one collection per dataset, served by Milvus's own indexes (`MMSEARCH_STORE=milvus:<uri>`).

The same `Store` protocol as the embedded LanceDB engine, for deployments where the index outgrows one process.
A URI ending in `.db` is a Milvus Lite file: pymilvus starts Milvus Lite's gRPC server on loopback and talks to it
with the same client code a cluster gets, so tests exercise the network path.

Fields of a dataset's collection:

- `_id` VARCHAR primary key; `_doc` the item as JSON (VARCHAR: exact text, big integers kept); `_media` the
  per-image metadata (JSON); `_stream` the item's index token stream (the reranker's tokens; null when it does
  not fit a VARCHAR); `_vec` the item's vector (FLOAT_VECTOR, COSINE, HNSW or IVF_FLAT; an item without one
  holds a placeholder, `_has_vec` false).
- `f_<name>`: one typed, nullable field per filterable or sortable field (INVERTED index; STL_SORT on a
  server for sortable numbers), so filters run inside Milvus before ranking.
- `_text`: the text channel as a sparse vector of BM25 weights computed here (inner product), and `_terms`: the
  item's distinct search terms, each as a short base32 word (`t` + 13 characters) that every Milvus analyzer
  keeps whole, with a match index, so `text_match` counts a term's document frequency.

Why BM25 sparse vectors computed here rather than Milvus's BM25 function (bench/milvus_store.py, 10k items,
Milvus Lite 3.2.2: top-10 agreement with the embedded BM25 0.995 against 0.980; p50 1,135 ms against 335 ms, of
which ~90% is the df counts, a `text_match` scan in pure-Python Milvus Lite and an index lookup on a server):
tokenisation, stemming, user words and CJK handling are mmsearch's own either way (the tokens go in pre-cut),
but only a query vector built here can carry per-field weights (one sparse vector holds every field's terms as
their own dimensions: a query gives each field's dimension its weight), the CJK back-off's half-weight
characters and synonyms' own weights; the BM25 function takes query text, so each field would need its own
sparse field and search, fused approximately. Milvus Lite 3.2 also scores the BM25 function with per-segment
statistics. Here idf comes from the engine's live counts at query time (N by `count(*)`, df by `text_match`,
kept STATS_TTL_S), so it follows deletes and other writers exactly.

Scores: a document dimension holds tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl)) of a term in a field, the
query dimension idf times the field's weight (times 0.5 for a back-off character). With one searchable field,
or a term in one field, this is the embedded engine's BM25 exactly; a term in several fields adds per-field
BM25s where the embedded engine saturates their weighted sum (BM25F), and a weight other than 1 scales the
field's BM25 instead of its term frequency. avgdl is the running mean of field lengths written (kept in the
`mmsearch_meta` collection; replaced and deleted items are not subtracted), baked into the vectors at write time.
Terms are hashed to 32-bit dimensions (as Milvus's own BM25 function does): two terms may share one.

Video datasets keep their segments and timed transcripts in two more collections (store/milvus_video.py): the
vector channel scores a video by its best segment, with its best segments as moments.

Limits of this backend: a value stored as VARCHAR (`_doc`, `_media`, strings) holds at most 65,535 bytes; an item's
token stream beyond that (a long film's transcript) is searched but not kept for rerank, which then reads the
document's own words.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmsearch.errors import AlreadyExists, InvalidArgument, NotFound
from mmsearch.schema.fields import OCR_FIELD, TRANSCRIPT_FIELD, VIDEO_SUMMARY, VIDEO_TITLE, DatasetInfo, FieldSpec
from mmsearch.schema.filters import Filter
from mmsearch.store.base import Candidate, Record, RerankFeatures, UpsertResult
from mmsearch.store.milvus_filter import column, string_literal, to_expr
from mmsearch.store.milvus_video import VideoCollections
from mmsearch.store.serving.index import split_cues
from mmsearch.text import (
    FIELD_MARK,
    HEAD_MARK,
    head_of,
    index_terms,
    is_cjk,
    prefix_piece,
    search_terms,
    stream_tokens,
)

K1 = 1.2  # as store/serving/postings.py
B = 0.75
BACKOFF = 0.5  # a CJK word's characters, when fewer than k items hold the word (store/serving/index.py)
NOUN_SUFFIXES = frozenset("子儿")
VARCHAR_MAX = 65_535  # bytes
ARRAY_MAX = 4_096  # elements
ID_CHUNK = 1_000
STATS_TTL_S = 1.0  # N and df are re-counted after this (the embedded store's read consistency interval)
META = "mmsearch_meta"
EMPTY_DIM = 0  # a sparse vector needs one nonzero weight: an item without text holds this dimension only
_PREFIX = "mmsearch_ds_"


def collection_name(dataset_id: str) -> str:
    """Dataset ids are [A-Za-z0-9_-]; Milvus names [A-Za-z_][A-Za-z0-9_]*. `_` becomes `_u` and `-` `_h`, so
    two ids never share a collection."""
    return _PREFIX + dataset_id.replace("_", "_u").replace("-", "_h")


def term_dim(slot: str, term: str) -> int:
    """A (field, term) pair's sparse dimension, in [1, 2**32 - 2] (0 is EMPTY_DIM)."""
    h = int.from_bytes(hashlib.blake2b(f"{slot}\x00{term}".encode(), digest_size=8).digest(), "little")
    return 1 + h % (2**32 - 2)


def term_word(term: str) -> str:
    """A term as one lower-case ASCII word, kept whole by Milvus's analyzers (`standard` in Milvus Lite)."""
    digest = hashlib.blake2b(term.encode(), digest_size=8).digest()
    return "t" + base64.b32encode(digest).decode().rstrip("=").lower()


def text_slots(info: DatasetInfo) -> tuple[str, ...]:
    """The fields a token stream names (slot "" is a stream without field markers), as the serving index has."""
    video = (VIDEO_TITLE, VIDEO_SUMMARY, TRANSCRIPT_FIELD) if info.type == "video" else ()
    return ("", *(f.name for f in info.schema.searchable), OCR_FIELD, *video)


def stream_terms(stream: str, slots: frozenset[str]) -> dict[str, dict[str, int]]:
    """A stored token stream's term frequencies per field (as the serving index's `_terms` reads it), with each
    CJK word's head term (text.head_term) beside it."""
    out: dict[str, dict[str, int]] = {}
    slot = ""
    tokens = stream.split()
    for i, tok in enumerate(tokens):
        if tok.startswith(FIELD_MARK):
            slot = tok[1:] if tok[1:] in slots else ""
            continue
        term, head = index_terms(tok)
        if term is not None:
            tfs = out.setdefault(slot, {})
            tfs[term] = tfs.get(term, 0) + 1
            if head is not None and not prefix_piece(tokens, i):
                tfs[head] = tfs.get(head, 0) + 1
    return out


def field_length(tfs: dict[str, int]) -> int:
    """A field's length in tokens: head terms are derived from its words, so they do not lengthen it."""
    return sum(n for term, n in tfs.items() if not term.startswith(HEAD_MARK))


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class MilvusConfig:
    """`index`: the vector index, HNSW (M 16, efConstruction 200, ef max(k, 64)) or IVF_FLAT (nlist 1024,
    nprobe 32)."""

    uri: str
    index: str = "HNSW"
    token: str = ""

    @property
    def lite(self) -> bool:
        return self.uri.endswith(".db")


def parse_store_setting(value: str) -> tuple[str, str]:
    """`lance`, or `milvus:<pymilvus URI>` (http(s)://host:port for a server, a path ending .db for Milvus Lite)."""
    kind, _, uri = value.strip().partition(":")
    if kind == "lance" and not uri:
        return "lance", ""
    if kind == "milvus" and uri.strip():
        return "milvus", uri.strip()
    raise InvalidArgument(
        f"MMSEARCH_STORE: {value!r} is not a store; use 'lance' or 'milvus:<uri>' (milvus:http://host:19530 for a "
        "server, milvus:/path/to/file.db for Milvus Lite)", field="MMSEARCH_STORE")


class MilvusStore:
    def __init__(self, config: MilvusConfig) -> None:
        if config.index not in ("HNSW", "IVF_FLAT"):
            raise InvalidArgument(f"MMSEARCH_MILVUS_INDEX: {config.index!r} is not HNSW or IVF_FLAT",
                                  field="MMSEARCH_MILVUS_INDEX")
        self.config = config
        self._client: Any = None
        self._lock = threading.Lock()
        self._loaded: set[str] = set()
        self._stats: dict[tuple[str, str], tuple[float, int]] = {}  # (collection, word or "") -> (time, count)

    @property
    def client(self) -> Any:
        """The pymilvus client, connected on first use (a Milvus Lite file starts its gRPC server here)."""
        with self._lock:
            if self._client is None:
                from pymilvus import MilvusClient

                self._client = MilvusClient(self.config.uri, token=self.config.token)
            return self._client

    @property
    def video(self) -> VideoCollections:
        return VideoCollections(self.client, self.config.index)

    # -- collections ----------------------------------------------------------------------------------
    def exists(self, dataset_id: str) -> bool:
        return bool(self.client.has_collection(collection_name(dataset_id)))

    def _schema(self, info: DatasetInfo) -> tuple[Any, Any]:
        from pymilvus import DataType

        c = self.client
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("_id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("_doc", DataType.VARCHAR, max_length=VARCHAR_MAX)
        schema.add_field("_media", DataType.VARCHAR, max_length=VARCHAR_MAX, nullable=True)
        schema.add_field("_stream", DataType.VARCHAR, max_length=VARCHAR_MAX, nullable=True)
        schema.add_field("_terms", DataType.VARCHAR, max_length=VARCHAR_MAX, enable_analyzer=True,
                         enable_match=True, analyzer_params={"tokenizer": "standard"})
        schema.add_field("_text", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("_vec", DataType.FLOAT_VECTOR, dim=info.vector_dim)
        schema.add_field("_has_vec", DataType.BOOL)
        for f in info.schema.columns:
            schema.add_field(column(f.name), **_milvus_type(f), nullable=True)
        index = c.prepare_index_params()
        for name, kind, params in self._index_plan(info):
            index.add_index(name, index_type=kind, **params)
        return schema, index

    def _index_plan(self, info: DatasetInfo) -> list[tuple[str, str, dict[str, Any]]]:
        """Every index the collection should have: the vector index, the sparse index, and a scalar index per
        filterable or sortable field (Milvus Lite has INVERTED only, and none on arrays)."""
        if self.config.index == "HNSW":
            vec: dict[str, Any] = {"metric_type": "COSINE", "params": {"M": 16, "efConstruction": 200}}
        else:
            vec = {"metric_type": "COSINE", "params": {"nlist": 1024}}
        plan = [("_vec", self.config.index, vec),
                ("_text", "SPARSE_INVERTED_INDEX", {"metric_type": "IP", "params": {}})]
        for f in info.schema.columns:
            if f.is_array and self.config.lite:
                continue
            sortable_number = f.sortable and not f.is_array and f.type in ("int32", "int64", "float")
            kind = "STL_SORT" if sortable_number and not self.config.lite and not f.filterable else "INVERTED"
            plan.append((column(f.name), kind, {}))
        return plan

    def create(self, info: DatasetInfo) -> None:
        if self.exists(info.id):
            raise AlreadyExists(f"dataset_id: collection for {info.id!r} already exists in the store",
                                field="dataset_id")
        schema, index = self._schema(info)
        name = collection_name(info.id)
        self.client.create_collection(name, schema=schema)
        # built on the empty collection, so there is nothing to wait for (pymilvus polls twice a second otherwise)
        self.client.create_index(name, index, sync=False)
        self.client.load_collection(name)
        if info.type == "video":  # made with their indexes, so loaded already
            self.video.create(name, info, self._index_plan(info)[0], _milvus_type, self.config.lite)
        self._write_meta(name, {"version": 0, "fields": {}})
        self._loaded.add(name)

    def drop(self, dataset_id: str) -> None:
        name = collection_name(dataset_id)
        self._loaded.discard(name)
        self._forget_stats(name)
        if self.client.has_collection(name):
            self.client.drop_collection(name)
        self.video.drop(name)
        self._loaded.difference_update(self.video.names(name))
        if self.client.has_collection(META):
            self.client.delete(META, filter=_in_ids([name]))

    def _collection(self, info: DatasetInfo) -> str:
        name = collection_name(info.id)
        if name in self._loaded:
            return name
        if not self.client.has_collection(name):
            raise NotFound(f"dataset_id: no collection for dataset {info.id!r}", field="dataset_id")
        self.client.load_collection(name)
        if info.type == "video":  # released too when this is a new Milvus Lite session
            for other in self.video.names(name):
                self.client.load_collection(other)
        self._loaded.add(name)
        return name

    # -- the meta collection: a dataset's write counter and field length totals -------------------------
    def _meta_collection(self) -> None:
        """The meta collection, created if new and loaded once per process (a server restarted, or another
        process's Milvus Lite session, leaves it released: reads then fail until it is loaded)."""
        if META in self._loaded:
            return
        c = self.client
        if c.has_collection(META):
            c.load_collection(META)
            self._loaded.add(META)
            return
        from pymilvus import DataType

        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("_id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("_value", DataType.VARCHAR, max_length=VARCHAR_MAX)
        schema.add_field("_v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
        index = c.prepare_index_params()
        index.add_index("_v", index_type="FLAT", metric_type="L2")
        c.create_collection(META, schema=schema, index_params=index)  # loaded once made, with its index
        self._loaded.add(META)

    def _read_meta(self, name: str) -> dict[str, Any]:
        self._meta_collection()
        found = self.client.get(META, ids=[name], output_fields=["_value"])
        return json.loads(found[0]["_value"]) if found else {"version": 0, "fields": {}}

    def _write_meta(self, name: str, meta: dict[str, Any]) -> None:
        self._meta_collection()
        self.client.upsert(META, [{"_id": name, "_value": json.dumps(meta), "_v": [0.0, 0.0]}])

    def _bump(self, name: str, lengths: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
        """Count a write, and add the batch's (items, total length) per field to the running totals."""
        meta = self._read_meta(name)
        meta["version"] = int(meta.get("version", 0)) + 1
        fields = meta.setdefault("fields", {})
        for slot, (docs, total) in (lengths or {}).items():
            d0, t0 = fields.get(slot, (0, 0))
            fields[slot] = (d0 + docs, t0 + total)
        self._write_meta(name, meta)
        self._forget_stats(name)
        return meta

    # -- writes ---------------------------------------------------------------------------------------
    def _existing(self, name: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]
            rows = self.client.query(name, filter=_in_ids(chunk), output_fields=["_id"], limit=len(chunk))
            found.update(r["_id"] for r in rows)
        return found

    def upsert(self, info: DatasetInfo, records: list[Record]) -> UpsertResult:
        """Insert or replace by primary key. Milvus upserts are per row, not one atomic batch: a failed call
        may leave part of it written, which re-running the (idempotent) upsert repairs."""
        if not records:
            return UpsertResult(0, 0)
        name = self._collection(info)
        unique = list({r.id: r for r in records}.values())
        cues: list[bytes] = []
        if info.type == "video":  # the timed transcript apart from the media rerank parses (as the embedded store)
            for n, r in enumerate(unique):
                slim, timed = split_cues([json.dumps(r.media).encode()] if r.media else [b""])
                unique[n] = dataclasses.replace(r, media=json.loads(slim[0]) if slim[0] else [])
                cues.append(timed[0])
        slots = frozenset(text_slots(info))
        terms = [stream_terms(r.text, slots) for r in unique]
        batch: dict[str, tuple[int, int]] = {}
        for per_slot in terms:
            for slot, tfs in per_slot.items():
                d, t = batch.get(slot, (0, 0))
                batch[slot] = (d + 1, t + field_length(tfs))
        meta = self._read_meta(name)
        totals = dict(meta.get("fields", {}))
        for slot, (d, t) in batch.items():
            d0, t0 = totals.get(slot, (0, 0))
            totals[slot] = (d0 + d, t0 + t)
        avgdl = {slot: t / max(d, 1) for slot, (d, t) in totals.items()}
        rows = [self._row(info, r, per_slot, avgdl) for r, per_slot in zip(unique, terms, strict=True)]
        existing = self._existing(name, [r.id for r in unique])
        for start in range(0, len(rows), ID_CHUNK):
            self.client.upsert(name, rows[start : start + ID_CHUNK])
        if info.type == "video":
            self.video.write(name, info, unique, cues)
        self._bump(name, batch)
        replaced = len(existing) + (len(records) - len(unique))
        return UpsertResult(inserted=len(unique) - len(existing), replaced=replaced)

    def _row(self, info: DatasetInfo, r: Record, per_slot: dict[str, dict[str, int]],
             avgdl: dict[str, float]) -> dict[str, Any]:
        doc = json.dumps(r.doc, ensure_ascii=False, separators=(",", ":"))
        media = json.dumps(r.media, ensure_ascii=False) if r.media else None
        for what, value in (("document", doc), ("media metadata", media or "")):
            if _utf8_len(value) > VARCHAR_MAX:
                raise ValueError(f"item {r.id!r}: its {what} is {_utf8_len(value)} bytes of JSON; the Milvus store "
                                 f"holds at most {VARCHAR_MAX}")
        sparse: dict[int, float] = {}
        words: dict[str, None] = {}
        for slot, tfs in per_slot.items():
            dl = field_length(tfs)
            norm = 1 - B + B * dl / max(avgdl.get(slot, dl), 1e-6)
            for term, tf in tfs.items():
                dim = term_dim(slot, term)
                sparse[dim] = sparse.get(dim, 0.0) + tf * (K1 + 1) / (tf + K1 * norm)
                words[term_word(term)] = None
        terms = " ".join(words)
        if len(terms) > VARCHAR_MAX:  # ~4,300 distinct terms: the rest are searched, but not counted in df
            terms = terms[: terms.rfind(" ", 0, VARCHAR_MAX)]
        row: dict[str, Any] = {
            "_id": r.id, "_doc": doc, "_media": media,
            "_stream": r.text if _utf8_len(r.text) <= VARCHAR_MAX else None,
            "_terms": terms, "_text": sparse or {EMPTY_DIM: 1.0},
            "_vec": _placeholder(info.vector_dim) if r.vector is None else np.asarray(r.vector, np.float32).tolist(),
            "_has_vec": r.vector is not None,
        }
        for f in info.schema.columns:
            value = r.doc.get(f.name)
            if isinstance(value, list) and len(value) > ARRAY_MAX:
                raise ValueError(f"item {r.id!r}: field {f.name!r} has {len(value)} elements; the Milvus store "
                                 f"holds at most {ARRAY_MAX}")
            row[column(f.name)] = value
        return row

    def delete(self, info: DatasetInfo, ids: list[str]) -> int:
        name = self._collection(info)
        unique = list(dict.fromkeys(ids))
        found = self._existing(name, unique)
        if not found:
            return 0
        gone = [i for i in unique if i in found]
        for start in range(0, len(gone), ID_CHUNK):
            # by our own escaped expression: pymilvus 3.0.2 builds `delete(ids=...)`'s expression without escaping
            self.client.delete(name, filter=_in_ids(gone[start : start + ID_CHUNK]))
        if info.type == "video":
            self.video.delete(name, gone)
        self._bump(name)
        return len(gone)

    def probe(self, info: DatasetInfo) -> None:
        """Raise when the collection cannot be reached now (after a failed write: store or item?)."""
        name = self._collection(info)
        self.client.query(name, filter="", output_fields=["count(*)"])

    # -- reads ----------------------------------------------------------------------------------------
    def _rows(self, info: DatasetInfo, ids: list[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        name = self._collection(info)
        unique = list(dict.fromkeys(ids))
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(unique), ID_CHUNK):
            chunk = unique[start : start + ID_CHUNK]
            for row in self.client.query(name, filter=_in_ids(chunk), output_fields=["_id", *fields],
                                         limit=len(chunk)):
                out[row["_id"]] = row
        return {i: out[i] for i in unique if i in out}

    def get_many(self, info: DatasetInfo, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {i: json.loads(r["_doc"]) for i, r in self._rows(info, ids, ["_doc"]).items()}

    def iter_items(self, info: DatasetInfo, vectors: bool = False) -> Iterator[tuple[str, dict[str, Any],
                                                                                 list[float] | None]]:
        name = self._collection(info)
        fields = ["_id", "_doc", *(["_vec", "_has_vec"] if vectors else [])]
        it = self.client.query_iterator(name, batch_size=1_000, filter="", output_fields=fields)
        try:
            while rows := it.next():
                for r in rows:
                    vec = [float(x) for x in r["_vec"]] if vectors and r.get("_has_vec") else None
                    yield str(r["_id"]), json.loads(r["_doc"]), vec
        finally:
            it.close()

    def get(self, info: DatasetInfo, ids: list[str]) -> list[dict[str, Any]]:
        found = self.get_many(info, ids)
        return [found[i] for i in ids if i in found]

    def rerank_features(self, info: DatasetInfo, ids: list[str], query: np.ndarray | None = None
                        ) -> dict[str, RerankFeatures]:
        """A video's vector is its segment nearest `query` (with its own vector when it has one): the best one is
        all rerank reads of a video's hundreds of segments."""
        out = {}
        rows = self._rows(info, ids, ["_doc", "_vec", "_has_vec", "_media", "_stream"])
        best = {}
        if info.type == "video" and query is not None and rows:
            best = self.video.best_segments(collection_name(info.id), list(rows), query)
        for i, r in rows.items():
            vec = np.asarray(r["_vec"], dtype=np.float32) if r.get("_has_vec") else None
            if i in best:
                vec = best[i][None, :] if vec is None else np.vstack([best[i], vec])
            stream = r.get("_stream")
            out[i] = RerankFeatures(
                doc=json.loads(r["_doc"]), vector=vec,
                media=json.loads(r["_media"]) if r.get("_media") else [],
                tokens=None if stream is None else frozenset(stream_tokens(stream)))
        return out

    def video_cues(self, info: DatasetInfo, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        if info.type != "video" or not ids:
            return {}
        return self.video.cues(self._collection(info), ids)

    def count(self, info: DatasetInfo, where: Filter | None = None) -> int:
        name = self._collection(info)
        rows = self.client.query(name, filter=to_expr(where) if where else "", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def in_memory(self, dataset_id: str) -> bool:
        return False  # every search is a network call

    def version(self, info: DatasetInfo) -> int:
        """Changes with every write through a MilvusStore (the spelling vocabulary rebuilds on it)."""
        return int(self._read_meta(self._collection(info)).get("version", 0))

    def scan(self, info: DatasetInfo, columns: list[str], batch_rows: int = 4_096) -> Iterator[dict[str, list[Any]]]:
        """Every row's `columns` (`_id`, `_doc`, `_media`, `_stream`, `f_*`), batch by batch, as plain lists."""
        name = self._collection(info)
        it = self.client.query_iterator(name, batch_size=batch_rows, filter="", output_fields=columns)
        try:
            while batch := it.next():
                yield {c: [row.get(c) for row in batch] for c in columns}
        finally:
            it.close()

    def stats(self, info: DatasetInfo) -> dict[str, Any]:
        name = self._collection(info)
        c = self.client
        vectors = c.query(name, filter="_has_vec == true", output_fields=["count(*)"])[0]["count(*)"]
        video = {"segments": self.video.count_segments(name)} if info.type == "video" else {}
        return {"rows": self.count(info), "vectors": int(vectors), "version": self.version(info), **video,
                "indexes": {n: c.describe_index(name, n).get("index_type", "") for n in c.list_indexes(name)},
                "store": "milvus", "uri": self.config.uri if self.config.lite else _redact(self.config.uri)}

    def maintain(self, info: DatasetInfo) -> dict[str, Any]:
        """Build indexes the collection lacks, flush what was written and load the collection for search."""
        name = self._collection(info)
        c = self.client
        have = set(c.list_indexes(name))
        done: dict[str, Any] = {}
        missing = [p for p in self._index_plan(info) if p[0] not in have]
        if missing:
            c.release_collection(name)
            index = c.prepare_index_params()
            for field, kind, params in missing:
                index.add_index(field, index_type=kind, **params)
                done[field] = kind
            c.create_index(name, index)
        c.flush(name)
        c.load_collection(name)
        if info.type == "video":
            for other in self.video.names(name):
                c.flush(other)
                c.load_collection(other)
        return done

    # -- search ---------------------------------------------------------------------------------------
    def _count_cached(self, name: str, word: str) -> int:
        """Live items (word "") or items holding a term (its `term_word`), counted by Milvus, kept STATS_TTL_S."""
        key = (name, word)
        now = time.monotonic()
        hit = self._stats.get(key)
        if hit is not None and now - hit[0] < STATS_TTL_S:
            return hit[1]
        expr = f"text_match(_terms, {string_literal(word)})" if word else ""
        n = int(self.client.query(name, filter=expr, output_fields=["count(*)"])[0]["count(*)"])
        if len(self._stats) > 100_000:
            self._stats.clear()
        self._stats[key] = (now, n)
        return n

    def _forget_stats(self, name: str) -> None:
        for key in [k for k in self._stats if k[0] == name]:
            self._stats.pop(key, None)

    def text_search(
        self, info: DatasetInfo, tokens: list[str], k: int, where: Filter | None = None, fields: tuple[str, ...] = (),
        field_weights: dict[str, float] | None = None,
    ) -> list[Candidate]:
        """BM25 per field, weighted (see the module docstring), with the embedded engine's CJK back-off: a CJK
        word fewer than `k` items hold also searches its characters at half weight, only in items holding all
        of them when any item does."""
        if not tokens or k <= 0:
            return []
        name = self._collection(info)
        weights = {s: (field_weights or {}).get(s, 1.0) if s else 1.0 for s in text_slots(info)}
        slots = [s for s, w in weights.items() if w > 0]
        n_docs = self._count_cached(name, "")
        if not slots or n_docs == 0:
            return []
        query: dict[int, float] = {}
        plain: list[str] = []  # terms scored wherever they occur
        restricted: list[list[str]] = []  # back-off characters scored only where all of a word's occur

        def add(term: str, df: int, weight: float) -> None:
            idf = weight * math.log1p((n_docs - df + 0.5) / (df + 0.5))
            for s in slots:
                dim = term_dim(s, term)
                query[dim] = query.get(dim, 0.0) + idf * weights[s]

        def df(term: str) -> int:
            return self._count_cached(name, term_word(term))

        confined = False  # a word's other characters scored only in items reached otherwise (its head's)
        for t in dict.fromkeys(search_terms(tokens)):
            n = df(t)
            if n:
                add(t, n, 1.0)
                plain.append(t)
            if len(t) == 1 and is_cjk(t):  # the words it heads, as the embedded store
                if (m := df(head_of(t))) > 0:
                    add(head_of(t), m, 1.0)
                    plain.append(head_of(t))
                continue
            if n >= k or len(t) < 2 or not is_cjk(t):
                continue
            if len(t) == 2 and t[1] in NOUN_SUFFIXES and t[0] not in NOUN_SUFFIXES:
                if (m := df(t[0])) > 0:
                    add(t[0], m, BACKOFF)
                    plain.append(t[0])
                continue
            if n == 0 and (m := df(head_of(t[-1]))) > 0:  # a word no item holds: those headed by its last character
                add(head_of(t[-1]), m, BACKOFF)
                plain.append(head_of(t[-1]))
                for ch in dict.fromkeys(t[:-1]):
                    if ch != t[-1] and (c := df(ch)) > 0:
                        add(ch, c, BACKOFF)
                        confined = True
                continue
            chars = [(ch, df(ch)) for ch in dict.fromkeys(t)]
            chars = [(ch, m) for ch, m in chars if m]
            for ch, m in chars:
                add(ch, m, BACKOFF)
            if len(chars) == len(set(t)) and self._holding_all(name, [ch for ch, _ in chars]):
                restricted.append([ch for ch, _ in chars])
            else:
                plain += [ch for ch, _ in chars]
        if not query:
            return []
        expr = to_expr(where) if where is not None else ""
        if restricted or confined:  # a word's characters count only where it holds them all (or another term)
            reach = [f"text_match(_terms, {string_literal(' '.join(term_word(t) for t in plain))})"] if plain else []
            reach += ["(" + " and ".join(_match(ch) for ch in group) + ")" for group in restricted]
            within = "(" + " or ".join(reach) + ")"
            expr = f"({expr}) and {within}" if expr else within
        return self._search(info, name, [query], "_text", "IP", k, expr, fields)

    def _holding_all(self, name: str, chars: list[str]) -> bool:
        rows = self.client.query(name, filter=" and ".join(_match(ch) for ch in chars), output_fields=["_id"], limit=1)
        return bool(rows)

    def vector_search(
        self, info: DatasetInfo, vector: np.ndarray, k: int, where: Filter | None = None, fields: tuple[str, ...] = ()
    ) -> list[Candidate]:
        if k <= 0:
            return []
        name = self._collection(info)
        q = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        expr = f"_has_vec == true and {to_expr(where)}" if where is not None else "_has_vec == true"
        own = self._search(info, name, [q], "_vec", "COSINE", k, expr, fields)
        if info.type != "video":
            return own
        return self._video_search(info, name, q, k, where, fields, own)

    def _video_search(self, info: DatasetInfo, name: str, q: list[float], k: int, where: Filter | None,
                      fields: tuple[str, ...], own: list[Candidate]) -> list[Candidate]:
        """Each video by its best segment, or by its own vector when that is higher (the embedded store's rule),
        with its best segments as moments."""
        typed = {f.name for f in info.schema.columns}
        columns = tuple(f for f in fields if f in typed)
        best = {i: Candidate(i, score, values, moments)
                for i, score, moments, values in self.video.search(name, q, k, where, columns)}
        for c in own:
            if c.id not in best or c.score > best[c.id].score:
                best[c.id] = Candidate(c.id, c.score, c.values, best[c.id].moments if c.id in best else ())
        ranked = sorted(best.values(), key=lambda c: -c.score)[:k]
        lacking = [c.id for c in ranked if any(f not in c.values for f in fields)] if set(fields) - typed else []
        if lacking:  # a sort field kept only in the document
            docs = self.get_many(info, lacking)
            for c in ranked:
                if c.id in docs:
                    c.values = {f: docs[c.id][f] for f in fields if f in docs[c.id]}
        return ranked

    def _search(self, info: DatasetInfo, name: str, data: list[Any], field: str, metric: str, k: int, expr: str,
                fields: tuple[str, ...]) -> list[Candidate]:
        typed = {f.name for f in info.schema.columns}
        from_columns = all(f in typed for f in fields)
        output = ["_id", *([column(f) for f in fields] if from_columns else (["_doc"] if fields else []))]
        params: dict[str, Any] = {"metric_type": metric, "params": {}}
        if field == "_vec":
            # Under a filter the graph walk skips the rows it excludes: at ef=k, Milvus Lite's filtered top 200 held
            # another 200 than the exact one, and a hybrid page sorted by sales (chosen from the whole fused list)
            # agreed with the embedded store's on 0.70 of its items; ef=max(4k, 512) brings that to 0.98.
            filtered = expr != "_has_vec == true"
            if self.config.index == "HNSW":
                params["params"] = {"ef": min(max(4 * k, 512), 16_384) if filtered else max(k, 64)}
            else:
                params["params"] = {"nprobe": 128 if filtered else 32}
        hits = self.client.search(name, data=data, anns_field=field, limit=min(k, 16_384), filter=expr,
                                  search_params=params, output_fields=output)[0]
        out = []
        for h in hits:
            entity = h.get("entity", {})
            if not fields:
                values: dict[str, Any] = {}
            elif from_columns:
                values = {f: v for f in fields if (v := entity.get(column(f))) is not None}
            else:
                doc = json.loads(entity["_doc"])
                values = {f: doc[f] for f in fields if f in doc}
            out.append(Candidate(str(entity.get("_id", h.get("_id"))), float(h["distance"]), values))
        return out


def _milvus_type(f: FieldSpec) -> dict[str, Any]:
    from pymilvus import DataType

    scalar = {"int32": DataType.INT32, "int64": DataType.INT64, "float": DataType.DOUBLE, "bool": DataType.BOOL,
              "string": DataType.VARCHAR}
    element = scalar[f.element_type]
    text = {"max_length": VARCHAR_MAX} if f.element_type == "string" else {}
    if f.is_array:
        return {"datatype": DataType.ARRAY, "element_type": element,
                "max_capacity": min(f.value_max_items, ARRAY_MAX), **text}
    return {"datatype": element, **text}


def _placeholder(dim: int) -> list[float]:
    """The vector of an item without one (`_has_vec` false; vector search filters it out): a unit vector, since
    nullable vector fields need Milvus 2.6 and a zero vector has no cosine."""
    return [1.0] + [0.0] * (dim - 1)


def _in_ids(ids: list[str]) -> str:
    return "_id in [" + ", ".join(string_literal(i) for i in ids) + "]"


def _match(term: str) -> str:
    return f"text_match(_terms, {string_literal(term_word(term))})"


def _redact(uri: str) -> str:
    """A server URI without credentials (user:password@)."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else uri
