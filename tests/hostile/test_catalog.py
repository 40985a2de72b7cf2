"""The catalog's small defects: a query-log batch lost to one entry, item ids holding `/`, secrets readable by
everyone, and account balances past a 64-bit integer."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from api_fixtures import Api, start, stop
from mmsearch.api.auth import admin_token
from mmsearch.catalog import Catalog
from mmsearch.catalog.accounts import MAX_CREDITS
from mmsearch.catalog.querylog import QueryLogEntry
from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.home import exposure

ODD_IDS = ["a/b", "a%2Fb", "x y", "鞋/子 ü", "trailing/", "q?x=1#frag", "..", "a//b"]


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    items = [{k: v for k, v in p.items() if k != "_vector"} for p in product_items]
    items += [{"item_id": i, "title": f"odd id {i}"} for i in ODD_IDS]
    a = start(tmp_path_factory.mktemp("catalog"), items)
    yield a
    stop(a)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the query log ---------------------------------------------------------------------------------------


def entry(request_id: str | None, text: str = "shoes", user: str | None = "u") -> QueryLogEntry:
    return QueryLogEntry(request_id=request_id, app_id="shop", dataset_id="products", latency_ms=1.0,  # type: ignore[arg-type]
                         total_items=1, result_count=1, user_id=user, query_text=text)


def test_one_bad_query_log_entry_costs_no_other_caller_theirs(tmp_path: Path):
    log = Catalog(f"sqlite:///{tmp_path / 'c.sqlite3'}").query_log
    for i in range(3):
        log.record(entry(f"ok-{i}"))
    log.record(entry("surrogate", text="bad \ud800 text", user="u\udfff"))  # kept, scrubbed to U+FFFD
    log.record(entry(None))  # refused by the database itself (request_id is NOT NULL): dropped alone
    for i in range(3, 5):
        log.record(entry(f"ok-{i}"))
    log.flush()
    got = {e.request_id: e for e in log.recent(limit=100)}
    assert set(got) == {"ok-0", "ok-1", "ok-2", "ok-3", "ok-4", "surrogate"}
    assert got["surrogate"].query_text == "bad \ufffd text" and got["surrogate"].user_id == "u\ufffd"


# -- item ids holding `/` and other characters a path reserves ------------------------------------------------


@pytest.mark.parametrize("item_id", ODD_IDS)
def test_get_item_reads_an_id_with_slashes_and_reserved_characters(api: Api, item_id: str):
    # every reserved character percent-encoded, dots too (a client would drop a literal `..` segment)
    r = api.admin.get(f"/admin/v1/datasets/products/items/{quote(item_id, safe='').replace('.', '%2E')}")
    assert r.status_code == 200, r.text
    assert r.json()["_id"] == item_id and r.json()["item"]["title"] == f"odd id {item_id}"


def test_get_item_with_an_unknown_slashed_id_is_a_404_naming_it(api: Api):
    r = api.admin.get("/admin/v1/datasets/products/items/" + quote("no/such", safe=""))
    assert r.status_code == 404 and r.json()["error"]["field"] == "item_id" and "'no/such'" in r.text


# -- permissions of the home and its secrets -----------------------------------------------------------------


def test_a_new_home_is_0700_and_its_secret_files_0600(tmp_path: Path):
    home = tmp_path / "deep" / "home"
    mm = MMSearch(Settings(home=home, admin_token=None), encoder=None)
    mm.catalog.accounts.create("acme")  # writes a secret, so the WAL exists
    admin_token(mm.settings, announce=False)
    assert mode(home) == 0o700
    assert mode(home / "catalog.sqlite3") == 0o600 and mode(home / "admin_token") == 0o600
    wal = [p for p in home.iterdir() if p.name.startswith("catalog.sqlite3-")]
    assert wal and all(mode(p) == 0o600 for p in wal), [(p.name, oct(mode(p))) for p in wal]
    assert exposure(home) is None


def test_an_existing_open_home_is_left_as_is_and_warned_about(tmp_path: Path):
    home = tmp_path / "shared"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    MMSearch(Settings(home=home), encoder=None)
    assert mode(home) == 0o755  # never changed behind the owner's back
    assert mode(home / "catalog.sqlite3") == 0o600  # but a catalog we create is private
    warning = exposure(home)
    assert warning is not None and f"{home} (0755)" in warning and f"chmod 700 {home}" in warning


# -- account balances -------------------------------------------------------------------------------------


@pytest.mark.parametrize("body,field", [
    ({"name": "big", "plan": "paid", "credits": MAX_CREDITS + 1}, "credits"),
    ({"name": "big", "plan": "paid", "credits": 10**30}, "credits"),
    ({"name": "big", "plan": "paid", "credits": -1}, "credits"),
    ({"name": "big", "qps": 10**30}, "qps"),
])
def test_account_create_with_numbers_past_their_bounds_is_a_400_naming_the_field(api: Api, body, field):
    r = api.admin.post("/admin/v1/accounts", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field and r.json()["error"]["code"] == "InvalidArgument"


def test_account_update_and_recharge_stay_within_64_bits(api: Api):
    assert api.admin.post("/admin/v1/accounts", json={"name": "rich", "plan": "paid", "credits": MAX_CREDITS - 5}
                          ).status_code == 201
    for body, field in (({"credits": MAX_CREDITS + 1}, "credits"), ({"add_credits": 2**64}, "add_credits"),
                        ({"add_credits": 6}, "add_credits")):  # the last one: the sum would overflow
        r = api.admin.patch("/admin/v1/accounts/rich", json=body)
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (body, r.text)
    assert api.admin.get("/admin/v1/accounts/rich").json()["credits"] == MAX_CREDITS - 5  # unchanged
    r = api.admin.patch("/admin/v1/accounts/rich", json={"add_credits": 5})
    assert r.status_code == 200 and r.json()["credits"] == MAX_CREDITS


def test_cli_credits_past_64_bits_is_an_error_naming_the_field(tmp_path: Path):
    home = tmp_path / "home"
    runner = CliRunner()
    assert runner.invoke(app, ["--home", str(home), "account", "create", "acme", "--plan", "paid"]).exit_code == 0
    r = runner.invoke(app, ["--home", str(home), "account", "credits", "acme", str(2**63), "--json"])
    assert r.exit_code == 1 and json.loads(r.stderr)["error"]["field"] == "credits", r.stderr
    r = runner.invoke(app, ["--home", str(home), "account", "credits", "acme", str(MAX_CREDITS), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["credits"] == MAX_CREDITS
    r = runner.invoke(app, ["--home", str(home), "account", "credits", "acme", "1", "--add", "--json"])
    assert r.exit_code == 1 and json.loads(r.stderr)["error"]["field"] == "add_credits", r.stderr
