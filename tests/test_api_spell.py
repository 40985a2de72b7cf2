"""Spell correction modes through HTTP, with the vocabulary built from the application's dataset."""

from __future__ import annotations

import time

import pytest

from api_fixtures import Api, start, stop
from conftest import TITLE_SCHEMA

SCHEMA = TITLE_SCHEMA
BOOKS = [
    {"id": "b1", "title": "三体 刘慈欣 科幻小说"},
    {"id": "b2", "title": "三体 II 黑暗森林"},
    {"id": "s1", "title": "轻便网面 跑步运动鞋"},
    {"id": "s2", "title": "儿童运动鞋 透气"},
    {"id": "h1", "title": "wireless headphones noise cancelling"},
]


@pytest.fixture(scope="module")
def api(tmp_path_factory, product_items) -> Api:
    a = start(tmp_path_factory.mktemp("spell"), product_items)
    a.mm.create_dataset("books", SCHEMA, vector_dim=8)
    a.mm.import_items("books", BOOKS)
    for mode in ("off", "suggestion_only", "auto"):
        a.mm.catalog.apps.create(f"spell-{mode.replace('_', '-')}", ["books"], {"spell_correction": mode})
    a.spell_key = a.mm.catalog.keys.create(["spell-off", "spell-suggestion-only", "spell-auto"]).key  # type: ignore
    yield a
    stop(a)


def run(api: Api, mode: str, text: str) -> dict:
    r = api.search({"query": {"text": text}, "dataset_id": "books"}, app=f"spell-{mode.replace('_', '-')}",
                   key=api.spell_key)  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return r.json()


def text_ids(body: dict) -> list[str]:
    return [r["_id"] for r in body["result"]["search_results"]
            if any(i["recall_reason"] == "text" for i in r["recall_info"])]


def test_off_never_corrects(api: Api):
    body = run(api, "off", "wireles headphnes")
    assert body["result"]["spell_correction"] == {"mode": "off"}
    assert text_ids(body) == []


def test_suggestion_only_searches_the_original(api: Api):
    body = run(api, "suggestion_only", "wireles headphnes")
    assert body["result"]["spell_correction"] == {"mode": "suggestion_only",
                                                  "corrected_query": "wireless headphones"}
    assert body["spell_correction"] == body["result"]["spell_correction"]
    assert text_ids(body) == []  # the misspelt words themselves match nothing
    body = run(api, "suggestion_only", "三题")
    assert body["result"]["spell_correction"] == {"mode": "suggestion_only", "corrected_query": "三体"}


def test_an_uncorrected_chinese_typo_still_finds_items_by_its_characters(api: Api):
    """No item holds 题: the back-off to characters finds the items holding any of them (三), not nothing."""
    body = run(api, "off", "三题")
    assert set(text_ids(body)) == {"b1", "b2"}


def test_auto_searches_the_correction(api: Api):
    body = run(api, "auto", "三题")
    assert body["result"]["spell_correction"] == {"mode": "auto", "corrected_query": "三体"}
    assert set(text_ids(body)) == {"b1", "b2"}
    body = run(api, "auto", "运功鞋")
    assert body["result"]["spell_correction"]["corrected_query"] == "运动鞋"
    assert set(text_ids(body)) >= {"s1", "s2"}
    body = run(api, "auto", "wireles headphnes")
    assert body["result"]["spell_correction"]["corrected_query"] == "wireless headphones"
    assert text_ids(body)[0] == "h1"


def test_known_words_are_never_corrected(api: Api):
    for text in ("三体", "运动鞋", "科幻小说 三体", "headphones"):
        assert run(api, "auto", text)["result"]["spell_correction"] == {"mode": "auto", "corrected_query": ""}


def test_the_query_log_keeps_the_correction(api: Api):
    run(api, "auto", "三题")
    entry = next(e for e in api.mm.catalog.query_log.recent("spell-auto") if e.query_text == "三题")
    assert entry.corrected_query == "三体"


def test_new_items_join_the_vocabulary(api: Api):
    assert run(api, "auto", "饭扫机")["result"]["spell_correction"]["corrected_query"] == ""
    api.mm.import_items("books", [{"id": "v1", "title": "扫地机器人 翻扫机 智能"}])
    deadline = time.monotonic() + 10
    while run(api, "auto", "饭扫机")["result"]["spell_correction"]["corrected_query"] != "翻扫机":
        assert time.monotonic() < deadline, "the vocabulary was not rebuilt after an import"
        time.sleep(0.2)
