"""The search path caches catalog rows (applications, datasets, keys, index lists): changes through the management
API apply to the very next search, and changes by another process on the same home within the promised time."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from api_fixtures import Api, start, stop
from mmsearch.catalog.cache import ReadCache
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder

QUERY = {"query": {"text": "shoe"}, "dataset_id": "products"}


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    a = start(tmp_path_factory.mktemp("cache"), product_items)
    yield a
    stop(a)


def schema(filter_field: str) -> dict:
    return {"fields": [{"name": "item_id", "type": "string", "primary_key": True},
                       {"name": "title", "type": "string", "searchable": True},
                       {"name": filter_field, "type": "string", "filterable": True}]}


def code(r) -> tuple[int, str | None]:
    return r.status_code, (r.json().get("error") or {}).get("code") if r.status_code != 200 else None


def eventually(check: Callable[[], bool], within_s: float) -> float:
    """Seconds until `check()` held; fails after `within_s`."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < within_s, f"not seen within {within_s} s"
        time.sleep(0.05)
    return time.monotonic() - t0


def test_app_config_change_applies_to_the_next_search(api: Api):
    api.admin.post("/admin/v1/applications", json={"id": "cfg", "datasets": ["products"],
                                                    "config": {"max_page_size": 10}})
    key = api.admin.post("/admin/v1/keys", json={"apps": ["cfg"]}).json()["key"]
    body = {**QUERY, "page_size": 20}
    assert api.search(body, app="cfg", key=key).status_code == 400  # cached now: max_page_size 10
    api.admin.patch("/admin/v1/applications/cfg", json={"config": {"max_page_size": 20}})
    assert api.search(body, app="cfg", key=key).status_code == 200
    api.admin.patch("/admin/v1/applications/cfg", json={"config": {"max_page_size": 10}})
    assert api.search(body, app="cfg", key=key).status_code == 400
    assert api.admin.delete("/admin/v1/applications/cfg").status_code == 204
    assert api.search(QUERY, app="cfg", key=key).status_code in (403, 404)  # gone at once, never answered


def test_dropped_and_recreated_dataset_is_seen_by_the_next_search(api: Api):
    api.admin.post("/admin/v1/datasets", json={"id": "extra", "schema": schema("colour"), "vector_dim": 8})
    api.admin.post("/admin/v1/applications", json={"id": "two", "datasets": ["products", "extra"]})
    key = api.admin.post("/admin/v1/keys", json={"apps": ["two"]}).json()["key"]
    by_size = {"query": {"text": "shoe"}, "dataset_id": "extra",
               "filter": {"op": "must", "field": "size", "conds": ["M"]}}
    assert code(api.search(by_size, app="two", key=key)) == (400, "InvalidArgument")  # no `size` field yet
    # unbind, drop, re-create with another schema, bind again: every step is visible to the next search
    api.admin.patch("/admin/v1/applications/two", json={"datasets": ["products"]})
    assert code(api.search(by_size, app="two", key=key)) == (400, "InvalidArgument")
    assert "not bound" in api.search(by_size, app="two", key=key).json()["error"]["message"]
    assert api.admin.delete("/admin/v1/datasets/extra").status_code == 204
    r = api.admin.post("/admin/v1/datasets", json={"id": "extra", "schema": schema("size"), "vector_dim": 8})
    assert r.status_code == 201, r.text
    api.admin.patch("/admin/v1/applications/two", json={"datasets": ["products", "extra"]})
    r = api.search(by_size, app="two", key=key)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["search_results"] == []


def test_key_revoked_through_the_api_stops_working_at_once(api: Api):
    new = api.mm.catalog.keys.create(["shop"])
    assert api.search(QUERY, key=new.key).status_code == 200  # now in the key cache
    assert api.admin.delete(f"/admin/v1/keys/{new.info.id}").status_code == 200
    assert code(api.search(QUERY, key=new.key)) == (401, "InvalidApiKey")


def test_changes_by_another_process_apply_within_the_promised_time(api: Api, tmp_path):
    """Another MMSearch on the same home (as the CLI is): its writes do not clear this server's caches."""
    other = MMSearch(Settings(home=api.mm.settings.home, ocr=False), encoder=HashingEncoder(8))
    other.catalog.apps.create("cli", ["products"], {"max_page_size": 10})
    new = other.catalog.keys.create(["cli"])
    body = {**QUERY, "page_size": 20}
    assert api.search(body, app="cli", key=new.key).status_code == 400
    other.catalog.apps.update("cli", config={"max_page_size": 20})
    eventually(lambda: api.search(body, app="cli", key=new.key).status_code == 200, within_s=1.5)
    other.catalog.keys.revoke(new.key)
    eventually(lambda: api.search(QUERY, app="cli", key=new.key).status_code == 401, within_s=2.5)
    other.catalog.engine.dispose()


def test_read_cache_keeps_values_for_its_ttl_and_never_a_value_read_across_a_clear():
    cache = ReadCache(ttl_s=60)
    source = {"v": 1}
    assert cache.get("k", lambda: source["v"]) == 1
    source["v"] = 2
    assert cache.get("k", lambda: source["v"]) == 1  # within the ttl
    cache.clear()
    assert cache.get("k", lambda: source["v"]) == 2

    def racing_load() -> int:  # a write clears the cache while this read is in flight
        value = source["v"]
        source["v"] = 3
        cache.clear()
        return value

    cache.clear()
    assert cache.get("k", racing_load) == 2
    assert cache.get("k", lambda: source["v"]) == 3  # the raced value was not kept

    def missing() -> int:
        raise KeyError("k2")

    with pytest.raises(KeyError):
        cache.get("k2", missing)
    assert cache.get("k2", lambda: 5) == 5  # a failed lookup is not cached
    short = ReadCache(ttl_s=0.05)
    short.get("k", lambda: 1)
    time.sleep(0.06)
    assert short.get("k", lambda: 2) == 2


def test_response_is_compact_utf8_json_with_the_same_content(api: Api):
    """orjson-encoded answers: UTF-8 (no \\u escapes), compact, the same values as the library call builds."""
    from mmsearch.api import volc

    body = {"query": {"text": "running shoe"}, "dataset_id": "products", "page_size": 5}
    r = api.search(body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert b"\\u" not in r.content and b", " not in r.content[:40]
    found = api.mm.search_app("shop", "products", volc.to_request(volc.SearchBody.model_validate(body)))
    expected = volc.to_response(r.json()["request_id"], found)
    assert r.json() == expected
    big = {"n": 2**70, "text": "鞋"}  # what orjson refuses goes through JSONResponse's encoder
    assert volc.FastJSONResponse(big).body == '{"n":1180591620717411303424,"text":"鞋"}'.encode()
