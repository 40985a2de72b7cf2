"""The API-neutral search pipeline: plan -> recall -> fuse -> rerank -> geo -> sort -> page."""

from mmsearch.search.pipeline import search
from mmsearch.search.types import SearchHit, SearchOptions, SearchRequest, SearchResult

__all__ = ["SearchHit", "SearchOptions", "SearchRequest", "SearchResult", "search"]
