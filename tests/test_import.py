"""Item validation at import: bad items are reported (index, field, rule) and skipped, good ones land."""

from __future__ import annotations

import copy

import lancedb
import numpy as np
import pytest

from conftest import EXAMPLE_SCHEMA, ids
from mmsearch.schema import parse_schema, validate_item
from mmsearch.search import SearchRequest


@pytest.fixture
def shop(mm):
    schema = copy.deepcopy(EXAMPLE_SCHEMA)
    schema["fields"].append({"name": "code", "type": "string", "filterable": True, "max_length": 5})
    mm.create_dataset("shop", schema, vector_dim=4)
    return mm


def _errors_by_index(report):
    return {e.index: e for e in report.errors}


def test_bad_items_are_reported_and_skipped_good_ones_import(shop):
    items = [
        {"item_id": "good1", "title": "red running shoe", "status": 1},
        {"item_id": "bad-type", "title": "blue hat", "status": "high"},
        {"title": "no primary key here", "status": 2},
        {"item_id": "bad-long", "title": "green scarf", "code": "ABCDEF"},
        {"item_id": "good2", "title": "yellow running jacket", "code": "ABCDE"},
    ]
    report = shop.import_items("shop", items)

    assert (report.total, report.imported, report.inserted, report.replaced, report.rejected) == (5, 2, 2, 0, 3)
    errs = _errors_by_index(report)
    assert set(errs) == {1, 2, 3}
    assert (errs[1].id, errs[1].field, errs[1].rule) == ("bad-type", "status", "type")
    assert "int32" in errs[1].message
    assert (errs[2].id, errs[2].field, errs[2].rule) == (None, "item_id", "required")
    assert (errs[3].id, errs[3].field, errs[3].rule) == ("bad-long", "code", "max_length")
    assert "max_length 5" in errs[3].message
    assert report.as_dict()["errors"][0] == {
        "index": 1, "id": "bad-type", "field": "status", "rule": "type", "message": errs[1].message,
    }

    assert shop.stats("shop")["rows"] == 2
    assert [d["item_id"] for d in shop.get("shop", ["good1", "bad-type", "bad-long", "good2"])] == [
        "good1", "good2",
    ]
    found = shop.search("shop", SearchRequest(text="running"))
    assert sorted(ids(found)) == ["good1", "good2"]
    assert shop.search("shop", SearchRequest(text="hat")).hits == []  # the rejected item is not indexed


def test_every_broken_rule_of_an_item_is_reported(shop):
    report = shop.import_items("shop", [{"status": "x", "price": "cheap", "code": "TOOLONG"}])
    assert report.rejected == 1 and report.imported == 0
    assert {(e.field, e.rule) for e in report.errors} == {
        ("status", "type"), ("price", "type"), ("code", "max_length"), ("item_id", "required"),
    }
    assert all(e.index == 0 for e in report.errors)


@pytest.mark.parametrize(
    ("item", "field", "rule"),
    [
        ({"item_id": "x" * 129}, "item_id", "max_length"),
        ({"item_id": ""}, "item_id", "required"),
        ({"item_id": 5}, "item_id", "type"),
        ({"item_id": "a", "status": 2**31}, "status", "range"),
        ({"item_id": "a", "status": True}, "status", "type"),
        ({"item_id": "a", "status": 1.5}, "status", "type"),
        ({"item_id": "a", "price": float("nan")}, "price", "range"),
        ({"item_id": "a", "on_sale": "yes"}, "on_sale", "type"),
        ({"item_id": "a", "tags": "sport"}, "tags", "type"),
        ({"item_id": "a", "tags": ["ok", 3]}, "tags", "type"),
        ({"item_id": "a", "sizes": [40, "41"]}, "sizes", "type"),
        ({"item_id": "a", "product": [1]}, "product", "type"),
        ({"item_id": "a", "title": 7}, "title", "type"),
    ],
)
def test_type_rules(example_schema, item, field, rule):
    valid, errors = validate_item(parse_schema(example_schema), item, 7, 4)
    assert valid is None
    assert [(e.index, e.field, e.rule) for e in errors] == [(7, field, rule)]
    assert errors[0].message.startswith(f"{field}:")


def test_integral_floats_are_stored_as_integers(shop):
    shop.import_items("shop", [{"item_id": "a", "status": 3.0, "sizes": [40.0, 41]}])
    doc = shop.get("shop", ["a"])[0]
    assert doc["status"] == 3 and isinstance(doc["status"], int)
    assert doc["sizes"] == [40, 41] and all(isinstance(x, int) for x in doc["sizes"])


def test_non_object_items_are_reported(shop):
    report = shop.import_items("shop", ["just a string", [1, 2], {"item_id": "ok"}])
    assert report.imported == 1 and report.rejected == 2
    assert [(e.index, e.field, e.rule) for e in report.errors] == [(0, None, "type"), (1, None, "type")]


def test_unknown_fields_are_kept(shop):
    item = {"item_id": "u1", "title": "running shoe", "brand_note": "official", "specs": {"weight_g": 320},
            "colours": ["red", "blue"]}
    report = shop.import_items("shop", [item])
    assert report.imported == 1 and report.errors == []
    assert shop.get("shop", ["u1"]) == [item]
    hit = shop.search("shop", SearchRequest(text="shoe")).hits[0]
    assert hit.fields["brand_note"] == "official"
    assert hit.fields["specs"] == {"weight_g": 320}
    assert hit.fields["colours"] == ["red", "blue"]


def test_image_values(shop):
    items = [
        {"item_id": "s", "images": "https://img.example.com/a.jpg"},
        {"item_id": "l", "images": ["https://img.example.com/a.jpg", "b/c.png"]},
        {"item_id": "o", "images": [{"image_url": "https://img.example.com/a.jpg"}, {"image_url": "d.jpg"}]},
        {"item_id": "bad-num", "images": 5},
        {"item_id": "bad-key", "images": [{"url": "https://img.example.com/a.jpg"}]},
        {"item_id": "bad-empty", "images": [""]},
        {"item_id": "bad-elem", "images": ["a.jpg", 3]},
    ]
    report = shop.import_items("shop", items)
    assert report.imported == 3
    assert {(e.id, e.field, e.rule) for e in report.errors} == {
        ("bad-num", "images", "type"), ("bad-key", "images", "type"), ("bad-empty", "images", "type"),
        ("bad-elem", "images", "type"),
    }
    docs = {d["item_id"]: d["images"] for d in shop.get("shop", ["s", "l", "o"])}
    assert docs == {it["item_id"]: it["images"] for it in items[:3]}


def test_geo_point_values(shop):
    items = [
        {"item_id": "g1", "location": {"latitude": 31.23, "longitude": 121.47}},
        {"item_id": "g2", "location": {"latitude": -90, "longitude": 180}},
        {"item_id": "g3", "location": {"latitude": "39.9", "longitude": "116.4"}},
        {"item_id": "lat", "location": {"latitude": 90.5, "longitude": 0}},
        {"item_id": "lon", "location": {"latitude": 0, "longitude": -180.01}},
        {"item_id": "half", "location": {"latitude": 10}},
        {"item_id": "word", "location": {"latitude": "north", "longitude": 0}},
        {"item_id": "list", "location": [31.2, 121.4]},
    ]
    report = shop.import_items("shop", items)
    assert report.imported == 3
    errs = {e.id: (e.field, e.rule) for e in report.errors}
    assert errs == {
        "lat": ("location", "range"), "lon": ("location", "range"), "half": ("location", "type"),
        "word": ("location", "range"), "list": ("location", "type"),
    }
    assert "latitude" in next(e for e in report.errors if e.id == "lat").message
    assert "longitude" in next(e for e in report.errors if e.id == "lon").message
    assert shop.stats("shop")["rows"] == 3


def test_reimport_replaces(shop):
    first = shop.import_items("shop", [
        {"item_id": "a", "title": "red running shoe", "category": "shoes", "status": 1},
        {"item_id": "b", "title": "blue hat", "category": "hats"},
    ])
    assert (first.inserted, first.replaced) == (2, 0)

    second = shop.import_items("shop", [{"item_id": "a", "title": "green winter coat", "category": "coats"}])
    assert (second.inserted, second.replaced, second.imported) == (0, 1, 1)
    assert shop.stats("shop")["rows"] == 2
    assert shop.get("shop", ["a"]) == [{"item_id": "a", "title": "green winter coat", "category": "coats"}]
    # the text index and the filter columns follow the new values
    assert ids(shop.search("shop", SearchRequest(text="coat"))) == ["a"]
    assert shop.search("shop", SearchRequest(text="running")).hits == []
    coats = {"op": "must", "field": "category", "conds": ["coats"]}
    shoes = {"op": "must", "field": "category", "conds": ["shoes"]}
    assert ids(shop.search("shop", SearchRequest(text="green coat", filter=coats))) == ["a"]
    assert shop.search("shop", SearchRequest(text="green coat", filter=shoes)).hits == []
    # a field left out of the new version is gone, so a filter on it no longer matches
    status = {"op": "must", "field": "status", "conds": [1]}
    assert shop.search("shop", SearchRequest(text="coat", filter=status)).hits == []


def test_same_id_twice_in_one_batch_keeps_the_last(shop):
    report = shop.import_items("shop", [
        {"item_id": "a", "title": "first"}, {"item_id": "b", "title": "other"}, {"item_id": "a", "title": "second"},
    ])
    assert report.imported == 3 and report.replaced == 1 and report.inserted == 2
    assert shop.stats("shop")["rows"] == 2
    assert shop.get("shop", ["a"])[0]["title"] == "second"


def test_batches_and_progress(shop):
    seen = []
    items = [{"item_id": f"i{i}", "title": f"item {i}"} for i in range(25)]
    items[12]["status"] = "bad"
    report = shop.import_items("shop", items, batch_size=10, on_progress=seen.append)
    assert sum(seen) == 25 and seen == [10, 10, 5]
    assert (report.total, report.imported, report.rejected) == (25, 24, 1)
    assert report.errors[0].index == 12
    assert shop.stats("shop")["rows"] == 24


def test_precomputed_vectors_are_normalised_and_checked(shop):
    report = shop.import_items("shop", [
        {"item_id": "v1", "_vector": [3, 4, 0, 0]},
        {"item_id": "v2", "_vector": [0.5, 0.5, 0.5, 0.5]},
        {"item_id": "short", "_vector": [1, 2, 3]},
        {"item_id": "long", "_vector": [1, 2, 3, 4, 5]},
        {"item_id": "zero", "_vector": [0, 0, 0, 0]},
        {"item_id": "text", "_vector": [1, "2", 3, 4]},
        {"item_id": "inf", "_vector": [1, float("inf"), 3, 4]},
        {"item_id": "novec", "title": "no vector at all"},
    ])
    assert report.imported == 3
    assert {e.id: (e.field, e.rule) for e in report.errors} == {
        "short": ("_vector", "dimension"), "long": ("_vector", "dimension"), "zero": ("_vector", "range"),
        "text": ("_vector", "type"), "inf": ("_vector", "type"),
    }
    # the vector is not a display field
    assert shop.get("shop", ["v1"]) == [{"item_id": "v1"}]
    assert shop.stats("shop")["vectors"] == 2

    table = lancedb.connect(str(shop.settings.tables_dir)).open_table("shop").to_arrow()
    vecs = dict(zip(table["_id"].to_pylist(), table["_vec"].to_pylist(), strict=True))
    assert vecs["novec"] is None
    np.testing.assert_allclose(vecs["v1"], [0.6, 0.8, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(vecs["v2"], [0.5, 0.5, 0.5, 0.5], rtol=1e-6)


def test_import_file_jsonl(shop, tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"item_id": "f1", "title": "running shoe"}\n'
        "{not json}\n"
        '{"item_id": "f2", "status": "x"}\n'
        '{"item_id": "f3", "title": "winter coat"}\n',
        encoding="utf-8",
    )
    report = shop.import_file("shop", path)
    assert (report.total, report.imported, report.rejected) == (4, 2, 2)
    assert [(e.index, e.rule) for e in report.errors] == [(1, "json"), (2, "type")]
    assert [d["item_id"] for d in shop.get("shop", ["f1", "f3"])] == ["f1", "f3"]
