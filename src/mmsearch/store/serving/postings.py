"""The text channel: BM25 over mmsearch's own tokens, in memory, inside the shared filter mask.

Why not tantivy (issue 10 proposed it): tantivy-py has no way to hand a search a row bitmap, so the shared
filter mask could not enter it. The filter would have to be compiled a second time into tantivy queries, with
its own semantics for missing values, and every hit would need a stored-document load (~10 us) to map a
tantivy doc address back to a row once segments merge. The index here is what tantivy's term dictionary
and postings are, in numpy: a term's postings are (row, term frequency) arrays, and a query adds each
term's BM25 contribution into a score array, masks it and takes the top k: exact BM25 inside any filter,
and the same formula as Lucene and tantivy:

    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)),   tf part = tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl))

with N, df and avgdl over live rows only (a replaced item does not count twice). k1 = 1.2, b = 0.75.

Postings live in segments: the base built from a full scan, then one small segment per catch-up. Segments
are merged into one when there are more than MAX_SEGMENTS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmsearch.store.serving.arrays import top_k

K1 = 1.2
B = 0.75
MAX_SEGMENTS = 8


@dataclass(frozen=True)
class Segment:
    """Postings of rows [first_row, ...): term -> slice of `rows`/`tfs` given by `starts`/`ends`."""

    terms: dict[str, int]
    indptr: np.ndarray  # int64[len(terms) + 1]
    rows: np.ndarray  # int32 global row numbers, grouped by term
    tfs: np.ndarray  # float32 term frequencies

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        t = self.terms.get(term)
        if t is None:
            return None
        a, b = self.indptr[t], self.indptr[t + 1]
        return self.rows[a:b], self.tfs[a:b]

    @property
    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.rows.nbytes + self.tfs.nbytes) + 80 * len(self.terms)


def build_segment(first_row: int, token_lists: list[list[str]]) -> tuple[Segment, np.ndarray]:
    """A segment from each row's tokens, and each row's length in tokens."""
    terms: dict[str, int] = {}
    term_ids: list[int] = []
    row_ids: list[int] = []
    lengths = np.empty(len(token_lists), dtype=np.float32)
    for offset, tokens in enumerate(token_lists):
        lengths[offset] = len(tokens)
        row = first_row + offset
        for tok in tokens:
            t = terms.get(tok)
            if t is None:
                t = terms[tok] = len(terms)
            term_ids.append(t)
            row_ids.append(row)
    return _segment(terms, np.array(term_ids, dtype=np.int32), np.array(row_ids, dtype=np.int32)), lengths


def _segment(terms: dict[str, int], term_ids: np.ndarray, row_ids: np.ndarray,
             tfs: np.ndarray | None = None) -> Segment:
    """Group (term, row[, tf]) triples by term, then row, counting repeats as term frequency.

    The triples come in row order (a batch's rows in turn; segments are merged in the order of their rows, which
    never overlap), so a stable sort by term alone groups them by term, then row. That holds int32s, where
    sorting a (term, row) int64 key held three more arrays of 8 bytes a posting: a full build at 1M items
    merges ~14M postings, and that transient was most of the build's peak memory above what the index keeps."""
    if len(term_ids) == 0:
        return Segment(terms, np.zeros(len(terms) + 1, dtype=np.int64), np.empty(0, np.int32),
                       np.empty(0, np.float32))
    order = np.argsort(term_ids, kind="stable")
    t, r = term_ids[order], row_ids[order]
    weights = np.ones(len(t), dtype=np.float32) if tfs is None else tfs[order]
    del order
    starts = np.flatnonzero(np.r_[True, (t[1:] != t[:-1]) | (r[1:] != r[:-1])])
    tf = np.add.reduceat(weights, starts).astype(np.float32)
    t_sorted, rows = t[starts], r[starts].astype(np.int32, copy=False)
    indptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(t_sorted, minlength=len(terms)), out=indptr[1:])
    return Segment(terms, indptr, rows, tf)


def merge(segments: list[Segment]) -> Segment:
    """One segment with every posting of `segments` (rows keep their numbers), given in the order of their rows.

    Segments cover disjoint, increasing row ranges, so a term's merged postings are its postings in each segment,
    one after the other: each segment's postings are copied to their place (no sort, and nothing held beyond
    the result but one destination index per posting of the segment being copied)."""
    terms: dict[str, int] = {}
    remaps = []
    for seg in segments:
        remap = np.empty(len(seg.terms), dtype=np.int64)
        for term, t in seg.terms.items():
            g = terms.get(term)
            if g is None:
                g = terms[term] = len(terms)
            remap[t] = g
        remaps.append(remap)
    counts = np.zeros(len(terms), dtype=np.int64)
    for seg, remap in zip(segments, remaps, strict=True):
        counts[remap] += np.diff(seg.indptr)  # a segment's term ids are distinct, so no update is lost
    indptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    rows = np.empty(int(indptr[-1]), dtype=np.int32)
    tfs = np.empty(int(indptr[-1]), dtype=np.float32)
    filled = indptr[:-1].copy()  # where each term's next postings go
    for seg, remap in zip(segments, remaps, strict=True):
        sizes = np.diff(seg.indptr)
        # posting p of local term i goes to filled[remap[i]] + (p - seg.indptr[i])
        dest = np.repeat(filled[remap] - seg.indptr[:-1], sizes)
        dest += np.arange(len(seg.rows), dtype=np.int64)
        rows[dest] = seg.rows
        tfs[dest] = seg.tfs
        del dest
        filled[remap] += sizes
    return Segment(terms, indptr, rows, tfs)


@dataclass(frozen=True)
class Stats:
    """Collection statistics over live rows: their number, and each field's mean length in terms among the rows
    that have it (Lucene's avgFieldLength), and how many those are."""

    docs: int
    avgdl: np.ndarray  # float64[fields]
    field_docs: np.ndarray  # int64[fields]


@dataclass(frozen=True)
class Clause:
    """One scored part of a query: a term's rows (live only, possibly narrowed), its BM25F pseudo term
    frequency in each (`field_tf`), the term's document frequency (of all its live rows, so narrowing never
    raises its idf) and a weight."""

    rows: np.ndarray
    tfs: np.ndarray
    df: int
    weight: float = 1.0


def field_tf(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, float, float]], n_rows: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """BM25F (Robertson, Zaragoza): a term's frequency in each field, times the field's weight, over the field's
    length normalisation (1 - b + b * dl / avgdl), summed over the fields of a row. `parts` holds per field
    (rows, tfs, lengths of those rows, weight, avgdl). One field alone gives Lucene's BM25 exactly."""
    norm = [(rows, w * tfs / (np.float32(1 - B) + np.float32(B / max(avgdl, 1e-6)) * lengths))
            for rows, tfs, lengths, w, avgdl in parts]
    if len(norm) == 1:
        return norm[0][0], norm[0][1].astype(np.float32)
    total = sum(len(r) for r, _ in norm)
    if total * 16 > n_rows:  # many postings: add into a dense array instead of sorting them
        acc = np.zeros(n_rows, dtype=np.float32)
        for rows, tf in norm:
            acc[rows] += tf  # a field's rows are distinct
        rows = np.flatnonzero(acc)
        return rows.astype(np.int32), acc[rows]
    uniq, inv = np.unique(np.concatenate([r for r, _ in norm]), return_inverse=True)
    return uniq.astype(np.int32), np.bincount(inv, weights=np.concatenate([t for _, t in norm])).astype(np.float32)


def live_postings(segments: list[Segment], term: str, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A term's (rows, term frequencies) over every segment, dead rows left out."""
    parts = [p for seg in segments if (p := seg.postings(term)) is not None]
    if not parts:
        return np.empty(0, np.int32), np.empty(0, np.float32)
    rows = np.concatenate([r for r, _ in parts]) if len(parts) > 1 else parts[0][0]
    tfs = np.concatenate([f for _, f in parts]) if len(parts) > 1 else parts[0][1]
    live = alive[rows]
    return rows[live], tfs[live]


def bm25_top(
    clauses: list[Clause], n_rows: int, keep: np.ndarray | Callable[[np.ndarray], np.ndarray], stats: Stats, k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and scores of the best `k` rows of [0, n_rows) matching any clause, among rows where `keep` (alive
    and inside the filter) is set, best first, ties by row. A row's score is the weighted sum of its clauses'
    BM25F (`field_tf` made their frequencies). `keep` is a mask over all rows, or a function giving the mask at
    the matched rows (ascending, live) only."""
    clauses = [c for c in clauses if len(c.rows)]
    if not clauses or k <= 0 or stats.docs == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    dense = sum(len(c.rows) for c in clauses) * 8 > n_rows
    acc = np.zeros(n_rows, dtype=np.float32) if dense else None
    cand_rows, cand_scores = [], []
    for c in clauses:
        idf = np.float32(c.weight * np.log1p((stats.docs - c.df + 0.5) / (c.df + 0.5)))
        tfs = c.tfs
        part = idf * tfs * np.float32(K1 + 1) / (tfs + np.float32(K1))
        if acc is not None:
            acc[c.rows] += part
        else:
            cand_rows.append(c.rows)
            cand_scores.append(part)
    if acc is not None:
        if callable(keep):
            rows = np.flatnonzero(acc > 0)
            rows = rows[keep(rows)]
        else:
            rows = np.flatnonzero(keep & (acc > 0))  # a bool AND: 2x faster at 1M rows than acc *= keep (a cast)
        vals = acc[rows]
    else:
        uniq, inv = np.unique(np.concatenate(cand_rows), return_inverse=True)
        vals = np.bincount(inv, weights=np.concatenate(cand_scores)).astype(np.float32)
        inside = keep(uniq) if callable(keep) else keep[uniq]
        rows, vals = uniq[inside], vals[inside]
    rows, vals = top_k(rows, vals, k)
    return rows.astype(np.int64), vals
