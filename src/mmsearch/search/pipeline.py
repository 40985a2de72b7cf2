"""plan -> recall -> fuse -> rerank -> geo -> sort -> page. Knows no HTTP: the APIs translate into SearchRequest."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mmsearch.encoders.base import Encoder, l2_normalise
from mmsearch.errors import InvalidArgument, Unavailable
from mmsearch.schema.fields import VIDEO_MOMENTS, DatasetInfo
from mmsearch.schema.filters import Filter, parse_filter
from mmsearch.search.field_weights import field_weights
from mmsearch.search.fuse import fuse
from mmsearch.search.geo import apply_location, geo_field, parse_location
from mmsearch.search.moments import moments, query_words
from mmsearch.search.order import check_sort, page, project, sort_hits
from mmsearch.search.rerank import RerankQuery, rerank
from mmsearch.search.synonyms import compile_synonyms
from mmsearch.search.types import RequestLimits, SearchOptions, SearchRequest, SearchResult
from mmsearch.store.base import Candidate, RerankFeatures, Store
from mmsearch.text import tokenize_query, user_words
from mmsearch.unicode import require_valid_unicode


@dataclass
class Plan:
    where: Filter | None
    tokens: list[str]  # the query's own tokens, then its synonyms' (search/synonyms.py)
    vector: np.ndarray | None
    unavailable: list[str]
    alternatives: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)  # token -> synonym terms


def check_request(req: SearchRequest, limits: RequestLimits) -> None:
    """The request's size and text, before anything costs work: spelling, tokenizing and encoding take time
    in proportion to the text, and a string that is not valid Unicode fails in the engine or the query log."""
    if req.text is not None:
        _check_string(req.text, "query.text", limits.max_query_chars)
    if req.sort_by is not None:
        _check_string(req.sort_by, "sort_by", limits.max_sort_by_chars)
    if req.output_fields is not None:
        if not isinstance(req.output_fields, list | tuple) or not all(isinstance(f, str) for f in req.output_fields):
            raise InvalidArgument("output_fields: must be a list of field names", field="output_fields")
        if len(req.output_fields) > limits.max_output_fields:
            raise InvalidArgument(f"output_fields: at most {limits.max_output_fields} names, "
                                  f"got {len(req.output_fields)}", field="output_fields")
        require_valid_unicode(list(req.output_fields), "output_fields")


def _check_string(value: object, field: str, max_chars: int) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"{field}: must be a string", field=field)
    if len(value) > max_chars:
        raise InvalidArgument(f"{field}: at most {max_chars} characters, got {len(value)}", field=field)
    require_valid_unicode(value, field)


def plan(
    req: SearchRequest, info: DatasetInfo, encoder: Encoder | None, limits: RequestLimits | None = None,
    synonyms: tuple[tuple[str, ...], ...] = (),
) -> Plan:
    """Check the request against the dataset and decide what each channel will look for."""
    limits = limits or RequestLimits()
    check_request(req, limits)
    text = (req.text or "").strip()
    if not text and req.vector is None and req.image is None:
        raise InvalidArgument("query: text or image is required", field="query")
    if isinstance(req.page_number, bool) or not isinstance(req.page_number, int) or req.page_number < 1:
        raise InvalidArgument("page_number: must be an integer >= 1", field="page_number")
    if isinstance(req.page_size, bool) or not isinstance(req.page_size, int) or req.page_size < 1:
        raise InvalidArgument("page_size: must be an integer >= 1", field="page_size")
    check_sort(info.schema, req.sort_by, req.sort_order)
    where = parse_filter(req.filter, info.schema, limits=limits.filter)

    words = user_words(info.schema.dictionary)
    tokens = tokenize_query(text, words) if text and "text" in req.channels else []
    vector: np.ndarray | None = None
    unavailable: list[str] = []
    if "vlm" in req.channels:
        if req.vector is not None:
            vector = _query_vector(req.vector, info.vector_dim)
        elif encoder is None:
            unavailable.append("vlm")
        elif encoder.dim != info.vector_dim:
            raise InvalidArgument(
                f"encoder {encoder.model_id} gives {encoder.dim}-d vectors; dataset {info.id!r} stores "
                f"{info.vector_dim}-d", field="dataset_id"
            )
        elif req.image is not None:
            vector = encoder.encode_image([req.image])[0]
        elif text:
            vector = encoder.encode_text([text])[0]
    if req.image is not None and vector is None and req.vector is None:
        raise Unavailable(
            "query.image_url: image search needs the vlm channel, and no image model is loaded "
            "(see `mmsearch doctor`)", field="query.image_url",
        )
    alternatives: dict[str, list[tuple[str, ...]]] = {}
    if synonyms and tokens:
        expansion = compile_synonyms(synonyms).expand(tokens)
        tokens, alternatives = tokens + expansion.tokens, expansion.alternatives
    return Plan(where=where, tokens=tokens, vector=vector, unavailable=unavailable, alternatives=alternatives)


def _query_vector(v: np.ndarray, dim: int) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float32).reshape(-1)
    if arr.shape[0] != dim:
        raise InvalidArgument(f"query.vector: expected {dim} dimensions, got {arr.shape[0]}", field="query.vector")
    if not np.isfinite(arr).all() or not arr.any():
        raise InvalidArgument("query.vector: must be finite and not all zeros", field="query.vector")
    return l2_normalise(arr)


def recall(
    p: Plan, info: DatasetInfo, store: Store, k: int, fields: tuple[str, ...] = (),
    weights: dict[str, float] | None = None, stages: dict[str, float] | None = None,
) -> dict[str, list[Candidate]]:
    """Channels run one after the other: served from memory each takes about a millisecond, less than
    handing one to a thread costs (measured at 100k: hybrid p50 4.7-5.0 ms in turn, 5.1-6.4 ms on two
    threads), and a server's concurrent requests already use every core. The vector channel runs first: it
    needs the filter over every row, and the text channel then reuses that mask (store/serving/index.py),
    where alone it evaluates the filter at its matched rows only. The answer lists text first all the same.
    `stages`, when given, gets each channel's seconds (`recall_text`, `recall_vlm`)."""
    stages = {} if stages is None else stages
    vlm = None
    if p.vector is not None:
        started = time.perf_counter()
        vlm = store.vector_search(info, p.vector, k, p.where, fields)
        stages["recall_vlm"] = time.perf_counter() - started
    out: dict[str, list[Candidate]] = {}
    if p.tokens:
        started = time.perf_counter()
        weighed = field_weights(info.schema, weights, video=info.type == "video")
        out["text"] = store.text_search(info, p.tokens, k, p.where, fields, weighed)
        stages["recall_text"] = time.perf_counter() - started
    if vlm is not None:
        out["vlm"] = vlm
    return out


def search(
    req: SearchRequest,
    info: DatasetInfo,
    store: Store,
    encoder: Encoder | None = None,
    options: SearchOptions | None = None,
) -> SearchResult:
    """One query through every stage. The result's `stages` holds the seconds of plan (which encodes the
    query), each recall channel, fuse, rerank and fetch (the shown page's documents): plain numbers, so the API
    layer can turn them into metrics without this layer knowing of any."""
    started = time.perf_counter()
    options = options or SearchOptions()
    p = plan(req, info, encoder, options.limits, options.synonyms)
    stages: dict[str, float] = {"plan": time.perf_counter() - started}
    fields: tuple[str, ...] = (req.sort_by.split(".")[0],) if req.sort_by else ()
    # the location stage runs only with a configured field and a valid location (the spec: ignore bad input)
    location = parse_location(req.location) if req.location is not None else None
    geo_name = geo_field(info.schema, options.geo) if location is not None else None
    if geo_name is not None and geo_name not in fields:
        fields += (geo_name,)
    recalled = recall(p, info, store, options.recall_size, fields, options.field_weights, stages)
    mark = time.perf_counter()
    hits = fuse(recalled, options)
    stages["fuse"] = time.perf_counter() - mark
    known: dict[str, RerankFeatures] = {}
    if options.rerank:
        mark = time.perf_counter()
        query = RerankQuery.of(req.text, p.vector, p.alternatives, user_words(info.schema.dictionary))
        hits, known = rerank(hits, query, info, store, options.rerank_depth, options.rerank_weights)
        stages["rerank"] = time.perf_counter() - mark
    if geo_name is not None:
        hits = apply_location(hits, location, options.geo)
    hits = sort_hits(hits, req.sort_by, req.sort_order)
    shown = page(hits, req.page_number, req.page_size)
    mark = time.perf_counter()
    missing = [h.id for h in shown if h.id not in known]
    docs = {i: f.doc for i, f in known.items()}
    if missing:
        docs.update(store.get_many(info, missing))
    shown = [h for h in shown if h.id in docs]  # deleted since recall: gone, not shown empty
    for hit in shown:
        hit.fields = project(docs[hit.id], req.output_fields)
    if info.type == "video" and (not req.output_fields or VIDEO_MOMENTS in req.output_fields):
        best = {c.id: c.moments for c in recalled.get("vlm", ()) if c.moments}
        words = query_words(p.tokens)
        cues = store.video_cues(info, [h.id for h in shown]) if words else {}
        for hit in shown:
            found = moments(words, best.get(hit.id, ()), cues.get(hit.id, []))
            if found:
                hit.fields = {**hit.fields, VIDEO_MOMENTS: found}
    stages["fetch"] = time.perf_counter() - mark
    return SearchResult(
        hits=shown,
        total_items=len(hits),
        channels=list(recalled),
        unavailable=p.unavailable,
        took_ms=(time.perf_counter() - started) * 1000,
        stages=stages,
    )
