"""Schemathesis against a live server, from the server's own `/openapi.json`.

Every operation of the document is fuzzed with positive (schema-valid) and negative (schema-violating) requests,
authenticated as its API requires, and every answer must be: not a 5xx; a status the document lists for that
operation; a body and headers that match the schema the document gives for that status. The search endpoints
(AI Search, with hand-made filter trees over the dataset's real fields, and IQS) and the item inputs get the most
examples; DELETE/PATCH operations only ever see random ids, so the fixture's objects survive the run.

Bounded for CI: a fixed number of examples per operation (about 850 requests in all), Hypothesis derandomized
and without its example database, so the same requests are sent on every run: about 30 s on 2 cores (25 s of
requests), and the test fails if the fuzzing itself takes over 120 s. A failure report names the operation and
carries schemathesis's curl command that reproduces it.
"""

from __future__ import annotations

import copy
import io
import time
from typing import Any

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import EXAMPLE_SCHEMA, VECTOR_DIM
from live import LiveServer
from mmsearch.api.app import create_app
from mmsearch.catalog.accounts import MAX_QPS
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder
from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus
from mmsearch.ingest.web.types import WebImage

ADMIN = "fuzz-admin-token"
DATASET, ITEMS_DATASET, APP = "fuzzds", "fuzzitems", "fuzzapp"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
TIME_LIMIT_S = 120

# Examples per operation and generation mode; the search paths and item inputs get more.
DEFAULT_EXAMPLES = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 6}
HARD_EXAMPLES = {GenerationMode.POSITIVE: 60, GenerationMode.NEGATIVE: 30}
SEARCH_EXAMPLES = {GenerationMode.POSITIVE: 150, GenerationMode.NEGATIVE: 30}


def _picture(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8)).resize((320, 240), Image.NEAREST).save(
        buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def live(tmp_path_factory, product_items):
    """A server over a small dataset, an application and its key, a web corpus and a paid IQS account."""
    home = tmp_path_factory.mktemp("fuzz")
    mm = MMSearch(Settings(home=home, admin_token=ADMIN, ocr=False), encoder=HashingEncoder(VECTOR_DIM))
    for ds in (DATASET, ITEMS_DATASET):
        mm.create_dataset(ds, copy.deepcopy(EXAMPLE_SCHEMA), vector_dim=VECTOR_DIM)
    assert mm.import_items(DATASET, copy.deepcopy(product_items)).rejected == 0
    mm.catalog.apps.create(APP, [DATASET], {})
    key = mm.catalog.keys.create([APP], name="fuzz").key
    with WebCorpus(mm, mm.settings.web_dataset, CorpusConfig(min_side=100)) as corpus:
        corpus.ensure_dataset()
        corpus.add([WebImage(image_url=f"https://s{n}.example.com/{n}.png",
                             host_page_url=f"https://s{n}.example.com/{n}.html", title=f"狮子 lion {n}",
                             published_time="2025-01-12T12:47:54+08:00", data=_picture(n)) for n in range(4)])
    account = mm.catalog.accounts.create("fuzzer", plan="paid", credits=1_000_000, qps=MAX_QPS)
    with LiveServer(create_app(mm)) as server:
        yield server, {"/admin/": f"Bearer {ADMIN}", "/api/": f"Bearer {key}", "": f"Bearer {account.api_key}"}


# -- hand-made inputs over the dataset's real fields ------------------------------------------------------------

FIELDS = ["category", "status", "price", "on_sale", "tags", "sizes", "create_at", "title", "product.price",
          "location", "images", "item_id", "no_such_field", ""]
FILTERABLE = ["category", "status", "price", "on_sale", "tags", "sizes"]
_text = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates included
# values at the edges: of int32/int64/float, of Unicode (lone surrogates are legal JSON, not valid text), of types
EDGES = [2**31, 2**31 - 1, -(2**31) - 1, 3_000_000_000, 2**63, 2**63 - 1, -(2**63) - 1, 2**64, 1e300, -1e300, 0.5,
         "\ud800", "a\udfffb", "", "shoes", True, None]
VALUES = st.one_of(
    st.sampled_from(EDGES), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), _text, st.booleans(), st.lists(st.integers(), max_size=2),
)
FILTER_FIELDS = st.one_of(st.sampled_from(FILTERABLE), st.sampled_from(FIELDS))
NUMBERS = st.one_of(st.sampled_from([e for e in EDGES if isinstance(e, int | float) and not isinstance(e, bool)]),
                    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False, allow_infinity=False),
                    VALUES)
_match = st.builds(lambda op, f, vs: {"op": op, "field": f, "conds": vs},
                   st.sampled_from(["must", "must_not"]), FILTER_FIELDS, st.lists(VALUES, min_size=1, max_size=4))
_range = st.builds(lambda f, bounds: {"op": "range", "field": f, **bounds},
                   st.one_of(st.sampled_from(["status", "price", "sizes"]), FILTER_FIELDS),
                   st.dictionaries(st.sampled_from(["gte", "gt", "lte", "lt"]), NUMBERS, min_size=1))
FILTERS = st.recursive(
    st.one_of(_match, _range),
    lambda kids: st.builds(lambda op, cs: {"op": op, "conds": cs}, st.sampled_from(["and", "or"]),
                           st.lists(kids, min_size=1, max_size=4)),
    max_leaves=10,
)
SORTABLE = ["item_id", "status", "price", "create_at", "product.price"]
QUERY_TEXT = st.one_of(st.sampled_from(["running shoe", "运动鞋", "红色 dress", "bag"]), _text,
                       st.text(min_size=990, max_size=1010))
# mostly valid around the filter, so that the filter is what reaches the engine
SEARCH = st.fixed_dictionaries(
    {"dataset_id": st.just(DATASET), "query": st.fixed_dictionaries({"text": QUERY_TEXT}), "filter": FILTERS},
    optional={"page_size": st.one_of(st.integers(1, 10), st.integers(-1, 12)),
              "page_number": st.one_of(st.integers(1, 3), st.integers()),
              "sort_by": st.one_of(st.sampled_from(SORTABLE), st.sampled_from(FIELDS)),
              "sort_order": st.sampled_from(["asc", "desc"]),
              "output_fields": st.lists(st.sampled_from(FIELDS), max_size=4),
              "user": st.fixed_dictionaries({"_user_id": _text})},
)
ITEM_IDS = st.one_of(st.sampled_from(["p01", "p02", "n1", "a/b", "", " "]), _text, st.integers())
_STRINGS = st.one_of(_text, VALUES)
ITEMS = st.lists(st.fixed_dictionaries(
    {"item_id": ITEM_IDS},
    optional={"title": _STRINGS, "category": _STRINGS, "tags": st.one_of(st.lists(_text, max_size=3), VALUES),
              **{f: VALUES for f in FIELDS if f not in ("item_id", "title", "category", "tags", "")}},
), max_size=5)


def _search_steer(case: Any, real: bool, overrides: dict[str, Any]) -> Any:
    """Point most cases at the real dataset with a text query and a filter over its fields, so they reach the
    engine; the generated keys stay (extra ones are ignored by the API)."""
    if real and isinstance(case.body, dict):
        case.body.update(overrides)
    return case


def _items_steer(case: Any, items: list[dict[str, Any]]) -> Any:
    if isinstance(case.body, list):
        case.body = items
    elif isinstance(case.body, dict):
        case.body["items"] = items
    return case


def _delete_steer(case: Any, ids: list[Any]) -> Any:
    if isinstance(case.body, dict):
        case.body["ids"] = ids
    return case


def steered(label: str, strategy: st.SearchStrategy) -> st.SearchStrategy:
    if label.startswith("POST /api/v1/application/"):
        real = st.integers(0, 4).map(lambda n: n < 4)  # 4 in 5, and the simplest example is a real one
        return st.tuples(strategy, real, SEARCH).map(lambda args: _search_steer(*args))
    if label == "POST /admin/v1/datasets/{dataset_id}/items":
        return st.tuples(strategy, ITEMS).map(lambda args: _items_steer(*args))
    if label == "POST /admin/v1/datasets/{dataset_id}/items/delete":
        return st.tuples(strategy, st.lists(ITEM_IDS, min_size=1, max_size=4)).map(lambda a: _delete_steer(*a))
    return strategy


def negatable(op: dict[str, Any]) -> bool:
    """Whether a request can violate the operation's schema: not when it has no body and only free strings."""
    return "requestBody" in op or any(p.get("schema") != {"type": "string"} for p in op.get("parameters", [])
                                      if p.get("in") != "path" or set(p.get("schema", {})) - {"type", "title"})


def plans(operation: Any, op: dict[str, Any]) -> list[tuple[GenerationMode, int, dict[str, Any]]]:
    """(mode, examples, fixed path parameters) runs for one operation (`op`: its entry in the document)."""
    label = operation.label
    hard = label.startswith(("POST /api/", "POST /search/", "POST /linked-retrieval/")) or "/items" in label
    counts = HARD_EXAMPLES if hard else DEFAULT_EXAMPLES
    if not negatable(op):
        counts = {GenerationMode.POSITIVE: counts[GenerationMode.POSITIVE]}
    runs = [(mode, n, {}) for mode, n in counts.items()]
    if label.startswith("POST /api/v1/application/"):
        runs = [(mode, n, {"application_id": APP}) for mode, n in SEARCH_EXAMPLES.items()] + [
            (GenerationMode.POSITIVE, 5, {})]
    elif "/items" in label:
        runs = [(mode, n, {"dataset_id": ITEMS_DATASET if label.endswith("/items") else DATASET})
                for mode, n in counts.items()] + [(GenerationMode.POSITIVE, 5, {})]
        if label.endswith("{item_id}"):
            runs.append((GenerationMode.POSITIVE, 2, {"dataset_id": DATASET, "item_id": "p01"}))
    return runs


def test_fuzz_openapi_operations(live):
    server, auth = live
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=schemathesis.Config())
    session = requests.Session()
    session.trust_env = False  # no proxies: the server is on loopback
    doc = session.get(f"{server.url}/openapi.json", timeout=30).json()
    failures: list[str] = []
    sent: dict[str, int] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        header = next(v for prefix, v in auth.items() if operation.path.startswith(prefix))
        for mode, examples, path_parameters in plans(operation, doc["paths"][operation.path][operation.method]):
            strategy = steered(operation.label, operation.as_strategy(
                generation_mode=mode, headers={"Authorization": header}, path_parameters=path_parameters or None))
            failure = _fuzz(strategy, examples, server.url, session, sent)
            if failure:
                failures.append(f"{operation.label} [{mode.value}, {path_parameters or 'random ids'}]: {failure}")
    elapsed = time.monotonic() - started
    print(f"fuzzed {len(sent)} operations with {sum(sent.values())} requests in {elapsed:.1f} s:", sent)
    assert not failures, "\n\n".join(failures)
    assert len(sent) >= 25, sorted(sent)  # every operation was reached (the document has 30)
    assert elapsed < TIME_LIMIT_S, f"fuzzing took {elapsed:.0f} s for {sum(sent.values())} requests"
    _no_failed_jobs(server.url)


def _fuzz(strategy: st.SearchStrategy, examples: int, base_url: str, session: requests.Session,
          sent: dict[str, int]) -> str | None:
    """Run one bounded, derandomized batch; the first failing case's report, or None."""

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate], print_blob=False)
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, timeout=30)
        sent[case.operation.label] = sent.get(case.operation.label, 0) + 1
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:  # nothing to negate (no parameters, or only strings where any string is valid)
        return None
    except (Exception, BaseExceptionGroup) as exc:  # check failures (FailureGroup) or a transport error
        return str(exc)[:3000]
    return None


def _no_failed_jobs(base_url: str) -> None:
    """Fuzzed item uploads are jobs: hostile items are rejected one by one, and no job may fail."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    deadline = time.monotonic() + 30
    while True:
        jobs = requests.get(f"{base_url}/admin/v1/jobs", headers=headers, params={"limit": 1000}, timeout=30).json()
        pending = [j for j in jobs["jobs"] if j["status"] in ("queued", "running")]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    failed = [j for j in jobs["jobs"] if j["status"] == "failed"]
    assert not pending, pending
    assert not failed, failed
