"""The vector index: an IVF the serving index trains past `ann_min_rows`, still exact on top, exact under filters."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ids
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.search import SearchOptions, SearchRequest

DIM = 16
ROWS = 600
CLUSTERS = 6

SCHEMA = {"fields": [
    {"name": "id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "kind", "type": "string", "filterable": True},
]}


def _clustered(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, DIM)) * 3
    return np.asarray([centres[i % CLUSTERS] + rng.normal(0, 0.4, DIM) for i in range(ROWS)])


def _rare(i: int) -> bool:
    return i % 97 == 5  # 7 items, spread over the clusters


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    engine = MMSearch(Settings(home=tmp_path_factory.mktemp("ann"), ann_min_rows=300))
    engine.create_dataset("ann", SCHEMA, vector_dim=DIM)
    vectors = _clustered()
    report = engine.import_items("ann", [
        {"id": f"i{i:03d}", "title": f"item {i}", "kind": "rare" if _rare(i) else "common", "_vector": v.tolist()}
        for i, v in enumerate(vectors)
    ])
    assert report.imported == ROWS
    engine.store.serving.background = False  # train the IVF as the index loads, not on a thread
    engine.store.serving_index(engine.dataset("ann"))
    return engine, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_the_serving_index_trains_an_ivf(indexed):
    engine, _ = indexed
    stats = engine.stats("ann")
    assert stats["vectors"] == ROWS
    assert stats["serving"]["ivf"] is True and stats["serving"]["rows"] == ROWS
    assert engine.store.serving_index(engine.dataset("ann")).vectors.indexed == ROWS
    assert "_vec" not in stats["indexes"]  # Lance keeps no vector index: queries never reach it
    assert engine.store.maintain(engine.dataset("ann")) == {}  # nothing left to build


def test_exact_nearest_neighbour_first(indexed):
    engine, unit = indexed
    rng = np.random.default_rng(11)
    for row in range(0, ROWS, 41):
        query = unit[row] + rng.normal(0, 0.02, DIM)
        expected = np.argsort(-(unit @ (query / np.linalg.norm(query))))[:3]
        result = engine.search("ann", SearchRequest(vector=query, channels=("vlm",), page_size=3),
                               SearchOptions(recall_size=10))
        assert ids(result)[0] == f"i{expected[0]:03d}", row
        assert result.hits[0].recall["vlm"] == pytest.approx(float(unit[expected[0]] @ query / np.linalg.norm(query)),
                                                             abs=1e-3)


def test_selective_filter_with_the_index_returns_the_filtered_items(indexed):
    engine, unit = indexed
    rare = [f"i{i:03d}" for i in range(ROWS) if _rare(i)]
    assert len(rare) == 7
    where = {"op": "must", "field": "kind", "conds": ["rare"]}
    for centre in range(CLUSTERS):
        query = unit[centre]
        result = engine.search("ann", SearchRequest(vector=query, filter=where, channels=("vlm",), page_size=20),
                               SearchOptions(recall_size=5))
        assert len(result.hits) == 5 and set(ids(result)) <= set(rare)
        rare_idx = [int(i[1:]) for i in rare]
        nearest_rare = sorted(rare_idx, key=lambda i: -float(unit[i] @ query))[:5]
        assert ids(result) == [f"i{i:03d}" for i in nearest_rare]  # exact ranking among the filtered rows
    everything = engine.search("ann", SearchRequest(vector=unit[0], filter=where, channels=("vlm",), page_size=20),
                               SearchOptions(recall_size=50))
    assert sorted(ids(everything)) == rare


def test_no_index_below_the_threshold(tmp_path):
    engine = MMSearch(Settings(home=tmp_path, ann_min_rows=300))
    engine.create_dataset("small", SCHEMA, vector_dim=DIM)
    vectors = _clustered()[:299]
    engine.import_items("small", [{"id": f"i{i}", "_vector": v.tolist()} for i, v in enumerate(vectors)])
    result = engine.search("small", SearchRequest(vector=vectors[17], channels=("vlm",)))
    assert ids(result)[0] == "i17"
    assert engine.stats("small")["serving"]["ivf"] is False


def test_ann_min_rows_has_a_floor():
    with pytest.raises(ValueError, match="ann_min_rows"):
        Settings(ann_min_rows=255)
