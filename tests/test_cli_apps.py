"""`mmsearch app|key|job` from the command line, on a real home directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.core import MMSearch

SCHEMA = {"fields": [
    {"name": "item_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "spot", "type": "geo_point"},
]}


@pytest.fixture
def cli(tmp_path: Path):
    runner = CliRunner()
    home = tmp_path / "home"
    MMSearch(Settings(home=home), encoder=None).create_dataset("shoes", SCHEMA, vector_dim=8)

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, ["--home", str(home), *args])
        if ok:
            assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    run.home = home  # type: ignore[attr-defined]
    return run


def test_app_create_with_config_file_and_show(cli, tmp_path: Path):
    config = tmp_path / "app.json"
    config.write_text(json.dumps({"max_page_size": 50, "spell_correction": "suggestion_only",
                                  "location": {"field": "spot", "radius_km": 5}}))
    created = json.loads(cli("app", "create", "shop", "--dataset", "shoes", "--config", str(config), "--json").stdout)
    assert created["datasets"] == ["shoes"] and created["config"]["max_page_size"] == 50
    assert created["config"]["location"]["field"] == "spot"
    shown = json.loads(cli("app", "show", "shop", "--json").stdout)
    assert shown["config"]["spell_correction"] == "suggestion_only"
    listed = json.loads(cli("app", "list", "--json").stdout)
    assert [a["id"] for a in listed] == ["shop"]
    assert "shop" in cli("app", "list").stdout


def test_app_errors_name_the_problem(cli, tmp_path: Path):
    r = cli("app", "create", "shop", "--dataset", "nope", ok=False)
    assert r.exit_code == 1 and "nope" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"max_page_size": 0}))
    r = cli("app", "create", "shop", "--dataset", "shoes", "--config", str(bad), ok=False)
    assert r.exit_code == 1 and "config.max_page_size" in r.stderr
    bad.write_text(json.dumps({"spell_correction": "always"}))
    r = cli("app", "create", "shop", "--dataset", "shoes", "--config", str(bad), ok=False)
    assert "config.spell_correction" in r.stderr
    cli("app", "create", "shop", "--dataset", "shoes")
    r = cli("app", "create", "shop", "--dataset", "shoes", ok=False)
    assert "already exists" in r.stderr
    r = cli("dataset", "drop", "shoes", "--yes", ok=False)
    assert r.exit_code == 1 and "shop" in r.stderr  # still bound


def test_key_create_prints_the_key_once_and_revoke(cli):
    cli("app", "create", "shop", "--dataset", "shoes")
    made = json.loads(cli("key", "create", "--app", "shop", "--json").stdout)
    assert made["key"].startswith("mms_") and made["apps"] == ["shop"]
    mm = MMSearch(Settings(home=cli.home), encoder=None)
    assert mm.catalog.keys.by_bearer(made["key"]).allows("shop")
    listed = json.loads(cli("key", "list", "--json").stdout)
    assert [k["id"] for k in listed] == [made["id"]] and "key" not in listed[0]
    text = cli("key", "create", "--app", "shop").stdout
    assert "mms_" in text and "secret access key" in text
    revoked = json.loads(cli("key", "revoke", made["key"], "--json").stdout)
    assert revoked["revoked_at"]
    assert not mm.catalog.keys.by_bearer(made["key"]).active
    r = cli("key", "revoke", "mms_nope_x", ok=False)
    assert r.exit_code == 1
    r = cli("key", "create", "--app", "missing", ok=False)
    assert "missing" in r.stderr


def test_job_list_and_show(cli):
    mm = MMSearch(Settings(home=cli.home), encoder=None)
    from mmsearch.ingest.jobs import JobRunner, submit_body

    job = submit_body(mm, "shoes", b'{"item_id": "a", "title": "red shoe"}\n{"title": "no id"}\n')
    runner = JobRunner(mm)
    claimed = mm.catalog.jobs.claim(runner.worker)
    runner.run(claimed)
    listed = json.loads(cli("job", "list", "--json").stdout)
    assert listed[0]["job_id"] == job.id and listed[0]["status"] == "succeeded"
    shown = json.loads(cli("job", "show", job.id, "--json").stdout)
    assert shown["progress"]["imported"] == 1 and shown["progress"]["failed"] == 1
    assert shown["errors"][0]["index"] == 1
    assert job.id in cli("job", "list").stdout
    assert cli("job", "show", "nope", ok=False).exit_code == 1


def test_cli_import_is_a_job(cli, tmp_path: Path):
    data = tmp_path / "items.jsonl"
    data.write_text('{"item_id": "a", "title": "red shoe"}\n{"item_id": "b", "title": "blue shoe"}\n{"title": "x"}\n')
    result = cli("import", "shoes", str(data))
    assert "imported 2" in result.stdout and "job " in result.stderr
    jobs = json.loads(cli("job", "list", "--json").stdout)
    assert len(jobs) == 1
    job = jobs[0]
    progress = job["progress"]
    assert (job["kind"], job["status"], progress["imported"], progress["failed"]) == ("file", "succeeded", 2, 1)
    assert data.exists()  # the user's file is the job's source: never deleted
    cli("import", "shoes", str(data))  # a re-run is idempotent
    mm = MMSearch(Settings(home=cli.home), encoder=None)
    assert mm.store.count(mm.dataset("shoes")) == 2
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    r = cli("import", "shoes", str(broken), ok=False)
    assert r.exit_code == 1 and "invalid JSON" in r.stderr
    assert len(json.loads(cli("job", "list", "--json").stdout)) == 2  # an unreadable file never becomes a job
