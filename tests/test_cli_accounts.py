"""`mmsearch account ...` from the command line, on a real home directory; the keys it prints really work."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsearch.catalog import Catalog
from mmsearch.catalog.accounts import ARREARS, NOT_ACTIVATE, NOT_AUTHORISED, PERIOD_EXPIRED, IqsError
from mmsearch.cli import app
from mmsearch.config import Settings


@pytest.fixture
def cli(tmp_path: Path):
    runner = CliRunner()
    home = tmp_path / "home"

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, ["--home", str(home), *args])
        if ok:
            assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    run.home = home  # type: ignore[attr-defined]
    return run


def catalog(cli) -> Catalog:
    return Catalog(Settings(home=cli.home).catalog_dsn)


def code(fn, *args) -> str:
    with pytest.raises(IqsError) as info:
        fn(*args)
    return info.value.code


def test_create_json_is_one_object_with_the_keys(cli):
    r = cli("account", "create", "acme", "--plan", "paid", "--qps", "7", "--credits", "2", "--json")
    new = json.loads(r.stdout)
    assert isinstance(new, dict)
    assert {"access_key_id", "access_key_secret", "api_key"} <= new.keys()
    assert (new["name"], new["plan"], new["credits"], new["qps"], new["active"]) == ("acme", "paid", 2, 7, True)
    assert new["is_sub"] is False and new["trial_expires_at"] is None
    accounts = catalog(cli).accounts
    found = accounts.key_by_access_key_id(new["access_key_id"])
    assert found is not None and found[1] == new["access_key_secret"]
    assert accounts.authorize_api_key(new["api_key"]).credits_left == 1
    accounts.authorize_access_key(new["access_key_id"])
    assert code(accounts.authorize_access_key, new["access_key_id"]) == ARREARS
    cli("account", "credits", "acme", "5")
    assert catalog(cli).accounts.authorize_api_key(new["api_key"]).credits_left == 4
    topped = json.loads(cli("account", "credits", "acme", "3", "--add", "--json").stdout)
    assert topped["credits"] == 7


def test_create_plain_output_shows_the_secrets_once(cli):
    r = cli("account", "create", "acme")
    assert "access key id:" in r.stdout and "access key secret:" in r.stdout and "API key:" in r.stdout
    api_key = next(line.split()[-1] for line in r.stdout.splitlines() if line.startswith("API key:"))
    assert api_key.startswith("iqs_")
    shown = cli("account", "show", "acme").stdout
    assert api_key not in shown and '"plan": "trial"' in shown
    assert "acme" in cli("account", "list").stdout


def test_inactive_then_activate_and_deactivate(cli):
    new = json.loads(cli("account", "create", "acme", "--inactive", "--json").stdout)
    assert new["active"] is False
    assert code(catalog(cli).accounts.authorize_access_key, new["access_key_id"]) == NOT_ACTIVATE
    assert json.loads(cli("account", "activate", "acme", "--json").stdout)["active"] is True
    catalog(cli).accounts.authorize_access_key(new["access_key_id"])
    assert "deactivated" in cli("account", "deactivate", "acme").stdout
    assert code(catalog(cli).accounts.authorize_access_key, new["access_key_id"]) == NOT_ACTIVATE


def test_subkey_without_permission_then_grant(cli):
    cli("account", "create", "acme")
    sub = json.loads(cli("account", "subkey", "acme", "--no-permission", "--json").stdout)
    assert {"access_key_id", "access_key_secret", "api_key"} <= sub.keys()
    assert sub["is_sub"] is True and sub["can_search"] is False and sub["name"] == "acme"
    assert code(catalog(cli).accounts.authorize_api_key, sub["api_key"]) == NOT_AUTHORISED
    granted = json.loads(cli("account", "grant", sub["access_key_id"], "--json").stdout)
    assert granted["can_search"] is True
    assert catalog(cli).accounts.authorize_api_key(sub["api_key"]).account == "acme"
    shown = json.loads(cli("account", "show", "acme", "--json").stdout)
    assert [k["is_sub"] for k in shown["keys"]] == [False, True]
    cli("account", "revoke", sub["access_key_id"])
    assert catalog(cli).accounts.key_by_api_key(sub["api_key"]) is None


def test_created_at_sets_the_trial_age(cli):
    old = (datetime.now(UTC) - timedelta(days=16)).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = json.loads(cli("account", "create", "old", "--created-at", old, "--json").stdout)
    assert new["created_at"].startswith(old[:10])
    assert code(catalog(cli).accounts.authorize_access_key, new["access_key_id"]) == PERIOD_EXPIRED
    young = json.loads(cli("account", "create", "young", "--created-at",
                           (datetime.now(UTC) - timedelta(days=14)).isoformat(), "--json").stdout)
    assert catalog(cli).accounts.authorize_access_key(young["access_key_id"]).plan == "trial"
    updated = json.loads(cli("account", "update", "old", "--plan", "paid", "--qps", "3", "--json").stdout)
    assert (updated["plan"], updated["qps"]) == ("paid", 3)


def test_errors_name_the_problem(cli):
    r = cli("account", "create", "acme", "--plan", "gold", ok=False)
    assert r.exit_code == 1 and "plan: 'gold' must be one of trial, paid" in r.stderr
    r = cli("account", "create", "acme", "--created-at", "yesterday", "--json", ok=False)
    assert r.exit_code == 1 and json.loads(r.stderr)["error"]["field"] == "created_at" and r.stdout == ""
    r = cli("account", "create", "acme", "--qps", "0", ok=False)
    assert r.exit_code == 1 and "qps:" in r.stderr
    cli("account", "create", "acme")
    r = cli("account", "create", "acme", ok=False)
    assert r.exit_code == 1 and "already exists" in r.stderr
    r = cli("account", "subkey", "nobody", ok=False)
    assert r.exit_code == 1 and "account 'nobody' does not exist" in r.stderr
    r = cli("account", "credits", "acme", "--", "-5", ok=False)
    assert r.exit_code == 1 and "credits: -5 must be an integer from 0 to 9223372036854775807" in r.stderr
    r = cli("account", "grant", "LTAInope", "--json", ok=False)
    assert r.exit_code == 1 and json.loads(r.stderr)["error"]["code"] == "NotFound"
    assert json.loads(cli("account", "list", "--json").stdout)[0]["name"] == "acme"
