"""Sorting by fields and object paths, paging through all candidates, and choosing output fields."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ALL, every_item, ids
from mmsearch.errors import InvalidArgument
from mmsearch.search import SearchOptions, SearchRequest

# -- sort ----------------------------------------------------------------------------------------------


def _expected_order(items, key, descending):
    """Items having the value sorted (ties keep no particular order here), then the rest."""
    def value(it):
        cur = it
        for part in key.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
        return cur
    present = [it for it in items if value(it) is not None]
    missing = {it["item_id"] for it in items if value(it) is None}
    present.sort(key=value, reverse=descending)
    return [value(it) for it in present], missing


@pytest.mark.parametrize("key", ["price", "status", "create_at", "product.price", "item_id"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sort_by_field(products, product_items, key, order):
    hits = every_item(products, "products", sort_by=key, sort_order=order)
    values, missing = _expected_order(product_items, key, order == "desc")
    assert len(hits) == len(product_items)
    got = []
    for h in hits[: len(values)]:
        cur = h.fields
        for part in key.split("."):
            cur = cur[part]
        got.append(cur)
    assert got == values
    assert {h.id for h in hits[len(values):]} == missing  # items without the field go last in both orders


def test_sort_missing_last_concretely(products):
    asc = ids_of(every_item(products, "products", sort_by="product.price", sort_order="asc"))
    desc = ids_of(every_item(products, "products", sort_by="product.price", sort_order="desc"))
    no_product_price = {"p05", "p08", "p11"}
    assert set(asc[-3:]) == set(desc[-3:]) == no_product_price
    assert asc[:2] == ["p06", "p03"] and desc[:2] == ["p07", "p04"]


def ids_of(hits):
    return [h.id for h in hits]


def test_sort_is_stable_for_equal_values(products):
    """Equal sort values keep the fused (score) order."""
    req = SearchRequest(text="shoe running", sort_by="status", sort_order="asc", page_size=50)
    unsorted = ids(products.search("products", SearchRequest(text="shoe running", page_size=50)))
    result = products.search("products", req)
    status = {h.id: h.fields.get("status") for h in result.hits}
    for s in {v for v in status.values() if v is not None}:
        same = [i for i in ids(result) if status[i] == s]
        assert same == [i for i in unsorted if i in same]


def test_sort_applies_with_text_query_and_filter(products):
    req = SearchRequest(text="shoe", sort_by="price", sort_order="asc",
                        filter={"op": "must", "field": "category", "conds": ["shoes"]})
    result = products.search("products", req)
    prices = [h.fields["price"] for h in result.hits]
    assert prices == sorted(prices) and len(prices) >= 4


@pytest.mark.parametrize(
    ("sort_by", "words"),
    [
        ("tags", ["'tags'", "is a array<string> field"]),
        ("product", ["'product'", "is a object field"]),
        ("title.x", ["'title.x'", "only object fields have paths"]),
        ("product.bad-name", ["'product.bad-name'", "dot-separated field names"]),
        ("weight", ["'weight'", "does not exist"]),
        ("nope.price", ["'nope.price'", "does not exist"]),
    ],
)
def test_sort_by_unsortable_field(products, sort_by, words):
    with pytest.raises(InvalidArgument) as exc:
        products.search("products", SearchRequest(text="shoe", sort_by=sort_by))
    assert exc.value.field == "sort_by"
    for word in words:
        assert word in exc.value.message


def test_any_basic_field_or_object_path_sorts_without_a_declaration(products):
    """The spec: any basic-type field and any object.field path is a sort key; `sortable` only adds a typed
    column (fast). Items without the value go last in either order."""
    result = products.search("products", SearchRequest(text="shoe bag dress coat", sort_by="title", sort_order="asc",
                                                       page_size=50))
    titles = [h.fields["title"] for h in result.hits]
    assert titles == sorted(titles) and len(titles) >= 5
    result = products.search("products", SearchRequest(text="shoe bag", sort_by="product.brand", page_size=50))
    brands = [h.fields.get("product", {}).get("brand") for h in result.hits]
    assert brands[0] == "none" and all(b is None for b in brands[1:])  # only p05 has one


def test_array_of_objects_imports_and_sorts_by_min_ascending_and_max_descending(mm):
    schema = {"fields": [
        {"name": "id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
        {"name": "skus", "type": "array<object>"},
    ]}
    mm.create_dataset("skus", schema, vector_dim=8)
    report = mm.import_items("skus", [
        {"id": "a", "title": "shoe", "skus": [{"price": 10, "size": 40}, {"price": 50, "size": 42}]},
        {"id": "b", "title": "shoe", "skus": [{"price": 20}, {"price": 30}]},
        {"id": "c", "title": "shoe", "skus": []},
        {"id": "d", "title": "shoe", "skus": {"price": 1}},
        {"id": "e", "title": "shoe", "skus": [{"price": 5}, "cheap"]},
    ])
    assert report.imported == 3
    assert [(e.index, e.field, e.rule) for e in report.errors] == [(3, "skus", "type"), (4, "skus", "type")]
    assert mm.get("skus", ["a"])[0]["skus"] == [{"price": 10, "size": 40}, {"price": 50, "size": 42}]
    asc = mm.search("skus", SearchRequest(text="shoe", sort_by="skus.price", sort_order="asc"))
    desc = mm.search("skus", SearchRequest(text="shoe", sort_by="skus.price", sort_order="desc"))
    assert ids(asc) == ["a", "b", "c"]  # 10 < 20; c has no price: last
    assert ids(desc) == ["a", "b", "c"]  # 50 > 30
    with pytest.raises(InvalidArgument, match="filterable applies"):
        mm.create_dataset("bad", {"fields": [{"name": "id", "type": "string", "primary_key": True},
                                             {"name": "skus", "type": "array<object>", "filterable": True}]})


def test_sort_order_must_be_asc_or_desc(products):
    with pytest.raises(InvalidArgument) as exc:
        products.search("products", SearchRequest(text="shoe", sort_by="price", sort_order="up"))
    assert exc.value.field == "sort_order"


# -- pages ---------------------------------------------------------------------------------------------------

def _walk(engine, make_request, options, page_size=3):
    pages, n = [], 1
    while True:
        result = engine.search("products", make_request(page_number=n, page_size=page_size), options)
        if not result.hits:
            return pages, result
        pages.append(result)
        n += 1
        assert n < 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"vector": np.ones(8), "channels": ("vlm",)},
        {"text": "shoe running 运动鞋"},
        {"text": "shoe", "vector": np.ones(8)},
        {"vector": np.ones(8), "sort_by": "price", "sort_order": "asc"},
        {"text": "shoe bag coat", "filter": {"op": "must_not", "field": "category", "conds": ["bags"]},
         "sort_by": "create_at"},
    ],
)
def test_walking_all_pages_yields_every_candidate_once(products, kwargs):
    full = products.search("products", SearchRequest(page_size=1_000, **kwargs), ALL)
    assert full.total_items == len(full.hits) > 3

    pages, after_end = _walk(products, lambda **p: SearchRequest(**kwargs, **p), ALL)
    walked = [i for page in pages for i in ids(page)]
    assert walked == ids(full)  # same order, no overlap, no gaps
    assert len(set(walked)) == len(walked)
    assert all(len(page.hits) == 3 for page in pages[:-1]) and 1 <= len(pages[-1].hits) <= 3
    assert all(page.total_items == full.total_items for page in pages)
    assert after_end.hits == [] and after_end.total_items == full.total_items


def test_total_items_counts_matching_candidates(products, product_items):
    result = products.search("products", SearchRequest(text="running", page_size=2))
    with_word = {it["item_id"] for it in product_items if "running" in it["title"].lower()}
    assert result.total_items == len(with_word) == 3
    assert len(result.hits) == 2

    sport = {"op": "must", "field": "tags", "conds": ["sport"]}
    filtered = products.search("products", SearchRequest(vector=np.ones(8), filter=sport, page_size=1), ALL)
    assert filtered.total_items == sum("sport" in it.get("tags", []) for it in product_items)


def test_page_far_beyond_the_end_is_empty(products):
    result = products.search("products", SearchRequest(text="shoe", page_number=1_000, page_size=50))
    assert result.hits == [] and result.total_items > 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"page_number": 0}, "page_number"),
        ({"page_number": -1}, "page_number"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": -5}, "page_size"),
        ({"page_number": 1.5}, "page_number"),
        ({"page_size": True}, "page_size"),
    ],
)
def test_bad_page_arguments(products, kwargs, field):
    with pytest.raises(InvalidArgument) as exc:
        products.search("products", SearchRequest(text="shoe", **kwargs))
    assert exc.value.field == field


def test_recall_size_bounds_the_candidates(products):
    small = products.search("products", SearchRequest(vector=np.ones(8), channels=("vlm",)),
                            SearchOptions(recall_size=4))
    assert small.total_items == 4 and len(small.hits) == 4


# -- output fields -------------------------------------------------------------------------------------------

def test_output_fields_top_level_only(products):
    req = SearchRequest(text="Air Max", output_fields=["title", "price", "product.price", "nope"])
    hit = products.search("products", req).hits[0]
    assert hit.id == "p01"
    assert hit.fields == {"title": "Nike Air Max 90 running shoe", "price": 899.0}


def test_output_fields_object_is_returned_whole(products):
    hit = products.search("products", SearchRequest(text="Air Max", output_fields=["product", "brand_note"])).hits[0]
    assert hit.fields == {"product": {"price": 899.0}, "brand_note": "official store"}


def test_output_fields_absent_gives_all_fields(products, product_items):
    expected = {k: v for k, v in product_items[0].items() if k != "_vector"}
    for output_fields in (None, []):
        hit = products.search("products", SearchRequest(text="Air Max", output_fields=output_fields)).hits[0]
        assert hit.fields == expected
    assert products.get("products", ["p01"]) == [expected]


def test_output_fields_only_unknown_names(products):
    hits = products.search("products", SearchRequest(text="shoe", output_fields=["nope", "product.price"])).hits
    assert hits and all(h.fields == {} for h in hits)


def test_output_fields_do_not_change_later_results(products):
    products.search("products", SearchRequest(text="Air Max", output_fields=["title"]))
    assert "price" in products.search("products", SearchRequest(text="Air Max")).hits[0].fields


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_numeric_and_mixed_sort_keys_order_alike(order):
    """Numbers sort by float keys without a key function; with a string among them the general path runs. Both
    keep equal values in fused order and put missing values last."""
    from mmsearch.search.order import sort_hits
    from mmsearch.search.types import SearchHit

    rng = np.random.default_rng(5)
    values = [int(v) for v in rng.integers(0, 6, 60)] + [2.5, True, False, None, None]
    hits = [SearchHit(f"h{n}", {} if v is None else {"k": v}, 0.0) for n, v in enumerate(values)]
    got = [h.id for h in sort_hits(hits, "k", order)]
    present = [(float(v), n) for n, v in enumerate(values) if v is not None]
    present.sort(key=lambda p: -p[0] if order == "desc" else p[0])  # stable: ties keep their position
    assert got == [f"h{n}" for _, n in present] + ["h63", "h64"]
    mixed = [*hits, SearchHit("s", {"k": "text"}, 0.0)]
    got_mixed = [h.id for h in sort_hits(mixed, "k", order)]
    assert got_mixed == (["s", *got[:-2]] if order == "desc" else [*got[:-2], "s"]) + ["h63", "h64"]
