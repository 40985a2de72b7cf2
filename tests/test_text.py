"""Tokenisation: full-width folding, lower-casing, jieba words, single-character CJK queries."""

from __future__ import annotations

import pytest

from conftest import ids
from mmsearch.search import SearchRequest
from mmsearch.text import index_text, normalize, tokenize, tokenize_query


def test_full_width_forms_are_folded():
    assert normalize("ＭＡＸ９０") == "max90"
    assert normalize("ＡＢＣ，１２３！") == "abc,123!"
    assert tokenize_query("ＭＡＸ９０") == ["max", "90"]
    assert tokenize("Ｎｉｋｅ Ａｉｒ ＭＡＸ９０") == ["nike", "air", "max", "90"]


def test_latin_is_lower_cased_and_split_on_punctuation():
    assert tokenize_query("Nike AIR max, 90!") == ["nike", "air", "max", "90"]
    assert tokenize_query("iPhone15 Pro-Max") == ["iphone", "15", "pro", "max"]
    assert tokenize_query("snake_case") == ["snake", "case"]
    assert tokenize_query("Café") == ["café"]


def test_query_tokens_are_deduplicated_in_order():
    assert tokenize_query("shoe Shoe SHOE boot shoe") == ["shoe", "boot"]
    assert tokenize("shoe Shoe") == ["shoe", "shoe"]  # documents keep term frequency


def test_chinese_words_from_jieba_and_single_characters_on_index_side():
    doc = tokenize("耐克运动鞋")
    assert {"耐克", "运动", "运动鞋"} <= set(doc)  # jieba words (search mode)
    assert {"耐", "克", "运", "动", "鞋"} <= set(doc)  # plus every character
    query = tokenize_query("耐克运动鞋")
    assert {"耐克", "运动鞋"} <= set(query)
    assert not {"耐", "克", "鞋"} & set(query)  # queries use words only
    assert tokenize_query("鞋") == ["鞋"]


def test_mixed_scripts():
    assert tokenize_query("红色Nike运动鞋42码") == ["红色", "nike", "运动", "运动鞋", "42", "码"]
    assert index_text(["Air MAX", "运动鞋"]).split() == tokenize("Air MAX") + tokenize("运动鞋")


@pytest.mark.parametrize("text", ["", "   ", "!!!", "，。、"])
def test_no_tokens(text):
    assert tokenize(text) == []
    assert tokenize_query(text) == []


@pytest.fixture
def shoes(mm):
    mm.create_dataset("shoes", {"fields": [
        {"name": "id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
        {"name": "tags", "type": "array<string>", "searchable": True},
    ]}, vector_dim=4)
    mm.import_items("shoes", [
        {"id": "1", "title": "男士运动鞋"},
        {"id": "2", "title": "红色连衣裙"},
        {"id": "3", "title": "Nike Air Max 90 Running"},
        {"id": "4", "title": "帆布包", "tags": ["RUNNING", "Ｓｐｏｒｔ"]},
        {"id": "5", "title": "皮鞋 leather"},
    ])
    return mm


def _text(mm, query):
    return mm.search("shoes", SearchRequest(text=query, channels=("text",)))


def test_single_character_query_finds_words_containing_it(shoes):
    assert sorted(ids(_text(shoes, "鞋"))) == ["1", "5"]
    assert ids(_text(shoes, "运动鞋")) == ["1"]
    assert ids(_text(shoes, "裙")) == ["2"]


def test_english_words_match_case_insensitively(shoes):
    for query in ("running", "RUNNING", "Running", "ｒｕｎｎｉｎｇ"):
        assert sorted(ids(_text(shoes, query))) == ["3", "4"], query
    assert ids(_text(shoes, "SPORT")) == ["4"]  # array<string> searchable field, full-width in the data
    assert ids(_text(shoes, "LEATHER")) == ["5"]


def test_full_width_query_matches_half_width_title(shoes):
    assert ids(_text(shoes, "ＭＡＸ９０"))[0] == "3"
    assert ids(_text(shoes, "max90")) == ["3"]


def test_words_not_in_any_title_find_nothing(shoes):
    assert _text(shoes, "umbrella").hits == []
    assert _text(shoes, "雨伞").hits == []
