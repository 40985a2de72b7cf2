"""One dataset's serving index: every column a query reads, in memory, as of one table version.

Rows are numbered in the order they arrived and never move: an upsert appends a row and tombstones the id's
previous row, a delete tombstones. Writers (the catch-up in live.py, one at a time) change the mutable
parts and then `publish()` an immutable `View`; queries read only a view, so they never see half a batch
and never wait for a writer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from mmsearch.schema.fields import OCR_FIELD, TRANSCRIPT_FIELD, VIDEO_SUMMARY, VIDEO_TITLE, DatasetInfo
from mmsearch.schema.filters import Filter, Match, Range
from mmsearch.store.base import RerankFeatures
from mmsearch.store.serving.arrays import Blobs, Growable
from mmsearch.store.serving.columns import Column, ColumnView, condition, evaluate
from mmsearch.store.serving.moments import MomentVectors
from mmsearch.store.serving.postings import (
    MAX_SEGMENTS,
    Clause,
    Segment,
    Stats,
    bm25_top,
    build_segment,
    field_tf,
    live_postings,
    merge,
)
from mmsearch.store.serving.vectors import VectorConfig, VectorIndex
from mmsearch.text import (
    FIELD_MARK,
    head_of,
    index_terms,
    is_cjk,
    prefix_piece,
    search_terms,
    stream_tokens,
)

SUBSET_SHARE = 8  # a filter is evaluated at a text query's matched rows when their postings are < 1/8 of the rows
MASK_CACHE = 16  # recent filter masks kept (a mask of 1M rows is 1 MB)
CONDITION_CACHE = 64  # recent single conditions' masks kept (`in_stock = true` recurs in most queries)
BACKOFF = 0.5  # weight of a CJK word's characters when the index does not hold the word (see `clauses`)
VIDEO_TEXT_FIELDS = (VIDEO_TITLE, VIDEO_SUMMARY, TRANSCRIPT_FIELD)  # a video dataset's own text fields
NOUN_SUFFIXES = frozenset("子儿")  # 狮子, 鞋子, 裙子, 猫儿: the word names what its first character names


@dataclass(frozen=True)
class View:
    version: int
    rows: int
    alive: np.ndarray  # bool[rows], a private copy
    stats: Stats
    segments: tuple[Segment, ...]
    lengths: np.ndarray  # float32[rows, fields]: each row's length in search terms, per field
    columns: dict[str, ColumnView]
    moments: int = 0  # video datasets: segments published (those of rows < `rows`)


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
        self.cues = Blobs()  # video datasets: each row's transcript entries (`split_cues`), JSON
        # BM25 per field: slot 0 is a stream without field markers (written before them), then the searchable
        # fields, then the text read from images (and, in a video dataset, the generated fields and the words
        # said or shown in the video). A term's postings in slot s are keyed "s:term".
        self.fields: tuple[str, ...] = ("", *(f.name for f in info.schema.searchable), OCR_FIELD,
                                        *(VIDEO_TEXT_FIELDS if info.type == "video" else ()))
        self.slots = {name: n for n, name in enumerate(self.fields)}
        self.lengths = Growable(np.float32, width=len(self.fields))
        self.segments: list[Segment] = []
        self.columns = {f.name: Column(f) for f in info.schema.columns}
        self.vectors = VectorIndex(info.vector_dim, config, expected_rows)
        self.moments = MomentVectors(info.vector_dim, config) if info.type == "video" else None
        self.live_rows = 0
        self.live_length = np.zeros(len(self.fields))  # per field: live rows' total length ...
        self.live_docs = np.zeros(len(self.fields), dtype=np.int64)  # ... and how many live rows have the field
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
        lengths = np.zeros((len(texts), len(self.fields)), dtype=np.float32)
        segment, _ = build_segment(first, [self._terms(t, lengths[n]) if t else [] for n, t in enumerate(texts)])
        self.segments.append(segment)
        self.lengths.extend(lengths)
        self.docs.extend([d.encode() if d else b"{}" for d in batch["_doc"].to_pylist()])
        media = [m.encode() if m else b"" for m in batch["_media"].to_pylist()]
        if self.moments is not None:  # a video's timed transcript apart: rerank reads media, moments the cues
            media, cues = split_cues(media)
            self.cues.extend(cues)
        self.media.extend(media)
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
        if self.moments is not None:
            self.moments.extend(first, batch["_seg_vec"], batch["_seg_time"])
        self.alive.extend(np.ones(len(ids), dtype=bool))
        for n, i in enumerate(ids):
            self._pending[i] = first + n
        self.ids.extend(ids)
        self.live_rows += len(ids)
        self.live_length += lengths.sum(axis=0)
        self.live_docs += (lengths > 0).sum(axis=0)

    def _terms(self, stream: str, lengths: np.ndarray) -> list[str]:
        """A stored token stream's search terms keyed by field slot ("s:term"), counting each field's length."""
        slot, out = 0, []
        tokens = stream.split()
        for i, tok in enumerate(tokens):
            if tok.startswith(FIELD_MARK):
                slot = self.slots.get(tok[1:], 0)
                continue
            term, head = index_terms(tok)
            if term is not None:
                out.append(f"{slot}:{term}")
                lengths[slot] += 1
                if head is not None and not prefix_piece(tokens, i):  # not counted in the field's length
                    out.append(f"{slot}:{head}")
        return out

    def remove(self, ids: list[str]) -> None:
        alive, lengths = self.alive.view(), self.lengths.view()
        for i in ids:
            row = self._pending[i] if i in self._pending else self.row_of.get(i)
            self._pending[i] = None
            if row is not None and alive[row]:
                alive[row] = False
                self.live_rows -= 1
                self.live_length -= lengths[row]
                self.live_docs -= lengths[row] > 0

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
        moments = self.moments.n if self.moments is not None else 0
        if self.moments is not None:
            self.moments.vectors.fold(moments)
        stats = Stats(self.live_rows, self.live_length / np.maximum(self.live_docs, 1), self.live_docs.copy())
        self.view = View(
            version=version, rows=rows, alive=self.alive.view().copy(), stats=stats, segments=tuple(self.segments),
            lengths=self.lengths.view(), columns={n: c.snapshot(rows) for n, c in self.columns.items()},
            moments=moments,
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

    def _cached_mask(self, where: Filter, v: View) -> np.ndarray | None:
        with self._mask_lock:
            pending = self._masks.get((v.version, v.rows, where))
        return pending.result() if pending is not None else None

    def inside(self, where: Filter, at: np.ndarray, v: View) -> np.ndarray:
        """The filter at the rows `at` only, for a text query whose terms match a small part of the rows: a
        gather per condition over those rows instead of a pass over every row (at 1M rows the bench's filter
        costs ~2 ms over all rows). Conditions already cached are read from the cache; `at` must be live rows."""

        def leaf(c: Match | Range) -> np.ndarray:
            key = (v.version, v.rows, c)
            with self._mask_lock:
                found = self._conditions.get(key)
            if found is None and v.columns[c.field].elements is not None:
                found = self._condition(c, v)  # array fields: computed over all rows anyway, so kept
            return found[at] if found is not None else condition(c, v.columns, at)

        full = self._cached_mask(where, v)
        return full[at] if full is not None else evaluate(where, v.columns, len(at), leaf)

    def count(self, where: Filter | None) -> int:
        return int(self.mask(where).sum())

    def text_search(self, tokens: list[str], k: int, where: Filter | None,
                    field_weights: dict[str, float] | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
        v = self._view()
        clauses = self.clauses(tokens, k, v, field_weights)
        if where is None:
            keep: np.ndarray | Callable[[np.ndarray], np.ndarray] = v.alive
        elif sum(len(c.rows) for c in clauses) * SUBSET_SHARE < v.rows and self._cached_mask(where, v) is None:
            keep = lambda at: self.inside(where, at, v)  # noqa: E731 - the matched rows only
        else:
            keep = self.mask(where, v)
        rows, scores = bm25_top(clauses, v.rows, keep, v.stats, k)
        ids = self.ids
        return [ids[r] for r in rows.tolist()], scores, rows

    def field_weights(self, weights: dict[str, float] | None) -> np.ndarray:
        """Each slot's weight: a field the map leaves out weighs 1 (so does a stream without markers)."""
        out = np.ones(len(self.fields))
        for name, w in (weights or {}).items():
            if name in self.slots:
                out[self.slots[name]] = w
        return out

    def clauses(self, tokens: list[str], k: int, view: View | None = None,
                weights: dict[str, float] | None = None) -> list[Clause]:
        """The query's terms as BM25F clauses: a term's frequency in every field, weighted by the field's weight
        (`field_tf`), under one idf. A CJK word that fewer than `k` items hold (`女鞋`, where most items say
        `女士运动鞋`) also backs off, at BACKOFF weight. A word no item holds backs off to the items holding a
        word with its last character as theirs (its head: 鞋 for 女鞋, so 运动鞋 and 凉鞋, not 鞋柜), its other
        characters scored only inside those. A word some items hold (a few say 运动鞋), or one whose head heads no
        word, backs off to its characters, only in items holding all of them when any item does (else in items
        holding any). A word the catalogue spells differently still finds it, items holding
        the word itself rank first (they score both), and a common word costs no more than before. A single CJK
        character also scores words headed by it (书 finds 图书 before 书店)."""
        v = view or self._view()
        w = self.field_weights(weights)
        slots = [s for s in range(len(self.fields)) if w[s] > 0 and v.stats.field_docs[s] > 0]
        segments = list(v.segments)

        def term(t: str) -> tuple[np.ndarray, np.ndarray]:
            parts = []
            for s in slots:
                rows, tfs = live_postings(segments, f"{s}:{t}", v.alive)
                if len(rows):
                    parts.append((rows, tfs, v.lengths[rows, s], float(w[s]), float(v.stats.avgdl[s])))
            if not parts:
                return np.empty(0, np.int32), np.empty(0, np.float32)
            return field_tf(parts, v.rows)

        out: list[Clause] = []
        for t in dict.fromkeys(search_terms(tokens)):
            rows, tfs = term(t)
            if len(rows):
                out.append(Clause(rows, tfs, len(rows)))
            if len(t) == 1 and is_cjk(t):  # 书: the words it heads (图书) above those it is only part of (书店)
                r, f = term(head_of(t))
                if len(r):
                    out.append(Clause(r, f, len(r)))
                continue
            if len(rows) >= k or len(t) < 2 or not is_cjk(t):
                continue
            if len(t) == 2 and t[1] in NOUN_SUFFIXES and t[0] not in NOUN_SUFFIXES:
                # 狮子 is 狮 with a noun suffix: back off to the head alone, in every item holding it (雄狮),
                # not to the suffix, which names nothing (孩子, 桌子)
                r, f = term(t[0])
                if len(r):
                    out.append(Clause(r, f, len(r), BACKOFF))
                continue
            heads, head_tfs = term(head_of(t[-1])) if not len(rows) else (rows[:0], tfs[:0])
            if len(heads):  # 书包: the bags (背包, 双肩包), the book shop's first; not 包邮 printed on a TV's card
                out.append(Clause(heads, head_tfs, len(heads), BACKOFF))
                for ch in dict.fromkeys(t[:-1]):
                    if ch == t[-1]:
                        continue
                    r, f = term(ch)
                    inside = np.isin(r, heads, assume_unique=True)
                    if inside.any():
                        out.append(Clause(r[inside], f[inside], len(r), BACKOFF))
                continue
            parts = [term(ch) for ch in dict.fromkeys(t)]
            parts = [p for p in parts if len(p[0])]
            common = None
            if len(parts) == len(set(t)):
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
        ids = self.ids
        return [ids[r] for r in rows.tolist()], scores, rows

    def video_search(self, q: np.ndarray, k: int, where: Filter | None
                     ) -> tuple[list[str], np.ndarray, np.ndarray, list[tuple[tuple[float, float, float], ...]]]:
        """A video dataset's vector channel: each video scored by its best segment (max-sim, not a mean that
        drowns one scene in a long episode), or by its own `_vector` when that is higher; with each video its
        best segments (start, end, cosine)."""
        v = self._view()
        mask = self.mask(where, v)
        best: dict[int, tuple[float, tuple[tuple[float, float, float], ...]]] = {}
        if self.moments is not None:
            for f in self.moments.search(q, k, mask, v.moments):
                best[f.row] = (f.score, f.moments)
        rows, scores = self.vectors.search(q, k, mask, v.rows)  # items given their own vector
        for r, sc in zip(rows.tolist(), scores.tolist(), strict=True):
            if r not in best or sc > best[r][0]:
                best[r] = (sc, best[r][1] if r in best else ())
        ranked = sorted(best.items(), key=lambda e: (-e[1][0], e[0]))[:k]
        out_rows = np.array([r for r, _ in ranked], dtype=np.int64)
        ids = self.ids
        return ([ids[r] for r, _ in ranked], np.array([e[0] for _, e in ranked], dtype=np.float32), out_rows,
                [e[1] for _, e in ranked])

    def values(self, rows: np.ndarray, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        """Each row's values of `fields`: from the typed columns when all have one, else from the documents."""
        v = self._view()
        if len(fields) == 1 and fields[0] in v.columns:  # a sort key: one dict per row, no inner loop
            name = fields[0]
            return [{name: x} if x is not None else {} for x in v.columns[name].take(rows)]
        if all(name in v.columns for name in fields):
            taken = [(name, v.columns[name].take(rows)) for name in fields]
            return [{name: vals[n] for name, vals in taken if vals[n] is not None} for n in range(len(rows))]
        docs = [_loads(d) for d in self.docs.get_many(rows.tolist())]
        return [{name: d[name] for name in fields if name in d} for d in docs]

    def live_row(self, item_id: str) -> int | None:
        row = self.row_of.get(item_id)
        v = self._view()
        if row is None or row >= v.rows or not v.alive[row]:
            return None
        return row

    def document(self, row: int) -> dict[str, Any]:
        return _loads(self.docs.get(row))

    def documents(self, rows: list[int]) -> list[dict[str, Any]]:
        return [_loads(d) for d in self.docs.get_many(rows)]

    def media_of(self, row: int) -> list[dict[str, Any]]:
        raw = self.media.get(row)
        return _loads(raw) if raw else []

    def tokens_of(self, row: int) -> frozenset[str]:
        return frozenset(stream_tokens(self.texts.get(row).decode()))

    def rerank_features(self, rows: list[int]) -> list[RerankFeatures]:
        """Document, vector, media and index tokens of each row: what the rerank stage reads, in one pass."""
        docs, media, texts = self.docs.get_many(rows), self.media.get_many(rows), self.texts.get_many(rows)
        return [RerankFeatures(doc=_loads(d), vector=self.vector_of(r), media=_loads(m) if m else [],
                               tokens=frozenset(stream_tokens(t.decode())))
                for r, d, m, t in zip(rows, docs, media, texts, strict=True)]

    def cues_of(self, rows: list[int]) -> list[list[dict[str, Any]]]:
        """Each row's timed transcript entries, {field, kind, start[], end[], text[], source[]} (video datasets;
        empty elsewhere): what `_video_moments` reads."""
        if self.moments is None:
            return [[] for _ in rows]
        return [_loads(c) if c else [] for c in self.cues.get_many(rows)]

    def vector_of(self, row: int) -> np.ndarray | None:
        """The row's vector; a video's segment vectors [segments, dim] (with its own vector, when it has one)."""
        if self.moments is not None:
            segments = self.moments.of_row(row)
            if segments is not None:
                own = self.vectors.matrix.view()[row] if self.vectors.has.view()[row] else None
                return segments if own is None else np.vstack([segments, own.astype(np.float32)])
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
            "vectors": self.vectors.matrix.nbytes + (self.moments.nbytes if self.moments is not None else 0),
            "ivf": int(self.vectors.ivf.sa_code_size() * self.vectors.indexed * 1.1) if self.vectors.ivf else 0,
            "documents": self.docs.nbytes + self.media.nbytes + self.texts.nbytes + self.cues.nbytes,
            "postings": sum(s.nbytes for s in self.segments) + self.lengths.nbytes,
            "columns": sum(sum(a.nbytes for a in c.arrays().values()) for c in self.columns.values()),
            "ids": 100 * len(self.ids),
        }


def split_cues(media: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Each row's media JSON without its transcript cues, and the cues apart: per entry {field, kind, start[],
    end[], text[], source[]} (columns: a third of the JSON of a dict per cue). A two-hour film's cues are ~160 KB
    of JSON: parsed for the 50 hits rerank reads, they cost 40 ms a query."""
    slim, cues = [], []
    for raw in media:
        entries = _loads(raw) if raw else []
        timed = [{"field": e.get("field"), "kind": e.get("kind"), **_columns(e.pop("cues"))}
                 for e in entries if isinstance(e, dict) and e.get("cues")]
        slim.append(orjson.dumps(entries) if timed else raw)
        cues.append(orjson.dumps(timed) if timed else b"")
    return slim, cues


def _columns(cues: list[Any]) -> dict[str, list[Any]]:
    good = [c for c in cues if isinstance(c, dict) and isinstance(c.get("text"), str)]
    return {"start": [c.get("start") for c in good], "end": [c.get("end") for c in good],
            "text": [c["text"] for c in good], "source": [c.get("source", "subtitle") for c in good]}


def _loads(raw: bytes) -> Any:
    """orjson (3-5x faster than json on a document); json for what orjson refuses (an integer beyond 64 bits)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
