"""Application ranking settings through HTTP: rerank info, location boost and demotion."""

from __future__ import annotations

import pytest

from api_fixtures import Api, start, stop

STORES_SCHEMA = {"fields": [
    {"name": "id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "where", "type": "geo_point"},
]}
STORES = [
    {"id": "sh", "title": "running shoe store", "where": {"latitude": 31.2304, "longitude": 121.4737}},  # Shanghai
    {"id": "bj", "title": "running shoe store with a long list of other words in its name",
     "where": {"latitude": 39.9042, "longitude": 116.4074}},  # Beijing
    {"id": "nowhere", "title": "running shoe store online only, no address"},
]
NEAR_BEIJING = {"latitude": "39.91", "longitude": "116.40"}


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    a = start(tmp_path_factory.mktemp("ranking"), product_items, config={"rerank_depth": 3})
    a.mm.create_dataset("stores", STORES_SCHEMA, vector_dim=8)
    assert a.mm.import_items("stores", STORES).rejected == 0
    loc = {"field": "where", "radius_km": 100, "decay": "gauss", "weight": 0.5}
    a.mm.catalog.apps.create("near", ["stores"], {"location": {**loc, "mode": "boost"}})
    a.mm.catalog.apps.create("far", ["stores"], {"location": {**loc, "mode": "demote"}})
    a.mm.catalog.apps.create("plain", ["products"], {"rerank": False})
    a.extra_key = a.mm.catalog.keys.create(["near", "far", "plain"]).key  # type: ignore[attr-defined]
    yield a
    stop(a)


def ids(body: dict) -> list[str]:
    return [r["_id"] for r in body["result"]["search_results"]]


def run(api: Api, app: str, body: dict) -> dict:
    r = api.search(body, app=app, key=api.extra_key)  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return r.json()


def test_rerank_info_for_the_top_depth_only(api: Api):
    body = api.ok({"query": {"text": "shoe running bag coat"}, "dataset_id": "products", "page_size": 6})
    infos = [r["rerank_info"] for r in body["result"]["search_results"]]
    assert [i["is_reranked"] for i in infos] == [True, True, True, False, False, False]
    assert all(0.0 <= i["rerank_score"] <= 1.0 for i in infos[:3])
    assert all("rerank_score" not in i for i in infos[3:])
    scores = [i["rerank_score"] for i in infos[:3]]
    assert scores == sorted(scores, reverse=True)
    page2 = api.ok({"query": {"text": "shoe running bag coat"}, "dataset_id": "products", "page_size": 3,
                    "page_number": 2})
    assert [r["rerank_info"]["is_reranked"] for r in page2["result"]["search_results"]] == [False] * 3


def test_rerank_off(api: Api):
    body = run(api, "plain", {"query": {"text": "running shoe"}, "dataset_id": "products"})
    assert body["result"]["search_results"]
    assert all(r["rerank_info"] == {"is_reranked": False} for r in body["result"]["search_results"])
    scores = [r["score"] for r in body["result"]["search_results"]]
    assert scores == sorted(scores, reverse=True)  # without rerank the order is the fused score's


def test_location_boost_changes_the_order(api: Api):
    base = {"query": {"text": "running shoe store"}, "dataset_id": "stores"}
    assert ids(run(api, "near", base))[0] == "sh"  # the shorter title wins on text alone
    boosted = ids(run(api, "near", {**base, "context": {"location": NEAR_BEIJING}}))
    assert boosted[0] == "bj"
    assert set(boosted) == {"sh", "bj", "nowhere"}
    # invalid locations are ignored, as the spec says
    for loc in ({"latitude": "abc", "longitude": "116.40"}, {"latitude": 39.9}, "Beijing"):
        assert ids(run(api, "near", {**base, "context": {"location": loc}}))[0] == "sh"


def test_location_demote_pushes_near_items_down(api: Api):
    base = {"query": {"text": "running shoe store"}, "dataset_id": "stores"}
    near_shanghai = {"latitude": "31.23", "longitude": "121.47"}
    demoted = ids(run(api, "far", {**base, "context": {"location": near_shanghai}}))
    assert demoted[-1] == "sh" and demoted[0] != "sh"
    assert "nowhere" in demoted  # items without a location are unaffected, never dropped


def test_sort_by_unknown_field_is_400(api: Api):
    r = api.search({"query": {"text": "x"}, "dataset_id": "stores", "sort_by": "where"}, app="near",
                   key=api.extra_key)  # type: ignore[attr-defined]
    assert r.status_code == 400 and r.json()["error"]["field"] == "sort_by"
