"""How a query meets the index: English words stemmed on both sides, stop words dropped, and a Chinese word the
catalogue never stores as such backing off to its characters (issue 11: `女鞋` found nothing in a catalogue full
of `女士运动鞋`)."""

from __future__ import annotations

import pytest

from conftest import ids
from mmsearch.search import SearchRequest
from mmsearch.text import search_term, search_terms, tokenize_query

SCHEMA = {"fields": [
    {"name": "item_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
]}

TITLES = {
    "w1": "女士运动鞋 透气", "w2": "女士高跟鞋 黑色", "m1": "男士运动鞋", "d1": "红色连衣裙 女士",
    "v1": "女鞋 春夏新款",  # the word itself, verbatim
    "e1": "Trail running shoe", "e2": "Leather shoes for men", "e3": "Runner's notebook", "e4": "The summer dress",
}


@pytest.fixture
def shop(mm):
    mm.create_dataset("shop", SCHEMA, vector_dim=8)
    mm.import_items("shop", [{"item_id": i, "title": t} for i, t in TITLES.items()])
    return mm


def search(mm, text: str) -> list[str]:
    return ids(mm.search("shop", SearchRequest(text=text, page_size=20)))


def test_search_terms_stem_english_and_drop_stop_words():
    assert search_terms(tokenize_query("Running shoes for the summer")) == ["run", "shoe", "summer"]
    assert search_term("女鞋") == "女鞋" and search_term("90") == "90"
    assert search_term("the") is None


def test_english_inflections_meet(shop):
    got = search(shop, "running shoes")
    assert got[0] == "e1" and set(got) == {"e1", "e2"}  # `Runner's` stems to runner, not run
    assert set(search(shop, "shoe")) == {"e1", "e2"}
    assert set(search(shop, "dresses")) == {"e4"}
    assert search(shop, "the for with") == []  # nothing but stop words: nothing to match


def test_a_chinese_word_held_by_few_items_backs_off_to_its_characters(shop):
    got = search(shop, "女鞋")
    assert got[0] == "v1"  # the word itself ranks first
    assert set(got) == {"v1", "w1", "w2"}  # then items holding both 女 and 鞋; not 男士运动鞋, not the dress
    # a word no item holds, whose head heads no stored word: its characters, anywhere, rather than nothing
    assert set(search(shop, "鞋红")) == {"w1", "w2", "m1", "v1", "d1"}


def test_a_chinese_word_no_item_holds_backs_off_to_its_head(shop):
    # 男鞋 is in no item: the shoes (words headed by 鞋), the men's (男 too) first; not the dress
    got = search(shop, "男鞋")
    assert got[0] == "m1" and set(got) == {"m1", "w1", "w2", "v1"}
    # 鞋裙: no item holds it; 裙 heads 连衣裙, so the dress, and 鞋 counts only inside what 裙 heads
    assert search(shop, "鞋裙") == ["d1"]


def test_a_head_finds_what_a_word_names_not_what_holds_its_characters(mm):
    """`书包` (a school bag) in a shop whose cards all say 包邮 (free shipping) and whose brand is a book shop:
    the bags first, the book shop's own first among them, and no television because its card says 包邮; `书`
    alone ranks the books (图书) above everything the book shop sells."""
    mm.create_dataset("cards", SCHEMA, vector_dim=8)
    mm.import_items("cards", [{"item_id": i, "title": t} for i, t in {
        "bag1": "新华书店 防水背包 包邮", "bag2": "华为 双肩包 包邮", "bag3": "小米 背包大容量 包邮",
        "tv": "新华书店 4K电视 包邮", "phones": "新华书店 蓝牙耳机 包邮", "book1": "小说三体 图书 包邮",
        "book2": "科幻 图书", "bread": "全麦面包",
    }.items()])
    got = ids(mm.search("cards", SearchRequest(text="书包", page_size=20)))
    assert got[0] == "bag1" and {"bag2", "bag3"} <= set(got)
    assert {"tv", "phones", "book1", "book2"}.isdisjoint(got)  # (面包, bread, is headed by 包 too: it is there)
    books = ids(mm.search("cards", SearchRequest(text="书", page_size=20)))
    assert set(books[:2]) == {"book1", "book2"} and {"tv", "phones"} <= set(books[2:])


def test_a_stored_word_does_not_back_off(shop):
    assert set(search(shop, "运动鞋")) == {"w1", "m1"}


def test_synonym_groups_expand_a_query_by_search_terms():
    from mmsearch.search.synonyms import compile_synonyms

    syn = compile_synonyms((("耐克", "nike"), ("earphones", "headphones"), ("running shoes", "跑鞋")))
    assert syn.expand(["耐克"]).tokens == ["nike"]
    assert syn.expand(["earphone"]).tokens == ["headphones"]  # stems meet: earphone is earphones
    both = syn.expand(["running", "shoe"])  # a phrase is present when all its terms are
    assert both.tokens == ["跑鞋"] and both.alternatives["shoe"] == [("跑鞋",)]
    assert syn.expand(["running"]).tokens == []
    assert syn.expand(["dress"]).tokens == []


def test_an_application_searches_its_synonyms(shop):
    from mmsearch.errors import InvalidArgument

    shop.catalog.apps.create("with-syn", ["shop"], {"synonyms": [["耐克", "trail"], ["连衣裙", "dress"]]})
    shop.catalog.apps.create("without", ["shop"], {})
    found = shop.search_app("with-syn", "shop", SearchRequest(text="耐克"))
    assert ids(found.result) == ["e1"]
    assert ids(shop.search_app("without", "shop", SearchRequest(text="耐克")).result) == []
    got = ids(shop.search_app("with-syn", "shop", SearchRequest(text="dresses")).result)
    assert set(got) == {"e4", "d1"}  # `dresses` is the phrase `dress`; 连衣裙 is searched too
    with pytest.raises(InvalidArgument, match=r"config\.synonyms\.0"):
        shop.catalog.apps.create("bad", ["shop"], {"synonyms": [["alone"]]})
    with pytest.raises(InvalidArgument, match=r"config\.synonyms"):
        shop.catalog.apps.create("bad", ["shop"], {"synonyms": [["x" * 51, "y"]]})


def test_spelling_never_rewrites_an_inflection_of_a_known_word():
    from mmsearch.search.spell import SpellCorrector, build_vocabulary

    corrector = SpellCorrector(build_vocabulary(["Trail running shoe", "wireless headphones"]))
    assert corrector.correct("running shoes") == ""  # shoes is shoe's plural, not a typo
    assert corrector.correct("runs") == ""
    assert corrector.correct("wireles headphnes") == "wireless headphones"  # typos are still corrected


def test_a_word_with_a_noun_suffix_backs_off_to_its_head(mm):
    """Issue 11: `狮子` found no picture titled `雄狮 …` once any item held both characters (the horoscope's 狮子座),
    since the back-off kept items holding all of them. 子 is a noun suffix: 狮子 backs off to 狮 alone."""
    mm.create_dataset("web", SCHEMA, vector_dim=8)
    mm.import_items("web", [{"item_id": i, "title": t} for i, t in {
        "lion": "雄狮在草原上捕猎", "leo": "狮子座本周运势", "cub": "一只幼狮在树下休息", "kids": "孩子们的小桌子",
    }.items()])
    found = ids(mm.search("web", SearchRequest(text="狮子", page_size=20)))
    assert set(found) == {"leo", "lion", "cub"}  # and not the item holding only the suffix
    assert found[0] == "leo"  # the only item holding the word itself ranks first
    shoes = {"s1": "网面跑步运动鞋", "s2": "尖头高跟鞋", "k1": "儿子的玩具车"}
    mm.create_dataset("shoes", SCHEMA, vector_dim=8)
    mm.import_items("shoes", [{"item_id": i, "title": t} for i, t in shoes.items()])
    assert set(ids(mm.search("shoes", SearchRequest(text="鞋子", page_size=20)))) == {"s1", "s2"}


def test_a_piece_cut_from_a_words_front_heads_nothing(mm):
    """Search-mode segmentation also emits 连衣 for 连衣裙 and 运动 for 运动鞋; their last characters are not what
    the word names, so `上衣` (a top) finds the shirt (衬衣), not the dress."""
    from mmsearch.text import prefix_piece, tokenize

    tokens = tokenize("连衣裙")
    assert prefix_piece(tokens, tokens.index("连衣")) and not prefix_piece(tokens, tokens.index("连衣裙"))
    mm.create_dataset("clothes", SCHEMA, vector_dim=8)
    mm.import_items("clothes", [{"item_id": i, "title": t} for i, t in {
        "dress": "碎花连衣裙", "shirt": "纯棉衬衣", "shoe": "网面运动鞋",
    }.items()])
    assert ids(mm.search("clothes", SearchRequest(text="上衣", page_size=20))) == ["shirt"]
