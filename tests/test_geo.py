"""The location stage: haversine distance, decay curves, boost and demote in the pipeline."""

from __future__ import annotations

import math

import pytest

from conftest import ids
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.errors import InvalidArgument
from mmsearch.search import SearchOptions, SearchRequest
from mmsearch.search.geo import EARTH_RADIUS_KM, decay, haversine_km, parse_location
from mmsearch.search.types import GeoOptions

BEIJING = (39.9042, 116.4074)
SHANGHAI = (31.2304, 121.4737)
SHANGHAI_BUND = (31.2400, 121.4900)  # about 1.9 km from SHANGHAI


def test_haversine_known_distances():
    assert haversine_km(BEIJING, SHANGHAI) == pytest.approx(1067, abs=3)
    assert haversine_km(SHANGHAI, BEIJING) == pytest.approx(haversine_km(BEIJING, SHANGHAI))
    assert haversine_km(SHANGHAI, SHANGHAI) == 0.0
    assert haversine_km(SHANGHAI, SHANGHAI_BUND) == pytest.approx(1.9, abs=0.1)
    assert haversine_km((0, 0), (0, 180)) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert haversine_km((0, 0), (1, 0)) == pytest.approx(111.19, abs=0.01)  # one degree of latitude
    assert haversine_km((0, 179.5), (0, -179.5)) == pytest.approx(111.19, abs=0.01)  # across the date line


def test_decay_curves():
    assert [decay(x, "linear") for x in (0, 0.5, 1, 3)] == [1.0, 0.5, 0.0, 0.0]
    assert [decay(x, "exp") for x in (0, 1, 2)] == [1.0, 0.5, 0.25]
    assert [decay(x, "gauss") for x in (0, 1, 2)] == [1.0, 0.5, 1 / 16]


@pytest.mark.parametrize(("value", "expected"), [
    ({"latitude": "12.12", "longitude": "-13.43"}, (12.12, -13.43)),  # the spec's strings
    ({"latitude": 31.23, "longitude": 121.47}, (31.23, 121.47)),
    ((90, -180), (90.0, -180.0)),
    ({"latitude": "north", "longitude": "0"}, None),
    ({"latitude": "91", "longitude": "0"}, None),
    ({"latitude": "0", "longitude": "180.5"}, None),
    ({"latitude": "nan", "longitude": "0"}, None),
    ({"latitude": True, "longitude": 0}, None),
    ({"latitude": "1"}, None),
    ("31.2,121.4", None),
    ([1.0], None),
    (None, None),
])
def test_parse_location(value, expected):
    assert parse_location(value) == expected


def test_geo_options_are_checked():
    for bad in ({"radius_km": 0}, {"radius_km": -1}, {"radius_km": math.inf}, {"weight": -0.1},
                {"decay": "cubic"}, {"mode": "nearest"}):
        with pytest.raises(InvalidArgument):
            GeoOptions(field="location", **bad)


# -- in the pipeline -----------------------------------------------------------------------------------

SCHEMA = {"fields": [
    {"name": "id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "price", "type": "float", "sortable": True},
    {"name": "location", "type": "geo_point"},
]}


@pytest.fixture(scope="module")
def cafes(tmp_path_factory):
    """BM25 puts `bj` first; `none` and `sh` tie after it (id order), `zz` (no location) last."""
    engine = MMSearch(Settings(home=tmp_path_factory.mktemp("cafes")), encoder=None)
    engine.create_dataset("c", SCHEMA, vector_dim=4)
    report = engine.import_items("c", [
        {"id": "bj", "title": "coffee coffee", "price": 30.0,
         "location": {"latitude": BEIJING[0], "longitude": BEIJING[1]}},
        {"id": "sh", "title": "coffee shop", "price": 20.0,  # stored as strings, like the spec sends them
         "location": {"latitude": str(SHANGHAI_BUND[0]), "longitude": str(SHANGHAI_BUND[1])}},
        {"id": "none", "title": "coffee bar", "price": 10.0},
        {"id": "zz", "title": "coffee beans from a small family farm in the mountains", "price": 5.0},
    ])
    assert report.imported == 4
    return engine


def search(engine, location=None, geo=None, rerank=False, **request):
    options = SearchOptions(recall_size=100, geo=geo, rerank=rerank)
    return engine.search("c", SearchRequest(text="coffee", location=location, **request), options)


FUSED = ["bj", "none", "sh", "zz"]
BOOST = GeoOptions(field="location", radius_km=10, decay="gauss", weight=0.5, mode="boost")
DEMOTE = GeoOptions(field="location", radius_km=10, decay="gauss", weight=0.5, mode="demote")


def test_without_location_the_order_is_the_fused_order(cafes):
    plain = search(cafes)
    assert ids(plain) == FUSED
    assert plain.hits[1].score == plain.hits[2].score  # `none` and `sh` tie
    for result in (search(cafes, geo=BOOST), search(cafes, location=SHANGHAI)):
        assert ids(result) == FUSED
        assert [h.score for h in result.hits] == [h.score for h in plain.hits]
        assert all(h.distance_km is None and h.geo_boost == 0.0 for h in result.hits)


@pytest.mark.parametrize("location", [(91.0, 0.0), (0.0, 181.0), (math.nan, 0.0), (0.0, math.inf)])
def test_an_invalid_location_is_ignored(cafes, location):
    result = search(cafes, location=location, geo=BOOST)
    assert ids(result) == FUSED
    assert all(h.distance_km is None and h.geo_boost == 0.0 for h in result.hits)


def test_boost_lifts_the_near_item(cafes):
    plain = {h.id: h for h in search(cafes).hits}
    result = search(cafes, location=SHANGHAI, geo=BOOST)
    assert ids(result) == ["sh", "bj", "none", "zz"]
    hits = {h.id: h for h in result.hits}
    d = haversine_km(SHANGHAI, SHANGHAI_BUND)
    assert hits["sh"].distance_km == pytest.approx(d)
    assert hits["sh"].geo_boost == pytest.approx(0.5 * 2 ** -((d / 10) ** 2))
    assert hits["bj"].distance_km == pytest.approx(haversine_km(SHANGHAI, BEIJING))
    assert hits["bj"].geo_boost == pytest.approx(0.0, abs=1e-12)  # 1067 km: far beyond the radius
    for i in ("none", "zz"):  # no location: untouched
        assert hits[i].distance_km is None and hits[i].geo_boost == 0.0
        assert hits[i].final_score == hits[i].score == plain[i].score
    for i in FUSED:  # the spec's `score` stays the fused score; final_score carries the location
        assert hits[i].score == plain[i].score
        assert hits[i].final_score == pytest.approx(plain[i].score + hits[i].geo_boost)


def test_demote_sinks_the_near_item(cafes):
    result = search(cafes, location=BEIJING, geo=DEMOTE)
    order = ids(result)
    assert order.index("bj") > order.index("sh") and order.index("bj") > order.index("none")
    bj = next(h for h in result.hits if h.id == "bj")
    assert bj.distance_km == pytest.approx(0.0, abs=1e-9)
    assert bj.geo_boost == pytest.approx(-0.5)
    assert bj.final_score == pytest.approx(bj.score - 0.5)
    finals = [h.final_score for h in result.hits]
    assert finals == sorted(finals, reverse=True)


def test_far_items_are_unaffected_and_decay_matters(cafes):
    # a 1,000 km exponential radius still reaches Beijing from Shanghai; a gaussian 10 km one does not
    wide = GeoOptions(field="location", radius_km=1000, decay="exp", weight=0.5)
    hits = {h.id: h for h in search(cafes, location=SHANGHAI, geo=wide).hits}
    assert hits["bj"].geo_boost == pytest.approx(0.5 * 2 ** -(haversine_km(SHANGHAI, BEIJING) / 1000))
    linear = GeoOptions(field="location", radius_km=1000, decay="linear", weight=0.5)
    hits = {h.id: h for h in search(cafes, location=SHANGHAI, geo=linear).hits}
    assert hits["bj"].geo_boost == 0.0  # beyond the linear radius


def test_an_explicit_sort_wins_over_location(cafes):
    result = search(cafes, location=SHANGHAI, geo=BOOST, sort_by="price", sort_order="desc")
    assert ids(result) == ["bj", "sh", "none", "zz"]
    assert next(h for h in result.hits if h.id == "sh").geo_boost > 0.4


def test_pages_follow_the_location_order(cafes):
    pages = [ids(search(cafes, location=SHANGHAI, geo=BOOST, page_number=n, page_size=1)) for n in (1, 2, 3, 4)]
    assert [p[0] for p in pages] == ["sh", "bj", "none", "zz"]
    assert search(cafes, location=SHANGHAI, geo=BOOST, page_size=1).total_items == 4


def test_location_after_rerank_keeps_reranked_hits_on_top(cafes):
    """Depth 1 reranks `bj` only; the boosted `sh` passes `none` but not the reranked head."""
    options = SearchOptions(recall_size=100, rerank=True, rerank_depth=1, geo=BOOST)
    result = cafes.search("c", SearchRequest(text="coffee", location=SHANGHAI), options)
    assert ids(result) == ["bj", "sh", "none", "zz"]
    assert [h.is_reranked for h in result.hits] == [True, False, False, False]
    full = SearchOptions(recall_size=100, rerank=True, geo=BOOST)
    reranked = cafes.search("c", SearchRequest(text="coffee", location=SHANGHAI), full)
    assert ids(reranked)[0] == "sh" and all(h.is_reranked for h in reranked.hits)
    sh = reranked.hits[0]
    assert sh.final_score == pytest.approx(sh.rerank_score + sh.geo_boost)


def test_the_field_must_be_a_geo_point(cafes):
    with pytest.raises(InvalidArgument) as exc:
        search(cafes, location=SHANGHAI, geo=GeoOptions(field="title"))
    assert exc.value.field == "location.field"
    # a field this dataset lacks (an application may span datasets): no item has a location
    absent = search(cafes, location=SHANGHAI, geo=GeoOptions(field="shop_location"))
    assert ids(absent) == FUSED and all(h.geo_boost == 0.0 for h in absent.hits)


def test_location_on_the_shared_catalogue(products):
    """p01 is the only product with a location (Shanghai): a boost from Shanghai puts it first."""
    req = SearchRequest(text="shoe", location=SHANGHAI, page_size=100)
    plain = ids(products.search("products", SearchRequest(text="shoe", page_size=100)))
    boosted = products.search("products", req, SearchOptions(geo=GeoOptions(field="location", weight=2.0)))
    assert plain[0] != "p01" and ids(boosted)[0] == "p01"
    assert set(ids(boosted)) == set(plain)
    assert [i for i in ids(boosted) if i != "p01"] == [i for i in plain if i != "p01"]
