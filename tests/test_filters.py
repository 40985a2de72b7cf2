"""The filter language: parsing and errors, semantics inside the store, literal safety, no starvation."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import EXAMPLE_SCHEMA, every_item, ids, oracle
from mmsearch.errors import InvalidArgument
from mmsearch.schema import parse_schema
from mmsearch.schema.filters import And, Match, Or, Range, parse_filter
from mmsearch.search import SearchOptions, SearchRequest

SCHEMA = parse_schema(EXAMPLE_SCHEMA)


# -- parsing ------------------------------------------------------------------------------------------

def test_parse_builds_a_typed_tree():
    tree = parse_filter({"op": "and", "conds": [
        {"op": "must", "field": "category", "conds": ["shoes", "bags", "shoes"]},
        {"op": "or", "conds": [
            {"op": "range", "field": "price", "gte": 10, "lt": 99.5},
            {"op": "must_not", "field": "tags", "conds": ["sale"]},
        ]},
    ]}, SCHEMA)
    assert tree == And((
        Match("category", "string", ("shoes", "bags")),
        Or((Range("price", "float", gte=10, lt=99.5), Match("tags", "array<string>", ("sale",), negate=True))),
    ))
    assert parse_filter(None, SCHEMA) is None
    assert parse_filter({}, SCHEMA) is None


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"op": "must", "field": "status", "conds": ["1"]}, "filter.conds[0]", ["'1'", "status", "int32"]),
        ({"op": "must", "field": "status", "conds": [1, True]}, "filter.conds[1]", ["status"]),
        ({"op": "must", "field": "sizes", "conds": [40, "41"]}, "filter.conds[1]", ["sizes"]),
        ({"op": "must", "field": "on_sale", "conds": [1]}, "filter.conds[0]", ["on_sale", "bool"]),
        ({"op": "must", "field": "category", "conds": [5]}, "filter.conds[0]", ["category", "string"]),
        ({"op": "must", "field": "status", "conds": [2**31]}, "filter.conds[0]", ["status", "range"]),
        ({"op": "must", "field": "title", "conds": ["x"]}, "filter.field", ["'title'", "not filterable"]),
        ({"op": "must", "field": "product", "conds": ["x"]}, "filter.field", ["'product'", "not filterable"]),
        ({"op": "must", "field": "colour", "conds": ["x"]}, "filter.field", ["'colour'", "does not exist"]),
        ({"op": "range", "field": "nope", "gte": 1}, "filter.field", ["'nope'", "does not exist"]),
        ({"op": "range", "field": "category", "gte": 1}, "filter.field", ["'category'", "range"]),
        ({"op": "range", "field": "tags", "gte": 1}, "filter.field", ["'tags'", "range"]),
        ({"op": "range", "field": "price", "gte": "10"}, "filter.gte", ["'10'", "number"]),
        ({"op": "range", "field": "price", "lt": float("inf")}, "filter.lt", ["finite"]),
        ({"op": "range", "field": "price"}, "filter", ["at least one of"]),
        ({"op": "range", "field": "price", "conds": [1]}, "filter.conds", ["range"]),
        ({"op": "must", "field": "price", "conds": [1.5]}, "filter.field", ["'price'", "use range"]),
        ({"op": "must", "field": "category", "conds": []}, "filter.conds", ["non-empty"]),
        ({"op": "must_not", "field": "category"}, "filter.conds", ["non-empty"]),
        ({"op": "must", "field": "category", "conds": "shoes"}, "filter.conds", ["non-empty"]),
        ({"op": "must", "field": "status", "conds": [1], "gte": 1}, "filter.gte", ["range"]),
        ({"op": "must", "conds": ["x"]}, "filter.field", ["field name"]),
        ({"op": "and", "conds": []}, "filter.conds", ["'and'", "non-empty"]),
        ({"op": "or"}, "filter.conds", ["'or'"]),
        ({"op": "like", "field": "category", "conds": ["x"]}, "filter.op", ["'like'", "not an operator"]),
        ({"field": "category", "conds": ["x"]}, "filter.op", ["None", "not an operator"]),
        ({"op": "must", "field": "category", "conds": ["x"], "value": 1}, "filter.value", ["unknown key"]),
        ("category = 'x'", "filter", ["object"]),
        ({"op": "and", "conds": [
            {"op": "must", "field": "category", "conds": ["x"]},
            {"op": "or", "conds": [{"op": "must", "field": "status", "conds": ["1"]}]},
        ]}, "filter.conds[1].conds[0].conds[0]", ["status"]),
        ({"op": "or", "conds": [{"op": "and", "conds": [{"op": "nand"}]}]}, "filter.conds[0].conds[0].op", ["nand"]),
    ],
)
def test_invalid_filters_name_the_field_and_path(raw, path, words):
    with pytest.raises(InvalidArgument) as exc:
        parse_filter(raw, SCHEMA)
    err = exc.value
    assert err.field == path
    assert err.message.startswith(f"{path}:")
    for word in words:
        assert word in err.message


def test_integral_floats_are_accepted_for_integer_fields():
    assert parse_filter({"op": "must", "field": "status", "conds": [2.0]}, SCHEMA) == Match("status", "int32", (2,))


def test_too_deep_filters_are_refused():
    raw = {"op": "must", "field": "category", "conds": ["x"]}
    for _ in range(40):
        raw = {"op": "and", "conds": [raw]}
    with pytest.raises(InvalidArgument, match="nest at most"):
        parse_filter(raw, SCHEMA)


def test_search_reports_filter_errors(products):
    bad = {"op": "must", "field": "status", "conds": ["active"]}
    with pytest.raises(InvalidArgument) as exc:
        products.search("products", SearchRequest(text="shoe", filter=bad))
    assert exc.value.field == "filter.conds[0]" and "status" in exc.value.message


# -- semantics, evaluated inside the store ----------------------------------------------------------

def _in(field, values):
    return lambda it: field in it and it[field] in values


def _any(field, values):
    return lambda it: any(v in values for v in it.get(field) or [])


def _between(field, lo=None, hi=None, lo_open=False, hi_open=False):
    def pred(it):
        if field not in it:
            return False
        v = it[field]
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return not (hi is not None and (v >= hi if hi_open else v > hi))
    return pred


CASES = [
    # scalar must / must_not; items without the field fail must and pass must_not
    ({"op": "must", "field": "category", "conds": ["shoes"]}, _in("category", {"shoes"})),
    ({"op": "must", "field": "category", "conds": ["shoes", "bags", "nope"]}, _in("category", {"shoes", "bags"})),
    ({"op": "must_not", "field": "category", "conds": ["shoes"]}, lambda it: not _in("category", {"shoes"})(it)),
    ({"op": "must", "field": "status", "conds": [1, 3]}, _in("status", {1, 3})),
    ({"op": "must_not", "field": "status", "conds": [2]}, lambda it: it.get("status") != 2),
    ({"op": "must", "field": "on_sale", "conds": [True]}, lambda it: it.get("on_sale") is True),
    ({"op": "must", "field": "on_sale", "conds": [False]}, lambda it: it.get("on_sale") is False),
    ({"op": "must_not", "field": "on_sale", "conds": [True]}, lambda it: it.get("on_sale") is not True),
    # arrays: must = any element in conds; must_not = no element in conds
    ({"op": "must", "field": "tags", "conds": ["running"]}, _any("tags", {"running"})),
    ({"op": "must", "field": "tags", "conds": ["kids", "leather"]}, _any("tags", {"kids", "leather"})),
    ({"op": "must_not", "field": "tags", "conds": ["sport"]}, lambda it: not _any("tags", {"sport"})(it)),
    ({"op": "must", "field": "sizes", "conds": [42, 36]}, _any("sizes", {42, 36})),
    ({"op": "must_not", "field": "sizes", "conds": [40, 41, 42]}, lambda it: not _any("sizes", {40, 41, 42})(it)),
    # ranges, alone and combined; integer fields with fractional bounds
    ({"op": "range", "field": "price", "gte": 599.5}, _between("price", lo=599.5)),
    ({"op": "range", "field": "price", "gt": 599.5}, _between("price", lo=599.5, lo_open=True)),
    ({"op": "range", "field": "price", "lte": 259}, _between("price", hi=259)),
    ({"op": "range", "field": "price", "lt": 259}, _between("price", hi=259, hi_open=True)),
    ({"op": "range", "field": "price", "gte": 199, "lt": 899}, _between("price", 199, 899, hi_open=True)),
    ({"op": "range", "field": "price", "gt": 199, "lte": 899}, _between("price", 199, 899, lo_open=True)),
    ({"op": "range", "field": "price", "gt": 5000}, lambda it: False),
    ({"op": "range", "field": "status", "gt": 1.5, "lt": 3}, _in("status", {2})),
    ({"op": "range", "field": "status", "gte": 1.5, "lte": 2.5}, _in("status", {2})),
    ({"op": "range", "field": "status", "gte": 2}, _in("status", {2, 3})),
    ({"op": "range", "field": "status", "lt": 2}, _in("status", {1})),
    # and / or, and nesting three levels deep
    ({"op": "and", "conds": [
        {"op": "must", "field": "category", "conds": ["shoes"]},
        {"op": "range", "field": "price", "lt": 800},
    ]}, lambda it: it.get("category") == "shoes" and _between("price", hi=800, hi_open=True)(it)),
    ({"op": "or", "conds": [
        {"op": "must", "field": "category", "conds": ["bags"]},
        {"op": "must", "field": "tags", "conds": ["winter"]},
    ]}, lambda it: it.get("category") == "bags" or _any("tags", {"winter"})(it)),
    ({"op": "or", "conds": [
        {"op": "and", "conds": [
            {"op": "must", "field": "category", "conds": ["shoes"]},
            {"op": "or", "conds": [
                {"op": "must", "field": "sizes", "conds": [30]},
                {"op": "and", "conds": [
                    {"op": "range", "field": "price", "gte": 1000},
                    {"op": "must_not", "field": "on_sale", "conds": [True]},
                ]},
            ]},
        ]},
        {"op": "must_not", "field": "category", "conds": ["shoes", "bags", "dress", "coats", "socks"]},
    ]}, lambda it: (
        it.get("category") == "shoes"
        and (_any("sizes", {30})(it) or (it.get("price", 0) >= 1000 and it.get("on_sale") is not True))
    ) or it.get("category") not in {"shoes", "bags", "dress", "coats", "socks"}),
]


@pytest.mark.parametrize(("raw", "pred"), CASES)
def test_filter_semantics(products, product_items, raw, pred):
    expected = oracle(product_items, pred)
    assert {h.id for h in every_item(products, "products", raw)} == expected
    info = products.dataset("products")
    assert products.store.count(info, parse_filter(raw, info.schema)) == len(expected)


def test_semantics_cover_both_outcomes(product_items):
    """Guard the table above: each case must keep some items and drop others (except the empty range)."""
    for raw, pred in CASES:
        kept = oracle(product_items, pred)
        assert len(kept) < len(product_items), raw
        assert kept or raw.get("gt") == 5000, raw


def test_missing_field_items(products, product_items):
    no_category = oracle(product_items, lambda it: "category" not in it)
    no_tags = oracle(product_items, lambda it: "tags" not in it)
    assert no_category == {"p09"} and no_tags == {"p09", "p12"}
    assert no_category <= {h.id for h in every_item(products, "products",
                                                    {"op": "must_not", "field": "category", "conds": ["x"]})}
    assert no_tags <= {h.id for h in every_item(products, "products",
                                                {"op": "must_not", "field": "tags", "conds": ["sport"]})}
    assert not no_tags & {h.id for h in every_item(products, "products",
                                                   {"op": "must", "field": "tags", "conds": ["sport"]})}


def test_filter_applies_to_the_text_channel(products):
    sport = {"op": "must", "field": "tags", "conds": ["sport"]}
    found = products.search("products", SearchRequest(text="shoe", filter=sport, channels=("text",)))
    assert sorted(ids(found)) == ["p01", "p06"]


# -- literal safety -----------------------------------------------------------------------------------

TRICKY = ["it's", "back\\slash", "100%", "a_b", "x' OR 1=1 --", "''", "\\'", "%", "_"]
DECOYS = ["its", "backslash", "back\\\\slash", "100", "1000%", "100x", "a-b", "axb", "ab", "x", "plain", "a", "'"]


@pytest.fixture(scope="module")
def tricky(tmp_path_factory):
    from mmsearch.config import Settings
    from mmsearch.core import MMSearch

    engine = MMSearch(Settings(home=tmp_path_factory.mktemp("tricky")))
    engine.create_dataset("t", {"fields": [
        {"name": "id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
        {"name": "category", "type": "string", "filterable": True},
        {"name": "labels", "type": "array<string>", "filterable": True},
    ]}, vector_dim=4)
    values = TRICKY + DECOYS
    engine.import_items("t", [
        {"id": f"v{i}", "title": "thing", "category": v, "labels": [v, "common"], "_vector": [1, 0, 0, 0]}
        for i, v in enumerate(values)
    ])
    return engine, {v: f"v{i}" for i, v in enumerate(values)}


@pytest.mark.parametrize("value", TRICKY)
@pytest.mark.parametrize("field", ["category", "labels"])
def test_values_are_literals(tricky, value, field):
    engine, id_of = tricky
    everything = set(id_of.values())
    must = {h.id for h in every_item(engine, "t", {"op": "must", "field": field, "conds": [value]})}
    assert must == {id_of[value]}
    must_not = {h.id for h in every_item(engine, "t", {"op": "must_not", "field": field, "conds": [value]})}
    assert must_not == everything - {id_of[value]}
    by_text = engine.search("t", SearchRequest(
        text="thing", filter={"op": "must", "field": field, "conds": [value]}, channels=("text",)
    ))
    assert ids(by_text) == [id_of[value]]


# -- filters run before ranking: a small recall still reaches low-ranked matches ------------------------

@pytest.fixture
def crowded(mm):
    """40 common items that rank high for the query, 4 rare ones that rank low on both channels."""
    mm.create_dataset("c", {"fields": [
        {"name": "id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
        {"name": "kind", "type": "string", "filterable": True},
        {"name": "rank", "type": "int32", "filterable": True},
    ]}, vector_dim=8)
    rng = np.random.default_rng(7)
    query = np.ones(8)
    items = []
    for i in range(44):
        rare = i >= 40
        noise = 2.0 if rare else 0.05
        items.append({
            "id": f"{'r' if rare else 'c'}{i:02d}",
            "title": "shoe filler filler filler filler filler" if rare else "shoe shoe shoe",
            "kind": "rare" if rare else "common",
            "rank": i,
            "_vector": (query + rng.normal(0, noise, 8) - (3 * query if rare else 0)).tolist(),
        })
    mm.import_items("c", items)
    return mm, query


def test_no_starvation_text_channel(crowded):
    mm, _ = crowded
    rare = {"op": "must", "field": "kind", "conds": ["rare"]}
    unfiltered = mm.search("c", SearchRequest(text="shoe", channels=("text",)), SearchOptions(recall_size=5))
    assert all(i.startswith("c") for i in ids(unfiltered))  # the rare ones rank low
    found = mm.search("c", SearchRequest(text="shoe", filter=rare, channels=("text",)), SearchOptions(recall_size=5))
    assert sorted(ids(found)) == ["r40", "r41", "r42", "r43"]
    assert found.total_items == 4


def test_no_starvation_vector_channel(crowded):
    mm, query = crowded
    rare = {"op": "must", "field": "kind", "conds": ["rare"]}
    unfiltered = mm.search("c", SearchRequest(vector=query, channels=("vlm",)), SearchOptions(recall_size=5))
    assert all(i.startswith("c") for i in ids(unfiltered))
    found = mm.search("c", SearchRequest(vector=query, filter=rare, channels=("vlm",)), SearchOptions(recall_size=5))
    assert sorted(ids(found)) == ["r40", "r41", "r42", "r43"]


def test_no_starvation_hybrid_with_range(crowded):
    mm, query = crowded
    late = {"op": "range", "field": "rank", "gte": 41}
    found = mm.search("c", SearchRequest(text="shoe", vector=query, filter=late), SearchOptions(recall_size=3))
    assert sorted(ids(found)) == ["r41", "r42", "r43"]
    assert all(set(h.recall) == {"text", "vlm"} for h in found.hits)
