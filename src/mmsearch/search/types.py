"""Data crossing the pipeline's border: what the APIs translate into, and what they translate back."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mmsearch.errors import InvalidArgument
from mmsearch.schema.filters import FilterLimits

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
    # the user's (latitude, longitude) in degrees, already parsed (search.geo.parse_location reads the spec's
    # {"latitude": "12.12", "longitude": "-13.43"}); None or an out-of-range pair leaves the order alone
    location: tuple[float, float] | None = None


# Signal weights of the rerank stage (search/rerank.py documents each signal).
RERANK_WEIGHTS: dict[str, float] = {"semantic": 0.30, "coverage": 0.25, "phrase": 0.20, "ocr": 0.10, "first": 0.15}


@dataclass(frozen=True)
class GeoOptions:
    """Location boost (or demotion) of items near the user; search/geo.py documents the formula.

    `field` is the dataset's geo_point field. With d the great-circle distance in km and x = d / radius_km,
    `weight * decay(x)` is added to the ranking score (`boost`) or subtracted from it (`demote`), where
    linear: max(0, 1 - x); exp: 2^-x; gauss: 2^-(x^2). So the effect is `weight` at the user's position,
    half of it at radius_km for exp and gauss, and none beyond radius_km for linear.
    """

    field: str
    radius_km: float = 10.0
    decay: Literal["linear", "exp", "gauss"] = "gauss"
    weight: float = 0.3
    mode: Literal["boost", "demote"] = "boost"

    def __post_init__(self) -> None:
        if not (isinstance(self.radius_km, int | float) and math.isfinite(self.radius_km) and self.radius_km > 0):
            raise InvalidArgument("location.radius_km: must be a number > 0", field="location.radius_km")
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight) and self.weight >= 0):
            raise InvalidArgument("location.weight: must be a number >= 0", field="location.weight")
        if self.decay not in ("linear", "exp", "gauss"):
            raise InvalidArgument('location.decay: must be "linear", "exp" or "gauss"', field="location.decay")
        if self.mode not in ("boost", "demote"):
            raise InvalidArgument('location.mode: must be "boost" or "demote"', field="location.mode")


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one request's size, checked before any work is done (Settings: MMSEARCH_MAX_QUERY_CHARS,
    MMSEARCH_MAX_FILTER_*). Unbounded, a 1 MB query text costs seconds of CPU and a 40,000-condition filter
    crashes the engine."""

    max_query_chars: int = 1_000
    max_output_fields: int = 256
    max_sort_by_chars: int = 256  # a sortable key is at most two 64-character names
    filter: FilterLimits = field(default_factory=FilterLimits)


@dataclass(frozen=True)
class SearchOptions:
    """Per-application knobs; defaults come from Settings."""

    recall_size: int = 200
    weights: dict[str, float] = field(default_factory=lambda: {"text": 0.5, "vlm": 0.5})
    fusion: Literal["weighted", "rrf"] = "weighted"
    rrf_k: int = 60
    rerank: bool = False  # second stage over the top `rerank_depth` fused hits (search/rerank.py)
    rerank_depth: int = 50
    rerank_weights: dict[str, float] = field(default_factory=lambda: dict(RERANK_WEIGHTS))
    geo: GeoOptions | None = None  # location boost; applies when the request carries a location
    limits: RequestLimits = field(default_factory=RequestLimits)
    synonyms: tuple[tuple[str, ...], ...] = ()  # groups of equivalent phrases (search/synonyms.py)
    field_weights: dict[str, float] | None = None  # the text channel's per field; None = search/field_weights.py


@dataclass(slots=True)
class SearchHit:
    id: str
    fields: dict[str, Any]
    score: float
    recall: dict[str, float] = field(default_factory=dict)  # channel -> recall_score
    rerank_score: float | None = None  # in [0, 1]; set for the hits the rerank stage scored
    distance_km: float | None = None  # to the request's location, when the location stage ran and the item has one
    geo_boost: float = 0.0  # what the location stage added to the ranking score (negative when demoting)

    @property
    def is_reranked(self) -> bool:
        return self.rerank_score is not None

    @property
    def final_score(self) -> float:
        """The score the ranking used: the rerank score (the fused `score` for hits not reranked) plus the
        location adjustment. `score` itself stays the fused multi-channel score the spec reports."""
        base = self.rerank_score if self.rerank_score is not None else self.score
        return base + self.geo_boost


@dataclass
class SearchResult:
    hits: list[SearchHit]
    total_items: int
    channels: list[str]  # channels that ran for this query
    unavailable: list[str] = field(default_factory=list)  # channels asked for but not available
    took_ms: float = 0.0
    # seconds per stage (plan, recall_text, recall_vlm, fuse, rerank, fetch) for the ones that ran: plain data the
    # API layer turns into latency histograms (api/metrics.py); the pipeline itself knows no metrics library
    stages: dict[str, float] = field(default_factory=dict)
