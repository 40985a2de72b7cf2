"""The LanceDB store's own promises: durability across reopening, stats, the engine end to end. What every store
promises (upsert, delete, get, count, filters, ranking) is tested against each engine in test_store_contract.py."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import EXAMPLE_SCHEMA, ids
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.errors import NotFound
from mmsearch.schema.fields import DatasetInfo, parse_schema
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
