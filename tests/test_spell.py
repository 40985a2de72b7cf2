"""Spell correction against vocabularies built from realistic product texts (real jieba, pypinyin, symspellpy)."""

from __future__ import annotations

import pytest

from mmsearch.search.spell import (
    SpellCorrector,
    Vocabulary,
    apply_spell_correction,
    build_vocabulary,
    merge_vocabularies,
)

PRODUCT_TEXTS = [
    "Nike 春夏新款运动鞋 男款 透气跑步鞋",
    "Nike Air Max 90 running shoe 气垫 运动鞋",
    "Adidas 运动裤 男 春夏 休闲",
    "李宁 篮球鞋 高帮 实战",
    "安踏 儿童运动鞋 防滑",
    "三体 刘慈欣 科幻小说 全三册",
    "三体 电视剧 原著 典藏版",
    "华为 手机 Mate 60 Pro 5G",
    "Apple iPhone 15 手机壳 透明",
    "4K 显示屏 电视 55英寸 智能",
    # OCR text read from a product image
    "正品保证 七天无理由退换 运动鞋 清仓",
]


@pytest.fixture(scope="module")
def corrector() -> SpellCorrector:
    return SpellCorrector(build_vocabulary(PRODUCT_TEXTS))


def spell(words: dict[str, int]) -> SpellCorrector:
    return SpellCorrector(Vocabulary(words))


# vocabulary ---------------------------------------------------------------------------------------


def test_vocabulary_holds_normalised_words_counted_once_per_text() -> None:
    vocab = build_vocabulary(["ＮＩＫＥ 运动鞋 运动鞋", "Nike 三体", "", "nike"])
    assert vocab.words["nike"] == 3
    assert vocab.words["运动鞋"] == 1
    assert vocab.words["三体"] == 1
    assert "ＮＩＫＥ" not in vocab.words


def test_vocabulary_has_no_cjk_unigrams_beyond_jieba_words() -> None:
    vocab = build_vocabulary(["春夏新款运动鞋"])
    assert {"春夏", "新款", "运动", "运动鞋"} <= set(vocab.words)
    assert "春" not in vocab.words  # an index-side unigram, not a word
    assert "动" not in vocab.words


def test_merge_vocabularies_adds_frequencies() -> None:
    merged = merge_vocabularies([Vocabulary({"三体": 2, "nike": 1}), Vocabulary({"三体": 3})])
    assert merged.words == {"三体": 5, "nike": 1}


# the examples -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("三题", "三体"),
        ("运功鞋", "运动鞋"),
        ("春夏新款运功鞋", "春夏新款运动鞋"),
        ("nkie 运功鞋", "nike 运动鞋"),
        ("三题 刘慈欣", "三体 刘慈欣"),
        ("三题电视剧", "三体电视剧"),
        ("蓝球鞋", "篮球鞋"),  # 蓝 is not a word of the data, 球鞋 is: still one replacement is cheaper
        ("4K显示平电视", "4K显示屏电视"),  # 屏 is ping or bing; the data's 显示屏 reads ping
        ("nkie running shoe", "nike running shoe"),
        ("iphnoe 手机壳", "iphone 手机壳"),
    ],
)
def test_corrects_typos(corrector: SpellCorrector, query: str, expected: str) -> None:
    assert corrector.correct(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "运动鞋",
        "三体 小说",
        "三体小说",
        "nike running shoe",
        "Nike Air Max 90",
        "春夏新款运动鞋",
        "三体电视剧",
        "4K显示屏电视",
    ],
)
def test_known_words_are_never_corrected(corrector: SpellCorrector, query: str) -> None:
    assert corrector.correct(query) == ""


@pytest.mark.parametrize("query", ["", "   ", "，。！", "12345", "5G", "ok"])
def test_nothing_to_correct_gives_empty_string(corrector: SpellCorrector, query: str) -> None:
    assert corrector.correct(query) == ""


# input forms --------------------------------------------------------------------------------------------


def test_punctuation_and_spacing_are_kept(corrector: SpellCorrector) -> None:
    assert corrector.correct("三题，刘慈欣！") == "三体，刘慈欣！"
    assert corrector.correct("  nkie--运功鞋?? ") == "  nike--运动鞋?? "
    assert corrector.correct("【三题】") == "【三体】"


def test_full_width_input(corrector: SpellCorrector) -> None:
    # full-width letters are folded for lookup; the ideographic space and full-width punctuation stay
    assert corrector.correct("ｎｋｉｅ\u3000运功鞋！") == "nike\u3000运动鞋！"
    assert corrector.correct("ＮＩＫＥ\u3000运动鞋") == ""  # known after NFKC + lower-case


def test_case_of_corrected_and_uncorrected_words(corrector: SpellCorrector) -> None:
    assert corrector.correct("Nkie AIR Max") == "Nike AIR Max"
    assert corrector.correct("NKIE") == "NIKE"
    assert corrector.correct("nkie") == "nike"


def test_digits_and_short_words_are_left_alone() -> None:
    sc = spell({"1234": 50, "iphone": 10, "pro": 10, "tvs": 10, "max": 10})
    assert sc.correct("1243") == ""
    assert sc.correct("１２４３") == ""
    assert sc.correct("tv") == ""  # two letters: never corrected
    assert sc.correct("iphnoe 1243 tv") == "iphone 1243 tv"
    assert sc.correct("mux90") == "max90"  # the letter run is corrected, the digit run kept


def test_empty_vocabulary_corrects_nothing() -> None:
    for sc in (SpellCorrector(Vocabulary({})), SpellCorrector(build_vocabulary([]))):
        assert sc.correct("三题") == ""
        assert sc.correct("nkie running") == ""
        assert sc.correct("") == ""


# choosing between candidates ------------------------------------------------------------------------------


def test_latin_prefers_smaller_distance_then_frequency() -> None:
    assert spell({"shirt": 5, "short": 1}).correct("shart") == "shirt"
    assert spell({"shirt": 1, "short": 5}).correct("shart") == "short"
    # one edit beats two edits, however frequent
    assert spell({"shoes": 1, "shooter": 1000}).correct("shoees") == "shoes"
    # beyond two edits: no suggestion
    assert spell({"sneakers": 10}).correct("snkrs") == ""


def test_latin_short_words_allow_one_edit_only() -> None:
    assert spell({"nike": 5}).correct("nkie") == "nike"  # a transposition is one edit
    assert spell({"nike": 5}).correct("nkey") == ""  # two edits: too many for four letters
    assert spell({"sneakers": 5}).correct("snaekrs") == "sneakers"  # two edits are fine for seven


def test_common_english_words_are_meant_not_typos() -> None:
    catalogue = spell({"nike": 50, "blue": 20, "lamp": 5})
    assert catalogue.correct("nothing like this") == ""  # `like` is one edit from `nike`, and a word
    assert catalogue.correct("bike") == ""
    assert catalogue.correct("blu lamb") == "blue lamp"  # rarer words (2 and 6.5 million) still are typos
    assert catalogue.correct("nkie") == "nike"


def test_chinese_prefers_the_more_frequent_homophone() -> None:
    assert spell({"三体": 9, "三提": 1}).correct("三题") == "三体"
    assert spell({"三体": 1, "三提": 9}).correct("三题") == "三提"


def test_exact_homophone_beats_near_homophone() -> None:
    # 运动鞋 (dong) is one edit away from 运功鞋 (gong); 韵功鞋 (韵 yun = 运 yun) sounds the same
    assert spell({"运动鞋": 100, "韵功鞋": 1}).correct("运功鞋") == "韵功鞋"


def test_polyphonic_typed_character_matches_any_reading() -> None:
    # 行 reads xing (its default) or hang; the data's 杭州 reads hang zhou
    assert spell({"杭州": 3}).correct("行州") == "杭州"
    # 长 reads chang or zhang; the data's 涨价 reads zhang jia
    assert spell({"涨价": 3}).correct("长价") == "涨价"


def test_near_homophones_prefer_the_more_frequent_word() -> None:
    # 动 and 洞 both read dong, one edit from the typed 功 (gong)
    assert spell({"运动鞋": 9, "运洞鞋": 1}).correct("运功鞋") == "运动鞋"
    assert spell({"运动鞋": 1, "运洞鞋": 9}).correct("运功鞋") == "运洞鞋"


def test_known_single_character_does_not_block_a_correction() -> None:
    # jieba reads 蓝球鞋 as 蓝 + 球鞋, both in the data, yet 篮球鞋 is the word meant
    assert spell({"蓝": 50, "球鞋": 5, "篮球鞋": 5}).correct("蓝球鞋") == "篮球鞋"
    assert spell({"蓝": 50, "球鞋": 5, "篮球鞋": 5}).correct("蓝 球鞋") == ""  # two words, as typed


# guards -----------------------------------------------------------------------------------------------------


def test_common_real_words_are_not_replaced_by_homophones() -> None:
    assert spell({"使用": 10}).correct("试用") == ""  # shi yong: one character away, but 试用 is a word
    assert spell({"事实": 10}).correct("实时") == ""  # shi shi, but 实时 is a word in its own right
    assert spell({"妥协": 10}).correct("拖鞋") == ""  # tuo xie


def test_at_most_half_the_characters_change() -> None:
    assert spell({"事实": 10}).correct("是时") == ""  # same sound, but both characters differ


def test_characters_inside_known_words_stay() -> None:
    # 剧 belongs to 电视剧: 剧集 is not rewritten to its homophone 聚集
    assert spell({"三体": 5, "电视": 5, "电视剧": 5, "聚集": 50}).correct("三体电视剧集") == ""
    # without 电视剧 in the data, 剧 is free to change: 剧集 (a rare word) -> its common homophone 聚集
    assert spell({"三体": 5, "电视": 5, "聚集": 50}).correct("三体电视剧集") == "三体电视聚集"


def test_rare_jieba_word_is_replaced_only_by_a_far_more_common_homophone() -> None:
    # 蓝球 is a rare "word" of jieba's dictionary (frequency 4): 篮球 (634 there) may replace it, the
    # data-only word 兰球 (same sound, unknown to jieba) may not
    assert spell({"篮球": 50}).correct("蓝球") == "篮球"
    assert spell({"兰球": 50}).correct("蓝球") == ""


def test_rare_jieba_word_is_not_replaced_by_a_near_homophone() -> None:
    # 剧集 is a (rare) word of jieba's dictionary; 募集 only sounds close (ju/mu)
    assert spell({"募集": 50}).correct("剧集") == ""


def test_near_homophone_needs_the_other_characters_identical() -> None:
    assert spell({"运动鞋": 5}).correct("运功鞋") == "运动鞋"
    assert spell({"运动鞋": 5}).correct("晕功鞋") == ""  # two characters differ


# modes --------------------------------------------------------------------------------------------------------


def test_modes(corrector: SpellCorrector) -> None:
    off = apply_spell_correction("三题", "off", corrector)
    assert (off.query, off.corrected_query) == ("三题", "")
    suggest = apply_spell_correction("三题", "suggestion_only", corrector)
    assert (suggest.query, suggest.corrected_query) == ("三题", "三体")
    auto = apply_spell_correction("三题", "auto", corrector)
    assert (auto.query, auto.corrected_query) == ("三体", "三体")
    clean = apply_spell_correction("三体", "auto", corrector)
    assert (clean.query, clean.corrected_query) == ("三体", "")
    no_vocab = apply_spell_correction("三题", "auto", None)
    assert (no_vocab.query, no_vocab.corrected_query) == ("三题", "")
