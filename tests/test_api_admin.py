"""The management API over real HTTP: datasets, durable import jobs, items, applications, keys; jobs that
survive a restart; and a CLI writing to the home a running server reads."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api_fixtures import ADMIN, Api, start, stop, wait_job
from conftest import EXAMPLE_SCHEMA
from live import LiveServer
from mmsearch.api.app import create_app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.ingest.jobs import JobRunner, submit_body


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    a = start(tmp_path_factory.mktemp("admin"), product_items)
    yield a
    stop(a)



def test_dataset_lifecycle(api: Api):
    r = api.admin.post("/admin/v1/datasets", json={"id": "notes", "schema": {"fields": [
        {"name": "id", "type": "string", "primary_key": True}, {"name": "body", "type": "string", "searchable": True}]},
        "vector_dim": 8})
    assert r.status_code == 201, r.text
    assert r.json()["stats"]["rows"] == 0
    assert api.admin.post("/admin/v1/datasets", json={"id": "notes", "schema": {"fields": [
        {"name": "id", "type": "string", "primary_key": True}]}}).status_code == 409
    bad = api.admin.post("/admin/v1/datasets", json={"id": "bad", "schema": {"fields": [
        {"name": "id", "type": "strang", "primary_key": True}]}})
    assert bad.status_code == 400 and "fields[0].type" in bad.json()["error"]["message"]
    assert {d["id"] for d in api.admin.get("/admin/v1/datasets").json()["datasets"]} >= {"notes", "products"}
    assert api.admin.get("/admin/v1/datasets/notes").json()["schema"]["fields"][1]["name"] == "body"
    assert api.admin.delete("/admin/v1/datasets/notes").status_code == 204
    assert api.admin.get("/admin/v1/datasets/notes").status_code == 404
    r = api.admin.delete("/admin/v1/datasets/products")  # bound to "shop"
    assert r.status_code == 400 and "shop" in r.json()["error"]["message"]


def test_upsert_job_imports_good_items_and_reports_bad_ones(api: Api):
    items = [
        {"item_id": "n1", "title": "Velvet armchair green", "status": 1, "price": 1999.0, "_vector": [0.1] * 8},
        {"item_id": "n2", "title": "Oak dining table", "status": "one", "_vector": [0.2] * 8},
        {"title": "no id at all"},
        {"item_id": "n3", "title": "Linen cushion cover", "price": 59.0},
    ]
    r = api.admin.post("/admin/v1/datasets/products/items", json=items)
    assert r.status_code == 202, r.text
    job = wait_job(api.admin, r.json()["job_id"])
    assert job["status"] == "succeeded"
    p = job["progress"]
    assert (p["total"], p["processed"], p["imported"], p["failed"], p["percent"]) == (4, 4, 2, 2, 100.0)
    fields = {(e["index"], e["field"]) for e in job["errors"]}
    assert (1, "status") in fields and any(i == 2 for i, _ in fields)
    found = api.ok({"query": {"text": "armchair"}, "dataset_id": "products"})
    assert found["result"]["search_results"][0]["_id"] == "n1"
    got = api.admin.get("/admin/v1/datasets/products/items/n3").json()
    assert got["item"]["title"] == "Linen cushion cover"
    assert api.admin.get("/admin/v1/datasets/products/items/n2").status_code == 404
    listed = api.admin.get("/admin/v1/jobs", params={"dataset_id": "products"}).json()["jobs"]
    assert listed[0]["job_id"] == job["job_id"]


def test_ndjson_body_with_a_broken_line(api: Api):
    body = b'{"item_id": "j1", "title": "Ceramic vase blue"}\n{not json\n\n{"item_id": "j2", "title": "Glass vase"}\n'
    r = api.admin.post("/admin/v1/datasets/products/items", content=body,
                       headers={"Content-Type": "application/x-ndjson"})
    job = wait_job(api.admin, r.json()["job_id"])
    assert (job["progress"]["imported"], job["progress"]["failed"]) == (2, 1)
    assert job["errors"][0]["rule"] == "json"
    r = api.admin.post("/admin/v1/datasets/products/items/delete", json={"ids": ["j1", "j2", "nope"]})
    assert r.json() == {"deleted": 2}
    assert api.admin.get("/admin/v1/datasets/products/items/j1").status_code == 404


def test_upsert_rejects_unusable_bodies(api: Api):
    assert api.admin.post("/admin/v1/datasets/products/items", content=b"").status_code == 400
    r = api.admin.post("/admin/v1/datasets/products/items", content=b'[{"item_id": "x"')
    assert r.status_code == 400 and r.json()["error"]["field"] == "body"
    assert api.admin.post("/admin/v1/datasets/missing/items", json=[{"a": 1}]).status_code == 404


def test_applications_and_config_validation(api: Api):
    r = api.admin.post("/admin/v1/applications", json={"id": "big", "datasets": ["products"],
                                                        "config": {"max_page_size": 100, "spell_correction": "auto"}})
    assert r.status_code == 201 and r.json()["config"]["max_page_size"] == 100
    r = api.admin.post("/admin/v1/applications", json={"id": "bad", "datasets": ["products"],
                                                        "config": {"max_page_size": 101}})
    assert r.status_code == 400 and r.json()["error"]["field"] == "config.max_page_size"
    r = api.admin.post("/admin/v1/applications", json={"id": "bad", "datasets": ["nope"]})
    assert r.status_code == 404
    r = api.admin.patch("/admin/v1/applications/big", json={"config": {"max_page_size": 20}})
    assert r.json()["config"]["max_page_size"] == 20
    key = api.admin.post("/admin/v1/keys", json={"apps": ["big"], "name": "web"}).json()
    assert key["key"].startswith("mms_") and key["secret_access_key"] and key["access_key_id"].startswith("AK")
    listed = api.admin.get("/admin/v1/keys").json()["keys"]
    assert all("key" not in k and "secret_access_key" not in k for k in listed)
    body = {"query": {"text": "shoe"}, "dataset_id": "products", "page_size": 20}
    assert api.search(body, app="big", key=key["key"]).status_code == 200
    assert api.search({**body, "page_size": 21}, app="big", key=key["key"]).status_code == 400
    assert api.admin.delete("/admin/v1/applications/big").status_code == 204
    assert api.admin.get("/admin/v1/applications/big").status_code == 404


def test_query_log_endpoint(api: Api):
    api.ok({"query": {"text": "scarf"}, "dataset_id": "products", "user": {"_user_id": "u-42"}})
    entries = api.admin.get("/admin/v1/query-log", params={"application_id": "shop"}).json()["entries"]
    assert any(e["user_id"] == "u-42" and e["query_text"] == "scarf" for e in entries)


def test_jobs_survive_a_restart_and_resume_from_their_checkpoint(tmp_path, product_items):
    settings = Settings(home=tmp_path, admin_token=ADMIN, ocr=False)
    mm = MMSearch(settings, encoder=None)
    mm.create_dataset("products", EXAMPLE_SCHEMA, vector_dim=8)
    items = [dict(p) for p in product_items]
    for it in items:
        it.pop("_vector")
    job = submit_body(mm, "products", json.dumps(items).encode())
    # a worker claims it, applies the first 5 items, then dies (no finish, no more heartbeats)
    dead = JobRunner(mm, batch_size=5)
    claimed = mm.catalog.jobs.claim(dead.worker)
    assert claimed is not None and claimed.id == job.id
    from mmsearch.ingest.importer import import_items
    from mmsearch.ingest.readers import read_items

    first = list(read_items(Path(claimed.source), mm.dataset("products").schema))[:5]
    rep = import_items(mm.dataset("products"), first, mm.store)
    mm.catalog.jobs.checkpoint(job.id, dead.worker, done=5, imported=rep.imported, failed=0, warned=0, errors=[],
                               warnings=[], run_seconds=0.1)
    # the "restarted server": a fresh engine and app on the same home, with a short lease
    mm2 = MMSearch(Settings(home=tmp_path, admin_token=ADMIN, ocr=False), encoder=None)
    app = create_app(mm2)
    runner = app.app.state.runner  # the RequestContext wraps the FastAPI app
    runner.stale_after_s = 0.5
    time.sleep(0.6)
    with LiveServer(app) as server:
        admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"})
        done = wait_job(admin, job.id)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert done["progress"]["processed"] == len(items) and done["progress"]["imported"] == len(items)
    assert mm2.store.count(mm2.dataset("products")) == len(items)
    assert not Path(claimed.source).exists()  # the staged copy is removed once applied


def test_cli_writes_are_visible_to_a_running_server_within_a_second(tmp_path, product_items):
    settings = Settings(home=tmp_path, admin_token=ADMIN, ocr=False)
    mm = MMSearch(settings, encoder=None)
    mm.create_dataset("products", EXAMPLE_SCHEMA, vector_dim=8)
    mm.import_items("products", [dict(product_items[0])])
    mm.catalog.apps.create("shop", ["products"])
    key = mm.catalog.keys.create(["shop"]).key
    file = tmp_path / "more.jsonl"
    file.write_text(json.dumps({"item_id": "cli1", "title": "Bamboo toothbrush"}) + "\n")
    cli = [str(Path(sys.executable).parent / "mmsearch"), "--home", str(tmp_path)]
    env_extra = {"MMSEARCH_CLIP_MODEL": "none", "MMSEARCH_OCR": "false"}
    import os

    env = {**os.environ, **env_extra}
    with LiveServer(create_app(mm)) as server:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
        body = {"query": {"text": "toothbrush"}, "dataset_id": "products"}

        def hits() -> list[str]:
            r = client.post("/api/v1/application/shop/search", json=body)
            return [h["_id"] for h in r.json()["result"]["search_results"]]

        assert hits() == []
        subprocess.run([*cli, "import", "products", str(file)], check=True, env=env, capture_output=True)
        t0 = time.monotonic()
        while hits() != ["cli1"]:
            assert time.monotonic() - t0 < 1.5, "CLI import not visible to the server"
            time.sleep(0.05)
        subprocess.run([*cli, "delete", "products", "--ids", "cli1"], check=True, env=env, capture_output=True)
        t0 = time.monotonic()
        while hits() != []:
            assert time.monotonic() - t0 < 1.5, "CLI delete not visible to the server"
            time.sleep(0.05)
