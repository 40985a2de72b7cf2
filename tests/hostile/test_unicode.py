"""Strings that are not valid Unicode: JSON's lone surrogates ("\\ud800", legal JSON syntax) and bytes that are not
UTF-8 in import files. A search or admin body holding one is a 400 naming the field (they were 500s); an import
item holding one is rejected alone and reported, and the rest imports (the whole job used to fail)."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from api_fixtures import Api, start, stop, wait_job
from conftest import EXAMPLE_SCHEMA, VECTOR_DIM, ids
from mmsearch.cli import app as cli_app
from mmsearch.errors import InvalidArgument
from mmsearch.schema import parse_schema, validate_item
from mmsearch.schema.filters import parse_filter
from mmsearch.search import SearchRequest

BAD = "\ud800"
SCHEMA = parse_schema(EXAMPLE_SCHEMA)
NOTES_SCHEMA = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                           {"name": "title", "type": "string", "searchable": True},
                           {"name": "tags", "type": "array<string>", "filterable": True},
                           {"name": "meta", "type": "object"}]}


def raw_json(value: object) -> bytes:
    """JSON as a client sends it: the surrogate \\u-escaped (httpx's own encoder would refuse it)."""
    return json.dumps(value).encode()


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    a = start(tmp_path_factory.mktemp("unicode"), product_items)
    yield a
    stop(a)


def post(client: httpx.Client, path: str, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post(path, content=raw_json(body), headers={"Content-Type": "application/json", **(headers or {})})


def search(api: Api, body: dict) -> httpx.Response:
    return post(api.client, "/api/v1/application/shop/search", body, {"Authorization": f"Bearer {api.key}"})



# -- search --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "field"), [
    ({"query": {"text": f"shoe {BAD}"}}, "query.text"),
    ({"filter": {"op": "must", "field": "category", "conds": ["shoes", BAD]}}, "filter.conds[1]"),
    ({"filter": {"op": "and", "conds": [{"op": "must", "field": "tags", "conds": ["sport"]},
                                        {"op": "must_not", "field": "tags", "conds": [f"x{BAD}y"]}]}},
     "filter.conds[1].conds[0]"),
    ({"filter": {"op": "must", "field": f"category{BAD}", "conds": ["shoes"]}}, "filter.field"),
    ({"filter": {"op": "range", "field": "price", f"lte{BAD}": 5}}, "filter.<key>"),
    ({"sort_by": BAD}, "sort_by"),
    ({"output_fields": ["title", BAD]}, "output_fields[1]"),
    ({"dataset_id": BAD}, "dataset_id"),
    ({"user": {"_user_id": f"u{BAD}"}}, "user._user_id"),
    ({"context": {"location": {"latitude": BAD, "longitude": "1"}}}, "context.location.latitude"),
])
def test_a_lone_surrogate_anywhere_in_a_search_is_a_400_naming_it(api: Api, change, field):
    body = {"query": {"text": "shoe"}, "dataset_id": "products", **change}
    r = search(api, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["code"], err["field"]) == ("InvalidArgument", field)
    assert err["message"].startswith(f"{field}: ") and "unicode" in err["message"].lower()
    assert r.headers.get("connection") != "close"
    assert search(api, {"query": {"text": "shoe"}, "dataset_id": "products"}).status_code == 200


def test_parse_filter_refuses_surrogates_for_library_callers():
    with pytest.raises(InvalidArgument) as caught:
        parse_filter({"op": "or", "conds": [{"op": "must", "field": "category", "conds": ["a", BAD]}]}, SCHEMA)
    assert caught.value.field == "filter.conds[0].conds[1]"
    with pytest.raises(InvalidArgument) as caught:
        parse_filter({"op": "must", f"field{BAD}": "category", "conds": ["a"]}, SCHEMA)
    assert caught.value.field == "filter.<key>"


def test_search_request_text_sort_and_output_fields_for_library_callers(products):
    for req, field in [(SearchRequest(text=BAD), "query.text"), (SearchRequest(text="shoe", sort_by=BAD), "sort_by"),
                       (SearchRequest(text="shoe", output_fields=["a", BAD]), "output_fields[1]")]:
        with pytest.raises(InvalidArgument) as caught:
            products.search("products", req)
        assert caught.value.field == field


# -- validation of one item -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "field"), [
    ({"title": f"a{BAD}"}, "title"),
    ({"tags": ["ok", BAD]}, "tags[1]"),
    ({"item_id": f"id{BAD}"}, "item_id"),
    ({"product": {"price": 1.0, f"k{BAD}": 1}}, "product.<key>"),
    ({"product": {"notes": [{"text": BAD}]}}, "product.notes[0].text"),
    ({"images": [{"image_url": f"https://x.example/{BAD}.png"}]}, "images[0].image_url"),
    ({"not_in_schema": BAD}, "not_in_schema"),
    ({f"extra{BAD}": 1}, "<key>"),
])
def test_validate_item_rejects_a_surrogate_naming_the_field(change, field):
    raw = {"item_id": "u1", "title": "fine", **change}
    valid, errors = validate_item(SCHEMA, raw, 7, VECTOR_DIM)
    assert valid is None
    assert [(e.index, e.field, e.rule) for e in errors] == [(7, field, "unicode")]
    assert json.dumps([e.as_dict() for e in errors], ensure_ascii=False).encode()  # storable as a report


# -- imports ---------------------------------------------------------------------------------------------------
def test_library_import_keeps_the_good_items(mm):
    mm.create_dataset("notes", NOTES_SCHEMA, vector_dim=VECTOR_DIM)
    report = mm.import_items("notes", [{"id": "a", "title": "alpha note"}, {"id": "b", "title": f"bad {BAD}"},
                                       {"id": "c", "title": "gamma note", "tags": ["x"]}])
    assert (report.inserted, report.rejected) == (2, 1)
    assert [(e.index, e.id, e.field, e.rule) for e in report.errors] == [(1, "b", "title", "unicode")]
    assert set(ids(mm.search("notes", SearchRequest(text="note")))) == {"a", "c"}


def test_a_large_ndjson_file_imports_every_good_line(mm, tmp_path):
    """The issue's case, scaled: one bad line in the middle used to drop every line after its batch."""
    mm.create_dataset("notes", NOTES_SCHEMA, vector_dim=VECTOR_DIM)
    path = tmp_path / "many.ndjson"
    lines = [json.dumps({"id": f"n{i}", "title": f"note {i}"}) for i in range(2_000)]
    lines[1_000] = json.dumps({"id": "n1000", "title": "broken", "tags": ["ok", BAD]})
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    report = mm.import_file("notes", path, batch_size=300)
    assert (report.total, report.inserted, report.rejected) == (2_000, 1_999, 1)
    assert [(e.index, e.id, e.field, e.rule) for e in report.errors] == [(1_000, "n1000", "tags[1]", "unicode")]
    assert mm.store.count(mm.dataset("notes")) == 1_999


def test_bytes_that_are_not_utf8_reject_only_their_item(mm, tmp_path):
    mm.create_dataset("notes", NOTES_SCHEMA, vector_dim=VECTOR_DIM)
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(b'{"id": "a", "title": "caf\xc3\xa9"}\n{"id": "b", "title": "caf\xe9"}\n'
                      b'{"id": "c", "title": "ok"}\n{"id": "d", \xff}\n{"id": "e", "title": "fine"}\n')
    report = mm.import_file("notes", jsonl)
    assert (report.inserted, report.rejected) == (3, 2)
    assert [(e.index, e.field, e.rule) for e in report.errors] == [(1, "title", "unicode"), (3, None, "json")]
    assert mm.get("notes", ["a"])[0]["title"] == "café"

    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(b"id,title\nx1,caf\xc3\xa9\nx2,caf\xe9\nx3,plain\n")
    report = mm.import_file("notes", csv_path)
    assert (report.inserted, report.rejected) == (2, 1)
    assert [(e.index, e.id, e.field, e.rule) for e in report.errors] == [(1, "x2", "title", "unicode")]

    as_json = tmp_path / "latin1.json"
    as_json.write_bytes(b'[{"id": "j1", "title": "caf\xe9"}, {"id": "j2", "title": "ok"}]')
    report = mm.import_file("notes", as_json)
    assert (report.inserted, report.rejected) == (1, 1)


def test_cli_import_reports_the_bad_item_and_succeeds(tmp_path):
    home = tmp_path / "home"
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(NOTES_SCHEMA))
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(it) for it in [
        {"id": "a", "title": "alpha"}, {"id": "b", "title": "beta", "meta": {f"k{BAD}": 1}}, {"id": "c", "title": "c"},
    ]) + "\n")
    runner = CliRunner()
    created = runner.invoke(cli_app, ["--home", str(home), "dataset", "create", "notes", "--schema", str(schema)])
    assert created.exit_code == 0, created.output
    done = runner.invoke(cli_app, ["--home", str(home), "import", "notes", str(items), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["inserted"], report["rejected"]) == (2, 1)
    assert [(e["index"], e["id"], e["field"], e["rule"]) for e in report["errors"]] == [(1, "b", "meta.<key>",
                                                                                         "unicode")]


@pytest.mark.parametrize("as_ndjson", [False, True])
def test_http_upsert_job_imports_the_good_items(api: Api, as_ndjson):
    items = [{"item_id": f"s{as_ndjson:d}1", "title": "Velvet stool"},
             {"item_id": f"s{as_ndjson:d}2", "title": f"bad {BAD}", "tags": ["a"]},
             {"item_id": f"s{as_ndjson:d}3", "title": "Oak stool", "tags": ["b", BAD]},
             {"item_id": f"s{as_ndjson:d}4", "title": "Pine stool"}]
    body = b"\n".join(raw_json(it) for it in items) if as_ndjson else raw_json(items)
    r = api.admin.post("/admin/v1/datasets/products/items", content=body)
    assert r.status_code == 202, r.text
    job = wait_job(api.admin, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert (job["progress"]["imported"], job["progress"]["failed"]) == (2, 2)
    assert sorted((e["index"], e["field"], e["rule"]) for e in job["errors"]) == [
        (1, "title", "unicode"), (2, "tags[1]", "unicode")]
    assert api.admin.get(f"/admin/v1/datasets/products/items/s{as_ndjson:d}4").status_code == 200


# -- admin bodies ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("post", "/admin/v1/datasets/products/items/delete", {"ids": ["p01", BAD]}, "ids[1]"),
    ("post", "/admin/v1/applications", {"id": f"a{BAD}", "datasets": ["products"]}, "id"),
    ("post", "/admin/v1/applications", {"id": "a2", "datasets": [BAD]}, "datasets[0]"),
    ("patch", "/admin/v1/applications/shop", {"datasets": ["products", BAD]}, "datasets[1]"),
    ("post", "/admin/v1/keys", {"apps": ["shop"], "name": BAD}, "name"),
    ("post", "/admin/v1/datasets", {"id": "d1", "schema": {"fields": [
        {"name": f"t{BAD}", "type": "string", "primary_key": True}]}}, "schema.fields[0].name"),
    ("post", "/admin/v1/datasets", {"id": f"d{BAD}", "schema": NOTES_SCHEMA}, "id"),
    ("post", "/admin/v1/accounts", {"name": f"acct{BAD}"}, "name"),
])
def test_admin_bodies_with_a_surrogate_are_400(api: Api, method, path, body, field):
    r = api.admin.request(method.upper(), path, content=raw_json(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["code"], err["field"]) == ("InvalidArgument", field)
    assert api.admin.get("/admin/v1/datasets/products/items/p01").status_code == 200  # nothing was deleted


def test_library_delete_refuses_surrogate_ids(products):
    with pytest.raises(InvalidArgument) as caught:
        products.delete("products", ["p01", BAD])
    assert caught.value.field == "ids[1]"
    assert products.get("products", ["p01"])



@pytest.mark.parametrize("path", ["/admin/v1/keys", "/admin/v1/accounts"])
def test_a_surrogate_in_an_unknown_key_is_a_400_not_a_500(api: Api, path):
    """pydantic refuses the key before anything else sees it; the answer says why, in UTF-8."""
    r = api.admin.post(path, content=raw_json({"apps": ["shop"], "name": "n", f"x{BAD}": 1}),
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "InvalidArgument" and "not valid Unicode" in err["message"], err


@pytest.mark.parametrize("path", ["/api/v1/application/shop/search", "/admin/v1/keys"])
def test_a_body_that_is_not_utf8_is_a_400_naming_the_body(api: Api, path):
    client = api.admin if path.startswith("/admin/") else api.client
    headers = {"Content-Type": "application/json"}
    if not path.startswith("/admin/"):
        headers["Authorization"] = f"Bearer {api.key}"
    r = client.post(path, content=b'{"query": {"text": "\xe8\x83"}}', headers=headers)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["code"], err["field"]) == ("InvalidArgument", "body")
    assert err["message"].startswith("body: ")
