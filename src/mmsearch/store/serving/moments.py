"""A video dataset's segments: one vector and one time span per segment, each owned by its video's row.

A video is many pictures. Its one item vector would be an average that drowns a five-second scene in a
forty-minute episode, so the vector channel searches the segments and scores a video by its best segment
(multi-vector, max-sim). Segments are appended with their video's row and never move; a tombstoned row's
segments drop out through the item mask, as the row itself does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mmsearch.store.serving.arrays import Growable
from mmsearch.store.serving.vectors import VectorConfig, VectorIndex

MOMENTS_PER_ITEM = 3  # best segments reported with each video found
WIDEN = 4  # segments asked for per video wanted: several segments of one video crowd the list
TAIL_SCAN = 2.0  # IVF rows scanned per segment asked for when widening (10 for the first ask; vectors.py)


@dataclass(frozen=True, slots=True)
class Found:
    """A video row, its best segment's cosine, and its best segments as (start s, end s, cosine)."""

    row: int
    score: float
    moments: tuple[tuple[float, float, float], ...]


def list_matrix(column: pa.ChunkedArray | pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A list<fixed_size_list<float32>[width]> column as (per-row counts, stacked values [n, width]); a null
    row has no entries."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    counts = np.asarray(arr.value_lengths().fill_null(0), dtype=np.int64)
    inner = arr.flatten()  # the present rows' entries, in row order
    flat = inner.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return counts, flat.reshape(-1, width) if len(flat) else np.zeros((0, width), np.float32)


class MomentVectors:
    def __init__(self, dim: int, config: VectorConfig | None = None) -> None:
        self.owner = Growable(np.int64)  # segment -> its video's row (ascending: appended in row order)
        self.times = Growable(np.float32, width=2)  # segment -> (start, end) in seconds
        self.first = Growable(np.int64)  # row -> its first segment
        self.count = Growable(np.int32)  # row -> its number of segments
        self.vectors = VectorIndex(dim, config)

    @property
    def n(self) -> int:
        return self.owner.n

    def extend(self, first_row: int, vectors: pa.ChunkedArray, times: pa.ChunkedArray) -> None:
        """The segments of rows first_row, first_row + 1, ... (one list per row, possibly empty or null)."""
        counts, matrix = list_matrix(vectors, self.vectors.dim)
        t_counts, spans = list_matrix(times, 2)
        if not np.array_equal(counts, t_counts):  # written together by the importer; a mismatch is a bug
            raise ValueError("a row's segment vectors and segment times differ in number")
        starts = self.n + np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
        self.first.extend(starts)
        self.count.extend(counts.astype(np.int32))
        self.owner.extend(np.repeat(np.arange(first_row, first_row + len(counts)), counts))
        self.times.extend(spans)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.vectors.extend(matrix / np.maximum(norms, 1e-12), norms[:, 0] > 0)

    def of_row(self, row: int) -> np.ndarray | None:
        """The row's segment vectors (float32, [segments, dim]), or None when it has none."""
        first, count = int(self.first.view()[row]), int(self.count.view()[row])
        if count == 0:
            return None
        return self.vectors.matrix.view()[first : first + count].astype(np.float32, copy=False)

    def search(self, q: np.ndarray, k: int, rows_alive: np.ndarray, segments: int) -> list[Found]:
        """The best `k` rows inside `rows_alive` by their best segment among the first `segments`, best first.
        Asks the vector index for WIDEN * k segments and widens until k distinct videos are found or no more
        segments remain."""
        if segments == 0 or k <= 0:
            return []
        owner = self.owner.view()[:segments]
        allowed = rows_alive[owner]
        available = int(allowed.sum())
        want = min(available, WIDEN * k)
        seg, scores = self.vectors.search(q, want, allowed, segments)
        while len(np.unique(owner[seg])) < k and want < available and len(seg) >= want:
            # too few videos among the best segments (a video's segments crowd the list): ask for more, with a
            # lighter IVF scan, as the widening only fills the tail of the k (the best videos came first)
            want = min(available, want * WIDEN)
            seg, scores = self.vectors.search(q, want, allowed, segments, scan=TAIL_SCAN)
        owners = owner[seg]
        _, first_at = np.unique(owners, return_index=True)
        order = np.sort(first_at)[:k]  # a video's first appearance is its best segment: score order
        rank = np.full(int(owners.max()) + 1 if len(owners) else 0, k, dtype=np.int64)
        rank[owners[order]] = np.arange(len(order))
        # each chosen video's best MOMENTS_PER_ITEM segments, in one sort: by the video's rank, then by score
        chosen = np.flatnonzero(rank[owners] < k)
        chosen = chosen[np.lexsort((-scores[chosen], rank[owners[chosen]]))]
        by_video = rank[owners[chosen]]
        nth = np.arange(len(chosen)) - np.searchsorted(by_video, by_video)
        chosen = chosen[nth < MOMENTS_PER_ITEM]
        spans = np.round(self.times.view()[seg[chosen]].astype(np.float64), 2).tolist()
        moments: list[list[tuple[float, float, float]]] = [[] for _ in order]
        for r, (start, end), sc in zip(rank[owners[chosen]].tolist(), spans, scores[chosen].tolist(), strict=True):
            moments[r].append((start, end, sc))
        return [Found(int(owners[i]), float(scores[i]), tuple(moments[n])) for n, i in enumerate(order)]

    @property
    def nbytes(self) -> int:
        return (self.vectors.matrix.nbytes + self.owner.nbytes + self.times.nbytes + self.first.nbytes
                + self.count.nbytes)
