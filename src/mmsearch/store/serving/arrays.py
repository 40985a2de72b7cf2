"""Append-only numpy arrays and byte blobs: the storage every serving index column is made of.

Rows are only ever appended (an update is a new row plus a tombstone on the old one), so a reader that took
`view()` before an append keeps a consistent array: appends write past its end, and a grown buffer is a new
array that old views do not share.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Growable:
    """A 1-d or 2-d numpy array with amortised O(1) appends along the first axis."""

    def __init__(self, dtype: Any, width: int | None = None, capacity: int = 1_024) -> None:
        shape = (capacity,) if width is None else (capacity, width)
        self._data = np.zeros(shape, dtype=dtype)
        self.n = 0

    @classmethod
    def of(cls, array: np.ndarray) -> Growable:
        g = cls(array.dtype, array.shape[1] if array.ndim == 2 else None, capacity=max(1_024, len(array)))
        g.extend(array)
        return g

    def reserve(self, capacity: int) -> None:
        """Room for `capacity` rows in one allocation: growing by doubling copies, and briefly holds both copies
        (for a million 512-d vectors, 2 GB more at the peak)."""
        if capacity > len(self._data):
            grown = np.zeros((capacity, *self._data.shape[1:]), dtype=self._data.dtype)
            grown[: self.n] = self._data[: self.n]
            self._data = grown

    def extend(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=self._data.dtype)
        need = self.n + len(values)
        if need > len(self._data):
            self.reserve(max(need, 2 * len(self._data)))
        self._data[self.n : need] = values
        self.n = need

    def view(self) -> np.ndarray:
        return self._data[: self.n]

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)


class Blobs:
    """Variable-length byte strings (documents, media lists, ids) in one buffer plus offsets: a million
    documents cost their bytes and 8 bytes each, not a Python object each."""

    def __init__(self) -> None:
        self.data = Growable(np.uint8, capacity=1 << 16)
        self.offsets = Growable(np.int64)
        self.offsets.extend(np.zeros(1, dtype=np.int64))

    def extend(self, values: list[bytes]) -> None:
        lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
        start = self.data.n
        self.data.extend(np.frombuffer(b"".join(values), dtype=np.uint8))
        self.offsets.extend(start + np.cumsum(lengths))

    def get(self, row: int) -> bytes:
        offsets = self.offsets.view()
        return self.data.view()[offsets[row] : offsets[row + 1]].tobytes()

    def get_many(self, rows: list[int]) -> list[bytes]:
        """`get` of each row, reading the buffers once (a rerank reads 3 strings of 50 rows per query)."""
        offsets = self.offsets.view()
        data = memoryview(self.data.view())
        at = np.asarray(rows, dtype=np.int64)
        return [bytes(data[a:b]) for a, b in zip(offsets[at].tolist(), offsets[at + 1].tolist(), strict=True)]

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.offsets.nbytes

    def arrays(self, rows: int) -> dict[str, np.ndarray]:
        """The first `rows` strings as (data, offsets), e.g. those of a published view while more are appended."""
        offsets = self.offsets.view()[: rows + 1]
        return {"data": self.data.view()[: offsets[-1]], "offsets": offsets}

    @classmethod
    def from_arrays(cls, data: np.ndarray, offsets: np.ndarray) -> Blobs:
        b = cls()
        b.data = Growable.of(data)
        b.offsets = Growable.of(offsets)
        return b


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best (row, score) pairs, best first; equal scores in row order, also across the cut-off (argpartition
    alone picks arbitrarily among rows tied with the k-th, so a page could change between identical queries)."""
    if len(rows) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        above = np.flatnonzero(scores > kth)
        tied = np.flatnonzero(scores == kth)
        tied = tied[np.argsort(rows[tied], kind="stable")][: k - len(above)]
        keep = np.concatenate([above, tied])
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]
