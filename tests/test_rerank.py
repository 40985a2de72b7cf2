"""The rerank stage: more evidence (phrases, OCR text, exact vectors) over the top fused hits."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import ids
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.schema.fields import parse_schema
from mmsearch.search import SearchOptions, SearchRequest
from mmsearch.search.rerank import RerankQuery, contains_phrase, phrase_text, signals, title_field
from mmsearch.store.base import Record, RerankFeatures

TEXT_SCHEMA = {"fields": [
    {"name": "id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "price", "type": "float", "sortable": True},
]}

OFF = SearchOptions(recall_size=100)
ON = SearchOptions(recall_size=100, rerank=True, rerank_depth=50)


def depth(n: int) -> SearchOptions:
    return SearchOptions(recall_size=100, rerank=True, rerank_depth=n)


@pytest.fixture(scope="module")
def boots(tmp_path_factory):
    """BM25 prefers `scattered` (short, both words twice, never as the phrase) over `exact`."""
    engine = MMSearch(Settings(home=tmp_path_factory.mktemp("boots")), encoder=None)
    engine.create_dataset("b", TEXT_SCHEMA, vector_dim=4)
    engine.import_items("b", [
        {"id": "scattered", "title": "boots boots, hiking hiking", "price": 10.0},
        {"id": "exact", "title": "comfortable waterproof leather hiking boots for long winter mountain trails",
         "price": 30.0},
        {"id": "poles", "title": "hiking poles", "price": 20.0},
        {"id": "rain", "title": "rain boots", "price": 5.0},
        {"id": "walk", "title": "walking shoes and boots", "price": 15.0},
        {"id": "dress", "title": "summer dress", "price": 40.0},
    ])
    return engine


QUERY = SearchRequest(text="hiking boots", page_size=100)


def test_the_exact_phrase_outranks_scattered_term_matches(boots):
    first = boots.search("b", QUERY, OFF)
    assert ids(first)[0] == "scattered"  # the first stage gets this wrong
    assert not any(h.is_reranked for h in first.hits)

    reranked = boots.search("b", QUERY, ON)
    assert ids(reranked)[0] == "exact"
    assert set(ids(reranked)) == set(ids(first))  # reordered, nothing added or lost
    assert reranked.total_items == first.total_items
    by_id = {h.id: h for h in reranked.hits}
    assert by_id["exact"].rerank_score > by_id["scattered"].rerank_score
    # both words beat one word
    assert min(by_id[i].rerank_score for i in ("exact", "scattered")) > max(
        by_id[i].rerank_score for i in ("poles", "rain", "walk"))


def test_score_stays_the_fused_score_and_rerank_score_orders_the_head(boots):
    first = {h.id: h.score for h in boots.search("b", QUERY, OFF).hits}
    reranked = boots.search("b", QUERY, ON)
    assert all(h.is_reranked for h in reranked.hits)  # depth 50 covers every hit
    assert {h.id: h.score for h in reranked.hits} == pytest.approx(first)
    scores = [h.rerank_score for h in reranked.hits]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert [h.final_score for h in reranked.hits] == scores


def test_only_the_top_depth_hits_are_reranked(boots):
    fused = ids(boots.search("b", QUERY, OFF))
    assert len(fused) == 5
    assert fused.index("exact") == 2  # `hiking poles`, short, is second in the first stage
    result = boots.search("b", QUERY, depth(3))
    head, tail = result.hits[:3], result.hits[3:]
    assert {h.id for h in head} == set(fused[:3])
    assert ids(result)[0] == "exact"
    assert all(h.is_reranked and h.rerank_score is not None for h in head)
    assert all(not h.is_reranked and h.rerank_score is None for h in tail)
    assert [h.id for h in tail] == fused[3:]  # the tail keeps the fused order

    shallow = boots.search("b", QUERY, depth(2))  # `exact` is beyond the depth: not reranked, not moved
    assert [h.is_reranked for h in shallow.hits] == [True, True, False, False, False]
    assert ids(shallow)[2:] == fused[2:]
    assert {h.id for h in shallow.hits[:2]} == set(fused[:2])


def test_depth_zero_changes_nothing(boots):
    off = boots.search("b", QUERY, OFF)
    zero = boots.search("b", QUERY, depth(0))
    assert ids(zero) == ids(off)
    assert [h.score for h in zero.hits] == [h.score for h in off.hits]
    assert not any(h.is_reranked for h in zero.hits)


def test_depth_one_reranks_only_the_top_hit(boots):
    off = boots.search("b", QUERY, OFF)
    one = boots.search("b", QUERY, depth(1))
    assert ids(one) == ids(off)  # one reranked hit has nothing to be compared with
    assert [h.is_reranked for h in one.hits] == [True] + [False] * (len(off.hits) - 1)
    assert 0.0 <= one.hits[0].rerank_score <= 1.0


def test_pages_of_a_reranked_list_are_consistent(boots):
    whole = ids(boots.search("b", QUERY, ON))
    pages = [ids(boots.search("b", SearchRequest(text="hiking boots", page_number=n, page_size=2), ON))
             for n in (1, 2, 3)]
    assert [i for p in pages for i in p] == whole


def test_an_explicit_sort_wins_over_rerank(boots):
    result = boots.search("b", SearchRequest(text="hiking boots", sort_by="price", sort_order="asc"), ON)
    prices = [h.fields["price"] for h in result.hits]
    assert prices == sorted(prices)
    assert all(h.is_reranked for h in result.hits)


def test_output_fields_still_apply_to_reranked_hits(boots):
    result = boots.search("b", SearchRequest(text="hiking boots", output_fields=["title"]), ON)
    assert result.hits and all(set(h.fields) == {"title"} for h in result.hits)
    assert result.hits[0].fields["title"].startswith("comfortable")


# -- OCR evidence, through a real OCR import -------------------------------------------------------------

IMAGE_SCHEMA = {"fields": [
    {"name": "item_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "images", "type": "image"},
]}


def test_words_shown_in_the_image_lift_the_item(tmp_path):
    from mmsearch.encoders.ocr import OcrEngine
    from mmsearch.ingest import import_items
    from mmsearch.ingest.images import ImageIndexer, LoadedImage
    from render import render_text

    engine = MMSearch(Settings(home=tmp_path), encoder=None)
    info = engine.create_dataset("g", IMAGE_SCHEMA, vector_dim=4)
    banner = render_text(["Wireless Headphones"], size=(520, 100))

    def load(ref: str) -> LoadedImage:
        assert ref == "ban:1"
        return LoadedImage(banner, banner.width, banner.height, hashlib.sha256(banner.tobytes()).hexdigest())

    items = [
        {"item_id": "banner", "title": "item seven limited edition in black with a travel pouch", "images": "ban:1"},
        {"item_id": "words", "title": "headphones, headphones and wireless case"},
        {"item_id": "wired", "title": "wired headphones"},
    ]
    report = import_items(info, enumerate(items), engine.store,
                          images=ImageIndexer(info, load, encoder=None, ocr=OcrEngine()))
    assert report.imported == 3
    request = SearchRequest(text="wireless headphones", channels=("text",))
    assert ids(engine.search("g", request, OFF))[0] == "words"  # BM25 prefers the short, repetitive title
    reranked = engine.search("g", request, ON)
    assert ids(reranked)[0] == "banner"
    assert set(ids(reranked)) == {"banner", "words", "wired"}


# -- signals, one at a time --------------------------------------------------------------------------------

SIGNAL_SCHEMA = parse_schema({"fields": [
    {"name": "id", "type": "string", "primary_key": True},
    {"name": "description", "type": "string", "searchable": True},
    {"name": "product_title", "type": "string", "searchable": True},
    {"name": "keywords", "type": "array<string>", "searchable": True},
    {"name": "images", "type": "image"},
]})


def test_the_title_like_field_is_found_by_name():
    assert title_field(SIGNAL_SCHEMA).name == "product_title"
    plain = parse_schema({"fields": [{"name": "id", "type": "string", "primary_key": True},
                                     {"name": "body", "type": "string", "searchable": True}]})
    assert title_field(plain).name == "body"


@pytest.mark.parametrize(("doc", "ocr", "phrase"), [
    ({"product_title": "Red Running-Shoe, size 42"}, "", 1.0),
    ({"description": "a red running shoe for you"}, "", 0.8),
    ({"keywords": ["sale", "red running shoe"]}, "", 0.8),
    ({"description": "a red running shoe", "product_title": "red running shoe"}, "", 1.0),
    ({}, "RED RUNNING SHOE", 0.6),
    ({"product_title": "running shoe red"}, "", 0.0),  # every word, not the phrase
    ({"product_title": "red running shoes"}, "", 0.0),  # Latin words match whole
])
def test_phrase_signal(doc, ocr, phrase):
    media = [{"field": "images", "ocr": ocr}] if ocr else []
    query = RerankQuery.of("Red running shoe", None)
    got = signals(query, RerankFeatures(doc=doc, media=media), SIGNAL_SCHEMA, 1.0)
    assert got["phrase"] == phrase


def test_coverage_and_ocr_signals():
    query = RerankQuery.of("red running shoe", None)
    half = signals(query, RerankFeatures(doc={"description": "red dress"},
                                         media=[{"ocr": "running club"}, {"ocr": ""}]), SIGNAL_SCHEMA, 0.5)
    assert half["coverage"] == pytest.approx(2 / 3)  # red (field) + running (image)
    assert half["ocr"] == pytest.approx(1 / 3)
    assert half["first"] == 0.5
    assert "semantic" not in half  # the query has no vector
    cjk = signals(RerankQuery.of("运动鞋", None), RerankFeatures(doc={"product_title": "儿童运动鞋 kids"}),
                  SIGNAL_SCHEMA, 1.0)
    assert cjk["coverage"] == 1.0 and cjk["phrase"] == 1.0


def test_semantic_signal_is_the_exact_cosine():
    q = np.array([1.0, 0, 0, 0])
    query = RerankQuery.of(None, q * 5)  # scale does not matter
    v = np.array([1.0, 1.0, 0, 0], dtype=np.float32) / np.sqrt(2)
    assert signals(query, RerankFeatures(doc={}, vector=v), SIGNAL_SCHEMA, 1.0)["semantic"] == pytest.approx(
        1 / np.sqrt(2), abs=1e-6)
    assert signals(query, RerankFeatures(doc={}, vector=-v), SIGNAL_SCHEMA, 1.0)["semantic"] == 0.0
    assert signals(query, RerankFeatures(doc={}), SIGNAL_SCHEMA, 1.0)["semantic"] == 0.0  # no vector
    assert set(signals(query, RerankFeatures(doc={}), SIGNAL_SCHEMA, 1.0)) == {"first", "semantic"}


def test_phrase_helpers():
    assert phrase_text("  Ｎｉｋｅ　AIR-max!! 90 ") == "nike air max 90"
    assert contains_phrase("儿童运动鞋 kids", "运动鞋")  # CJK has no word edges
    assert contains_phrase("air max 90", "max 90")
    assert not contains_phrase("airmax 90", "max 90")
    assert not contains_phrase("anything", "")


def test_weights_choose_the_evidence(boots):
    """All weight on the first stage: the reranked order is the fused order."""
    weights = {"first": 1.0, "coverage": 0.0, "phrase": 0.0, "semantic": 0.0, "ocr": 0.0}
    options = SearchOptions(recall_size=100, rerank=True, rerank_weights=weights)
    first = boots.search("b", QUERY, OFF)
    result = boots.search("b", QUERY, options)
    assert ids(result) == ids(first)
    best = first.hits[0].score
    assert [h.rerank_score for h in result.hits] == pytest.approx([h.score / best for h in first.hits])


# -- the hybrid pipeline and the store lookup ---------------------------------------------------------------

def test_rerank_uses_the_query_vector(tmp_path):
    engine = MMSearch(Settings(home=tmp_path), encoder=None)
    engine.create_dataset("v", TEXT_SCHEMA, vector_dim=4)
    engine.import_items("v", [
        {"id": "a", "title": "lamp lamp", "_vector": [1, 0, 0, 0]},
        {"id": "b", "title": "lamp", "_vector": [0.6, 0.8, 0, 0]},
        {"id": "c", "title": "lamp"},
    ])
    req = SearchRequest(text="lamp", vector=np.array([0.6, 0.8, 0, 0]))
    text_heavy = {"text": 0.99, "vlm": 0.01}
    assert ids(engine.search("v", req, SearchOptions(weights=text_heavy)))[0] == "a"  # BM25 decides
    result = engine.search("v", req, SearchOptions(rerank=True, weights=text_heavy))
    assert ids(result) == ["b", "a", "c"]  # the exact cosine (0.6 for a, 1 for b, none for c) decides
    r = {h.id: h.rerank_score for h in result.hits}
    assert r["b"] > r["a"] > r["c"]


def test_store_rerank_features(tmp_path):
    engine = MMSearch(Settings(home=tmp_path), encoder=None)
    info = engine.create_dataset("s", IMAGE_SCHEMA, vector_dim=4)
    media = [{"field": "images", "ref": "x.jpg", "width": 4, "height": 3, "sha256": "ab", "ocr": "SALE 50%"}]
    engine.store.upsert(info, [
        Record(id="m", doc={"item_id": "m", "title": "with media"}, text="with media sale 50",
               vector=np.array([3.0, 4.0, 0, 0], dtype=np.float32), media=media),
        Record(id="n", doc={"item_id": "n", "title": "bare"}, text="bare"),
    ])
    found = engine.store.rerank_features(info, ["n", "missing", "m", "m"])
    assert set(found) == {"m", "n"}
    assert found["m"].doc == {"item_id": "m", "title": "with media"}
    assert found["m"].media == media
    np.testing.assert_allclose(found["m"].vector, [3.0, 4.0, 0, 0])
    assert found["n"].vector is None and found["n"].media == []
    assert engine.store.rerank_features(info, []) == {}
