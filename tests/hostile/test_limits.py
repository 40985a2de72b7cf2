"""Hostile sizes and values in search requests: whole-filter limits (a 40,000-condition `or` crashed the engine),
range bounds outside a field's integer type (were 500s), query text length, output_fields, sort_by and paging.
Each is refused with a 400 naming the field and the rule, before the engine sees it, or answered normally."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from api_fixtures import Api, start, stop
from conftest import EXAMPLE_SCHEMA, ids
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.errors import InvalidArgument
from mmsearch.schema import parse_schema
from mmsearch.schema.filters import FilterLimits, Or, parse_filter
from mmsearch.search import SearchOptions, SearchRequest

INT32_MIN, INT32_MAX, INT64_MIN, INT64_MAX = -(2**31), 2**31 - 1, -(2**63), 2**63 - 1
SCHEMA = parse_schema(EXAMPLE_SCHEMA)
# values at the edges of each type, to check bounds there select exactly what they should
EVENTS_SCHEMA = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                            {"name": "title", "type": "string", "searchable": True},
                            {"name": "n", "type": "int32", "filterable": True},
                            {"name": "ts", "type": "int64", "filterable": True},
                            {"name": "score", "type": "float", "filterable": True}]}
EVENTS = [{"id": "e0", "n": INT32_MIN, "ts": INT64_MIN, "score": -1.7976931348623157e308},
          {"id": "e1", "n": -1, "ts": -5, "score": -1.5},
          {"id": "e2", "n": 0, "ts": 0, "score": 0.0},
          {"id": "e3", "n": 1, "ts": 7, "score": 2.5},
          {"id": "e4", "n": INT32_MAX, "ts": INT64_MAX, "score": 1.7976931348623157e308}]
EVENTS_KEY: dict[str, str] = {}


def flat_or(n: int) -> dict:
    """An `or` of n simple conditions: the shape that crashed the engine at 40,000 (a 2 MB body)."""
    return {"op": "or", "conds": [{"op": "must", "field": "status", "conds": [i % 3 + 1]} for i in range(n)]}


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    a = start(tmp_path_factory.mktemp("limits"), product_items)
    a.mm.create_dataset("events", EVENTS_SCHEMA, vector_dim=8)
    report = a.mm.import_items("events", [{**e, "title": f"event {e['id']}"} for e in EVENTS])
    assert report.inserted == len(EVENTS), report.as_dict()
    a.mm.catalog.apps.create("ev", ["events"])
    EVENTS_KEY["key"] = a.mm.catalog.keys.create(["ev"], name="events").key
    yield a
    stop(a)


def search_body(**extra) -> dict:
    return {"query": {"text": "shoe"}, "dataset_id": "products", **extra}


def refused(api: Api, body: dict, field: str, *phrases: str, app: str = "shop") -> dict:
    r = api.search(body, app=app, key=EVENTS_KEY["key"] if app == "ev" else None)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "InvalidArgument" and err["field"] == field, err
    for phrase in phrases:
        assert phrase in err["message"], err
    return err


# -- whole-filter limits ------------------------------------------------------------------------------------
def test_parse_filter_counts_the_whole_tree():
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(flat_or(40_000), SCHEMA)
    assert caught.value.field == "filter"
    assert caught.value.message == ("filter: at most 1024 conditions in a filter (each must, must_not, range, and, "
                                    "or counts), got 40001")
    assert isinstance(parse_filter(flat_or(1_023), SCHEMA), Or)  # 1,023 leaves + the `or` = the limit


def test_parse_filter_takes_its_limits_from_the_caller():
    nested = {"op": "and", "conds": [flat_or(3), flat_or(3)]}  # 9 objects in two levels
    with pytest.raises(InvalidArgument, match=r"at most 8 conditions in a filter.*got 9"):
        parse_filter(nested, SCHEMA, limits=FilterLimits(max_conditions=8))
    assert parse_filter(nested, SCHEMA, limits=FilterLimits(max_conditions=9)) is not None

    many = {"op": "or", "conds": [{"op": "must", "field": "sizes", "conds": list(range(i * 1000, i * 1000 + 1000))}
                                  for i in range(11)]}  # 11 x 1,000 values, each conds within its own 1,024
    with pytest.raises(InvalidArgument, match="at most 10000 values across all must/must_not conds, got 11000"):
        parse_filter(many, SCHEMA)
    assert parse_filter(many, SCHEMA, limits=FilterLimits(max_values=11_000)) is not None

    long = {"op": "must", "field": "category", "conds": ["x" * 600, "y" * 600]}
    with pytest.raises(InvalidArgument, match="at most 1000 characters across all string values, got 1200"):
        parse_filter(long, SCHEMA, limits=FilterLimits(max_chars=1_000))


def test_settings_set_the_filter_and_query_limits(tmp_path, product_items):
    mm = MMSearch(Settings(home=tmp_path, max_filter_conditions=4, max_filter_values=5, max_query_chars=10))
    mm.create_dataset("products", copy.deepcopy(EXAMPLE_SCHEMA), vector_dim=8)
    mm.import_items("products", copy.deepcopy(product_items))
    assert ids(mm.search("products", SearchRequest(text="shoe", filter=flat_or(3))))
    with pytest.raises(InvalidArgument, match=r"at most 4 conditions in a filter.*got 5"):
        mm.search("products", SearchRequest(text="shoe", filter=flat_or(4)))
    with pytest.raises(InvalidArgument, match=r"at most 5 values.*got 6"):
        mm.search("products", SearchRequest(text="shoe", filter={"op": "must", "field": "sizes",
                                                                  "conds": [1, 2, 3, 4, 5, 6]}))
    with pytest.raises(InvalidArgument) as caught:
        mm.search("products", SearchRequest(text="running shoe"))
    assert (caught.value.field, caught.value.message) == ("query.text", "query.text: at most 10 characters, got 12")


def test_a_filter_at_the_limit_runs_in_the_engine(products):
    """1,024 conditions is the default limit: the engine answers it (and answers it right)."""
    req = SearchRequest(vector=np.ones(8), filter=flat_or(1_023), channels=("vlm",), page_size=100)
    found = products.search("products", req, SearchOptions(recall_size=1_000)).hits
    assert {h.id for h in found} == {"p01", "p02", "p03", "p04", "p05", "p06", "p08", "p09", "p10", "p11", "p12"}


def test_a_40000_condition_filter_is_a_400_and_the_server_lives_on(api: Api):
    err = refused(api, search_body(filter=flat_or(40_000)), "filter", "at most 1024 conditions", "got 40001")
    assert len(err["message"]) < 200
    refused(api, search_body(filter=flat_or(1_024)), "filter", "got 1025")
    assert api.ok(search_body(filter=flat_or(1_023)))["result"]["search_results"]
    assert api.client.get("/healthz").status_code == 200


# -- range bounds against the field's type ---------------------------------------------------------------------
def events(api: Api, f: dict) -> set[str]:
    body = {"query": {"text": "event"}, "dataset_id": "events", "filter": f, "page_size": 10}
    r = api.search(body, app="ev", key=EVENTS_KEY["key"])
    assert r.status_code == 200, r.text
    return {h["_id"] for h in r.json()["result"]["search_results"]}


@pytest.mark.parametrize(("field", "bound", "value", "shown"), [
    ("n", "lte", 3_000_000_000, "3000000000 is outside the int32 range [-2147483648, 2147483647]"),
    ("n", "gte", -3_000_000_000, "-3000000000 is outside the int32 range"),
    ("n", "lte", 1e300, "1e+300 is outside the int32 range"),
    ("n", "gt", -1e300, "-1e+300 is outside the int32 range"),
    ("n", "gte", 2147483647.5, "2147483647.5 is outside the int32 range"),
    ("ts", "lte", 2**63, "9223372036854775808 is outside the int64 range"),
    ("ts", "gte", -(2**63) - 1, "-9223372036854775809 is outside the int64 range"),
    ("ts", "lt", 1e300, "1e+300 is outside the int64 range"),
    ("ts", "lt", 2.0**63, "9.223372036854776e+18 is outside the int64 range"),
])
def test_range_bounds_outside_an_integer_type_are_400(api: Api, field, bound, value, shown):
    refused(api, {"query": {"text": "event"}, "dataset_id": "events",
                  "filter": {"op": "range", "field": field, bound: value}}, f"filter.{bound}", shown, app="ev")
    nested = {"op": "and", "conds": [{"op": "must", "field": "n", "conds": [1]},
                                     {"op": "range", "field": field, bound: value}]}
    refused(api, {"query": {"text": "event"}, "dataset_id": "events", "filter": nested},
            f"filter.conds[1].{bound}", shown, app="ev")
    refused(api, search_body(filter={"op": "range", "field": "status", "lte": 3_000_000_000}), "filter.lte",
            "outside the int32 range")


def test_range_bounds_at_the_edges_of_the_integer_types_select_exactly(api: Api):
    everything = {"e0", "e1", "e2", "e3", "e4"}
    assert events(api, {"op": "range", "field": "n", "gte": INT32_MIN, "lte": INT32_MAX}) == everything
    assert events(api, {"op": "range", "field": "n", "gt": INT32_MIN, "lt": INT32_MAX}) == {"e1", "e2", "e3"}
    assert events(api, {"op": "range", "field": "n", "gte": INT32_MAX}) == {"e4"}
    assert events(api, {"op": "range", "field": "n", "gt": 2147483646.5}) == {"e4"}
    assert events(api, {"op": "range", "field": "n", "lte": -2147483647.5}) == {"e0"}
    assert events(api, {"op": "range", "field": "ts", "gte": INT64_MIN, "lte": INT64_MAX}) == everything
    assert events(api, {"op": "range", "field": "ts", "gt": INT64_MIN, "lt": INT64_MAX}) == {"e1", "e2", "e3"}
    assert events(api, {"op": "range", "field": "ts", "lte": INT64_MIN}) == {"e0"}
    assert events(api, {"op": "range", "field": "ts", "gte": INT64_MAX}) == {"e4"}
    assert events(api, {"op": "range", "field": "ts", "lt": 9.2e18, "gt": -9.2e18}) == {"e1", "e2", "e3"}


@pytest.mark.parametrize(("bound", "value", "expected"), [
    ("lte", 1e300, {"e1", "e2", "e3", "e0"}), ("gte", 1e300, {"e4"}),
    ("gte", -1e300, {"e1", "e2", "e3", "e4"}), ("lt", -1e300, {"e0"}),
    ("lte", 1.7976931348623157e308, {"e0", "e1", "e2", "e3", "e4"}), ("gt", 1.7976931348623157e308, set()),
    ("gte", -1.7976931348623157e308, {"e0", "e1", "e2", "e3", "e4"}), ("lt", -1.7976931348623157e308, set()),
    ("gt", 5e-324, {"e3", "e4"}), ("lt", -5e-324, {"e0", "e1"}),
])
def test_any_finite_double_bounds_a_float_field(api: Api, bound, value, expected):
    assert events(api, {"op": "range", "field": "score", bound: value}) == expected


@pytest.mark.parametrize(("field", "value"), [("ts", 2**63), ("ts", -(2**63) - 1), ("ts", 2.0**63),
                                              ("n", 2**31), ("n", -(2**31) - 1)])
def test_match_values_outside_an_integer_type_are_400(api: Api, field, value):
    for op in ("must", "must_not"):
        body = {"query": {"text": "event"}, "dataset_id": "events",
                "filter": {"op": op, "field": field, "conds": [1, value]}}
        refused(api, body, "filter.conds[1]", "is outside the int", app="ev")
    refused(api, search_body(filter={"op": "must", "field": "sizes", "conds": [2**63]}), "filter.conds[0]",
            "outside the int64 range")
    assert events(api, {"op": "must", "field": "ts", "conds": [INT64_MIN, INT64_MAX]}) == {"e0", "e4"}


# -- query text, output_fields, sort_by, paging -----------------------------------------------------------------
def test_query_text_is_at_most_1000_characters(api: Api):
    assert api.search(search_body(query={"text": "鞋" * 1_000})).status_code == 200
    err = refused(api, search_body(query={"text": "鞋" * 1_001}), "query.text")
    assert err["message"] == "query.text: at most 1000 characters, got 1001"
    big = refused(api, search_body(query={"text": "running shoe " * 80_000}), "query.text", "got 1040000")
    assert len(big["message"]) < 100


def test_query_text_limit_holds_for_library_callers(products):
    with pytest.raises(InvalidArgument, match=r"query.text: at most 1000 characters, got 5000"):
        products.search("products", SearchRequest(text="x" * 5_000))


def test_output_fields_and_sort_by_are_bounded(api: Api):
    ok = api.ok(search_body(output_fields=["title"] * 256))
    assert all(set(h["display_fields"]) <= {"title"} for h in ok["result"]["search_results"])
    refused(api, search_body(output_fields=["title"] * 257), "output_fields", "at most 256 names, got 257")
    err = refused(api, search_body(sort_by="a" * 1_000_000), "sort_by", "at most 256 characters, got 1000000")
    assert len(err["message"]) < 100
    refused(api, search_body(sort_by="price" + "x" * 200), "sort_by", "does not exist")


@pytest.mark.parametrize("page_number", [10**9, 2**63, 10**30])
def test_huge_page_numbers_answer_an_empty_page(api: Api, page_number):
    body = search_body(page_number=page_number, page_size=10)
    r = api.search(body)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["search_results"] == [] and r.json()["total_items"] > 0
