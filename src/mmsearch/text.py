"""Tokenisation shared by indexing and querying: jieba for CJK, lower-cased words for everything else.

Documents are indexed as words plus single CJK characters, so a one-character query (鞋) still finds
运动鞋; queries use words only, so a multi-character query is not drowned by unrelated characters.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache

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


def _tokens(text: str, *, unigrams: bool) -> list[str]:
    out: list[str] = []
    for run in _RUNS.findall(normalize(text)):
        if not _IS_CJK.match(run):
            out.append(run)
            continue
        words = [w for w in _jieba().cut_for_search(run) if w.strip()]
        out.extend(words)
        if unigrams:
            out.extend(ch for ch in run if not any(w == ch for w in words))
    return out


def tokenize(text: str) -> list[str]:
    """Index-side tokens: words (search-mode segmentation) plus every CJK character once per occurrence."""
    return _tokens(text, unigrams=True)


def tokenize_query(text: str) -> list[str]:
    """Query-side tokens: words only, deduplicated in order."""
    return list(dict.fromkeys(_tokens(text, unigrams=False)))


def index_text(parts: list[str]) -> str:
    """The whitespace-joined token stream stored in the full-text column."""
    return " ".join(tok for part in parts for tok in tokenize(part))


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


def is_cjk(token: str) -> bool:
    return bool(token) and all(_IS_CJK.match(ch) for ch in token)
