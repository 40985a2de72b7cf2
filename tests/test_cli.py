"""The CLI as users and scripts drive it: real files, real LanceDB under a temp MMSEARCH_HOME."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mmsearch.cli import app

SCHEMA = {"fields": [
    {"name": "item_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "status", "type": "int32", "filterable": True, "sortable": True},
    {"name": "price", "type": "float", "filterable": True, "sortable": True},
    {"name": "tags", "type": "array<string>", "filterable": True},
]}
ITEMS = [
    {"item_id": "A1", "title": "轻便网面 跑步运动鞋", "status": 1, "price": 199.0, "tags": ["sale"]},
    {"item_id": "A2", "title": "尖头浅口高跟鞋 黑色", "status": 2, "price": 299.0, "tags": []},
    {"item_id": "A3", "title": "波西米亚 坡跟凉鞋", "status": 1, "price": 99.0, "tags": ["new", "sale"]},
]


@pytest.fixture
def cli(tmp_path: Path):
    runner = CliRunner()
    home = tmp_path / "home"

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, ["--home", str(home), *args])
        if ok:
            assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    return run


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA), encoding="utf-8")
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text("\n".join(json.dumps(i, ensure_ascii=False) for i in ITEMS) + "\n", encoding="utf-8")
    return {"schema": schema, "jsonl": jsonl}


def test_dataset_lifecycle_json(cli, files):
    created = json.loads(cli("dataset", "create", "shoes", "--schema", str(files["schema"]), "--json").stdout)
    assert created["id"] == "shoes" and created["type"] == "image_text"
    assert [f["name"] for f in created["schema"]["fields"]] == [f["name"] for f in SCHEMA["fields"]]

    listed = json.loads(cli("dataset", "list", "--json").stdout)
    assert [(d["id"], d["items"]) for d in listed] == [("shoes", 0)]

    report = json.loads(cli("import", "shoes", str(files["jsonl"]), "--json").stdout)
    assert (report["imported"], report["inserted"], report["rejected"]) == (3, 3, 0)

    shown = json.loads(cli("dataset", "show", "shoes", "--json").stdout)
    assert shown["stats"]["rows"] == 3
    assert "_id" in shown["stats"]["indexes"] and "f_status" in shown["stats"]["indexes"]

    dropped = json.loads(cli("dataset", "drop", "shoes", "--yes", "--json").stdout)
    assert dropped == {"id": "shoes", "dropped": True}
    assert json.loads(cli("dataset", "list", "--json").stdout) == []


def test_create_errors_name_the_problem(cli, tmp_path, files):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fields": [{"name": "x", "type": "varchar", "primary_key": True}]}))
    result = cli("dataset", "create", "d1", "--schema", str(bad), ok=False)
    assert result.exit_code == 1
    assert "fields[0].type (x)" in result.stderr and "unknown type" in result.stderr

    result = cli("dataset", "create", "bad id!", "--schema", str(files["schema"]), ok=False)
    assert result.exit_code == 1 and "dataset_id" in result.stderr

    cli("dataset", "create", "d2", "--schema", str(files["schema"]))
    again = cli("dataset", "create", "d2", "--schema", str(files["schema"]), "--json", ok=False)
    assert again.exit_code == 1 and again.stdout == ""
    assert json.loads(again.stderr)["error"]["code"] == "AlreadyExists"


def test_import_all_formats_and_partial_batches(cli, tmp_path, files):
    cli("dataset", "create", "shoes", "--schema", str(files["schema"]))

    as_json = tmp_path / "items.json"
    as_json.write_text(json.dumps([*ITEMS[:2], {"item_id": "B1", "title": "x", "status": "high"}]))
    report = json.loads(cli("import", "shoes", str(as_json), "--json").stdout)
    assert (report["inserted"], report["rejected"]) == (2, 1)
    assert report["errors"][0] | {"message": None} == {
        "index": 2, "id": "B1", "field": "status", "rule": "type", "message": None}

    as_csv = tmp_path / "items.csv"
    with as_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item_id", "title", "status", "price", "tags", "colour"])
        writer.writerow(["C1", "红色 帆布鞋", "3", "59.5", '["canvas"]', "red"])
        writer.writerow(["C2", "白色 板鞋", "not-a-number", "", "", ""])
    report = json.loads(cli("import", "shoes", str(as_csv), "--json").stdout)
    assert (report["inserted"], report["rejected"]) == (1, 1)
    assert report["errors"][0]["field"] == "status"
    got = json.loads(cli("get", "shoes", "--ids", "C1").stdout)
    assert got == [{"item_id": "C1", "title": "红色 帆布鞋", "status": 3, "price": 59.5, "tags": ["canvas"],
                    "colour": "red"}]

    as_parquet = tmp_path / "items.parquet"
    pq.write_table(pa.Table.from_pylist(ITEMS), as_parquet)
    report = json.loads(cli("import", "shoes", str(as_parquet), "--json").stdout)
    assert (report["inserted"], report["replaced"], report["rejected"]) == (1, 2, 0)  # A3 new, A1/A2 replaced

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"item_id": "D1", "title": "ok"}\n{not json}\n')
    report = json.loads(cli("import", "shoes", str(broken), "--json").stdout)
    assert (report["inserted"], report["rejected"]) == (1, 1)
    assert report["errors"][0]["rule"] == "json" and "line 2" in report["errors"][0]["message"]


def test_import_exits_nonzero_when_nothing_imported(cli, tmp_path, files):
    cli("dataset", "create", "shoes", "--schema", str(files["schema"]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "no primary key"}\n')
    result = cli("import", "shoes", str(bad), ok=False)
    assert result.exit_code == 1
    assert "rejected 1" in result.stdout and "item_id: is required" in result.stdout

    result = cli("import", "shoes", str(tmp_path / "x.txt"), ok=False)
    assert result.exit_code != 0


def test_search_table_and_json(cli, files):
    cli("dataset", "create", "shoes", "--schema", str(files["schema"]))
    cli("import", "shoes", str(files["jsonl"]))

    table = cli("search", "shoes", "运动鞋").stdout
    assert "A1" in table and "A2" not in table

    hits = json.loads(cli("search", "shoes", "鞋", "--sort-by", "price", "--sort-order", "asc", "--json").stdout)
    assert hits["total_items"] == 3
    assert [h["_id"] for h in hits["search_results"]] == ["A3", "A1", "A2"]
    first = hits["search_results"][0]
    assert first["recall_info"][0]["recall_reason"] == "text"
    assert first["rerank_info"] == {"is_reranked": False}

    filtered = json.loads(cli(
        "search", "shoes", "鞋", "--json", "--filter", '{"op":"must","field":"tags","conds":["sale"]}',
        "--fields", "title,nope",
    ).stdout)
    assert {h["_id"] for h in filtered["search_results"]} == {"A1", "A3"}
    assert all(set(h["display_fields"]) == {"title"} for h in filtered["search_results"])

    page2 = json.loads(cli("search", "shoes", "鞋", "--json", "--size", "2", "--page", "2").stdout)
    assert len(page2["search_results"]) == 1 and page2["total_items"] == 3

    bad = cli("search", "shoes", "鞋", "--filter", '{"op":"must","field":"status","conds":["1"]}', ok=False)
    assert bad.exit_code == 1 and "filter.conds[0]" in bad.stderr and "not an integer" in bad.stderr
    bad = cli("search", "shoes", "鞋", "--filter", "{oops", ok=False)
    assert bad.exit_code == 1 and "filter: not valid JSON" in bad.stderr


def test_delete(cli, files):
    cli("dataset", "create", "shoes", "--schema", str(files["schema"]))
    cli("import", "shoes", str(files["jsonl"]))
    assert json.loads(cli("delete", "shoes", "--ids", "A1,A2,ZZ", "--json").stdout) == {"requested": 3, "deleted": 2}
    assert [h["_id"] for h in json.loads(cli("search", "shoes", "鞋", "--json").stdout)["search_results"]] == ["A3"]
    missing = cli("delete", "nope", "--ids", "A1", ok=False)
    assert missing.exit_code == 1 and "'nope' does not exist" in missing.stderr


def test_demo_builds_and_searches(cli, monkeypatch):
    monkeypatch.setenv("MMSEARCH_OCR", "false")  # OCR of the pictures: test_quickstart.py, on a subset
    result = cli("demo")
    assert "imported 240" in result.stdout
    assert "运动鞋" in result.stdout and "matches" in result.stdout


def test_entry_point_json_stdout_is_pure(tmp_path, files):
    """The installed `mmsearch` script, MMSEARCH_HOME from the environment, stdout parseable as one value."""
    exe = Path(sys.executable).with_name("mmsearch")
    env = {**os.environ, "MMSEARCH_HOME": str(tmp_path / "envhome")}

    def run(*args: str) -> str:
        done = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("dataset", "create", "shoes", "--schema", str(files["schema"]))
    report = json.loads(run("import", "shoes", str(files["jsonl"]), "--json"))
    assert report["imported"] == 3
    assert (tmp_path / "envhome" / "catalog.sqlite3").exists()
    assert json.loads(run("search", "shoes", "凉鞋", "--json"))["search_results"][0]["_id"] == "A3"


def test_doctor_reports_model_and_ocr(cli):
    report = json.loads(cli("doctor", "--json").stdout)
    assert report["model"]["available"] is False and "MMSEARCH_CLIP_MODEL=none" in report["model"]["message"]
    assert report["vlm_channel"] == "unavailable"
    assert report["ocr"]["available"] is True and "rapidocr" in report["ocr"]["detail"]
    human = cli("doctor").stdout
    assert "text channel (fields + OCR) still answers" in human


def test_search_by_image_with_a_model(tmp_path, monkeypatch):
    import tiny_clip
    from render import render_text

    model = tiny_clip.build_immich(tmp_path / "model")
    monkeypatch.setenv("MMSEARCH_CLIP_MODEL", str(model))
    monkeypatch.setenv("MMSEARCH_IMAGE_ROOTS", str(tmp_path))
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"fields": [
        {"name": "item_id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
        {"name": "images", "type": "image"},
    ]}))
    render_text(["运动鞋"]).save(tmp_path / "a.png")
    render_text(["Coffee Mug"], background=(0, 0, 90), color=(255, 255, 255)).save(tmp_path / "b.png")
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps({"item_id": n, "title": n, "images": str(tmp_path / f"{n}.png")})
                               for n in ("a", "b")))
    assert runner.invoke(app, [*home, "dataset", "create", "g", "--schema", str(schema)]).exit_code == 0
    done = runner.invoke(app, [*home, "import", "g", str(items), "--json"])
    report = json.loads(done.stdout)
    assert report["imported"] == 2 and report["images"]["embedded"] == 2, done.stderr
    found = runner.invoke(app, [*home, "search", "g", "", "--image", str(tmp_path / "b.png"), "--json"])
    hits = json.loads(found.stdout)["search_results"]
    assert hits[0]["_id"] == "b"
    assert [r["recall_reason"] for r in hits[0]["recall_info"]] == ["vlm"]  # text "" asks nothing of BM25
