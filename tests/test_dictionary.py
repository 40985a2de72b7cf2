"""A dataset's user words (schema `dictionary`): segmentation keeps them whole, set at creation or later through
the library, the management API and the CLI."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from api_fixtures import start, stop
from conftest import TITLE_SCHEMA, ids
from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.errors import InvalidArgument
from mmsearch.search import SearchOptions, SearchRequest
from mmsearch.text import tokenize, tokenize_query, user_words

SCHEMA = TITLE_SCHEMA
ITEMS = [
    {"id": "band", "title": "小米手环8 NFC版 运动心率"},
    {"id": "film", "title": "小米14 手机钢化膜 送手环"},
    {"id": "phone", "title": "小米14 手机 黑色"},
]
OFF = SearchOptions(recall_size=100)


def test_a_user_word_is_one_token_followed_by_what_jieba_makes_of_it():
    words = user_words(("小米手环", "雄狮"))
    assert tokenize_query("小米手环新款", words) == ["小米手环", "小米", "手环", "新款"]
    assert "小米手环" not in tokenize_query("小米手环新款")  # jieba alone splits it
    indexed = tokenize("小米手环", words)
    assert indexed[0] == "小米手环" and {"小", "米", "手", "环"} <= set(indexed)  # characters, as for any text
    assert user_words(()) is None and user_words(("雄狮", "小米手环")) is not words  # keyed by the tuple


def test_the_schema_checks_the_words(mm):
    schema = {**SCHEMA, "dictionary": ["小米手环", " 小米手环", "华为"]}
    info = mm.create_dataset("d", schema, vector_dim=4)
    assert info.schema.dictionary == ("小米手环", "华为")  # trimmed, repeats dropped
    for bad in (["nike"], ["鞋"], ["小米 手环"], ["字" * 33]):
        with pytest.raises(InvalidArgument) as err:
            mm.create_dataset("e", {**SCHEMA, "dictionary": bad}, vector_dim=4)
        assert err.value.field == "dictionary" and "2-32 Chinese characters" in str(err.value)


def test_a_product_line_in_the_dictionary_ranks_items_that_name_it_first(tmp_path):
    mm = MMSearch(Settings(home=tmp_path, ocr=False), encoder=None)
    mm.create_dataset("plain", SCHEMA, vector_dim=4)
    mm.create_dataset("words", {**SCHEMA, "dictionary": ["小米手环"]}, vector_dim=4)
    for ds in ("plain", "words"):
        assert mm.import_items(ds, [dict(i) for i in ITEMS]).rejected == 0
    query = SearchRequest(text="小米手环")
    plain, words = mm.search("plain", query, OFF), mm.search("words", query, OFF)
    assert ids(words)[0] == "band"
    with_word, without = ({h.id: h.score for h in r.hits} for r in (words, plain))
    # the whole word is a rare term only the band holds: it widens the band's lead over the film, which holds
    # 小米 and 手环 as well
    assert with_word["band"] / with_word["film"] > 1.2 * without["band"] / without["film"]


def test_words_added_later_apply_to_queries_at_once_and_to_items_imported_after(tmp_path):
    mm = MMSearch(Settings(home=tmp_path, ocr=False), encoder=None)
    mm.create_dataset("p", SCHEMA, vector_dim=4)
    mm.import_items("p", [dict(i) for i in ITEMS])
    info = mm.set_dictionary("p", ["小米手环"])
    assert info.schema.dictionary == ("小米手环",) == mm.dataset("p").schema.dictionary
    # the old items were tokenised without the word: found through its characters all the same
    assert "band" in ids(mm.search("p", SearchRequest(text="小米手环"), OFF))
    index = mm.store.serving_index(mm.dataset("p"))
    assert "小米手环" not in index.tokens_of(index.live_row("band"))
    mm.import_items("p", [dict(i) for i in ITEMS])  # imported again: tokenised with the word
    index = mm.store.serving_index(mm.dataset("p"))
    assert "小米手环" in index.tokens_of(index.live_row("band"))
    assert ids(mm.search("p", SearchRequest(text="小米手环"), OFF))[0] == "band"
    with pytest.raises(InvalidArgument):
        mm.set_dictionary("p", ["ok"])
    assert mm.set_dictionary("p", []).schema.dictionary == ()


def test_the_management_api_replaces_the_words(tmp_path, product_items):
    api = start(tmp_path, product_items)
    try:
        url = "/admin/v1/datasets/products/dictionary"
        r = api.admin.put(url, json={"dictionary": ["运动鞋王", "高跟鞋"]})
        assert r.status_code == 200, r.text
        assert r.json()["schema"]["dictionary"] == ["运动鞋王", "高跟鞋"]
        bad = api.admin.put(url, json={"dictionary": ["shoe"]})
        assert bad.status_code == 400 and "dictionary" in bad.text and "Chinese characters" in bad.text
        assert httpx.put(api.server.url + url, json={"dictionary": []}).status_code == 401  # admin only
        assert api.admin.put("/admin/v1/datasets/nope/dictionary", json={"dictionary": []}).status_code == 404
    finally:
        stop(api)


def test_the_cli_shows_adds_removes_and_reads_a_file(tmp_path):
    runner = CliRunner()
    home = tmp_path / "home"
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA), encoding="utf-8")

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, ["--home", str(home), *args])
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    run("dataset", "create", "p", "--schema", str(schema), "--dim", "4")
    got = json.loads(run("dataset", "dictionary", "p", "--add", "小米手环", "--add", "雄狮", "--json").stdout)
    assert got == {"id": "p", "dictionary": ["小米手环", "雄狮"]}
    got = json.loads(run("dataset", "dictionary", "p", "--remove", "雄狮", "--json").stdout)
    assert got["dictionary"] == ["小米手环"]
    words = tmp_path / "words.txt"
    words.write_text("# brands\n李宁\n\n安踏\n", encoding="utf-8")
    assert "2 words: 李宁, 安踏" in run("dataset", "dictionary", "p", "--file", str(words)).stdout
    bad = run("dataset", "dictionary", "p", "--add", "nike", code=1)
    assert "2-32 Chinese characters" in bad.stdout + bad.stderr
    assert json.loads(run("dataset", "dictionary", "p", "--clear", "--json").stdout)["dictionary"] == []
