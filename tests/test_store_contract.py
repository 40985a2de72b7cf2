"""One contract for every storage engine: the same tests against LanceDB and against Milvus Lite.

Milvus Lite is reached as a cluster is: pymilvus starts Milvus Lite's gRPC server on loopback for the `.db` file
and talks to it over the network (`test_milvus_is_reached_over_grpc` checks this). One server per module; each
test gets its own dataset, dropped afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from conftest import EXAMPLE_SCHEMA, oracle
from mmsearch.errors import AlreadyExists, NotFound
from mmsearch.ingest.importer import searchable_text
from mmsearch.schema.fields import DatasetInfo, parse_schema
from mmsearch.schema.filters import parse_filter
from mmsearch.store.base import Record, Store
from mmsearch.store.lance import LanceStore
from test_filters import CASES, DECOYS, TRICKY

DIM = 4
_names = itertools.count()

try:
    import milvus_lite  # noqa: F401
    import pymilvus  # noqa: F401

    MILVUS = None
except ImportError as exc:  # pragma: no cover - an install without the optional engine
    MILVUS = f"pymilvus and milvus-lite are not installed ({exc})"


@pytest.fixture(scope="module")
def milvus_store(tmp_path_factory) -> Iterator[Any]:
    from milvus_lite.server_manager import server_manager_instance

    from mmsearch.store.milvus import MilvusConfig, MilvusStore

    path = str(tmp_path_factory.mktemp("milvus") / "mm.db")
    store = MilvusStore(MilvusConfig(path))
    yield store
    store.client.close()
    server_manager_instance.release_server(path)


@pytest.fixture(params=["lance", pytest.param("milvus", marks=pytest.mark.skipif(MILVUS is not None,
                                                                                 reason=MILVUS or ""))])
def backend(request, tmp_path) -> Store:
    if request.param == "lance":
        return LanceStore(tmp_path / "tables")
    return request.getfixturevalue("milvus_store")


def _dataset(store: Store, schema: dict[str, Any] = EXAMPLE_SCHEMA, dim: int = DIM) -> Iterator[DatasetInfo]:
    info = DatasetInfo(id=f"d-{next(_names)}_x", type="image_text", schema=parse_schema(schema), vector_dim=dim)
    store.create(info)
    yield info
    store.drop(info.id)


@pytest.fixture
def info(backend) -> Iterator[DatasetInfo]:
    yield from _dataset(backend)


def _rec(info: DatasetInfo, i: str, title: str = "", vector: Any = None, **fields: Any) -> Record:
    doc = {"item_id": i, **({"title": title} if title else {}), **fields}
    vec = None if vector is None else np.asarray(vector, dtype=np.float32)
    return Record(id=i, doc=doc, text=searchable_text(info, doc), vector=vec)


def _ids(cands) -> list[str]:
    return [c.id for c in cands]


# -- writes and reads by id -----------------------------------------------------------------------------

def test_upsert_get_count(backend, info):
    result = backend.upsert(info, [_rec(info, "a", "red shoe", category="shoes"), _rec(info, "b", "blue hat"),
                                   _rec(info, "c")])
    assert (result.inserted, result.replaced) == (3, 0)
    assert backend.count(info) == 3
    got = backend.get(info, ["c", "missing", "a"])  # order follows the request; missing ids are skipped
    assert [d["item_id"] for d in got] == ["c", "a"]
    assert got[1] == {"item_id": "a", "title": "red shoe", "category": "shoes"}
    assert backend.get(info, []) == [] and backend.get(info, ["nope"]) == []
    many = backend.get_many(info, ["b", "a", "zz", "b"])
    assert list(many) == ["b", "a"] and many["b"]["title"] == "blue hat"


def test_upsert_replaces_by_id(backend, info):
    backend.upsert(info, [_rec(info, "a", "red shoe", category="shoes"), _rec(info, "b", "blue hat")])
    result = backend.upsert(info, [_rec(info, "a", "green coat", category="coats"), _rec(info, "d", "new")])
    assert (result.inserted, result.replaced) == (1, 1)
    assert backend.count(info) == 3
    assert backend.get(info, ["a"])[0] == {"item_id": "a", "title": "green coat", "category": "coats"}
    coats = parse_filter({"op": "must", "field": "category", "conds": ["coats"]}, info.schema)
    shoes = parse_filter({"op": "must", "field": "category", "conds": ["shoes"]}, info.schema)
    assert backend.count(info, coats) == 1 and backend.count(info, shoes) == 0
    assert _ids(backend.text_search(info, ["shoe"], 10)) == []  # the old text is gone with the old row
    assert _ids(backend.text_search(info, ["coat"], 10)) == ["a"]
    assert backend.upsert(info, []) == type(result)(0, 0)
    # the same id twice in one batch: the last copy wins, the first counts as replaced
    twice = backend.upsert(info, [_rec(info, "e", "one"), _rec(info, "e", "two")])
    assert (twice.inserted, twice.replaced) == (1, 1)
    assert backend.get(info, ["e"])[0]["title"] == "two"


def test_delete_returns_the_number_deleted(backend, info):
    backend.upsert(info, [_rec(info, i) for i in ("a", "b", "c", "d")])
    assert backend.delete(info, ["a", "c", "missing", "a"]) == 2
    assert backend.count(info) == 2
    assert [d["item_id"] for d in backend.get(info, ["a", "b", "c", "d"])] == ["b", "d"]
    assert backend.delete(info, ["a"]) == 0
    assert backend.delete(info, []) == 0
    assert backend.count(info) == 2


def test_ids_with_quotes_and_backslashes(backend, info):
    odd = ["it's", "back\\slash", "x' OR '1'='1", 'say "hi"', "100%", "a_b", "line\nbreak", "tab\t", "\x00nul"]
    backend.upsert(info, [_rec(info, i) for i in [*odd, "plain", "ab", "x"]])
    assert [d["item_id"] for d in backend.get(info, odd)] == odd
    assert backend.get(info, ["a%", "a__"]) == []
    assert backend.delete(info, ["x' OR '1'='1"]) == 1
    assert backend.count(info) == len(odd) + 2
    assert backend.get(info, ["x"]) == [{"item_id": "x"}]


def test_large_id_lists_are_chunked(backend, info):
    backend.upsert(info, [_rec(info, f"i{n:04d}") for n in range(2_500)])
    wanted = [f"i{n:04d}" for n in range(2_499, -1, -2)]
    assert [d["item_id"] for d in backend.get(info, wanted)] == wanted
    assert backend.delete(info, wanted) == 1_250
    assert backend.count(info) == 1_250


def test_drop_and_recreate(backend, info):
    backend.upsert(info, [_rec(info, "a"), _rec(info, "b")])
    assert backend.exists(info.id)
    with pytest.raises(AlreadyExists):
        backend.create(info)
    backend.drop(info.id)
    assert not backend.exists(info.id)
    with pytest.raises(NotFound, match=info.id):
        backend.count(info)
    backend.drop(info.id)  # dropping what is gone is a no-op
    backend.create(info)
    assert backend.count(info) == 0 and backend.get(info, ["a"]) == []
    backend.upsert(info, [_rec(info, "c")])
    assert backend.count(info) == 1


def test_rerank_features(backend, info):
    backend.upsert(info, [Record("a", {"item_id": "a", "title": "red shoe"}, text=searchable_text(
        info, {"title": "red shoe"}), vector=np.array([1, 0, 0, 0], np.float32),
        media=[{"field": "images", "ocr": "sale"}])])
    f = backend.rerank_features(info, ["zz", "a"])
    assert list(f) == ["a"]
    assert f["a"].doc == {"item_id": "a", "title": "red shoe"}
    np.testing.assert_allclose(f["a"].vector, [1, 0, 0, 0])
    assert f["a"].media == [{"field": "images", "ocr": "sale"}]
    assert f["a"].tokens == frozenset({"red", "shoe"})


def test_rows_are_searchable_before_and_after_maintain(backend, info):
    shoes = parse_filter({"op": "must", "field": "category", "conds": ["shoes"]}, info.schema)
    backend.upsert(info, [_rec(info, "a", "red shoe", vector=[1, 0, 0, 0], category="shoes"),
                          _rec(info, "b", "blue hat")])
    assert _ids(backend.text_search(info, ["shoe"], 10)) == ["a"]
    assert _ids(backend.text_search(info, ["shoe", "hat"], 10, shoes)) == ["a"]
    backend.maintain(info)
    backend.upsert(info, [_rec(info, "c", "green shoe", vector=[0, 1, 0, 0], category="shoes")])
    assert sorted(_ids(backend.text_search(info, ["shoe"], 10))) == ["a", "c"]
    assert sorted(_ids(backend.text_search(info, ["shoe", "hat"], 10, shoes))) == ["a", "c"]
    assert _ids(backend.vector_search(info, np.array([0, 1, 0, 0], dtype=np.float32), 1)) == ["c"]
    assert backend.count(info, shoes) == 2
    assert backend.text_search(info, [], 10) == []
    backend.maintain(info)
    backend.probe(info)
    assert backend.count(info) == 3


# -- filters: every operator, counted and applied inside both channels ---------------------------------

@pytest.fixture
def catalogue(backend, product_items) -> Iterator[tuple[Store, DatasetInfo, list[dict[str, Any]]]]:
    for info in _dataset(backend, dim=8):
        records = []
        for item in product_items:
            doc = {k: v for k, v in item.items() if k != "_vector"}
            vec = np.asarray(item["_vector"], np.float32)
            records.append(Record(item["item_id"], doc, searchable_text(info, doc), vec / np.linalg.norm(vec)))
        backend.upsert(info, records)
        yield backend, info, product_items


@pytest.mark.parametrize(("raw", "pred"), CASES, ids=[str(n) for n in range(len(CASES))])
def test_filter_semantics(catalogue, raw, pred):
    store, info, items = catalogue
    expected = oracle(items, pred)
    where = parse_filter(raw, info.schema)
    assert store.count(info, where) == len(expected)
    near = store.vector_search(info, np.ones(8, np.float32) / np.sqrt(8), 100, where)
    assert set(_ids(near)) == expected


def test_filters_apply_to_the_text_channel(catalogue):
    store, info, items = catalogue
    sport = parse_filter({"op": "must", "field": "tags", "conds": ["sport"]}, info.schema)
    assert sorted(_ids(store.text_search(info, ["shoe"], 10, sport))) == ["p01", "p06"]
    cheap = parse_filter({"op": "and", "conds": [{"op": "range", "field": "price", "lt": 500},
                                                 {"op": "must_not", "field": "category", "conds": ["bags"]}]},
                         info.schema)
    expected = oracle(items, lambda it: it.get("price", 1e9) < 500 and it.get("category") != "bags")
    found = _ids(store.text_search(info, ["shoe", "running", "dress", "socks", "bag"], 50, cheap))
    assert found and set(found) <= expected


def test_candidate_values(catalogue):
    """`values` holds the requested fields that an item has, from typed columns or from the document."""
    store, info, _ = catalogue
    found = {c.id: c.values for c in store.text_search(info, ["shoe"], 10, fields=("price", "status"))}
    assert found["p01"] == {"price": 899.0, "status": 1}
    found = {c.id: c.values for c in store.vector_search(info, np.ones(8, np.float32), 20,
                                                         fields=("create_at", "title"))}
    assert found["p01"] == {"create_at": 1_700_000_001, "title": "Nike Air Max 90 running shoe"}
    assert found["p07"] == {"title": "Wool winter coat"}  # no create_at: left out, not None


# -- literal safety: hostile values are values ---------------------------------------------------------

@pytest.fixture
def tricky(backend) -> Iterator[tuple[Store, DatasetInfo, dict[str, str]]]:
    schema = {"fields": [
        {"name": "id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
        {"name": "category", "type": "string", "filterable": True},
        {"name": "labels", "type": "array<string>", "filterable": True},
    ]}
    for info in _dataset(backend, schema):
        values = [*TRICKY, *DECOYS, '"', '\\"', 'a"b', "x\" || true || \"", "\n", "\t", "\x01", "é"]
        id_of = {v: f"v{i}" for i, v in enumerate(values)}
        backend.upsert(info, [Record(f"v{i}", doc := {"id": f"v{i}", "title": "thing", "category": v,
                                                       "labels": [v, "common"]}, searchable_text(info, doc),
                                     np.array([1, 0, 0, 0], np.float32)) for i, v in enumerate(values)])
        yield backend, info, id_of


def test_values_are_literals(tricky):
    store, info, id_of = tricky
    everything = set(id_of.values())
    for field in ("category", "labels"):
        for value, want in id_of.items():
            must = parse_filter({"op": "must", "field": field, "conds": [value]}, info.schema)
            must_not = parse_filter({"op": "must_not", "field": field, "conds": [value]}, info.schema)
            assert store.count(info, must) == 1, (field, value)
            assert _ids(store.text_search(info, ["thing"], 100, must)) == [want], (field, value)
            near = store.vector_search(info, np.array([1, 0, 0, 0], np.float32), 100, must_not)
            assert set(_ids(near)) == everything - {want}, (field, value)


# -- ranking --------------------------------------------------------------------------------------------

TWO_FIELDS = {"fields": [
    {"name": "id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "body", "type": "string", "searchable": True},
]}


def _doc_rec(info: DatasetInfo, i: str, vector: Any = None, **doc: Any) -> Record:
    doc = {"id": i, **doc}
    return Record(i, doc, searchable_text(info, doc), None if vector is None else np.asarray(vector, np.float32))


@pytest.fixture
def two_fields(backend) -> Iterator[tuple[Store, DatasetInfo]]:
    for info in _dataset(backend, TWO_FIELDS):
        backend.upsert(info, [
            _doc_rec(info, "t", [1, 0, 0, 0], title="leather boot", body="brown and warm"),
            _doc_rec(info, "b", [0.8, 0.6, 0, 0], title="winter jacket", body="goes with a leather boot"),
            _doc_rec(info, "n", [0, 0, 1, 0], title="summer hat", body="straw"),
            _doc_rec(info, "c", [0, 0.6, 0.8, 0], title="运动鞋 女士", body="轻便"),
            _doc_rec(info, "d", [0, 0, 0, 1], title="女士运动鞋", body="跑步"),
        ])
        yield backend, info


def test_text_ranks_matching_items_first(two_fields):
    store, info = two_fields
    found = store.text_search(info, ["boot"], 10)
    assert _ids(found) == ["t", "b"]  # the title match first (shorter field, and the same weight)
    assert found[0].score > found[1].score > 0
    assert _ids(store.text_search(info, ["nothing"], 10)) == []


def test_field_weights_change_the_order(two_fields):
    store, info = two_fields
    assert _ids(store.text_search(info, ["boot"], 10, field_weights={"title": 0.1, "body": 1.0})) == ["b", "t"]
    assert _ids(store.text_search(info, ["boot"], 10, field_weights={"title": 0.0})) == ["b"]
    assert _ids(store.text_search(info, ["boot"], 1)) == ["t"]


def test_cjk_words_and_back_off(two_fields):
    store, info = two_fields
    assert set(_ids(store.text_search(info, ["运动鞋"], 10))) == {"c", "d"}
    # 女鞋 is in no item: it backs off to the items holding a word headed by 鞋 (both do), 女 scored inside them
    assert set(_ids(store.text_search(info, ["女鞋"], 10))) == {"c", "d"}
    assert _ids(store.text_search(info, ["跑步"], 10)) == ["d"]


def test_a_cjk_word_backs_off_to_its_head_not_to_its_characters_anywhere(backend):
    """书包 in a shop whose cards all print 包邮 and whose brand is a book shop: the bags (words headed by 包), the
    book shop's first; never the book shop's television. 书 alone ranks the books (图书) first."""
    for info in _dataset(backend, TWO_FIELDS):
        backend.upsert(info, [
            _doc_rec(info, "bag1", title="新华书店 防水背包", body="包邮"),
            _doc_rec(info, "bag2", title="华为 双肩包", body="包邮"),
            _doc_rec(info, "tv", title="新华书店 4K电视", body="包邮"),
            _doc_rec(info, "book", title="小说 图书", body="包邮"),
        ])
        got = _ids(backend.text_search(info, ["书包"], 10))
        assert got == ["bag1", "bag2"]
        assert _ids(backend.text_search(info, ["书"], 10))[0] == "book"


def test_vector_search_nearest_first(two_fields):
    store, info = two_fields
    found = store.vector_search(info, np.array([1, 0.1, 0, 0], np.float32) / np.sqrt(1.01), 3)
    assert _ids(found) == ["t", "b", "c"]
    assert found[0].score == pytest.approx(1 / np.sqrt(1.01), abs=1e-4)
    assert found[0].score > found[1].score > found[2].score


# -- the Milvus engine's own promises --------------------------------------------------------------------

@pytest.mark.skipif(MILVUS is not None, reason=MILVUS or "")
def test_milvus_is_reached_over_grpc(milvus_store):
    handler = milvus_store.client._get_connection()
    host, _, port = handler.server_address.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0


@pytest.mark.skipif(MILVUS is not None, reason=MILVUS or "")
def test_milvus_collection_names_never_collide():
    from mmsearch.store.milvus import collection_name

    names = ["a_b", "a-b", "a_hb", "a_ub", "A_b", "ab"]
    assert len({collection_name(n) for n in names}) == len(names)


@pytest.mark.skipif(MILVUS is not None, reason=MILVUS or "")
def test_milvus_store_setting():
    from mmsearch.errors import InvalidArgument
    from mmsearch.store.milvus import parse_store_setting

    assert parse_store_setting("milvus:http://milvus:19530") == ("milvus", "http://milvus:19530")
    assert parse_store_setting("lance") == ("lance", "")
    for bad in ("milvus", "milvus:", "pg:x", "lance:x"):
        with pytest.raises(InvalidArgument, match="MMSEARCH_STORE"):
            parse_store_setting(bad)


@pytest.mark.skipif(MILVUS is not None, reason=MILVUS or "")
def test_mmsearch_on_milvus_end_to_end(tmp_path, milvus_store, example_schema):
    """MMSEARCH_STORE=milvus:<file.db>: the engine imports, searches both channels and filters through Milvus."""
    from mmsearch.config import Settings
    from mmsearch.core import MMSearch
    from mmsearch.search import SearchRequest

    mm = MMSearch(Settings(home=tmp_path / "home", store=f"milvus:{milvus_store.config.uri}"))
    assert type(mm.store).__name__ == "MilvusStore"
    mm.create_dataset("e2e", example_schema, vector_dim=DIM)
    try:
        report = mm.import_items("e2e", [
            {"item_id": "a", "title": "red running shoe", "category": "shoes", "_vector": [1, 0, 0, 0]},
            {"item_id": "b", "title": "blue hat", "category": "hats", "_vector": [0, 1, 0, 0]},
        ])
        assert report.inserted == 2
        assert [h.id for h in mm.search("e2e", SearchRequest(text="shoe")).hits] == ["a"]
        hats = {"op": "must", "field": "category", "conds": ["hats"]}
        found = mm.search("e2e", SearchRequest(vector=np.array([1, 0, 0, 0]), filter=hats))
        assert [h.id for h in found.hits] == ["b"]
    finally:
        mm.drop_dataset("e2e")


def test_store_setting_is_validated(tmp_path):
    from pydantic import ValidationError

    from mmsearch.config import Settings

    with pytest.raises(ValidationError, match="MMSEARCH_STORE"):
        Settings(home=tmp_path, store="milvus")
    assert Settings(home=tmp_path).store == "lance"


def test_a_new_milvus_session_loads_released_collections(milvus_store):
    """Another process (or a restarted server) finds the collections released: the store loads them again,
    the meta collection included (its write counter and field lengths), before reading or writing."""
    from mmsearch.store.milvus import META, MilvusConfig, MilvusStore

    for info in _dataset(milvus_store):
        milvus_store.upsert(info, [_rec(info, "a", "first title")])
        milvus_store.client.release_collection(META)
        milvus_store.client.release_collection(milvus_store._collection(info))
        fresh = MilvusStore(MilvusConfig(milvus_store.config.uri))
        assert fresh.upsert(info, [_rec(info, "b", "second title")]).inserted == 1
        assert sorted(d["title"] for d in fresh.get(info, ["a", "b"])) == ["first title", "second title"]


def test_a_filtered_vector_search_finds_the_exact_neighbours_inside_the_filter(backend):
    """The hybrid pipeline asks each channel for recall_size candidates inside the filter; an approximate graph
    walk that skips the excluded rows must still find (almost) the exact ones, or a page sorted by another field
    (chosen from the whole fused list) shows other items than the embedded store's."""
    rng = np.random.default_rng(7)

    def unit(m: np.ndarray) -> np.ndarray:
        return (m / np.linalg.norm(m, axis=-1, keepdims=True)).astype(np.float32)

    # bench/engine.py's catalogue in small: clusters around 64 themes in 512-d, items scattered around them
    themes = unit(rng.standard_normal((64, 512)))
    centres = unit(themes[rng.integers(0, 64, 64)] + 0.9 * unit(rng.standard_normal((64, 512))))
    vectors = unit(centres[rng.integers(0, 64, 3_000)] + 0.75 * unit(rng.standard_normal((3_000, 512))))
    queries = unit(centres[rng.integers(0, 64, 5)] + 0.75 * unit(rng.standard_normal((5, 512))))
    status = rng.integers(0, 5, 3_000)  # the filter keeps a fifth
    for info in _dataset(backend, dim=512):
        backend.upsert(info, [_rec(info, f"v{n:04d}", vector=vectors[n], status=int(status[n])) for n in range(3_000)])
        backend.maintain(info)
        where = parse_filter({"op": "must", "field": "status", "conds": [1]}, info.schema)
        found = 0.0
        for q in queries:
            scores = np.where(status == 1, vectors @ q, -np.inf)
            exact = {f"v{n:04d}" for n in np.argsort(-scores)[:200]}
            found += len(exact & set(_ids(backend.vector_search(info, q, 200, where)))) / 200
        assert found / 5 >= 0.95, found / 5


def test_iter_items_gives_every_item_once_with_its_vector(backend, info):
    backend.upsert(info, [_rec(info, f"e{n}", f"title {n}", vector=[1.0, 0.0, 0.0, float(n)]) for n in range(3)]
                   + [_rec(info, "novec", "no vector")])
    backend.upsert(info, [_rec(info, "e1", "replaced", vector=[0.0, 1.0, 0.0, 0.0])])
    backend.delete(info, ["e2"])
    got = {i: (doc, vec) for i, doc, vec in backend.iter_items(info, vectors=True)}
    assert sorted(got) == ["e0", "e1", "novec"]
    assert got["e1"][0]["title"] == "replaced" and got["novec"][1] is None
    assert np.allclose(got["e1"][1], [0.0, 1.0, 0.0, 0.0], atol=1e-6)
    assert all(vec is None for _, _, vec in backend.iter_items(info))


# -- video datasets: segments (multi-vector) and timed transcripts ----------------------------------------

VIDEO_SCHEMA = {"fields": [
    {"name": "content_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "director", "type": "string", "filterable": True},
    {"name": "episode", "type": "int32", "filterable": True, "sortable": True},
    {"name": "video_url", "type": "video"},
]}


def _video(info: DatasetInfo, i: str, title: str, director: str, episode: int, segments: list[list[float]],
           lines: list[tuple[float, float, str]] = (), own: list[float] | None = None) -> Record:
    doc = {"content_id": i, "title": title, "director": director, "episode": episode, "video_url": [f"/v/{i}.mkv"]}
    spans = np.array([[2.0 * n, 2.0 * n + 2.0] for n in range(len(segments))], np.float32).reshape(-1, 2)
    cues = [{"start": s, "end": e, "text": t, "source": "subtitle"} for s, e, t in lines]
    media = [{"field": "video_url", "kind": "video", "ref": f"/v/{i}.mkv", "segments": len(segments),
              **({"cues": cues} if cues else {})}]
    return Record(id=i, doc=doc, text=searchable_text(info, doc), media=media,
                  vector=None if own is None else np.asarray(own, np.float32),
                  segments=np.asarray(segments, np.float32).reshape(-1, DIM) if segments else None,
                  spans=spans if segments else None)


@pytest.fixture
def videos(backend) -> Iterator[tuple[Store, DatasetInfo]]:
    info = DatasetInfo(id=f"v-{next(_names)}", type="video", schema=parse_schema(VIDEO_SCHEMA), vector_dim=DIM)
    backend.create(info)
    backend.upsert(info, [
        # the blue scene is the second of three: a mean over the video would drown it
        _video(info, "ep1", "first episode", "guo", 1, [[1, 0, 0, 0], [0, 0, 1, 0], [1, 0.2, 0, 0]],
               [(1.0, 3.0, "一只海豚跳出水面"), (5.0, 7.0, "the dolphin swims away")]),
        _video(info, "ep2", "second episode", "guo", 2, [[0, 1, 0, 0], [0, 0.6, 0.8, 0]]),
        _video(info, "ep3", "third episode", "yang", 3, [[0, 0, 0.9, 0.1]]),
        _video(info, "ep4", "no pictures", "guo", 4, [], own=[0, 0, 0, 1]),
    ])
    yield backend, info
    backend.drop(info.id)


def test_a_video_is_found_by_its_best_segment_with_its_moments(videos):
    store, info = videos
    store.maintain(info)
    found = store.vector_search(info, np.array([0, 0, 1, 0], np.float32), 10)
    assert _ids(found)[:3] == ["ep1", "ep3", "ep2"]  # ep1's second segment is the blue one itself
    assert found[0].score == pytest.approx(1.0, abs=1e-4)
    start, end, score = found[0].moments[0]
    assert (start, end) == (2.0, 4.0) and score == pytest.approx(1.0, abs=1e-4)
    assert [m[2] for m in found[0].moments] == sorted((m[2] for m in found[0].moments), reverse=True)
    assert len(found[0].moments) == 3
    # an item with only its own vector is found by it, without moments
    own = store.vector_search(info, np.array([0, 0, 0, 1], np.float32), 1)
    assert _ids(own) == ["ep4"] and own[0].moments == ()


def test_video_filters_and_sort_values_apply_to_segments(videos):
    store, info = videos
    yang = parse_filter({"op": "must_not", "field": "director", "conds": ["yang"]}, info.schema)
    found = store.vector_search(info, np.array([0, 0, 1, 0], np.float32), 10, yang, ("episode",))
    assert "ep3" not in _ids(found) and _ids(found)[:2] == ["ep1", "ep2"]
    assert [c.values for c in found[:2]] == [{"episode": 1}, {"episode": 2}]


def test_video_transcripts_are_kept_apart_from_the_media(videos):
    store, info = videos
    cues = {i: c for i, c in store.video_cues(info, ["ep2", "ep1", "missing"]).items() if c}  # none: absent or []
    assert list(cues) == ["ep1"]
    assert cues["ep1"][0]["text"] == ["一只海豚跳出水面", "the dolphin swims away"]
    assert cues["ep1"][0]["start"] == [1.0, 5.0] and cues["ep1"][0]["field"] == "video_url"
    media = store.rerank_features(info, ["ep1"])["ep1"].media
    assert media[0]["segments"] == 3 and "cues" not in media[0]


def test_rerank_reads_a_videos_segment_nearest_the_query(videos):
    store, info = videos
    q = np.array([0, 0, 1, 0], np.float32)
    f = store.rerank_features(info, ["ep1", "ep4"], q)
    assert f["ep1"].vector is not None and f["ep1"].vector.ndim == 2
    assert float(np.max(f["ep1"].vector @ q)) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(f["ep4"].vector, [0, 0, 0, 1])  # its own vector, no segments


def test_replacing_or_deleting_a_video_replaces_its_segments_and_transcript(videos):
    store, info = videos
    store.upsert(info, [_video(info, "ep1", "first episode, recut", "guo", 1, [[1, 0, 0, 0]])])
    blue = np.array([0, 0, 1, 0], np.float32)
    found = store.vector_search(info, blue, 10)
    assert _ids(found)[0] == "ep3" and all(m[:2] == (0.0, 2.0) for c in found if c.id == "ep1" for m in c.moments)
    assert not store.video_cues(info, ["ep1"]).get("ep1")
    assert store.delete(info, ["ep3"]) == 1
    assert "ep3" not in _ids(store.vector_search(info, blue, 10))
    assert store.count(info) == 3


def test_a_long_transcript_survives_the_round_trip(videos):
    store, info = videos
    lines = [(float(n), n + 0.5, f"第{n}句台词 line {n} " + "字" * 40) for n in range(3_000)]  # ~400 KB of JSON
    store.upsert(info, [_video(info, "film", "a long film", "guo", 9, [[0, 1, 1, 0]], lines)])
    got = store.video_cues(info, ["film"])["film"][0]
    assert got["text"] == [t for _, _, t in lines] and got["end"][-1] == 2_999.5
