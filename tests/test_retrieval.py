"""Recall channels and fusion: BM25 text, vlm on precomputed or encoded vectors, weighted and rrf fusion."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ids
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders import HashingEncoder
from mmsearch.errors import InvalidArgument
from mmsearch.search import SearchOptions, SearchRequest

TEXT_SCHEMA = {"fields": [
    {"name": "id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "kind", "type": "string", "filterable": True},
]}


def _scores_descending(result):
    scores = [h.score for h in result.hits]
    return scores == sorted(scores, reverse=True)


# -- text channel ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def titles(tmp_path_factory):
    engine = MMSearch(Settings(home=tmp_path_factory.mktemp("titles")))
    engine.create_dataset("t", TEXT_SCHEMA, vector_dim=4)
    engine.import_items("t", [
        {"id": "both", "title": "waterproof hiking boots for winter"},
        {"id": "hiking", "title": "hiking backpack 30 litre"},
        {"id": "boots", "title": "leather boots"},
        {"id": "none1", "title": "summer dress"},
        {"id": "none2", "title": "wool scarf"},
        {"id": "cn", "title": "防水登山鞋 冬季"},
    ])
    return engine


def test_bm25_ranks_titles_with_the_query_words_first(titles):
    result = titles.search("t", SearchRequest(text="hiking boots"))
    assert ids(result)[0] == "both"  # both words
    assert set(ids(result)) == {"both", "hiking", "boots"}  # titles without the words are not recalled
    assert result.channels == ["text"]
    assert result.unavailable == ["vlm"]  # no encoder and no query vector
    assert _scores_descending(result)
    assert result.hits[0].score == pytest.approx(1.0)  # best BM25 normalised to 1, weight 1 of 1
    assert all(set(h.recall) == {"text"} for h in result.hits)


def test_bm25_chinese_query(titles):
    assert ids(titles.search("t", SearchRequest(text="登山鞋")))[0] == "cn"
    assert ids(titles.search("t", SearchRequest(text="冬季 登山"))) == ["cn"]


def test_query_without_matches_is_empty(titles):
    result = titles.search("t", SearchRequest(text="umbrella"))
    assert result.hits == [] and result.total_items == 0


@pytest.mark.parametrize("request_kwargs", [{}, {"text": ""}, {"text": "   "}])
def test_a_query_is_required(titles, request_kwargs):
    with pytest.raises(InvalidArgument) as exc:
        titles.search("t", SearchRequest(**request_kwargs))
    assert exc.value.field == "query"


# -- vlm channel on precomputed vectors --------------------------------------------------------------------

@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    engine = MMSearch(Settings(home=tmp_path_factory.mktemp("vectors")))
    engine.create_dataset("v", TEXT_SCHEMA, vector_dim=4)
    report = engine.import_items("v", [
        {"id": "x", "title": "red shoe", "_vector": [10, 0, 0, 0]},
        {"id": "xy", "title": "red shoe", "_vector": [1, 1, 0, 0]},
        {"id": "y", "title": "blue hat", "_vector": [0, 0.2, 0, 0]},
        {"id": "z", "title": "red hat", "_vector": [0, 0, 3, 0]},
        {"id": "negx", "title": "green hat", "_vector": [-1, 0, 0, 0.1]},
        {"id": "novec", "title": "red shoe"},
        {"id": "bad", "title": "red shoe", "_vector": [1, 0, 0]},
    ])
    assert report.imported == 6
    assert [(e.id, e.field, e.rule) for e in report.errors] == [("bad", "_vector", "dimension")]
    return engine


def test_vlm_returns_nearest_first(vectors):
    result = vectors.search("v", SearchRequest(vector=np.array([1.0, 0.1, 0, 0]), channels=("vlm",)))
    # cosine order; the item without a vector is absent. Similarities <= 0 score 0 (fuse.py), yet the
    # orthogonal item still comes before the opposite one.
    assert ids(result) == ["x", "xy", "y", "z", "negx"]
    assert result.channels == ["vlm"] and result.unavailable == []
    assert _scores_descending(result)
    cos = {"x": 1.0 / np.linalg.norm([1.0, 0.1]), "xy": 1.1 / np.linalg.norm([1.0, 0.1]) / np.sqrt(2),
           "y": 0.1 / np.linalg.norm([1.0, 0.1]), "negx": 0.0, "z": 0.0}
    for hit in result.hits:  # stored vectors are normalised, so scores are cosine similarities
        assert hit.recall["vlm"] == pytest.approx(cos[hit.id], abs=1e-5)
        assert hit.score == pytest.approx(cos[hit.id], abs=1e-5)


def test_query_vector_scale_does_not_matter(vectors):
    a = vectors.search("v", SearchRequest(vector=np.array([0.1, 1, 0.5, 0]), channels=("vlm",)))
    b = vectors.search("v", SearchRequest(vector=np.array([10.0, 100, 50, 0]), channels=("vlm",)))
    assert ids(a) == ids(b) == ["y", "xy", "z", "x", "negx"]
    assert [h.score for h in a.hits] == pytest.approx([h.score for h in b.hits], rel=1e-5)


@pytest.mark.parametrize("vector", [[1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0], [1, np.nan, 0, 0]])
def test_bad_query_vectors(vectors, vector):
    with pytest.raises(InvalidArgument) as exc:
        vectors.search("v", SearchRequest(vector=np.array(vector, dtype=float), channels=("vlm",)))
    assert exc.value.field == "query.vector"


def test_channels_can_be_chosen(vectors):
    req = {"text": "red", "vector": np.array([0, 0, 1.0, 0])}
    text_only = vectors.search("v", SearchRequest(channels=("text",), **req))
    vlm_only = vectors.search("v", SearchRequest(channels=("vlm",), **req))
    both = vectors.search("v", SearchRequest(**req))
    assert text_only.channels == ["text"] and set(ids(text_only)) == {"x", "xy", "z", "novec"}
    assert vlm_only.channels == ["vlm"] and ids(vlm_only)[0] == "z"
    assert both.channels == ["text", "vlm"]
    assert set(ids(both)) == {"x", "xy", "y", "z", "negx", "novec"}
    assert ids(both)[0] == "z"  # the only item both channels put on top


# -- fusion ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tradeoff(tmp_path_factory):
    """`lexical` wins the text channel and loses the vector channel; `visual` the reverse."""
    engine = MMSearch(Settings(home=tmp_path_factory.mktemp("tradeoff")))
    engine.create_dataset("f", TEXT_SCHEMA, vector_dim=4)
    engine.import_items("f", [
        {"id": "lexical", "title": "vintage camera vintage camera", "_vector": [0.2, 1, 0, 0]},
        {"id": "visual", "title": "vintage lens cap strap bag kit", "_vector": [1, 0.05, 0, 0]},
        {"id": "middle", "title": "camera kit", "_vector": [0.7, 0.7, 0, 0]},
        {"id": "far", "title": "garden hose", "_vector": [0, 0, 1, 0]},
    ])
    return engine


QUERY = {"text": "vintage camera", "vector": np.array([1.0, 0, 0, 0])}


def test_weights_change_the_order(tradeoff):
    text_heavy = tradeoff.search("f", SearchRequest(**QUERY), SearchOptions(weights={"text": 0.9, "vlm": 0.1}))
    vlm_heavy = tradeoff.search("f", SearchRequest(**QUERY), SearchOptions(weights={"text": 0.1, "vlm": 0.9}))
    assert ids(text_heavy)[0] == "lexical"
    assert ids(vlm_heavy)[0] == "visual"
    assert _scores_descending(text_heavy) and _scores_descending(vlm_heavy)


def test_weighted_score_is_the_weighted_mean_of_channel_scores(tradeoff):
    options = SearchOptions(weights={"text": 0.3, "vlm": 0.7})
    result = tradeoff.search("f", SearchRequest(**QUERY), options)
    for hit in result.hits:
        expected = (0.3 * hit.recall.get("text", 0.0) + 0.7 * hit.recall.get("vlm", 0.0)) / 1.0
        assert hit.score == pytest.approx(expected)
    assert max(h.recall["text"] for h in result.hits if "text" in h.recall) == pytest.approx(1.0)
    assert {h.id for h in result.hits if "text" in h.recall} == {"lexical", "visual", "middle"}
    assert {h.id for h in result.hits if "vlm" in h.recall} == {"lexical", "visual", "middle", "far"}


def test_rrf_fusion(tradeoff):
    options = SearchOptions(fusion="rrf", weights={"text": 1.0, "vlm": 1.0}, rrf_k=60)
    fused = tradeoff.search("f", SearchRequest(**QUERY), options)
    text = ids(tradeoff.search("f", SearchRequest(channels=("text",), **QUERY), options))
    vlm = ids(tradeoff.search("f", SearchRequest(channels=("vlm",), **QUERY), options))
    assert _scores_descending(fused)
    for hit in fused.hits:
        expected = sum(1.0 / (60 + ranks.index(hit.id) + 1) for ranks in (text, vlm) if hit.id in ranks)
        assert hit.score == pytest.approx(expected)
    # found by both channels beats found by one; `far` is only in the vector channel, at the bottom
    assert ids(fused)[-1] == "far"
    # rrf weights act per channel too
    text_only_weight = SearchOptions(fusion="rrf", weights={"text": 1.0, "vlm": 0.0})
    assert ids(tradeoff.search("f", SearchRequest(**QUERY), text_only_weight))[:3] == text


def test_ties_are_broken_by_id(vectors):
    tied = vectors.search("v", SearchRequest(text="shoe", channels=("text",)))
    assert ids(tied) == ["novec", "x", "xy"]  # the same title, the same BM25
    assert len({h.score for h in tied.hits}) == 1


# -- hybrid through an encoder -------------------------------------------------------------------------------

def test_hybrid_with_hashing_encoder(tmp_path):
    encoder = HashingEncoder(dim=32)
    engine = MMSearch(Settings(home=tmp_path), encoder=encoder)
    info = engine.create_dataset("h", TEXT_SCHEMA)
    assert info.vector_dim == 32
    titles = {
        "a": "red running shoe", "b": "red summer dress", "c": "blue running jacket",
        "d": "garden hose", "e": "kitchen knife set",
    }
    vectors = encoder.encode_text(list(titles.values()))
    engine.import_items("h", [
        {"id": i, "title": t, "kind": "red" if "red" in t else "other", "_vector": v.tolist()}
        for (i, t), v in zip(titles.items(), vectors, strict=True)
    ])

    result = engine.search("h", SearchRequest(text="red running shoe"), SearchOptions(recall_size=10))
    assert result.channels == ["text", "vlm"] and result.unavailable == []
    assert ids(result)[0] == "a"
    assert result.hits[0].recall["vlm"] == pytest.approx(1.0, abs=1e-5)  # the same text, the same vector
    recall = {h.id: set(h.recall) for h in result.hits}
    assert recall["a"] == recall["b"] == recall["c"] == {"text", "vlm"}  # share words: found by both
    assert recall["d"] == recall["e"] == {"vlm"}  # the vector channel returns every item with a vector
    assert _scores_descending(result)

    # a filter narrows both channels
    narrow = engine.search("h", SearchRequest(text="running", filter={"op": "must", "field": "kind", "conds": ["red"]}))
    assert ids(narrow)[0] == "a"
    assert {h.id: set(h.recall) for h in narrow.hits} == {"a": {"text", "vlm"}, "b": {"vlm"}}


def test_encoder_dimension_must_match_the_dataset(tmp_path):
    engine = MMSearch(Settings(home=tmp_path), encoder=HashingEncoder(dim=16))
    engine.create_dataset("h", TEXT_SCHEMA, vector_dim=8)
    engine.import_items("h", [{"id": "a", "title": "red shoe"}])
    with pytest.raises(InvalidArgument, match="16-d"):
        engine.search("h", SearchRequest(text="red shoe"))
    assert ids(engine.search("h", SearchRequest(text="red shoe", channels=("text",)))) == ["a"]
