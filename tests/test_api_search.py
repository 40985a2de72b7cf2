"""`POST /api/v1/application/{id}/search` over a real uvicorn on loopback, with httpx as the client."""

from __future__ import annotations

import base64
import io
import threading
import uuid

import pytest
from PIL import Image

from api_fixtures import Api, start, stop


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    a = start(tmp_path_factory.mktemp("api"), product_items)
    yield a
    stop(a)


def ids(body: dict) -> list[str]:
    return [r["_id"] for r in body["result"]["search_results"]]


def png_uri(colour=(200, 30, 30), size=(64, 48)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_response_shape_matches_the_spec(api: Api):
    body = api.ok({"query": {"text": "running shoe"}, "dataset_id": "products", "page_size": 5})
    uuid.UUID(body["request_id"])
    result = body["result"]
    assert set(result) == {"search_results", "total_items", "spell_correction"}
    assert result["spell_correction"] == {"mode": "off"} == body["spell_correction"]
    assert body["total_items"] == result["total_items"] >= len(result["search_results"]) > 0
    first = result["search_results"][0]
    assert set(first) == {"_id", "display_fields", "score", "recall_info", "rerank_info"}
    assert first["display_fields"]["item_id"] == first["_id"]
    reasons = {r["recall_reason"] for r in first["recall_info"]}
    assert reasons <= {"text", "vlm"} and reasons
    assert all(isinstance(r["recall_score"], float) for r in first["recall_info"])
    assert "p01" in ids(body) and "p10" in ids(body)


def test_request_id_header_matches_body(api: Api):
    r = api.search({"query": {"text": "shoe"}, "dataset_id": "products"})
    assert r.headers["x-request-id"] == r.json()["request_id"]
    r2 = api.search({"query": {"text": "shoe"}, "dataset_id": "products"})
    assert r2.json()["request_id"] != r.json()["request_id"]


def test_default_page_size_is_10_and_max_is_the_apps(api: Api):
    body = api.ok({"query": {"text": "shoe bag coat running dress"}, "dataset_id": "products"})
    assert len(body["result"]["search_results"]) == 10
    r = api.search({"query": {"text": "shoe"}, "dataset_id": "products", "page_size": 11})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "InvalidArgument" and err["field"] == "page_size" and "[1, 10]" in err["message"]
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "InvalidArgument"


def test_pages_have_no_overlap_and_no_gaps(api: Api):
    q = {"query": {"text": "shoe bag coat running dress socks scarf jacket"}, "dataset_id": "products"}
    everything = ids(api.ok({**q, "page_size": 10, "page_number": 1})) + ids(
        api.ok({**q, "page_size": 10, "page_number": 2}))
    total = api.ok(q)["result"]["total_items"]
    pages = []
    for n in range(1, 6):
        pages += ids(api.ok({**q, "page_size": 3, "page_number": n}))
    assert len(pages) == len(set(pages)) == min(total, 15)
    assert pages == everything[: len(pages)]
    assert ids(api.ok({**q, "page_size": 3, "page_number": 99})) == []


def test_filter_and_sort_through_http(api: Api):
    body = api.ok({
        "query": {"text": "shoe"}, "dataset_id": "products", "page_size": 10,
        "filter": {"op": "and", "conds": [{"op": "must", "field": "category", "conds": ["shoes"]},
                                          {"op": "range", "field": "price", "gte": 500}]},
        "sort_by": "price", "sort_order": "asc",
    })
    prices = [r["display_fields"]["price"] for r in body["result"]["search_results"]]
    assert prices == sorted(prices) and prices and min(prices) >= 500
    assert all(r["display_fields"]["category"] == "shoes" for r in body["result"]["search_results"])
    desc = api.ok({"query": {"text": "shoe"}, "dataset_id": "products", "sort_by": "price"})
    p = [r["display_fields"].get("price") for r in desc["result"]["search_results"] if "price" in r["display_fields"]]
    assert p == sorted(p, reverse=True)  # desc is the default
    must_not = api.ok({"query": {"text": "shoe"}, "dataset_id": "products",
                       "filter": {"op": "must_not", "field": "status", "conds": [1, 2]}})
    assert all(r["display_fields"].get("status") not in (1, 2) for r in must_not["result"]["search_results"])


def test_output_fields_top_level_only(api: Api):
    body = api.ok({"query": {"text": "Nike"}, "dataset_id": "products",
                   "output_fields": ["title", "price", "product.price", "nope"]})
    first = body["result"]["search_results"][0]
    assert first["_id"] == "p01"
    assert set(first["display_fields"]) == {"title", "price"}
    everything = api.ok({"query": {"text": "Nike"}, "dataset_id": "products"})["result"]["search_results"][0]
    assert {"brand_note", "specs", "images", "location"} <= set(everything["display_fields"])


@pytest.mark.parametrize(("body", "field"), [
    ({"dataset_id": "products"}, "query"),
    ({"query": {}, "dataset_id": "products"}, "query"),
    ({"query": {"text": "  "}, "dataset_id": "products"}, "query"),
    ({"query": {"text": "shoe"}}, "dataset_id"),
    ({"query": {"text": "shoe"}, "dataset_id": ""}, "dataset_id"),
    ({"query": {"text": "shoe"}, "dataset_id": "products", "page_number": 0}, "page_number"),
    ({"query": {"text": "shoe"}, "dataset_id": "products", "page_size": 0}, "page_size"),
    ({"query": {"text": "shoe"}, "dataset_id": "products", "page_size": "many"}, "page_size"),
    ({"query": {"text": "shoe"}, "dataset_id": "products", "sort_order": "up"}, "sort_order"),
    ({"query": {"text": "shoe"}, "dataset_id": "products", "sort_by": "tags"}, "sort_by"),
    ({"query": {"text": "shoe"}, "dataset_id": "products", "sort_by": "nope"}, "sort_by"),
    ({"query": {"text": "shoe"}, "dataset_id": "products", "filter": {"op": "must", "field": "price", "conds": [1]}},
     "filter"),
    ({"query": {"text": "shoe"}, "dataset_id": "products", "filter": {"op": "near", "field": "status"}}, "filter"),
    ({"query": {"text": "shoe"}, "dataset_id": "products", "output_fields": "title"}, "output_fields"),
    ({"query": {"image_url": "https://example.com/a.jpg"}, "dataset_id": "products"}, "query.image_url"),
    ({"query": {"image_url": "data:image/png;base64,@@@"}, "dataset_id": "products"}, "query.image_url"),
    ({"query": {"image_url": png_uri().replace("image/png", "image/jpeg")}, "dataset_id": "products"},
     "query.image_url"),
    ({"query": {"image_url": png_uri(size=(5, 5))}, "dataset_id": "products"}, "query.image_url"),
    ({"query": {"text": "shoe"}, "dataset_id": "products", "user": {"_user_id": 5}}, "user._user_id"),
])
def test_validation_errors_name_the_field(api: Api, body, field):
    r = api.search(body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "InvalidArgument"
    assert err["field"].startswith(field), err
    assert err["message"].startswith(field), err


def test_body_that_is_not_json(api: Api):
    r = api.client.post("/api/v1/application/shop/search", content=b"{nope",
                        headers={"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "body"


def test_unknown_application_and_dataset(api: Api):
    r = api.search({"query": {"text": "shoe"}, "dataset_id": "products"}, app="nope")
    assert r.status_code == 404 and r.json()["error"]["field"] == "application_id"
    admin_key = api.mm.catalog.keys.create(["shop"]).key
    api.mm.catalog.apps.create("empty-app", ["products"])
    other = api.mm.catalog.keys.create(["empty-app"]).key
    r = api.search({"query": {"text": "shoe"}, "dataset_id": "missing"}, key=admin_key)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
    assert r.json()["error"]["field"] == "dataset_id"
    api.mm.catalog.apps.remove("empty-app")
    r = api.search({"query": {"text": "shoe"}, "dataset_id": "products"}, app="empty-app", key=other)
    assert r.status_code == 404  # the key's application is gone
    api.mm.catalog.apps.create("empty-app", ["products"])
    r = api.search({"query": {"text": "shoe"}, "dataset_id": "products"}, app="empty-app", key=other)
    assert r.status_code == 403  # a re-created application does not inherit the old keys
    r = api.search({"query": {"text": "shoe"}, "dataset_id": "products"}, app="empty-app")
    assert r.status_code == 403 and r.json()["error"]["code"] == "AccessDenied"


def test_image_query(api: Api):
    body = api.ok({"query": {"image_url": png_uri(), "image_query_instruction": "整体相似"},
                   "dataset_id": "products", "page_size": 3})
    assert len(body["result"]["search_results"]) == 3
    assert all(r["recall_info"][0]["recall_reason"] == "vlm" for r in body["result"]["search_results"])


def test_location_strings_and_invalid_location_are_accepted(api: Api):
    base = {"query": {"text": "shoe"}, "dataset_id": "products"}
    plain = ids(api.ok(base))
    for loc in ({"latitude": "12.12", "longitude": "-13.43"}, {"latitude": "north", "longitude": "x"},
                {"latitude": "95", "longitude": "0"}, "here", None):
        assert ids(api.ok({**base, "context": {"location": loc}})) == plain  # no location config: no change


def test_user_id_goes_to_the_query_log(api: Api):
    api.ok({"query": {"text": "denim"}, "dataset_id": "products", "user": {"_user_id": "ldy_199432"}})
    entries = api.mm.catalog.query_log.recent("shop", limit=50)
    mine = [e for e in entries if e.user_id == "ldy_199432"]
    assert mine and mine[0].query_text == "denim" and mine[0].result_count >= 1 and mine[0].latency_ms > 0
    assert mine[0].total_items >= mine[0].result_count


def test_errors_are_json_everywhere(api: Api):
    r = api.client.get("/no/such/path")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
    r = api.client.get("/api/v1/application/shop/search")
    assert r.status_code == 405 and r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"] == r.json()["request_id"]


def test_health_and_ready(api: Api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["catalog"]["ok"] and ready["store"]["ok"]
    assert ready["channels"] == {"text": True, "vlm": True}
    assert "/api/v1/application/{application_id}/search" in api.client.get("/openapi.json").json()["paths"]


def test_video_applications_refuse_image_queries(api: Api):
    schema = {"fields": [{"name": "content_id", "type": "string", "primary_key": True},
                         {"name": "my_title", "type": "string", "searchable": True},
                         {"name": "video_url", "type": "video"}]}
    api.mm.create_dataset("episodes", schema, type="video", vector_dim=8)
    api.mm.import_items("episodes", [{"content_id": "video_900026", "my_title": "三体第二十六集",
                                      "video_url": ["http://videos.example/26.mp4"]}])
    api.mm.catalog.apps.create("tv", ["episodes"])
    key = api.mm.catalog.keys.create(["tv"]).key
    r = api.search({"query": {"image_url": png_uri()}, "dataset_id": "episodes"}, app="tv", key=key)
    assert r.status_code == 400 and r.json()["error"]["field"] == "query.image_url"
    assert "video" in r.json()["error"]["message"]
    body = api.search({"query": {"text": "三体"}, "dataset_id": "episodes"}, app="tv", key=key).json()
    assert [h["_id"] for h in body["result"]["search_results"]] == ["video_900026"]
    assert body["result"]["search_results"][0]["display_fields"]["video_url"] == ["http://videos.example/26.mp4"]
    r = api.search({"query": {"text": "三体"}, "dataset_id": "products"}, app="tv", key=key)
    assert r.status_code == 400 and "not bound" in r.json()["error"]["message"]


def test_text_searches_over_a_loaded_index_run_on_the_event_loop_and_images_in_a_thread(api: Api, monkeypatch):
    seen: list[str] = []
    search_app = api.mm.search_app

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return search_app(*args, **kwargs)

    monkeypatch.setattr(api.mm, "search_app", spy)
    loop_thread = api.server.thread.name
    api.ok({"query": {"text": "shoe"}, "dataset_id": "products"})  # loads or catches up if it must
    api.ok({"query": {"text": "coat"}, "dataset_id": "products"})
    assert seen[-1] == loop_thread
    api.ok({"query": {"image_url": png_uri()}, "dataset_id": "products"})
    assert seen[-1] != loop_thread  # decoding and encoding an image go to a worker thread
    r = api.search({"query": {"text": "shoe"}, "dataset_id": "nope"})
    assert r.status_code == 404 and len(seen) == 4 and seen[-1] != loop_thread  # not answerable from memory
