"""Tokenisation shared by indexing and querying: jieba for CJK, lower-cased words for everything else.

Documents are indexed as words plus single CJK characters, so a one-character query (鞋) still finds
运动鞋; queries use words only, so a multi-character query is not drowned by unrelated characters.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache
from typing import Any

import jieba

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# CJK runs, letter runs and digit runs: "max90" is "max" + "90", like "Max 90"
_RUNS = re.compile(rf"[{_CJK}]+|[^\W\d_{_CJK}]+|\d+")
_IS_CJK = re.compile(rf"[{_CJK}]")


def normalize(text: str) -> str:
    """NFKC folds full-width forms (ＡＢＣ１２３, ，) to their half-width twins; then lower-case."""
    return unicodedata.normalize("NFKC", text).lower()


@lru_cache(maxsize=1)
def _jieba() -> jieba.Tokenizer:
    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


class UserWords:
    """A dataset's own words (`DatasetSchema.dictionary`: brand names, product lines) that segmentation keeps
    whole. jieba's dictionary is one per process (and ~50 MB), so instead of a jieba per dataset a Chinese run
    is first split at these words (longest first); each word is a token, followed by what jieba's search mode
    makes of it (`小米手环` also gives 小米 and 手环, so a query for 手环 still finds it), and the rest of the run
    goes to jieba as before."""

    def __init__(self, words: tuple[str, ...]) -> None:
        self.words = frozenset(words)
        ordered = sorted(self.words, key=lambda w: (-len(w), w))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def cut(self, run: str) -> list[str]:
        if self._pattern is None:
            return _search_words(run)
        out: list[str] = []
        at = 0
        for m in self._pattern.finditer(run):
            out += _search_words(run[at : m.start()])
            out.append(m.group())
            out += [w for w in _search_words(m.group()) if w != m.group()]
            at = m.end()
        return out + _search_words(run[at:])


@lru_cache(maxsize=64)
def user_words(words: tuple[str, ...]) -> UserWords | None:
    """The compiled dictionary of a schema's `dictionary` (None when empty); kept for the next call."""
    return UserWords(words) if words else None


def _search_words(run: str) -> list[str]:
    return [w for w in _jieba().cut_for_search(run) if w.strip()] if run else []


def _tokens(text: str, *, unigrams: bool, words: UserWords | None = None) -> list[str]:
    out: list[str] = []
    for run in _RUNS.findall(normalize(text)):
        if not _IS_CJK.match(run):
            out.append(run)
            continue
        found = words.cut(run) if words is not None else _search_words(run)
        out.extend(found)
        if unigrams:
            out.extend(ch for ch in run if not any(w == ch for w in found))
    return out


def tokenize(text: str, words: UserWords | None = None) -> list[str]:
    """Index-side tokens: words (search-mode segmentation) plus every CJK character once per occurrence."""
    return _tokens(text, unigrams=True, words=words)


def tokenize_query(text: str, words: UserWords | None = None) -> list[str]:
    """Query-side tokens: words only, deduplicated in order."""
    return list(dict.fromkeys(_tokens(text, unigrams=False, words=words)))


def index_text(parts: list[str], words: UserWords | None = None) -> str:
    """The whitespace-joined token stream stored in the full-text column."""
    return " ".join(tok for part in parts for tok in tokenize(part, words))


# -- fields in the token stream ---------------------------------------------------------------------
# The stored token stream names the field each run of tokens came from with a marker token (FIELD_MARK + the
# field's name), so BM25 can score each field on its own (title above description, search/types.py's
# field_weights). The tokenizer never emits FIELD_MARK, and str.split() keeps it (it would drop "\x1f" and the
# other separators as whitespace); a stream without markers (written before them) is one unnamed field.
FIELD_MARK = "\x01"


def field_text(name: str, parts: list[str], words: UserWords | None = None) -> str:
    """`index_text` of one field's values, preceded by the field's marker; "" when it has no tokens."""
    body = index_text(parts, words)
    return f"{FIELD_MARK}{name} {body}" if body else ""


def join_fields(texts: list[str]) -> str:
    return " ".join(t for t in texts if t)


def stream_tokens(stream: str) -> list[str]:
    """The tokens of a stored stream, markers left out."""
    return [t for t in stream.split() if not t.startswith(FIELD_MARK)]


# -- search terms: what the index and the query compare ---------------------------------------------
# English function words that carry no product meaning; dropped from queries and postings alike, so
# `shoes for running` ranks by shoes and running. (The list is the usual IR stop list, shortened to words
# that never name a product: `it`, `us`, `one` and the like stay.)
STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "into", "is", "of", "on",
    "or", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "was",
    "were", "will", "with", "without",
})


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer  # PyStemmer: the Snowball project's stemmers, in C

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=262_144)
def search_term(token: str) -> str | None:
    """The term a token is indexed and searched as: Latin words stemmed by Snowball's English stemmer (`shoes`
    and `shoe`, `running` and `run` meet), stop words None; CJK words, characters and digits as they are."""
    if not token or not token[0].isascii() or not token[0].isalpha():
        return token
    if token in STOP_WORDS:
        return None
    return _stemmer().stemWord(token)


def search_terms(tokens: list[str]) -> list[str]:
    """`search_term` of each token, stop words left out, order kept, repeats kept (they are term frequency)."""
    return [t for t in map(search_term, tokens) if t is not None]


# -- heads: Chinese compounds name what their last character names (书包 and 背包 are bags, 图书 is a book,
# 书店 is a shop). The index also files each CJK word under its last character, as HEAD_MARK + the character, so
# a query can ask for "words ending in 包" (the bags) rather than "包 anywhere" (包邮, free shipping, printed on
# every picture). Head terms are derived from the stored stream when the index is built, never stored; a piece
# cut from the front of a longer word (连衣 of 连衣裙) heads nothing.
HEAD_MARK = "\x02"


def head_term(term: str) -> str | None:
    """The head term a CJK word of two or more characters is also filed under (书包, 背包 -> HEAD_MARK + 包). A
    token is one run of the tokenizer's (CJK, letters or digits), so its last character says which."""
    if len(term) < 2:
        return None
    last = ord(term[-1])  # the ranges of _CJK
    cjk = 0x3400 <= last <= 0x4DBF or 0x4E00 <= last <= 0x9FFF or 0xF900 <= last <= 0xFAFF
    return HEAD_MARK + term[-1] if cjk else None


def prefix_piece(tokens: list[str], i: int) -> bool:
    """Whether tokens[i] is a piece search-mode segmentation cut from the front of the word that follows it
    (运动 before 运动鞋; 连衣, 衣裙 before 连衣裙): the word's last character is its head, not the piece's. The
    whole word comes at most two tokens later for words of up to four characters (a window of three costs a
    third more on an index build, for the rare longer word)."""
    tok, n = tokens[i], len(tokens)
    return ((i + 1 < n and tokens[i + 1] != tok and tokens[i + 1].startswith(tok))
            or (i + 2 < n and tokens[i + 2] != tok and tokens[i + 2].startswith(tok)))


@lru_cache(maxsize=262_144)
def index_terms(token: str) -> tuple[str | None, str | None]:
    """A stored token's search term and its head term (either may be None): one cached call per token when an
    index is built from a million items' streams."""
    term = search_term(token)
    return term, (head_term(term) if term is not None else None)


def head_of(char: str) -> str:
    """The head term of words ending in `char`."""
    return HEAD_MARK + char


def is_cjk(token: str) -> bool:
    return bool(token) and all(_IS_CJK.match(ch) for ch in token)


def strings(value: Any) -> list[str]:
    """A field's text values: a string alone, or the strings of a list (other values have no text)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []
