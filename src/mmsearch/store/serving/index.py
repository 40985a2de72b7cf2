"""One dataset's serving index: every column a query reads, in memory, as of one table version.

Rows are numbered in the order they arrived and never move: an upsert appends a row and tombstones the id's
previous row, a delete tombstones. Writers (the catch-up in live.py, one at a time) change the mutable
parts and then `publish()` an immutable `View`; queries read only a view, so they never see half a batch
and never wait for a writer.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.schema.fields import DatasetInfo
from mmsearch.schema.filters import Filter, Match, Range
from mmsearch.store.serving.arrays import Blobs, Growable
from mmsearch.store.serving.columns import Column, ColumnView, condition, evaluate
from mmsearch.store.serving.postings import (
    MAX_SEGMENTS,
    Clause,
    Segment,
    Stats,
    bm25_top,
    build_segment,
    live_postings,
    merge,
)
from mmsearch.store.serving.vectors import VectorConfig, VectorIndex
from mmsearch.text import is_cjk, search_terms

MASK_CACHE = 16  # recent filter masks kept (a mask of 1M rows is 1 MB)
CONDITION_CACHE = 64  # recent single conditions' masks kept (`in_stock = true` recurs in most queries)
BACKOFF = 0.5  # weight of a CJK word's characters when the index does not hold the word (see `clauses`)


@dataclass(frozen=True)
class View:
    version: int
    rows: int
    alive: np.ndarray  # bool[rows], a private copy
    stats: Stats
    segments: tuple[Segment, ...]
    lengths: np.ndarray
    columns: dict[str, ColumnView]


class ServingIndex:
    def __init__(self, info: DatasetInfo, config: VectorConfig | None = None, expected_rows: int = 0) -> None:
        self.info = info
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}  # as of the published view; queries read it
        self._pending: dict[str, int | None] = {}  # changes to row_of that the next publish applies
        self.alive = Growable(np.bool_)
        self.docs = Blobs()
        self.media = Blobs()
        self.texts = Blobs()  # each row's index tokens, space-separated: the reranker's coverage reads them
        self.lengths = Growable(np.float32)
        self.segments: list[Segment] = []
        self.columns = {f.name: Column(f) for f in info.schema.columns}
        self.vectors = VectorIndex(info.vector_dim, config, expected_rows)
        self.live_rows = 0
        self.live_length = 0.0
        self.version = -1
        self.view: View | None = None
        self.write_lock = threading.RLock()  # one writer (catch-up, rebuild) at a time
        self._masks: dict[tuple[int, int, Filter], Future[np.ndarray]] = {}
        self._mask_lock = threading.Lock()
        self._conditions: dict[tuple[int, int, Match | Range], np.ndarray] = {}

    # -- writing ---------------------------------------------------------------------------------------
    def append(self, batch: pa.Table) -> None:
        """Rows read from the table (`_id`, `_doc`, `_text`, `_media`, `_vec`, `f_*`); an id already present is
        replaced: its old row is tombstoned."""
        if batch.num_rows == 0:
            return
        ids = batch["_id"].to_pylist()
        keep = list({i: n for n, i in enumerate(ids)}.values())  # the last copy of an id in the batch wins
        if len(keep) != len(ids):
            batch = batch.take(pa.array(keep))
            ids = [ids[n] for n in keep]
        self.remove(ids)
        first = len(self.ids)
        texts = batch["_text"].to_pylist()
        segment, lengths = build_segment(first, [search_terms(t.split()) if t else [] for t in texts])
        self.segments.append(segment)
        self.lengths.extend(lengths)
        self.docs.extend([d.encode() if d else b"{}" for d in batch["_doc"].to_pylist()])
        self.media.extend([m.encode() if m else b"" for m in batch["_media"].to_pylist()])
        self.texts.extend([t.encode() if t else b"" for t in texts])
        for name, col in self.columns.items():
            col.extend(first, batch[f"f_{name}"].to_pylist())
        vec = batch["_vec"].combine_chunks()
        dim = self.info.vector_dim
        has = vec.is_valid().to_numpy(zero_copy_only=False).astype(bool)
        flat = vec.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        start = vec.offset * dim
        matrix = flat[start : start + len(vec) * dim].reshape(len(vec), dim).copy()
        matrix[~has] = 0.0
        self.vectors.extend(matrix, has)
        self.alive.extend(np.ones(len(ids), dtype=bool))
        for n, i in enumerate(ids):
            self._pending[i] = first + n
        self.ids.extend(ids)
        self.live_rows += len(ids)
        self.live_length += float(lengths.sum())

    def remove(self, ids: list[str]) -> None:
        alive, lengths = self.alive.view(), self.lengths.view()
        for i in ids:
            row = self._pending[i] if i in self._pending else self.row_of.get(i)
            self._pending[i] = None
            if row is not None and alive[row]:
                alive[row] = False
                self.live_rows -= 1
                self.live_length -= float(lengths[row])

    def _merge_segments(self) -> None:
        """Tiered, as Lucene does: the small segments of recent catch-ups merge among themselves, and with the
        large base only once they add up to half of it, so a stream of small writes never re-sorts every posting."""
        if len(self.segments) <= MAX_SEGMENTS:
            return
        base, tail = self.segments[0], self.segments[1:]
        merged = merge(tail)
        if len(merged.rows) * 2 >= len(base.rows):
            self.segments = [merge([base, merged])]
        else:
            self.segments = [base, merged]

    def publish(self, version: int) -> View:
        self._merge_segments()
        rows = len(self.ids)
        self.vectors.fold(rows)
        stats = Stats(self.live_rows, self.live_length / self.live_rows if self.live_rows else 0.0)
        self.view = View(
            version=version, rows=rows, alive=self.alive.view().copy(), stats=stats, segments=tuple(self.segments),
            lengths=self.lengths.view(), columns={n: c.snapshot(rows) for n, c in self.columns.items()},
        )
        self.version = version
        for i, row in self._pending.items():
            if row is None:
                self.row_of.pop(i, None)
            else:
                self.row_of[i] = row
        self._pending.clear()
        return self.view

    @property
    def dead_rows(self) -> int:
        return len(self.ids) - self.live_rows

    # -- reading ---------------------------------------------------------------------------------------
    def _view(self) -> View:
        if self.view is None:
            raise RuntimeError("serving index read before its first publish")
        return self.view

    def mask(self, where: Filter | None, view: View | None = None) -> np.ndarray:
        """Rows alive and inside the filter. Evaluated once per view and filter: a hybrid query's two channels
        ask for the same mask at the same moment, and the second waits for the first's (read-only) result."""
        v = view or self._view()
        if where is None:
            return v.alive
        key = (v.version, v.rows, where)
        with self._mask_lock:
            pending = self._masks.get(key)
            mine = pending is None
            if mine:
                pending = self._masks[key] = Future()
                while len(self._masks) > MASK_CACHE:
                    self._masks.pop(next(iter(self._masks)))
        if not mine:
            return pending.result()
        try:
            found = evaluate(where, v.columns, v.rows, lambda c: self._condition(c, v)) & v.alive
        except BaseException as exc:
            pending.set_exception(exc)
            with self._mask_lock:
                self._masks.pop(key, None)
            raise
        found.flags.writeable = False
        pending.set_result(found)
        return found

    def _condition(self, c: Match | Range, v: View) -> np.ndarray:
        """One must/must_not/range condition's mask, kept for the next queries of this view (LRU)."""
        key = (v.version, v.rows, c)
        with self._mask_lock:
            found = self._conditions.pop(key, None)
            if found is not None:
                self._conditions[key] = found  # most recently used last
                return found
        found = condition(c, v.columns)
        found.flags.writeable = False
        with self._mask_lock:
            self._conditions[key] = found
            while len(self._conditions) > CONDITION_CACHE:
                self._conditions.pop(next(iter(self._conditions)))
        return found

    def count(self, where: Filter | None) -> int:
        return int(self.mask(where).sum())

    def text_search(self, tokens: list[str], k: int, where: Filter | None) -> tuple[list[str], np.ndarray, np.ndarray]:
        v = self._view()
        keep = self.mask(where, v)
        rows, scores = bm25_top(self.clauses(tokens, k, v), v.lengths, keep, v.stats, k)
        return [self.ids[r] for r in rows], scores, rows

    def clauses(self, tokens: list[str], k: int, view: View | None = None) -> list[Clause]:
        """The query's terms as BM25 clauses. A CJK word that fewer than `k` items hold (`女鞋`, where most
        items say `女士运动鞋`) also backs off to its characters, which every CJK text is indexed by too: at
        BACKOFF weight, and only in items holding all of them when any item does (else in items holding any).
        A word the catalogue spells differently still finds it, items holding the word itself rank first
        (they score both), and a common word costs no more than before."""
        v = view or self._view()
        segments = list(v.segments)
        out: list[Clause] = []
        for term in dict.fromkeys(search_terms(tokens)):
            rows, tfs = live_postings(segments, term, v.alive)
            if len(rows):
                out.append(Clause(rows, tfs, len(rows)))
            if len(rows) >= k or len(term) < 2 or not is_cjk(term):
                continue
            parts = [live_postings(segments, ch, v.alive) for ch in dict.fromkeys(term)]
            parts = [p for p in parts if len(p[0])]
            common = None
            if len(parts) == len(set(term)):
                common = parts[0][0]
                for r, _ in parts[1:]:
                    common = np.intersect1d(common, r, assume_unique=True)
            for r, f in parts:
                if common is not None and len(common):
                    inside = np.isin(r, common, assume_unique=True)
                    out.append(Clause(r[inside], f[inside], len(r), BACKOFF))
                else:
                    out.append(Clause(r, f, len(r), BACKOFF))
        return out

    def vector_search(self, q: np.ndarray, k: int, where: Filter | None) -> tuple[list[str], np.ndarray, np.ndarray]:
        v = self._view()
        rows, scores = self.vectors.search(q, k, self.mask(where, v), v.rows)
        return [self.ids[r] for r in rows], scores, rows

    def values(self, rows: np.ndarray, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        """Each row's values of `fields`: from the typed columns when all have one, else from the documents."""
        v = self._view()
        if all(name in v.columns for name in fields):
            taken = [(name, v.columns[name].take(rows)) for name in fields]
            return [{name: vals[n] for name, vals in taken if vals[n] is not None} for n in range(len(rows))]
        docs = [json.loads(self.docs.get(r)) for r in rows.tolist()]
        return [{name: d[name] for name in fields if name in d} for d in docs]

    def live_row(self, item_id: str) -> int | None:
        row = self.row_of.get(item_id)
        v = self._view()
        if row is None or row >= v.rows or not v.alive[row]:
            return None
        return row

    def document(self, row: int) -> dict[str, Any]:
        return json.loads(self.docs.get(row))

    def media_of(self, row: int) -> list[dict[str, Any]]:
        raw = self.media.get(row)
        return json.loads(raw) if raw else []

    def tokens_of(self, row: int) -> frozenset[str]:
        return frozenset(self.texts.get(row).decode().split())

    def vector_of(self, row: int) -> np.ndarray | None:
        if not self.vectors.has.view()[row]:
            return None
        v = self.vectors.matrix.view()[row]
        if v.dtype != np.float32:
            return v.astype(np.float32)
        v.flags.writeable = False  # a written row never changes; a read-only view, so no caller can change it
        return v

    def memory(self) -> dict[str, int]:
        """Bytes held, by part (numpy buffers; the id map is estimated at 100 bytes an id)."""
        return {
            "vectors": self.vectors.matrix.nbytes,
            "ivf": int(self.vectors.ivf.sa_code_size() * self.vectors.indexed * 1.1) if self.vectors.ivf else 0,
            "documents": self.docs.nbytes + self.media.nbytes + self.texts.nbytes,
            "postings": sum(s.nbytes for s in self.segments) + self.lengths.nbytes,
            "columns": sum(sum(a.nbytes for a in c.arrays().values()) for c in self.columns.values()),
            "ids": 100 * len(self.ids),
        }
