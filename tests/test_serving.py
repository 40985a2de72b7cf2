"""The in-memory serving index (store/serving): the same answers as the table, kept in step across processes.

Filters are checked against the table's own SQL evaluation on random items and random filter trees, BM25
against the formula worked by hand, the IVF against exact search inside a filter. Consistency uses two
stores on one folder (what a server and the CLI are), a write the journal never saw, and restarts from a
snapshot.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import EXAMPLE_SCHEMA
from mmsearch.schema.fields import DatasetInfo, parse_schema
from mmsearch.schema.filters import parse_filter
from mmsearch.store.base import Record
from mmsearch.store.lance import AnnConfig, LanceStore, arrow_schema
from mmsearch.store.serving import live, snapshot
from mmsearch.store.serving.journal import Entry, chain
from mmsearch.text import field_text, index_text

DIM = 8
CATS = ["shoes", "bags", "coats", None]
TAGS = ["sport", "red", "kids", "winter"]


@pytest.fixture
def info():
    return DatasetInfo(id="items", type="image_text", schema=parse_schema(EXAMPLE_SCHEMA), vector_dim=DIM)


def _item(rng: np.random.Generator, n: int) -> Record:
    doc: dict = {"item_id": f"i{n:05d}", "title": f"title {('alpha', 'beta', 'gamma')[n % 3]} {n % 7}"}
    cat = CATS[int(rng.integers(len(CATS)))]
    if cat is not None:
        doc["category"] = cat
    if rng.random() < 0.8:
        doc["status"] = int(rng.integers(-3, 4))
    if rng.random() < 0.8:
        doc["price"] = float(np.round(rng.uniform(0, 100), 1))
    if rng.random() < 0.7:
        doc["on_sale"] = bool(rng.random() < 0.5)
    if rng.random() < 0.8:
        doc["tags"] = [str(t) for t in rng.choice(TAGS, size=int(rng.integers(0, 3)), replace=False)]
    if rng.random() < 0.8:
        doc["sizes"] = [int(s) for s in rng.integers(30, 40, size=int(rng.integers(0, 3)))]
    vec = rng.standard_normal(DIM).astype(np.float32) if rng.random() < 0.9 else None
    return Record(id=doc["item_id"], doc=doc, text=field_text("title", [doc["title"]]), vector=vec)


def _filter(rng: np.random.Generator, depth: int = 0) -> dict:
    kind = int(rng.integers(0, 6 if depth < 2 else 4))
    if kind == 0:
        return {"op": str(rng.choice(["must", "must_not"])), "field": "category",
                "conds": [str(c) for c in rng.choice(["shoes", "bags", "coats", "nope"], size=2, replace=False)]}
    if kind == 1:
        bound = {str(rng.choice(["gte", "gt"])): float(rng.uniform(-3, 3))}
        if rng.random() < 0.5:
            bound[str(rng.choice(["lte", "lt"]))] = float(rng.uniform(-1, 4))
        return {"op": "range", "field": str(rng.choice(["status", "price"])), **bound}
    if kind == 2:
        return {"op": str(rng.choice(["must", "must_not"])), "field": "tags",
                "conds": [str(rng.choice(TAGS))]}
    if kind == 3:
        return {"op": str(rng.choice(["must", "must_not"])), "field": str(rng.choice(["on_sale", "sizes"])),
                "conds": [bool(rng.random() < 0.5)] if rng.random() < 0.5 else [int(rng.integers(30, 40))]}
    return {"op": "and" if kind == 4 else "or", "conds": [_filter(rng, depth + 1) for _ in range(2)]}


def _saved_snapshot(tmp_path, info, monkeypatch, seed: int) -> LanceStore:
    """A store whose 30 items are indexed and saved as a snapshot (background work inline)."""
    monkeypatch.setattr(live, "SNAPSHOT_MIN_ROWS", 10)
    store = LanceStore(tmp_path)
    store.serving.background = False
    store.create(info)
    rng = np.random.default_rng(seed)
    store.upsert(info, [_item(rng, n) for n in range(30)])
    store.serving_index(info)
    assert snapshot.latest(tmp_path, "items") is not None
    return store


def _edit_meta(tmp_path, **changes) -> None:
    path = snapshot.latest(tmp_path, "items")
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def test_filters_agree_with_the_tables_sql(tmp_path, info):
    """200 random filter trees over items with missing values: the serving mask counts what Lance counts."""
    store = LanceStore(tmp_path)
    store.create(info)
    rng = np.random.default_rng(3)
    store.upsert(info, [_item(rng, n) for n in range(300)])
    index = store.serving_index(info)
    checked = 0
    for _ in range(200):
        raw = _filter(rng)
        if raw["field" if "field" in raw else "op"] == "on_sale" and isinstance(raw["conds"][0], int):
            continue
        try:
            where = parse_filter(raw, info.schema)
        except Exception:  # an int value for a bool field or the like: not a filter the API accepts
            continue
        assert index.count(where) == store.count(info, where), raw
        # at a subset of rows (what a text query with few matches asks for), with and without cached conditions
        at = np.sort(rng.choice(300, size=int(rng.integers(1, 60)), replace=False))
        view = index.view
        expected = index.mask(where)[at]
        index._masks.clear()
        assert np.array_equal(index.inside(where, at, view), expected), raw
        index._conditions.clear()
        assert np.array_equal(index.inside(where, at, view), expected), raw
        checked += 1
    assert checked > 120


def test_a_text_query_with_few_matches_filters_its_matched_rows_only(tmp_path, info, monkeypatch):
    from mmsearch.store.serving import index as serving_index

    store = LanceStore(tmp_path)
    store.create(info)
    rng = np.random.default_rng(8)
    records = [_item(rng, n) for n in range(300)]
    for r in records[::10]:  # 30 items of 300 say 'rare'
        r.doc["title"] += " rare"
        r.text = index_text([r.doc["title"]])
    store.upsert(info, records)
    index = store.serving_index(info)
    where = parse_filter({"op": "and", "conds": [{"op": "must", "field": "category", "conds": ["shoes", "bags"]},
                                                 {"op": "range", "field": "price", "gte": 20}]}, info.schema)
    calls = []
    inside = index.inside
    monkeypatch.setattr(index, "inside", lambda *a: calls.append(len(a[1])) or inside(*a))
    subset = [(c.id, c.score) for c in store.text_search(info, ["rare"], 50, where)]
    assert calls == [30]  # only the rows 'rare' matched were filtered
    assert not index._masks  # and no mask over every row was built
    monkeypatch.setattr(serving_index, "SUBSET_SHARE", 10**9)  # the mask over every row, as before
    assert [(c.id, c.score) for c in store.text_search(info, ["rare"], 50, where)] == subset
    assert 3 < len(subset) < 30 and len(calls) == 1


def test_bm25_is_the_lucene_formula(tmp_path, info):
    store = LanceStore(tmp_path)
    store.create(info)
    titles = {"a": "red shoe", "b": "red red hat", "c": "blue coat", "d": "green shoe lace"}
    store.upsert(info, [Record(i, {"item_id": i, "title": t}, index_text([t])) for i, t in titles.items()])
    got = {c.id: c.score for c in store.text_search(info, ["red", "shoe"], 10)}
    n, avgdl = 4, sum(len(t.split()) for t in titles.values()) / 4

    def part(tf: int, df: int, dl: int) -> float:
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / avgdl))

    want = {"a": part(1, 2, 2) + part(1, 2, 2), "b": part(2, 2, 3), "d": part(1, 2, 3)}
    assert got.keys() == want.keys()
    for i, score in want.items():
        assert got[i] == pytest.approx(score, rel=1e-5)
    assert list(got) == sorted(want, key=lambda i: -want[i])
    # a replaced item counts once in the statistics, and only its new text matches
    store.upsert(info, [Record("a", {"item_id": "a", "title": "blue coat"}, index_text(["blue coat"]))])
    got = {c.id: c.score for c in store.text_search(info, ["red", "shoe"], 10)}
    assert set(got) == {"b", "d"}
    assert got["b"] == pytest.approx(math.log(1 + 3.5 / 1.5) * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3 / 2.5)),
                                     rel=1e-5)


def test_ivf_recall_inside_a_filter_and_rows_added_after_it(tmp_path, info):
    store = LanceStore(tmp_path, AnnConfig(min_rows=1_000))
    store.serving.background = False
    store.create(info)
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    records = []
    for n in range(3_000):
        r = _item(rng, n)
        r.vector = centres[n % 20] + 0.3 * rng.standard_normal(DIM).astype(np.float32)
        r.vector /= np.linalg.norm(r.vector)
        records.append(r)
    store.upsert(info, records)
    index = store.serving_index(info)
    assert index.vectors.ivf is not None and index.vectors.indexed == 3_000
    matrix = np.stack([r.vector for r in records])
    shoes = parse_filter({"op": "must", "field": "category", "conds": ["shoes", "bags"]}, info.schema)
    allowed = np.array([r.doc.get("category") in ("shoes", "bags") for r in records])
    hits = 0
    for q in rng.standard_normal((20, DIM)).astype(np.float32):
        q /= np.linalg.norm(q)
        got = [c.id for c in store.vector_search(info, q, 50, shoes)]
        scores = np.where(allowed, matrix @ q, -np.inf)
        exact = [records[r].id for r in np.argsort(-scores)[:50]]
        assert all(records[int(i[1:])].doc.get("category") in ("shoes", "bags") for i in got)
        hits += len(set(got[:10]) & set(exact[:10]))
    assert hits / 200 >= 0.95
    # a row written after the IVF was trained is found, and its exact score is what fusion sees
    new = np.ones(DIM, dtype=np.float32) / math.sqrt(DIM)
    store.upsert(info, [Record("new", {"item_id": "new", "category": "shoes"}, "", new)])
    top = store.vector_search(info, new, 5, shoes)[0]
    assert top.id == "new" and top.score == pytest.approx(1.0, abs=1e-5)


def test_another_process_writes_are_searchable_within_a_second_or_two(tmp_path, info):
    server = LanceStore(tmp_path)
    server.create(info)
    server.upsert(info, [Record("a", {"item_id": "a", "title": "red shoe"}, index_text(["red shoe"]))])
    assert [c.id for c in server.text_search(info, ["shoe"], 10)] == ["a"]
    code = f"""
import sys; sys.path.insert(0, {str(tmp_path)!r})
from mmsearch.schema.fields import DatasetInfo, parse_schema
from mmsearch.store.base import Record
from mmsearch.store.lance import LanceStore
from mmsearch.text import field_text, index_text
import json
schema = parse_schema(json.loads({json.dumps(json.dumps(EXAMPLE_SCHEMA))}))
info = DatasetInfo(id="items", type="image_text", schema=schema, vector_dim={DIM})
s = LanceStore({str(tmp_path)!r})
s.upsert(info, [Record("b", {{"item_id": "b", "title": "blue shoe"}}, index_text(["blue shoe"]))])
s.delete(info, ["a"])
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    deadline = time.monotonic() + 5
    while [c.id for c in server.text_search(info, ["shoe"], 10)] != ["b"]:
        assert time.monotonic() < deadline, [c.id for c in server.text_search(info, ["shoe"], 10)]
        time.sleep(0.05)
    assert server.get(info, ["a", "b"]) == [{"item_id": "b", "title": "blue shoe"}]


def test_a_write_the_journal_never_saw_is_caught_by_the_version_check(tmp_path, info, monkeypatch, caplog):
    monkeypatch.setattr(live, "GRACE_S", 0.2)
    monkeypatch.setattr(live, "VERSION_CHECK_S", 0.1)
    store = LanceStore(tmp_path)
    store.create(info)
    store.upsert(info, [Record("a", {"item_id": "a", "title": "red shoe"}, index_text(["red shoe"]))])
    assert store.count(info) == 1 and len(store.text_search(info, ["shoe"], 10)) == 1
    # a writer that died between its commit and its journal line: the table has a row the journal never named
    import lancedb

    table = lancedb.connect(str(tmp_path)).open_table("items")
    row = {n: None for n in arrow_schema(info).names}
    row.update(_id="z", _doc='{"item_id": "z", "title": "ghost shoe"}', _text="ghost shoe")
    table.add([row])
    caplog.set_level(logging.WARNING, logger="mmsearch.serving")
    deadline = time.monotonic() + 10
    while {c.id for c in store.text_search(info, ["shoe"], 10)} != {"a", "z"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "rebuilding the serving index" in caplog.text


def test_restart_loads_the_snapshot_and_catches_up_from_the_journal(tmp_path, info, monkeypatch, caplog):
    monkeypatch.setattr(live, "SNAPSHOT_MIN_ROWS", 10)
    store = LanceStore(tmp_path)
    store.serving.background = False
    store.create(info)
    rng = np.random.default_rng(9)
    records = [_item(rng, n) for n in range(50)]
    store.upsert(info, records)
    before = [c.id for c in store.text_search(info, ["beta"], 100)]
    assert len(before) > 5
    saved = snapshot.latest(tmp_path, "items")
    assert saved is not None
    # written after the snapshot: must be caught up from the journal, not lost
    store.delete(info, [before[0]])
    store.upsert(info, [Record("late", {"item_id": "late", "title": "beta late"}, index_text(["beta late"]))])

    caplog.set_level(logging.INFO, logger="mmsearch.serving")
    again = LanceStore(tmp_path)
    got = [c.id for c in again.text_search(info, ["beta"], 100)]
    assert "built from the table" not in caplog.text  # loaded, not rebuilt
    assert set(got) == (set(before) - {before[0]}) | {"late"}
    assert again.get(info, ["late"]) == [{"item_id": "late", "title": "beta late"}]
    where = parse_filter({"op": "must", "field": "category", "conds": ["shoes"]}, info.schema)
    assert again.serving_index(info).count(where) == again.count(info, where)


def test_a_snapshot_for_another_schema_is_not_used(tmp_path, info, monkeypatch, caplog):
    _saved_snapshot(tmp_path, info, monkeypatch, seed=1)
    _edit_meta(tmp_path, fingerprint="0" * 16)
    caplog.set_level(logging.INFO, logger="mmsearch.serving")
    again = LanceStore(tmp_path)
    assert len(again.text_search(info, ["title"], 100)) == 30
    assert "built from the table" in caplog.text


def test_dropping_a_dataset_forgets_its_index_and_journal(tmp_path, info):
    store = LanceStore(tmp_path)
    store.create(info)
    store.upsert(info, [Record("a", {"item_id": "a", "title": "red shoe"}, index_text(["red shoe"]))])
    assert len(store.text_search(info, ["shoe"], 10)) == 1
    store.drop("items")
    assert not snapshot.folder(tmp_path, "items").exists()
    store.create(info)
    assert store.text_search(info, ["shoe"], 10) == []
    store.upsert(info, [Record("b", {"item_id": "b", "title": "blue shoe"}, index_text(["blue shoe"]))])
    assert [c.id for c in store.text_search(info, ["shoe"], 10)] == ["b"]


def test_journal_chain_joins_versions_and_finds_holes():
    entries = [Entry(3, 4, ("a",)), Entry(4, 7, (), ("b",)), Entry(7, 8, ("c",))]
    assert chain(entries, 3) == (8, {"a", "b", "c"})
    assert chain(entries, 4) == (8, {"b", "c"})
    assert chain(entries, 5) == (8, {"b", "c"})  # read inside a multi-version write: re-read its ids
    assert chain(entries, 8) == (8, set())
    assert chain(entries, 2) is None  # version 2 -> 3 was never journaled
    assert chain([Entry(3, 4), Entry(5, 6)], 3) is None


def test_top_k_breaks_ties_by_row_also_at_the_cut_off():
    from mmsearch.store.serving.arrays import top_k

    rows = np.array([9, 3, 7, 1, 5, 2], dtype=np.int64)
    scores = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 0.5], dtype=np.float32)
    got, s = top_k(rows, scores, 3)
    assert got.tolist() == [3, 1, 5] and s.tolist() == [2.0, 1.0, 1.0]
    assert top_k(rows, scores, 10)[0].tolist() == [3, 1, 5, 7, 9, 2]


def test_many_small_writes_keep_few_segments_and_the_same_answers(tmp_path, info):
    from mmsearch.store.serving.postings import MAX_SEGMENTS

    store = LanceStore(tmp_path)
    store.create(info)
    rng = np.random.default_rng(2)
    store.upsert(info, [_item(rng, n) for n in range(200)])
    for n in range(200, 230):  # thirty catch-ups of one row each, every other one replacing an old row
        store.upsert(info, [_item(rng, n), _item(rng, n - 150)] if n % 2 else [_item(rng, n)])
        assert store.text_search(info, ["beta"], 500)  # each write is caught up by the next query
    index = store.serving_index(info)
    assert len(index.segments) <= MAX_SEGMENTS
    fresh = LanceStore(tmp_path)
    fresh.serving.forget("items")  # no snapshot: one segment built from the table
    for q in (["beta"], ["alpha", "3"], ["title"]):
        want = [(c.id, round(c.score, 4)) for c in fresh.text_search(info, q, 500)]
        assert [(c.id, round(c.score, 4)) for c in store.text_search(info, q, 500)] == want


def test_a_table_dropped_and_created_again_elsewhere_is_not_served_stale(tmp_path, info, monkeypatch):
    monkeypatch.setattr(live, "GRACE_S", 0.2)
    monkeypatch.setattr(live, "VERSION_CHECK_S", 0.1)
    server, cli = LanceStore(tmp_path), LanceStore(tmp_path)
    server.create(info)
    for n in range(5):  # several versions, so the new table's count starts below them
        server.upsert(info, [Record(f"old{n}", {"item_id": f"old{n}", "title": "old shoe"}, index_text(["old shoe"]))])
    assert len(server.text_search(info, ["shoe"], 10)) == 5
    cli.drop("items")
    cli.create(info)
    cli.upsert(info, [Record("new", {"item_id": "new", "title": "new shoe"}, index_text(["new shoe"]))])
    deadline = time.monotonic() + 10
    while [c.id for c in server.text_search(info, ["shoe"], 10)] != ["new"]:
        assert time.monotonic() < deadline, [c.id for c in server.text_search(info, ["shoe"], 10)]
        time.sleep(0.05)


def test_large_datasets_keep_half_precision_vectors_with_scores_close_to_exact(tmp_path, info):
    from mmsearch.store.serving.vectors import VectorConfig

    store = LanceStore(tmp_path)
    store.serving.config = VectorConfig(min_rows=10_000, half_rows=100)
    store.create(info)
    rng = np.random.default_rng(4)
    records = [_item(rng, n) for n in range(300)]
    for r in records:
        r.vector = rng.standard_normal(DIM).astype(np.float32)
        r.vector /= np.linalg.norm(r.vector)
    store.upsert(info, records)
    index = store.serving_index(info)
    assert index.vectors.matrix.view().dtype == np.float16
    matrix = np.stack([r.vector for r in records])
    for q in matrix[:10]:
        got = store.vector_search(info, q, 5)
        exact = np.sort(matrix @ q)[::-1][:5]
        assert got[0].id == records[int(np.argmax(matrix @ q))].id
        assert [c.score for c in got] == pytest.approx(exact.tolist(), abs=2e-3)
    assert index.vector_of(0).dtype == np.float32


def test_a_snapshot_of_an_older_format_at_the_same_version_is_replaced(tmp_path, info, monkeypatch):
    _saved_snapshot(tmp_path, info, monkeypatch, seed=6)
    _edit_meta(tmp_path, format=snapshot.FORMAT - 1)  # as an older mmsearch left it, at the table's version
    again = LanceStore(tmp_path)
    again.serving.background = False
    assert len(again.text_search(info, ["title"], 100)) == 30  # rebuilt, then saved over the old one
    assert json.loads((snapshot.latest(tmp_path, "items") / "meta.json").read_text())["format"] == snapshot.FORMAT


def test_a_large_journal_is_trimmed_when_a_snapshot_is_saved(tmp_path, info, monkeypatch):
    monkeypatch.setattr(live, "SNAPSHOT_MIN_ROWS", 10)
    monkeypatch.setattr(live, "JOURNAL_TRIM_BYTES", 1)
    store = LanceStore(tmp_path)
    store.serving.background = False
    store.create(info)
    rng = np.random.default_rng(8)
    for start in range(0, 40, 10):
        store.upsert(info, [_item(rng, n) for n in range(start, start + 10)])
    journal = live.journal_path(tmp_path, "items")
    assert len(journal.read_text().splitlines()) == 4
    index = store.serving_index(info)  # built, then saved: the lines up to its version go
    assert journal.read_text() == ""
    store.upsert(info, [_item(rng, 99)])
    assert len(journal.read_text().splitlines()) == 1
    assert len(store.text_search(info, ["title"], 100)) == 41 and index.view.version == store.latest_version(info)
    assert len(LanceStore(tmp_path).text_search(info, ["title"], 100)) == 41  # a restart: snapshot + the new line


def test_in_memory_only_while_a_search_needs_no_load_or_catch_up(tmp_path, info, monkeypatch):
    monkeypatch.setattr(live, "VERSION_CHECK_S", 0.3)
    server, cli = LanceStore(tmp_path), LanceStore(tmp_path)
    server.create(info)
    server.upsert(info, [Record("a", {"item_id": "a", "title": "red shoe"}, index_text(["red shoe"]))])
    assert not server.in_memory("items")  # the index loads with the first search
    assert [c.id for c in server.text_search(info, ["shoe"], 10)] == ["a"]
    assert server.in_memory("items")
    cli.upsert(info, [Record("b", {"item_id": "b", "title": "blue shoe"}, index_text(["blue shoe"]))])
    assert not server.in_memory("items")  # another process's journal line: the next search reads the table
    assert {c.id for c in server.text_search(info, ["shoe"], 10)} == {"a", "b"}
    assert server.in_memory("items")
    time.sleep(0.35)
    assert not server.in_memory("items")  # the table version check is due
    server.text_search(info, ["shoe"], 10)
    assert server.in_memory("items") and not server.in_memory("nope")


def test_rerank_features_read_in_one_pass_match_each_row(tmp_path, info):
    store = LanceStore(tmp_path)
    store.create(info)
    rng = np.random.default_rng(11)
    records = [_item(rng, n) for n in range(40)]
    records[3].doc["big"] = 2**70  # beyond orjson's 64-bit integers: read back exactly all the same
    store.upsert(info, records)
    index = store.serving_index(info)
    ids = [r.id for r in records[::-1]] + ["missing", records[0].id]
    found = store.rerank_features(info, ids)
    assert list(found) == [r.id for r in records[::-1]]
    for r in records:
        f, row = found[r.id], index.live_row(r.id)
        assert f.doc == r.doc == index.document(row)
        assert f.tokens == index.tokens_of(row) and f.media == index.media_of(row) == []
        assert (f.vector is None) == (r.vector is None)
        if r.vector is not None:
            np.testing.assert_allclose(f.vector, r.vector, rtol=1e-6)
    assert found[records[3].id].doc["big"] == 2**70
    assert index.docs.get_many([5, 0, 5]) == [index.docs.get(5), index.docs.get(0), index.docs.get(5)]


def test_merging_segments_equals_building_one_from_every_row():
    from mmsearch.store.serving.postings import build_segment, merge

    rng = np.random.default_rng(12)
    rows = [[f"t{j}" for j in rng.integers(0, 300, rng.integers(0, 15))] for _ in range(400)]
    whole, _ = build_segment(0, rows)
    parts, first = [], 0
    for size in (0, 37, 1, 120, 0, 242):  # empty segments too
        parts.append(build_segment(first, rows[first : first + size])[0])
        first += size
    for merged in (merge(parts), merge([merge(parts[:3]), merge(parts[3:])])):
        assert sorted(merged.terms) == sorted(whole.terms)
        for term in whole.terms:
            got, want = merged.postings(term), whole.postings(term)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), term
