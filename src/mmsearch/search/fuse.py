"""Merge per-channel candidate lists into one ranked list.

weighted (default): each channel's score is put on [0, 1] -- text BM25 divided by the best BM25 of
this query, vlm cosine similarity clipped at 0 -- and the fused score is the weighted mean over the
channels that ran: score = sum(w_c * s_c) / sum(w_c). An item a channel did not return gets 0 there.
rrf: score = sum(w_c / (k + rank_c)), rank from 1; robust when score scales are not comparable.
Ties are broken by the same sum over unclipped channel scores (so among items a channel scored <= 0
the nearer still comes first), then by id, so pages are stable.
"""

from __future__ import annotations

from mmsearch.search.types import SearchHit, SearchOptions
from mmsearch.store.base import Candidate


def channel_scores(channel: str, candidates: list[Candidate]) -> dict[str, float]:
    if channel == "text":
        best = max((c.score for c in candidates), default=0.0)
        return {c.id: (c.score / best if best > 0 else 0.0) for c in candidates}
    return {c.id: max(c.score, 0.0) for c in candidates}


def fuse(recalled: dict[str, list[Candidate]], options: SearchOptions) -> list[SearchHit]:
    hits: dict[str, SearchHit] = {}
    unclipped: dict[str, float] = {}
    ran = [ch for ch in recalled if recalled[ch]]
    total_weight = sum(options.weights.get(ch, 0.0) for ch in ran) or 1.0
    for channel in ran:
        weight = options.weights.get(channel, 0.0)
        normalised = channel_scores(channel, recalled[channel])
        for rank, cand in enumerate(recalled[channel], start=1):
            hit = hits.get(cand.id)
            if hit is None:
                hit = hits[cand.id] = SearchHit(id=cand.id, fields=dict(cand.values), score=0.0)
            hit.recall[channel] = normalised[cand.id]
            raw = normalised[cand.id] if channel == "text" else cand.score
            unclipped[cand.id] = unclipped.get(cand.id, 0.0) + weight * raw
            if options.fusion == "rrf":
                hit.score += weight / (options.rrf_k + rank)
            else:
                hit.score += weight * normalised[cand.id] / total_weight
    return sorted(hits.values(), key=lambda h: (-h.score, -unclipped[h.id], h.id))
