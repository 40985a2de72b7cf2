"""The LanceDB store: upsert, delete, get, count, drop/recreate, and durability across reopening."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import EXAMPLE_SCHEMA, ids
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.errors import NotFound
from mmsearch.schema.fields import DatasetInfo, parse_schema
from mmsearch.schema.filters import parse_filter
from mmsearch.search import SearchRequest
from mmsearch.store.base import Record
from mmsearch.store.lance import LanceStore
from mmsearch.text import index_text

DIM = 4


@pytest.fixture
def info():
    return DatasetInfo(id="items", type="image_text", schema=parse_schema(EXAMPLE_SCHEMA), vector_dim=DIM)


@pytest.fixture
def store(tmp_path, info):
    s = LanceStore(tmp_path / "tables")
    s.create(info)
    return s


def _rec(i: str, title: str = "", vector=None, **fields) -> Record:
    doc = {"item_id": i, **({"title": title} if title else {}), **fields}
    vec = None if vector is None else np.asarray(vector, dtype=np.float32)
    return Record(id=i, doc=doc, text=index_text([title]), vector=vec)


def test_upsert_get_count(store, info):
    result = store.upsert(info, [_rec("a", "red shoe", category="shoes"), _rec("b", "blue hat"), _rec("c")])
    assert (result.inserted, result.replaced) == (3, 0)
    assert store.count(info) == 3
    # order follows the request; missing ids are skipped
    got = store.get(info, ["c", "missing", "a"])
    assert [d["item_id"] for d in got] == ["c", "a"]
    assert got[1] == {"item_id": "a", "title": "red shoe", "category": "shoes"}
    assert store.get(info, []) == []
    assert store.get(info, ["nope"]) == []


def test_upsert_replaces_by_id(store, info):
    store.upsert(info, [_rec("a", "red shoe", category="shoes"), _rec("b", "blue hat")])
    result = store.upsert(info, [_rec("a", "green coat", category="coats"), _rec("d", "new")])
    assert (result.inserted, result.replaced) == (1, 1)
    assert store.count(info) == 3
    assert store.get(info, ["a"])[0] == {"item_id": "a", "title": "green coat", "category": "coats"}
    coats = parse_filter({"op": "must", "field": "category", "conds": ["coats"]}, info.schema)
    shoes = parse_filter({"op": "must", "field": "category", "conds": ["shoes"]}, info.schema)
    assert store.count(info, coats) == 1
    assert store.count(info, shoes) == 0
    assert store.upsert(info, []) == type(result)(0, 0)


def test_delete_returns_the_number_deleted(store, info):
    store.upsert(info, [_rec(i) for i in ("a", "b", "c", "d")])
    assert store.delete(info, ["a", "c", "missing", "a"]) == 2
    assert store.count(info) == 2
    assert [d["item_id"] for d in store.get(info, ["a", "b", "c", "d"])] == ["b", "d"]
    assert store.delete(info, ["a"]) == 0
    assert store.delete(info, []) == 0
    assert store.count(info) == 2


def test_ids_with_quotes_and_backslashes(store, info):
    odd = ["it's", "back\\slash", "x' OR '1'='1", "100%", "a_b"]
    store.upsert(info, [_rec(i) for i in [*odd, "plain", "ab", "x"]])
    assert [d["item_id"] for d in store.get(info, odd)] == odd
    assert store.get(info, ["a%", "a__"]) == []
    assert store.delete(info, ["x' OR '1'='1"]) == 1
    assert store.count(info) == 7
    assert store.get(info, ["x"]) == [{"item_id": "x"}]


def test_large_id_lists_are_chunked(store, info):
    store.upsert(info, [_rec(f"i{n:04d}") for n in range(2_500)])
    wanted = [f"i{n:04d}" for n in range(2_499, -1, -2)]
    assert [d["item_id"] for d in store.get(info, wanted)] == wanted
    assert store.delete(info, wanted) == 1_250
    assert store.count(info) == 1_250


def test_drop_and_recreate(store, info):
    store.upsert(info, [_rec("a"), _rec("b")])
    assert store.exists("items")
    store.drop("items")
    assert not store.exists("items")
    with pytest.raises(NotFound, match="items"):
        store.count(info)
    store.drop("items")  # dropping what is gone is a no-op
    store.create(info)
    assert store.count(info) == 0
    assert store.get(info, ["a"]) == []
    store.upsert(info, [_rec("c")])
    assert store.count(info) == 1


def test_table_survives_a_new_store(tmp_path, store, info):
    store.upsert(info, [_rec("a", "red shoe", vector=[1, 0, 0, 0]), _rec("b", "blue hat", vector=[0, 1, 0, 0])])
    store.maintain(info)
    again = LanceStore(tmp_path / "tables")
    assert again.exists("items")
    assert again.count(info) == 2
    assert [d["item_id"] for d in again.get(info, ["b", "a"])] == ["b", "a"]
    assert [c.id for c in again.text_search(info, ["shoe"], 10)] == ["a"]
    assert [c.id for c in again.vector_search(info, np.array([0, 1, 0, 0], dtype=np.float32), 1)] == ["b"]


def test_mmsearch_drop_and_recreate_dataset(mm, example_schema):
    mm.create_dataset("d", example_schema, vector_dim=DIM)
    mm.import_items("d", [{"item_id": "a", "title": "red shoe"}])
    mm.drop_dataset("d")
    assert mm.datasets() == []
    with pytest.raises(NotFound, match="'d'"):
        mm.get("d", ["a"])
    with pytest.raises(NotFound):
        mm.drop_dataset("d")

    mm.create_dataset("d", example_schema, vector_dim=DIM)
    assert mm.stats("d")["rows"] == 0
    assert mm.get("d", ["a"]) == []
    assert mm.search("d", SearchRequest(text="shoe")).hits == []
    mm.import_items("d", [{"item_id": "b", "title": "blue shoe"}])
    assert ids(mm.search("d", SearchRequest(text="shoe"))) == ["b"]


def test_dataset_survives_a_fresh_mmsearch(tmp_path, example_schema):
    first = MMSearch(Settings(home=tmp_path))
    first.create_dataset("d", example_schema, vector_dim=DIM)
    first.import_items("d", [
        {"item_id": "a", "title": "red running shoe", "category": "shoes", "_vector": [1, 0, 0, 0]},
        {"item_id": "b", "title": "blue hat", "category": "hats", "_vector": [0, 1, 0, 0]},
    ])

    second = MMSearch(Settings(home=tmp_path))
    assert [d.id for d in second.datasets()] == ["d"]
    assert second.dataset("d") == first.dataset("d")
    assert second.stats("d")["rows"] == 2
    assert second.get("d", ["b"]) == [{"item_id": "b", "title": "blue hat", "category": "hats"}]
    assert ids(second.search("d", SearchRequest(text="shoe"))) == ["a"]
    near_b = second.search("d", SearchRequest(vector=np.array([0.1, 1, 0, 0]), channels=("vlm",)))
    assert ids(near_b) == ["b", "a"]
    hats = {"op": "must", "field": "category", "conds": ["hats"]}
    assert ids(second.search("d", SearchRequest(vector=np.array([1, 0, 0, 0]), filter=hats))) == ["b"]

    assert second.delete("d", ["a", "zz"]) == 1
    assert MMSearch(Settings(home=tmp_path)).get("d", ["a", "b"]) == second.get("d", ["b"])


def test_stats(products, product_items):
    stats = products.stats("products")
    assert stats["rows"] == len(product_items)
    assert stats["vectors"] == len(product_items)
    assert {"_id", "f_category", "f_status", "f_price", "f_on_sale", "f_tags", "f_sizes"} <= set(stats["indexes"])
    assert "_text" not in stats["indexes"] and "_vec" not in stats["indexes"]  # served from memory, not Lance
    products.search("products", SearchRequest(text="shoe"))  # loads the serving index
    serving = products.stats("products")["serving"]
    assert serving["rows"] == len(product_items) and serving["dead_rows"] == 0
    assert serving["ivf"] is False  # far below ann_min_rows: exact search
    assert serving["memory_bytes"]["documents"] > 0


def test_rows_are_searchable_before_maintain(store, info):
    """Indexes exist from creation; rows written since the last maintain are searched unindexed."""
    shoes = parse_filter({"op": "must", "field": "category", "conds": ["shoes"]}, info.schema)
    store.upsert(info, [_rec("a", "red shoe", vector=[1, 0, 0, 0], category="shoes"), _rec("b", "blue hat")])
    assert [c.id for c in store.text_search(info, ["shoe"], 10)] == ["a"]
    assert [c.id for c in store.text_search(info, ["shoe", "hat"], 10, shoes)] == ["a"]
    store.maintain(info)
    store.upsert(info, [_rec("c", "green shoe", vector=[0, 1, 0, 0], category="shoes")])
    assert sorted(c.id for c in store.text_search(info, ["shoe"], 10)) == ["a", "c"]
    assert sorted(c.id for c in store.text_search(info, ["shoe", "hat"], 10, shoes)) == ["a", "c"]
    assert [c.id for c in store.vector_search(info, np.array([0, 1, 0, 0], dtype=np.float32), 1)] == ["c"]
    assert store.count(info, shoes) == 2
    assert store.text_search(info, [], 10) == []
