"""The Store protocol: plain data in, plain data out. It knows schemas, not models or HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mmsearch.schema.fields import DatasetInfo
from mmsearch.schema.filters import Filter


@dataclass
class Record:
    """One item as stored: its display document, its index text (already tokenised) and its vector."""

    id: str
    doc: dict[str, Any]
    text: str = ""
    vector: np.ndarray | None = None
    media: list[dict[str, Any]] = field(default_factory=list)  # per-image metadata: size, hash, OCR text
    # a video's segments (video datasets): one vector per segment [n, dim] and its (start, end) seconds [n, 2]
    segments: np.ndarray | None = None
    spans: np.ndarray | None = None


@dataclass(slots=True)
class Candidate:
    """A channel's hit: `score` is BM25 for text and cosine similarity for vectors.

    `values` holds only the fields the caller asked for (e.g. the sort field): candidates are many,
    and whole documents are fetched later for the page that is shown.
    """

    id: str
    score: float
    values: dict[str, Any] = field(default_factory=dict)
    # a video's best segments for this query, best first: (start s, end s, cosine); vector channel only
    moments: tuple[tuple[float, float, float], ...] = ()


@dataclass
class RerankFeatures:
    """What the rerank stage reads of one item: its document, its stored (normalised) vector and the
    per-image metadata kept at import (`media` entries carry `field`, `ref`, `width`, `height`, `sha256`
    and `ocr`, the text read from the image). `tokens`, when the store keeps them, are the item's index tokens
    (searchable fields and OCR text, as `text.index_text` made them), so the reranker need not tokenise again."""

    doc: dict[str, Any]
    vector: np.ndarray | None = None  # [dim]; a video's segment vectors [segments, dim] (its best one counts)
    media: list[dict[str, Any]] = field(default_factory=list)
    tokens: frozenset[str] | None = None


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    replaced: int


class Store(Protocol):
    def create(self, info: DatasetInfo) -> None: ...

    def drop(self, dataset_id: str) -> None: ...

    def exists(self, dataset_id: str) -> bool: ...

    def upsert(self, info: DatasetInfo, records: list[Record]) -> UpsertResult: ...

    def probe(self, info: DatasetInfo) -> None:
        """Raise when the dataset's table cannot take writes now (after a failed write: store or item?)."""
        ...

    def delete(self, info: DatasetInfo, ids: list[str]) -> int: ...

    def get(self, info: DatasetInfo, ids: list[str]) -> list[dict[str, Any]]:
        """Documents in the order of `ids`; missing ids are left out."""
        ...

    def get_many(self, info: DatasetInfo, ids: list[str]) -> dict[str, dict[str, Any]]: ...

    def rerank_features(self, info: DatasetInfo, ids: list[str], query: np.ndarray | None = None
                        ) -> dict[str, RerankFeatures]:
        """Document, vector and media of each id, in one lookup; missing ids are left out. A video's vector holds
        at least its segment nearest `query` (the query vector, when there is one): a networked store need not
        send all of a video's segments for the one rerank reads."""
        ...

    def video_cues(self, info: DatasetInfo, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each video item's timed transcript entries ({field, kind, start[], end[], text[], source[]}: one per
        video or subtitle file), kept apart from `media` so rerank never parses them; missing ids are left out."""
        ...

    def count(self, info: DatasetInfo, where: Filter | None = None) -> int: ...

    def iter_items(self, info: DatasetInfo, vectors: bool = False) -> Iterator[tuple[str, dict[str, Any],
                                                                                 list[float] | None]]:
        """Every item (id, document, and its vector when `vectors`), batch by batch, from one version of the
        dataset: what `mmsearch export` writes."""
        ...

    def in_memory(self, dataset_id: str) -> bool:
        """Whether a search of this dataset now reads only memory (no I/O, no index to load or catch up): the
        HTTP layer then runs it on its event loop instead of a worker thread. A networked store says False."""
        ...

    def text_search(
        self, info: DatasetInfo, tokens: list[str], k: int, where: Filter | None = None, fields: tuple[str, ...] = (),
        field_weights: dict[str, float] | None = None,
    ) -> list[Candidate]:
        """BM25 per field, weighted by `field_weights` (field name, or `_ocr`, -> weight; a field left out
        weighs 1)."""
        ...

    def vector_search(
        self, info: DatasetInfo, vector: np.ndarray, k: int, where: Filter | None = None, fields: tuple[str, ...] = ()
    ) -> list[Candidate]: ...

    def maintain(self, info: DatasetInfo) -> dict[str, Any]: ...
