"""The rerank stage: a second, more careful look at the top `rerank_depth` fused hits.

The first stage ranks by BM25 over a bag of tokens and by (possibly approximate) vector similarity.
The reranker reads each candidate's document, stored vector and image metadata (one store lookup) and
combines five signals, each in [0, 1]:

    semantic  max(0, cos(query vector, item vector)), exact; 0 for an item without a vector. A video's is its best
              segment's (the vector channel's max-sim).
              Used when the query has a vector (the vlm channel ran or a vector/image was given).
    coverage  the fraction of the query's tokens found in the item's searchable fields or in the
              OCR text of its images (tokenised as at import, so 鞋 finds 运动鞋 like recall does),
              compared as search terms (stemmed: `shoes` covers `shoe`; stop words left out); a CJK
              word the item lacks counts half when the item holds all its characters (女鞋 in
              女士运动鞋), as recall's back-off does.
    phrase    the normalised query (NFKC, lower case, punctuation as spaces) as a contiguous phrase:
              1.0 in the title-like field (the first searchable field named like *title* or *name*,
              else the first searchable field), 0.8 in another searchable field, 0.6 in the OCR text
              of an image, 0 otherwise. Latin words must match whole (`shoe` is not in `shoes`).
              Short of the phrase, a Chinese query's characters in order and close together (雄狮 in
              一头雄性狮子, not in 狮子座的雄心) earn NEAR x that level x len(query) / the span they cover,
              when the span is at most twice the query.
    ocr       the fraction of the query's tokens found in the OCR text of the item's images: the image
              itself shows what was asked for. Used when the dataset has image fields.
    first     the first-stage fused score divided by the best fused score of this query.

    rerank_score = sum(w_s * signal_s) / sum(w_s)  over the signals used for this query,

with w = SearchOptions.rerank_weights (default semantic 0.30, coverage 0.25, phrase 0.20, ocr 0.10,
first 0.15). coverage and phrase are used when the query has text. Signals not used for the query
(e.g. semantic for a text-only query) drop out of both sums, so the score stays in [0, 1].

The reranked hits get `rerank_score`, are ordered by it (ties keep the fused order) and stay above the
hits beyond the depth, which keep their fused order and have no rerank_score. `score` stays the fused
score (the spec's "score after merging the recall channels"); `hit.final_score` is what ranks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from mmsearch.schema.fields import DatasetInfo, DatasetSchema, FieldSpec
from mmsearch.search.types import RERANK_WEIGHTS, SearchHit
from mmsearch.store.base import RerankFeatures, Store
from mmsearch.text import UserWords, is_cjk, normalize, search_term, strings, tokenize, tokenize_query

PHRASE_TITLE = 1.0
PHRASE_FIELD = 0.8
PHRASE_OCR = 0.6
NEAR = 0.5  # share of the phrase signal for a Chinese query's characters in order and close (`proximity`)
CJK_BACKOFF = 0.5  # coverage credit of a CJK word whose characters the item holds, but not the word

_PUNCT = re.compile(r"[\W_]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass
class RerankQuery:
    """What the reranker compares items with: the query text (normalised), its tokens and its vector."""

    text: str = ""
    tokens: list[str] = field(default_factory=list)
    vector: np.ndarray | None = None
    alternatives: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)  # token -> its synonyms' terms

    @classmethod
    def of(cls, text: str | None, vector: np.ndarray | None,
           alternatives: dict[str, list[tuple[str, ...]]] | None = None, words: UserWords | None = None
           ) -> RerankQuery:
        text = text or ""
        v = None
        if vector is not None:
            v = np.asarray(vector, dtype=np.float32).reshape(-1)
            norm = float(np.linalg.norm(v))
            v = v / norm if norm > 0 else None
        return cls(text=phrase_text(text), tokens=tokenize_query(text, words) if text.strip() else [], vector=v,
                   alternatives=alternatives or {})


def phrase_text(text: str) -> str:
    """Normalised for phrase matching: NFKC, lower case, every run of punctuation or space as one space."""
    return _PUNCT.sub(" ", normalize(text)).strip()


def _wordish(ch: str) -> bool:
    return ch.isalnum() and not _CJK.match(ch)


def contains_phrase(haystack: str, needle: str) -> bool:
    """`needle` occurs in `haystack` (both phrase_text'ed); a Latin/digit edge must be a word edge."""
    if not needle:
        return False
    start = haystack.find(needle)
    while start != -1:
        end = start + len(needle)
        left_ok = start == 0 or not (_wordish(needle[0]) and _wordish(haystack[start - 1]))
        right_ok = end == len(haystack) or not (_wordish(needle[-1]) and _wordish(haystack[end]))
        if left_ok and right_ok:
            return True
        start = haystack.find(needle, start + 1)
    return False


def proximity(needle: str, haystack: str) -> float:
    """NEAR x len(needle) / the shortest span of `haystack` holding needle's characters in order, or 0 when
    that span is longer than twice the needle (or there is none)."""
    best = 0
    start = haystack.find(needle[0])
    while start != -1:
        at = start
        for ch in needle[1:]:
            at = haystack.find(ch, at + 1)
            if at == -1 or at - start + 1 > 2 * len(needle):
                break
        else:
            span = at - start + 1
            best = span if best == 0 else min(best, span)
        start = haystack.find(needle[0], start + 1)
    return NEAR * len(needle) / best if best else 0.0


def title_field(schema: DatasetSchema) -> FieldSpec | None:
    searchable = schema.searchable
    for spec in searchable:
        name = spec.name.lower()
        if "title" in name or "name" in name:
            return spec
    return searchable[0] if searchable else None


def text_fields(schema: DatasetSchema) -> tuple[list[FieldSpec], str | None]:
    """The searchable fields and the name of the title-like one (None without searchable fields)."""
    title = title_field(schema)
    return schema.searchable, (title.name if title is not None else None)


def used_signals(query: RerankQuery, schema: DatasetSchema) -> list[str]:
    used = ["first"]
    if query.vector is not None:
        used.append("semantic")
    if query.tokens:
        used += ["coverage", "phrase"]
        if schema.images:
            used.append("ocr")
    return used


def semantic_scores(query: RerankQuery, items: list[RerankFeatures]) -> list[float]:
    """The semantic signal of many items in one matrix product (what `signals` computes one item at a time)."""
    q = query.vector
    out = [0.0] * len(items)
    if q is None:
        return out
    for n, it in enumerate(items):  # a video: its best segment (multi-vector); few per page, so one at a time
        if it.vector is not None and it.vector.ndim == 2 and it.vector.shape[1:] == q.shape:
            out[n] = _best_cosine(it.vector, q)
    rows = [n for n, it in enumerate(items) if it.vector is not None and it.vector.shape == q.shape]
    if rows:
        m = np.stack([items[n].vector for n in rows]).astype(np.float32, copy=False)
        norms = np.linalg.norm(m, axis=1)
        cos = np.divide(m @ q, norms, out=np.zeros(len(rows), dtype=np.float32), where=norms > 0)
        for n, c in zip(rows, np.clip(cos, 0.0, 1.0).tolist(), strict=True):
            out[n] = c
    return out


def _best_cosine(vectors: np.ndarray, q: np.ndarray) -> float:
    norms = np.linalg.norm(vectors, axis=1)
    cos = np.divide(vectors @ q, norms, out=np.zeros(len(vectors), dtype=np.float32), where=norms > 0)
    return float(np.clip(cos.max(initial=0.0), 0.0, 1.0))


def signals(
    query: RerankQuery, item: RerankFeatures, schema: DatasetSchema, first: float, used: list[str] | None = None,
    semantic: float | None = None, fields: tuple[list[FieldSpec], str | None] | None = None,
) -> dict[str, float]:
    """Each used signal of one item, in [0, 1] (see the module docstring). `semantic`, when given, is the item's
    semantic signal already computed (see `semantic_scores`); `fields`, the schema's searchable fields and the
    title field's name (`text_fields`), computed once per query."""
    used = used if used is not None else used_signals(query, schema)
    out: dict[str, float] = {"first": min(1.0, max(0.0, first))}
    if "semantic" in used and semantic is not None:
        out["semantic"] = semantic
    elif "semantic" in used:
        v = item.vector
        if v is not None and query.vector is not None and v.ndim == 2 and v.shape[1:] == query.vector.shape:
            out["semantic"] = _best_cosine(v, query.vector)
        elif v is None or query.vector is None or v.shape != query.vector.shape:
            out["semantic"] = 0.0
        else:
            norm = float(np.linalg.norm(v))
            out["semantic"] = min(1.0, max(0.0, float(v @ query.vector) / norm)) if norm > 0 else 0.0
    if not query.tokens:
        return out
    searchable, title = fields or text_fields(schema)
    field_texts = {spec.name: strings(item.doc.get(spec.name)) for spec in searchable}
    ocr_texts = [m["ocr"] for m in item.media if isinstance(m, dict) and isinstance(m.get("ocr"), str) and m["ocr"]]
    ocr_tokens = {tok for t in ocr_texts for tok in tokenize(t)} if ocr_texts and "ocr" in used else set()
    if item.tokens is not None:  # the store's index tokens: fields and OCR text, tokenised at import
        found: frozenset[str] | set[str] = item.tokens
    else:
        found = {tok for texts in field_texts.values() for t in texts for tok in tokenize(t)}
        found |= ocr_tokens or {tok for t in ocr_texts for tok in tokenize(t)}
    n = len(query.tokens)
    out["coverage"] = coverage(query.tokens, found, query.alternatives)
    phrase = 0.0
    near = is_cjk(query.text) and len(query.text) > 1 and " " not in query.text
    for name, texts in field_texts.items():
        level = PHRASE_TITLE if name == title else PHRASE_FIELD
        if any(contains_phrase(phrase_text(t), query.text) for t in texts):
            phrase = max(phrase, level)
        elif near:
            phrase = max(phrase, level * max((proximity(query.text, phrase_text(t)) for t in texts), default=0.0))
    if phrase < PHRASE_OCR and any(contains_phrase(phrase_text(t), query.text) for t in ocr_texts):
        phrase = PHRASE_OCR
    out["phrase"] = phrase
    if "ocr" in used:
        out["ocr"] = sum(1 for t in query.tokens if t in ocr_tokens) / n
    return out


def coverage(tokens: list[str], item_tokens: frozenset[str] | set[str],
             alternatives: dict[str, list[tuple[str, ...]]] | None = None) -> float:
    """The share of the query's search terms the item holds (see the module docstring); 0 without terms. A token
    with synonyms is covered when the item holds all the terms of one of them."""
    pairs = [(tok, term) for tok in tokens if (term := search_term(tok)) is not None]
    if not pairs:
        return 0.0
    held = {search_term(t) for t in item_tokens}
    credit = 0.0
    for tok, term in pairs:
        if term in held or any(alt and all(a in held for a in alt) for alt in (alternatives or {}).get(tok, ())):
            credit += 1.0
        elif len(term) > 1 and is_cjk(term) and all(ch in held for ch in term):
            credit += CJK_BACKOFF
    return credit / len(pairs)


def rerank_hits(
    hits: list[SearchHit],
    features: dict[str, RerankFeatures],
    query: RerankQuery,
    schema: DatasetSchema,
    depth: int,
    weights: dict[str, float] | None = None,
) -> list[SearchHit]:
    """Score the top `depth` hits (those `features` has; an item deleted since recall is not reranked
    and joins the tail) and put them, best first, above the rest. Pure: no store access."""
    depth = max(0, int(depth))
    if depth == 0 or not hits:
        return hits
    weights = RERANK_WEIGHTS if weights is None else weights
    best = max(h.score for h in hits)
    used = used_signals(query, schema)
    head = [h for h in hits[:depth] if h.id in features]
    tail = [h for h in hits[:depth] if h.id not in features]
    semantic = semantic_scores(query, [features[h.id] for h in head]) if "semantic" in used else [None] * len(head)
    fields = text_fields(schema)
    positive = {name: w for name, w in weights.items() if w > 0}
    total = sum(positive.get(name, 0.0) for name in used)  # every used signal is in each item's values
    for hit, sem in zip(head, semantic, strict=True):
        first = hit.score / best if best > 0 else 0.0
        values = signals(query, features[hit.id], schema, first, used, sem, fields)
        hit.rerank_score = (sum(positive.get(name, 0.0) * v for name, v in values.items()) / total if total > 0
                            else values.get("first", 0.0))
    head.sort(key=lambda h: -(h.rerank_score or 0.0))  # stable: equal scores keep the fused order
    return head + tail + hits[depth:]


def rerank(
    hits: list[SearchHit],
    query: RerankQuery,
    info: DatasetInfo,
    store: Store,
    depth: int,
    weights: dict[str, float] | None = None,
) -> tuple[list[SearchHit], dict[str, RerankFeatures]]:
    """Fetch the top `depth` hits' features in one store call and rerank them. Also returns the features,
    whose documents the pipeline reuses for the page it shows."""
    depth = max(0, int(depth))
    if depth == 0 or not hits:
        return hits, {}
    features = store.rerank_features(info, [h.id for h in hits[:depth]], query.vector)
    return rerank_hits(hits, features, query, info.schema, depth, weights), features
