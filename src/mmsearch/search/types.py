"""Data crossing the pipeline's border: what the APIs translate into, and what they translate back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Channel = Literal["text", "vlm"]
CHANNELS: tuple[Channel, ...] = ("text", "vlm")


@dataclass
class SearchRequest:
    text: str | None = None
    vector: np.ndarray | None = None  # a ready query embedding (image queries, or callers with their own)
    image: Any | None = None  # a decoded PIL image, embedded by the encoder
    filter: Any = None  # the spec's filter JSON, checked against the dataset schema in plan()
    sort_by: str | None = None
    sort_order: Literal["asc", "desc"] = "desc"
    page_number: int = 1
    page_size: int = 10
    output_fields: list[str] | None = None
    channels: tuple[Channel, ...] = CHANNELS


@dataclass(frozen=True)
class SearchOptions:
    """Per-application knobs; defaults come from Settings."""

    recall_size: int = 200
    weights: dict[str, float] = field(default_factory=lambda: {"text": 0.5, "vlm": 0.5})
    fusion: Literal["weighted", "rrf"] = "weighted"
    rrf_k: int = 60


@dataclass
class SearchHit:
    id: str
    fields: dict[str, Any]
    score: float
    recall: dict[str, float] = field(default_factory=dict)  # channel -> recall_score
    rerank_score: float | None = None

    @property
    def is_reranked(self) -> bool:
        return self.rerank_score is not None


@dataclass
class SearchResult:
    hits: list[SearchHit]
    total_items: int
    channels: list[str]  # channels that ran for this query
    unavailable: list[str] = field(default_factory=list)  # channels asked for but not available
    took_ms: float = 0.0
