"""Fields are not all equal: BM25F over each searchable field (and OCR text), weighted per application, and a
Chinese query's characters close together earning part of the phrase signal."""

from __future__ import annotations

import pytest

from conftest import ids
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.errors import InvalidArgument
from mmsearch.schema.fields import OCR_FIELD
from mmsearch.search import SearchOptions, SearchRequest
from mmsearch.search.field_weights import field_weights
from mmsearch.search.rerank import proximity
from mmsearch.text import FIELD_MARK, stream_tokens

SCHEMA = {"fields": [
    {"name": "id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "description", "type": "string", "searchable": True},
]}
OFF = SearchOptions(recall_size=100)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> MMSearch:
    engine = MMSearch(Settings(home=tmp_path_factory.mktemp("fields"), ocr=False), encoder=None)
    engine.create_dataset("p", SCHEMA, vector_dim=4)
    report = engine.import_items("p", [
        # the same words, once each: in the title of one item and the description of the other
        {"id": "in-title", "title": "trail running shoes", "description": "light mesh upper, grippy sole"},
        {"id": "in-description", "title": "light mesh upper", "description": "trail running shoes, grippy sole"},
        {"id": "other", "title": "rain jacket", "description": "packable shell"},
        {"id": "lion", "title": "一头雄性狮子在草原上", "description": "野生动物摄影"},
        {"id": "zodiac", "title": "狮子座的雄心与本周运势", "description": "星座运势"},
    ])
    assert report.rejected == 0
    return engine


def test_the_stored_stream_names_each_field_and_the_reranker_never_sees_the_markers(shop):
    index = shop.store.serving_index(shop.dataset("p"))
    stream = index.texts.get(index.live_row("in-title")).decode()
    assert stream.startswith(f"{FIELD_MARK}title ") and f" {FIELD_MARK}description " in stream
    assert FIELD_MARK not in "".join(stream_tokens(stream))
    assert all(FIELD_MARK not in t for t in index.tokens_of(index.live_row("in-title")))


def test_a_title_match_outranks_the_same_words_in_the_description(shop):
    found = shop.search("p", SearchRequest(text="trail running shoes"), OFF)
    assert ids(found)[:2] == ["in-title", "in-description"]
    assert found.hits[0].score > found.hits[1].score


def test_an_application_can_weigh_fields_its_own_way(shop):
    flipped = SearchOptions(recall_size=100, field_weights={"title": 0.2, "description": 1.0})
    assert ids(shop.search("p", SearchRequest(text="trail running shoes"), flipped))[:2] == [
        "in-description", "in-title"]
    only_title = SearchOptions(recall_size=100, field_weights={"description": 0})
    assert ids(shop.search("p", SearchRequest(text="grippy sole"), only_title)) == []
    assert set(ids(shop.search("p", SearchRequest(text="grippy sole"), OFF))) == {"in-title", "in-description"}


def test_default_weights_put_the_title_first_and_keep_the_applications_own():
    from mmsearch.schema.fields import parse_schema

    schema = parse_schema(SCHEMA)
    assert field_weights(schema) == {"title": 1.0, "description": 0.5, OCR_FIELD: 0.5}
    assert field_weights(schema, {"description": 2.0})["description"] == 2.0


def test_application_field_weights_are_checked_against_its_datasets(shop):
    shop.catalog.apps.create("w", ["p"], {"field_weights": {"title": 3, "_ocr": 0}})
    assert shop.app_options(shop.catalog.apps.get("w").config).field_weights == {"title": 3.0, "_ocr": 0.0}
    for bad, rule in (({"title": -1}, "greater than or equal to 0"), ({"title": float("nan")}, "finite"),
                      ({"titel": 1}, "not a searchable field")):
        with pytest.raises(InvalidArgument) as err:
            shop.catalog.apps.update("w", config={"field_weights": bad})
        assert err.value.field.startswith("config.field_weights") and rule in str(err.value)


def test_characters_close_together_earn_part_of_the_phrase_signal(shop):
    assert proximity("雄狮", "一头雄性狮子") == pytest.approx(0.5 * 2 / 3)
    assert proximity("雄狮", "狮子座的雄心") == 0.0  # out of order
    assert proximity("雄狮", "雄" + "很" * 5 + "狮") == 0.0  # too far apart
    ranked = shop.search("p", SearchRequest(text="雄狮"), SearchOptions(recall_size=100, rerank=True))
    assert ids(ranked)[0] == "lion"
    by_id = {h.id: h for h in ranked.hits}
    assert by_id["lion"].rerank_score > by_id["zodiac"].rerank_score
