"""`mmsearch backup` / `mmsearch restore` (issue 15): a copy taken while imports and searches run restores, into a
new home, exactly the backed-up versions (item counts, and the same ids in the same order for text and vector
queries); unfinished jobs resume there; a damaged backup, a non-empty home and a Milvus store are refused;
--dataset copies one table; the catalog goes through SQLite's backup API or pg_dump."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lance
import numpy as np
import pytest
from typer.testing import CliRunner

import postgres
from conftest import TITLE_SCHEMA
from mmsearch.backup import Step, backup, restore
from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder
from mmsearch.errors import InvalidArgument, NotFound
from mmsearch.ingest.jobs import JobRunner, submit_body
from mmsearch.search import SearchOptions, SearchRequest
from mmsearch.store.lance import LanceStore
from mmsearch.store.serving import snapshot

DIM = 8
SCHEMA: dict[str, Any] = {"fields": [
    {"name": "item_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "category", "type": "string", "filterable": True},
    {"name": "price", "type": "float", "filterable": True, "sortable": True},
]}
WORDS = ("运动鞋", "连衣裙", "背包", "running", "shoe", "leather", "bag", "summer", "dress", "wool", "coat", "红色",
         "蓝色", "canvas", "tote", "kids", "winter", "silk", "scarf", "denim")
TEXT_QUERIES = ["运动鞋", "running shoe", "leather bag", "summer dress 红色", "wool coat"]
ALL = SearchOptions(recall_size=5_000)


def _items(start: int, n: int, version: int = 0) -> list[dict[str, Any]]:
    """Items `start`..`start+n`, the same for the same arguments; `version` changes titles and vectors (updates)."""
    out = []
    for i in range(start, start + n):
        rng = np.random.default_rng([i, version])
        out.append({"item_id": f"it{i:05d}", "title": " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))),
                    "category": f"c{i % 5}", "price": float(i % 97), "_vector": rng.standard_normal(DIM).tolist()})
    return out


def _ndjson(items: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(i, ensure_ascii=False).encode() + b"\n" for i in items)


def _engine(home: Path, **settings: Any) -> MMSearch:
    return MMSearch(Settings(home=home, ocr=False, **settings), encoder=HashingEncoder(DIM))


def _home(home: Path, items: int = 300, **settings: Any) -> MMSearch:
    mm = _engine(home, **settings)
    mm.create_dataset("products", SCHEMA, vector_dim=DIM)
    mm.create_dataset("notes", TITLE_SCHEMA, vector_dim=DIM)
    assert mm.import_items("products", _items(0, items)).rejected == 0
    assert mm.import_items("notes", [{"id": "n1", "title": "a note on leather"}]).rejected == 0
    mm.catalog.apps.create("shop", ["products"])
    return mm


def _answers(mm: MMSearch) -> list[list[tuple[str, float]]]:
    """Ranked (id, score) lists for text queries, vector queries and a filtered, sorted one."""
    rng = np.random.default_rng(99)
    requests = [SearchRequest(text=t, page_size=50) for t in TEXT_QUERIES]
    requests += [SearchRequest(vector=rng.standard_normal(DIM), page_size=50) for _ in range(4)]
    requests.append(SearchRequest(text="bag", filter={"op": "must", "field": "category", "conds": ["c1", "c2"]},
                                  sort_by="price", sort_order="desc", page_size=50))
    return [[(h.id, round(h.score, 5)) for h in mm.search("products", r, ALL).hits] for r in requests]


def _wait(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def _table(mm: MMSearch, dataset: str = "products") -> str:
    return str(mm.settings.tables_dir / f"{dataset}.lance")


def _at_version(mm: MMSearch, version: int, dataset: str = "products") -> MMSearch:
    """The home put back to `version` of the table by Lance itself (not by the code under test), read afresh."""
    lance.dataset(_table(mm, dataset)).checkout_version(version).restore()
    snapshot.remove(mm.settings.tables_dir, dataset)  # its serving index follows the latest version: rebuild it
    return _engine(mm.settings.home)


def test_backup_while_importing_restores_the_backed_up_versions(tmp_path):
    a = _home(tmp_path / "a")
    key = a.catalog.keys.create(["shop"], name="ci")
    info = a.dataset("products")
    posted: dict[str, list[str]] = {}  # job id -> the ids it carries
    for n in range(6):  # queued before the backup starts: a server's worker is busy with them during it
        items = _items(1_000 + 100 * n, 100) + _items(10 * n, 10, version=1)  # new items and updates
        posted[submit_body(a, "products", _ndjson(items)).id] = [i["item_id"] for i in items]
    runner = JobRunner(a, batch_size=20, poll_s=0.02)
    stop = threading.Event()
    searches: list[int] = []
    failures: list[BaseException] = []

    def search_loop() -> None:
        while not stop.is_set():
            try:
                searches.append(len(a.search("products", SearchRequest(text="running shoe")).hits))
            except BaseException as exc:  # reported by the assertion below
                failures.append(exc)

    def post_loop() -> None:
        n = 0
        while not stop.is_set():
            items = _items(5_000 + 50 * n, 50)
            try:
                posted[submit_body(a, "products", _ndjson(items)).id] = [i["item_id"] for i in items]
            except BaseException as exc:  # reported by the assertion below
                failures.append(exc)
            n += 1
            time.sleep(0.05)

    at_catalog: list[int] = []
    dest = tmp_path / "backup"
    started: list[int] = []  # searches answered when the backup began

    def hook(step: Step) -> None:
        """Imports land between the catalog snapshot and the table copy, and after the copy before the end; a
        search answers while the backup is under way (it holds nothing searches need)."""
        if step.name == "catalog" and step.done == 1:
            at_catalog.append(a.store.latest_version(info, refresh=True))
        elif step.name == "table products" and step.done == 0:
            _wait(lambda: a.store.latest_version(info, refresh=True) > at_catalog[0], "an import commits")
            _wait(lambda: len(searches) > started[0], "a search answers during the backup")
        elif step.name == "files" and step.done == 0:
            copied = lance.dataset(str(dest / "tables" / "products.lance")).version
            _wait(lambda: a.store.latest_version(info, refresh=True) > copied, "an import commits")

    threads = [threading.Thread(target=search_loop), threading.Thread(target=post_loop)]
    runner.start()
    for t in threads:
        t.start()
    try:
        _wait(lambda: len(searches) > 0, "the first search answers")  # the serving index is built
        started.append(len(searches))
        manifest = backup(a.settings, dest, on_progress=hook)
        searched_during = len(searches) - started[0]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        runner.stop(30)
    assert not failures, failures[:3]
    assert searched_during > 0 and all(n > 0 for n in searches)

    (products,) = [d for d in manifest["datasets"] if d["id"] == "products"]
    version = products["version"]
    assert version > at_catalog[0]  # the table was copied after the catalog, with imports in between
    assert a.store.latest_version(info, refresh=True) > version  # and the original moved on
    assert manifest["jobs"]["staged"], "no job was unfinished at the catalog snapshot"
    assert products["items"] == lance.dataset(_table(a), version=version).count_rows()
    assert {d["id"] for d in manifest["datasets"]} == {"products", "notes"}

    b_home = tmp_path / "b"
    report = restore(Settings(home=b_home), dest)
    assert {d["id"]: d["version"] for d in report["datasets"]} == {d["id"]: d["version"] for d in manifest["datasets"]}
    b = _engine(b_home)
    assert b.store.count(b.dataset("products")) == products["items"]
    assert b.store.count(b.dataset("notes")) == 1
    assert b.catalog.apps.get("shop").datasets == ["products"]
    assert b.catalog.keys.by_bearer(key.key) is not None

    reference = _at_version(a, version)
    assert reference.store.count(reference.dataset("products")) == products["items"]
    assert _answers(b) == _answers(reference)

    # the jobs that were unfinished at the snapshot are queued on the restored staged files, and resume there
    jobs = {j.id: j for j in b.catalog.jobs.list(limit=1_000)}
    assert set(jobs) <= set(posted)
    queued = [j for j in jobs.values() if j.status == "queued"]
    assert queued and not [j for j in jobs.values() if j.status == "running"]
    assert all(Path(j.source).parent == b_home.resolve() / "jobs" and Path(j.source).is_file() for j in queued)
    worker = JobRunner(b, batch_size=100)
    while (job := b.catalog.jobs.claim(worker.worker)) is not None:
        assert worker.run(job).status == "succeeded"
    wanted = sorted({i for job_id in jobs for i in posted[job_id]})
    assert len(b.get("products", wanted)) == len(wanted)  # every item of every job the catalog knew


@pytest.mark.parametrize("finishes", ["before its staged file is copied", "after the table is copied"])
def test_a_job_that_finishes_during_the_backup_is_consistent_after_restore(tmp_path, finishes):
    """Staged files are copied after the catalog and before the tables: a job finished before the copy has its items
    in the table (restored finished); one finished after the table copy is restored queued, with its staged items."""
    a = _home(tmp_path / "a")
    job = submit_body(a, "products", _ndjson(_items(2_000, 40)))
    when = ("catalog", 1) if finishes.startswith("before") else ("table products", 1)

    def hook(step: Step) -> None:
        if (step.name, step.done) == when:
            runner = JobRunner(a)
            claimed = a.catalog.jobs.claim(runner.worker)
            assert claimed is not None and runner.run(claimed).status == "succeeded"

    manifest = backup(a.settings, tmp_path / "backup", on_progress=hook)
    assert (job.id in manifest["jobs"]["finished"]) == finishes.startswith("before")
    restore(Settings(home=tmp_path / "b"), tmp_path / "backup")
    b = _engine(tmp_path / "b")
    worker = JobRunner(b)
    while (claimed := b.catalog.jobs.claim(worker.worker)) is not None:
        worker.run(claimed)
    done = b.catalog.jobs.get(job.id)
    assert (done.status, done.done, done.imported) == ("succeeded", 40, 40)
    assert len(b.get("products", [f"it{i:05d}" for i in range(2_000, 2_040)])) == 40


def test_the_serving_snapshot_travels_and_is_loaded_not_rebuilt(tmp_path, caplog):
    a = _home(tmp_path / "a", items=1_200)
    a.search("products", SearchRequest(text="bag"))  # builds the serving index, saved on a thread (>= 1,000 rows)
    _wait(lambda: snapshot.latest(a.settings.tables_dir, "products") is not None, "a snapshot is saved")
    manifest = backup(a.settings, tmp_path / "backup")
    (products,) = [d for d in manifest["datasets"] if d["id"] == "products"]
    assert products["serving_snapshot"] == products["version"]
    restore(Settings(home=tmp_path / "b"), tmp_path / "backup")
    b = _engine(tmp_path / "b")
    with caplog.at_level(logging.INFO, logger="mmsearch.serving"):
        answers = _answers(b)
    assert "products built from the table" not in caplog.text
    assert answers == _answers(a)


def test_a_damaged_backup_is_refused_naming_the_file_and_changes_nothing(tmp_path):
    a = _home(tmp_path / "a")
    dest = tmp_path / "backup"
    manifest = backup(a.settings, dest)
    data = sorted(f for f in manifest["files"] if f.startswith("tables/products.lance/data/"))[0]
    target = Settings(home=tmp_path / "b")

    raw = bytearray((dest / data).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (dest / data).write_bytes(bytes(raw))
    with pytest.raises(InvalidArgument, match=re.escape(f"damaged: {data} does not match its sha256")):
        restore(target, dest)
    assert [p.name for p in target.home.iterdir()] == []  # nothing left behind, not even the staging folder

    (dest / data).unlink()
    with pytest.raises(InvalidArgument, match=re.escape(f"damaged: {data} is missing")):
        restore(target, dest)

    edited = json.loads((dest / "manifest.json").read_text())
    (dest / "manifest.json").write_text(json.dumps({**edited, "schema_revision": "9999"}))
    with pytest.raises(InvalidArgument, match="revision 9999, made by a newer mmsearch"):
        restore(target, dest)
    (dest / "manifest.json").unlink()
    with pytest.raises(InvalidArgument, match=r"no manifest\.json"):
        restore(target, dest)


def test_a_non_empty_home_is_refused_unless_forced(tmp_path):
    a = _home(tmp_path / "a")
    dest = tmp_path / "backup"
    manifest = backup(a.settings, dest)
    assert a.import_items("products", _items(500, 50)).rejected == 0  # after the backup
    a.catalog.apps.create("later", ["notes"])
    with pytest.raises(InvalidArgument, match=r"is not empty \(2 datasets in the catalog.*--force"):
        restore(a.settings, dest)
    # a damaged backup leaves the home as it was, even with --force
    data = next(f for f in manifest["files"] if f.startswith("tables/notes.lance/data/"))
    good = (dest / data).read_bytes()
    (dest / data).write_bytes(good + b"x")
    with pytest.raises(InvalidArgument, match="damaged"):
        restore(a.settings, dest, force=True)
    assert a.store.count(a.dataset("products")) == 350
    (dest / data).write_bytes(good)

    restore(a.settings, dest, force=True)
    again = _engine(a.settings.home)
    assert again.store.count(again.dataset("products")) == 300
    assert [x.id for x in again.catalog.apps.list()] == ["shop"]


def test_one_dataset_copies_its_table_and_restores_the_others_empty(tmp_path):
    a = _home(tmp_path / "a")
    waiting = submit_body(a, "notes", _ndjson([{"id": "n2", "title": "another note"}]))
    manifest = backup(a.settings, tmp_path / "backup", dataset="products")
    assert [d["id"] for d in manifest["datasets"]] == ["products"]
    assert manifest["catalog_datasets"] == ["notes", "products"]
    assert not any(f.startswith("tables/notes.lance") for f in manifest["files"])
    report = restore(Settings(home=tmp_path / "b"), tmp_path / "backup")
    assert {d["id"]: (d["items"], d["restored"]) for d in report["datasets"]} == {
        "products": (300, True), "notes": (0, False)}
    b = _engine(tmp_path / "b")
    assert b.search("notes", SearchRequest(text="note")).hits == []
    assert b.catalog.jobs.get(waiting.id).status == "cancelled"
    with pytest.raises(NotFound, match="no dataset 'nope'"):
        backup(a.settings, tmp_path / "other", dataset="nope")
    assert not (tmp_path / "other").exists()


def test_the_clone_is_retried_and_last_held_under_the_write_lock(tmp_path, monkeypatch):
    a = _home(tmp_path / "a")
    real = LanceStore.clone_latest
    calls: list[bool] = []

    def flaky(self: LanceStore, info: Any, tables: Path, hold_lock: bool = False) -> int:
        calls.append(hold_lock)
        if info.id == "products" and len(calls) < 3:  # a cleanup removed a file under the first two copies
            raise OSError("Not found: data/gone.lance")
        return real(self, info, tables, hold_lock)

    monkeypatch.setattr(LanceStore, "clone_latest", flaky)
    manifest = backup(a.settings, tmp_path / "backup", dataset="products")
    assert calls == [False, False, True]
    assert manifest["datasets"][0]["items"] == 300


def test_milvus_and_overlapping_folders_are_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="milvus-backup"):
        backup(Settings(home=tmp_path / "m", store=f"milvus:{tmp_path / 'm.db'}"), tmp_path / "backup")
    a = _home(tmp_path / "a")
    for inside in (a.settings.home, a.settings.tables_dir / "copy", tmp_path):
        with pytest.raises(InvalidArgument, match="overlaps the home"):
            backup(a.settings, inside)


def test_the_cli_backs_up_and_restores_with_one_json_value(tmp_path):
    _home(tmp_path / "a")
    runner = CliRunner()
    dest = tmp_path / "backup"
    done = runner.invoke(app, ["--home", str(tmp_path / "a"), "backup", str(dest), "--json"])
    assert done.exit_code == 0, done.stderr
    summary = json.loads(done.stdout)
    assert {d["id"]: d["items"] for d in summary["datasets"]} == {"products": 300, "notes": 1}
    assert summary["catalog"]["kind"] == "sqlite" and summary["files"] > 5

    again = runner.invoke(app, ["--home", str(tmp_path / "a"), "backup", str(dest)])
    message = " ".join(again.stderr.split())  # Rich wraps the line
    assert again.exit_code == 1 and "is not empty" in message and "--force" in message
    forced = runner.invoke(app, ["--home", str(tmp_path / "a"), "backup", str(dest), "--force", "--dataset",
                                 "notes"])
    assert forced.exit_code == 0, forced.stderr
    assert "backed up notes (version" in forced.stdout

    done = runner.invoke(app, ["--home", str(tmp_path / "b"), "restore", str(dest), "--json"])
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert {d["id"]: d["items"] for d in report["datasets"]} == {"products": 0, "notes": 1}
    refused = runner.invoke(app, ["--home", str(tmp_path / "b"), "restore", str(dest), "--json"])
    assert refused.exit_code == 1 and refused.stdout == ""
    assert json.loads(refused.stderr)["error"]["field"] == "home"


def test_a_postgresql_catalog_goes_through_pg_dump(tmp_path, postgres_server):
    a = _home(tmp_path / "a", catalog_url=postgres.database(postgres_server))
    key = a.catalog.keys.create(["shop"], name="pg")
    queued = submit_body(a, "products", _ndjson(_items(3_000, 30)))
    manifest = backup(a.settings, tmp_path / "backup")
    assert manifest["catalog"] == {"kind": "postgresql", "file": "catalog.pgdump"}
    assert list(manifest["jobs"]["staged"]) == [queued.id]

    target = Settings(home=tmp_path / "b", catalog_url=postgres.database(postgres_server))
    restore(target, tmp_path / "backup")
    b = _engine(target.home, catalog_url=target.catalog_url)
    assert [d.id for d in b.datasets()] == ["notes", "products"]
    assert b.catalog.keys.by_bearer(key.key) is not None
    assert _answers(b) == _answers(a)
    assert b.catalog.jobs.get(queued.id).status == "queued"

    b.catalog.apps.create("extra", ["notes"])
    with pytest.raises(InvalidArgument, match="not empty"):
        restore(target, tmp_path / "backup")
    restore(target, tmp_path / "backup", force=True)  # pg_restore --clean: the catalog as backed up
    c = _engine(target.home, catalog_url=target.catalog_url)
    assert [x.id for x in c.catalog.apps.list()] == ["shop"]
    with pytest.raises(InvalidArgument, match="the backup's catalog is PostgreSQL"):
        restore(Settings(home=tmp_path / "c"), tmp_path / "backup")


def test_the_admin_token_caches_and_crawl_states_travel(tmp_path):
    import sqlite3

    a = _home(tmp_path / "a")
    home = a.settings.home
    (home / "admin_token").write_text("mms_admin_secret\n")
    for rel in ("ocr-cache.sqlite3", "crawls/shop/state.sqlite3"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(home / rel) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
            db.execute("INSERT INTO t VALUES (?, ?)", (rel, "kept"))
    manifest = backup(a.settings, tmp_path / "backup")
    assert {"admin_token", "ocr-cache.sqlite3", "crawls/shop/state.sqlite3"} <= set(manifest["files"])
    restore(Settings(home=tmp_path / "b"), tmp_path / "backup")
    b_home = tmp_path / "b"
    assert (b_home / "admin_token").read_text() == "mms_admin_secret\n"
    for rel in ("admin_token", "catalog.sqlite3"):
        assert (b_home / rel).stat().st_mode & 0o077 == 0, rel  # secrets stay owner-only
    for rel in ("ocr-cache.sqlite3", "crawls/shop/state.sqlite3"):
        with sqlite3.connect(b_home / rel) as db:
            assert db.execute("SELECT v FROM t WHERE k = ?", (rel,)).fetchone() == ("kept",)


def test_the_backup_module_sits_below_the_commands():
    """`mmsearch.backup` may use the catalog and the store, never the engine object, the API or the CLI."""
    import ast

    import mmsearch.backup as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in names if m.split(".")[:2] in (["mmsearch", "core"], ["mmsearch", "api"],
                                                          ["mmsearch", "commands"], ["mmsearch", "cli"])}
