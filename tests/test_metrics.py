"""GET /metrics: what a scrape shows after real requests on a live server (counts by route template, application
and status; stage histograms; zero-result and spell-corrected searches; IQS charges, refunds and refusals; import
jobs and datasets read at scrape time), who may scrape, and `serve --workers 2` counting every request of both
processes in one scrape."""

from __future__ import annotations

import copy
import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api_fixtures import ADMIN, Api, start, stop, wait_job
from conftest import EXAMPLE_SCHEMA, VECTOR_DIM
from mmsearch.api.app import create_app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder
from processes import serve

SEARCH = "/api/v1/application/{application_id}/search"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(client: httpx.Client | TestClient, **headers: str) -> Samples:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}", **headers})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metrics_of(api: Api) -> Any:
    return api.server.server.config.app.app.state.metrics  # RequestContext -> FastAPI -> its Metrics


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Iterator[Api]:
    # IQS answers from the products dataset here, so a MultimodalSearch is charged and finds something
    a = start(tmp_path_factory.mktemp("metrics"), product_items, web_dataset="products")
    yield a
    stop(a)


def test_searches_are_counted_by_route_template_application_and_status(api: Api):
    before = scrape(api.admin)
    found = api.ok({"query": {"text": "running shoe"}, "dataset_id": "products"})
    assert found["result"]["total_items"] > 0
    nothing = api.ok({"query": {"text": "zzqxv"}, "dataset_id": "products", "filter":
                      {"op": "must", "field": "category", "conds": ["no-such-category"]}})
    assert nothing["result"]["total_items"] == 0
    assert api.search({"query": {"text": "shoe"}, "dataset_id": "products"}, key="not-a-key").status_code == 401
    assert api.search({"query": {"text": "shoe"}, "dataset_id": "products"}, app="made-up").status_code == 404
    assert api.client.get("/no/such/path/p01").status_code == 404
    after = scrape(api.admin)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("mmsearch_http_requests_total", route=SEARCH, app="shop", status="200") == 2
    # a caller's application name is only a label once a key that may search it was shown
    assert moved("mmsearch_http_requests_total", route=SEARCH, app="", status="401") == 1
    assert moved("mmsearch_http_requests_total", route=SEARCH, app="", status="404") == 1
    assert moved("mmsearch_http_requests_total", route="unmatched", app="", status="404") == 1
    assert moved("mmsearch_http_request_duration_seconds_count", route=SEARCH) == 4
    assert moved("mmsearch_http_request_duration_seconds_sum", route=SEARCH) > 0
    labels = {dict(lbl).get("route") for _, lbl in after} | {dict(lbl).get("app") for _, lbl in after}
    assert not any(v and ("/no/such" in v or "made-up" in v or "/shop/" in v) for v in labels), labels

    # the pipeline's stages, one observation per successful search; rerank is on by default
    for stage in ("plan", "recall_text", "recall_vlm", "fuse", "rerank", "fetch"):
        assert moved("mmsearch_search_stage_seconds_count", stage=stage) == 2, stage
        assert moved("mmsearch_search_stage_seconds_bucket", stage=stage, le="+Inf") == 2, stage
    assert moved("mmsearch_search_zero_results_total", app="shop") == 1
    assert moved("mmsearch_search_spell_corrected_total", app="shop") == 0


def test_spell_corrected_searches_are_counted(api: Api):
    api.mm.create_dataset("books", {"fields": [{"name": "id", "type": "string", "primary_key": True},
                                               {"name": "title", "type": "string", "searchable": True}]},
                          vector_dim=VECTOR_DIM)
    api.mm.import_items("books", [{"id": "h1", "title": "wireless headphones noise cancelling"},
                                  {"id": "h2", "title": "wired headphones"}])
    api.mm.catalog.apps.create("books-auto", ["books"], {"spell_correction": "auto"})
    key = api.mm.catalog.keys.create(["books-auto"]).key
    before = scrape(api.admin)
    r = api.search({"query": {"text": "wireles headphnes"}, "dataset_id": "books"}, app="books-auto", key=key)
    assert r.status_code == 200 and r.json()["result"]["spell_correction"]["corrected_query"], r.text
    r = api.search({"query": {"text": "wired"}, "dataset_id": "books"}, app="books-auto", key=key)
    assert r.status_code == 200 and not r.json()["result"]["spell_correction"]["corrected_query"], r.text
    after = scrape(api.admin)
    assert (value(after, "mmsearch_search_spell_corrected_total", app="books-auto")
            - value(before, "mmsearch_search_spell_corrected_total", app="books-auto")) == 1
    assert value(after, "mmsearch_http_requests_total", route=SEARCH, app="books-auto", status="200") == 2


def test_a_body_refused_before_routing_keeps_its_route_template(api: Api):
    before = scrape(api.admin)
    big = b"x" * (api.mm.settings.max_body_bytes + 1)
    r = api.client.post("/api/v1/application/shop/search", content=big,
                        headers={"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"})
    assert r.status_code == 413
    after = scrape(api.admin)
    assert (value(after, "mmsearch_http_requests_total", route=SEARCH, app="", status="413")
            - value(before, "mmsearch_http_requests_total", route=SEARCH, app="", status="413")) == 1


def test_metrics_need_the_admin_token(api: Api):
    r = api.client.get("/metrics")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "MissingAuthorization" and r.json()["request_id"] == r.headers["x-request-id"]
    r = api.client.get("/metrics", headers={"Authorization": f"Bearer {api.key}"})  # a search key is not enough
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAdminToken"
    assert api.client.get("/metrics", headers={"X-Admin-Token": ADMIN}).status_code == 200
    assert "mmsearch_http_requests_total" in api.admin.get("/metrics").text
    doc = api.client.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert set(doc["responses"]) == {"200", "401"} and {} in doc["security"]


def test_metrics_can_be_public(tmp_path):
    mm = MMSearch(Settings(home=tmp_path, admin_token=ADMIN, ocr=False, metrics_public=True), encoder=None)
    client = TestClient(create_app(mm, run_jobs=False))
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert 'mmsearch_model_available{component="image_model"} 0.0' in r.text  # no encoder given
    assert Settings.model_fields["metrics_public"].default is False  # by default the admin token is needed


def test_iqs_charges_refunds_and_refusals_by_code(api: Api):
    paid = api.mm.catalog.accounts.create("metrics-paid", plan="paid", credits=100)
    broke = api.mm.catalog.accounts.create("metrics-broke", plan="paid", credits=0)
    before = scrape(api.admin)

    def post(key: str, body: Any) -> httpx.Response:
        return api.client.post("/search/multimodal", json=body, headers={"Authorization": f"Bearer {key}"})

    r = post(paid.api_key, {"query": "running shoe"})
    assert r.status_code == 200 and r.json()["imageItems"], r.text
    assert post(broke.api_key, {"query": "shoe"}).json()["code"] == "Retrieval.Arrears"
    assert post("iqs_unknown", {"query": "shoe"}).json()["code"] == "InvalidAccessKeyId.NotFound"
    assert post(paid.api_key, {"query": ""}).json()["code"] == "InvalidParameter"  # refused before the charge
    api.mm.settings.web_dataset = "no-such-corpus"  # fails after the charge: refunded
    try:
        assert post(paid.api_key, {"query": "shoe"}).json()["code"] == "Retrieval.IndexNotReady"
    finally:
        api.mm.settings.web_dataset = "products"
    after = scrape(api.admin)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("mmsearch_iqs_charges_total") == 2
    assert moved("mmsearch_iqs_refunds_total") == 1
    for code in ("Retrieval.Arrears", "InvalidAccessKeyId.NotFound", "InvalidParameter", "Retrieval.IndexNotReady"):
        assert moved("mmsearch_iqs_refusals_total", code=code) == 1, code
    assert api.mm.catalog.accounts.get("metrics-paid").as_dict()["credits"] == 99  # what the counters say
    assert moved("mmsearch_search_stage_seconds_count", stage="recall_text") == 1
    assert moved("mmsearch_http_requests_total", route="/search/multimodal", app="", status="200") == 1


def test_import_jobs_and_datasets_are_read_at_scrape_time(api: Api):
    metrics_of(api).state.dataset_ttl_s = 0  # no cached dataset stats for this test
    before = scrape(api.admin)
    assert value(before, "mmsearch_dataset_items", dataset="products") == 12
    assert value(before, "mmsearch_dataset_bytes", dataset="products") > 1_000
    assert value(before, "mmsearch_model_available", component="image_model") == 1
    assert value(before, "mmsearch_model_available", component="ocr") == 0  # MMSEARCH_OCR is off here
    items = [{"item_id": f"n{i}", "title": f"new canvas bag {i}"} for i in range(5)]
    job = api.admin.post("/admin/v1/datasets/products/items", json=items).json()["job_id"]
    assert wait_job(api.admin, job)["status"] == "succeeded"
    after = scrape(api.admin)
    assert value(after, "mmsearch_import_jobs", state="succeeded") - value(
        before, "mmsearch_import_jobs", state="succeeded") == 1
    assert value(after, "mmsearch_import_jobs", state="queued") == 0
    assert value(after, "mmsearch_import_queue_depth") == 0
    assert value(after, "mmsearch_dataset_items", dataset="products") == 17
    assert value(after, "mmsearch_dataset_bytes", dataset="products") > value(
        before, "mmsearch_dataset_bytes", dataset="products")


def test_queue_depth_pending_items_and_rate_come_from_the_catalog(tmp_path):
    """Jobs another process runs (a `mmsearch worker`): what the catalog says is what a scrape says."""
    mm = MMSearch(Settings(home=tmp_path, admin_token=ADMIN, ocr=False), encoder=HashingEncoder(VECTOR_DIM))
    mm.create_dataset("products", copy.deepcopy(EXAMPLE_SCHEMA), vector_dim=VECTOR_DIM)
    jobs = mm.catalog.jobs
    running = jobs.create("products", "elsewhere.ndjson", total=100, worker="other-host:1:w")
    assert jobs.checkpoint(running.id, "other-host:1:w", done=40, imported=40, failed=0, warned=0, errors=[],
                           warnings=[], run_seconds=2.0)
    jobs.create("products", "later.ndjson", total=50)
    samples = scrape(TestClient(create_app(mm, run_jobs=False)))
    assert value(samples, "mmsearch_import_jobs", state="running") == 1
    assert value(samples, "mmsearch_import_jobs", state="queued") == 1
    assert value(samples, "mmsearch_import_jobs", state="failed") == 0  # every state is listed
    assert value(samples, "mmsearch_import_queue_depth") == 1
    assert value(samples, "mmsearch_import_items_pending") == 60 + 50
    assert value(samples, "mmsearch_import_items_per_second") == pytest.approx(20.0)
    assert value(samples, "mmsearch_dataset_items", dataset="products") == 0


# -- serve --workers 2: one scrape counts both processes ----------------------------------------------------------


def test_serve_workers_count_every_process_in_one_scrape(tmp_path, product_items):
    home = tmp_path / "home"
    mm = MMSearch(Settings(home=home, ocr=False), encoder=HashingEncoder(VECTOR_DIM))
    mm.create_dataset("products", copy.deepcopy(EXAMPLE_SCHEMA), vector_dim=VECTOR_DIM)
    mm.import_items("products", copy.deepcopy(product_items))
    mm.catalog.apps.create("shop", ["products"], {})
    key = mm.catalog.keys.create(["shop"]).key
    token = secrets.token_urlsafe(16)
    env = {**os.environ, "MMSEARCH_ADMIN_TOKEN": token, "MMSEARCH_CLIP_MODEL": "none", "MMSEARCH_OCR": "false",
           "MMSEARCH_LOG_FORMAT": "json"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "serve.log"
    proc, url = serve(home, env, False, "--workers", "2", log=log, start_s=90)
    try:
        body = {"query": {"text": "running shoe"}, "dataset_id": "products"}
        sent, pids = 0, set()
        while len(pids) < 2:  # a new connection each time: either process may take it
            assert sent < 300, f"every request went to one process: {pids}"
            with httpx.Client(timeout=30) as client:
                r = client.post(f"{url}/api/v1/application/shop/search", json=body,
                                headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
            sent += 1
            if sent % 5 == 0:
                lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
                pids = {x["pid"] for x in lines if x.get("logger") == "mmsearch.access" and x["route"] == SEARCH}
        folder = home / "run" / f"metrics-{proc.pid}"
        assert len({p.name.split("_")[-1] for p in folder.glob("counter_*.db")}) == 2  # one file per worker
        with httpx.Client(base_url=url, timeout=30) as client:
            samples = scrape(client, Authorization=f"Bearer {token}")
        assert value(samples, "mmsearch_http_requests_total", route=SEARCH, app="shop", status="200") == sent
        assert value(samples, "mmsearch_http_request_duration_seconds_count", route=SEARCH) == sent
        assert value(samples, "mmsearch_search_stage_seconds_count", stage="fuse") == sent
        assert value(samples, "mmsearch_dataset_items", dataset="products") == len(product_items)
    finally:
        proc.terminate()
        proc.wait(30)
    assert not (home / "run" / f"metrics-{proc.pid}").exists()  # removed when serve stops
