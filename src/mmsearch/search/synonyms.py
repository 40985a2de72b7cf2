"""Query-time synonyms: an application's groups of equivalent phrases (`["耐克", "nike"]`, `["女鞋", "女士鞋"]`).

A phrase of a group is present in a query when all its search terms are (`text.search_term`: stemmed, so the group
`["earphones", "headphones"]` also answers `earphone`); the other phrases of the group are then searched as well,
as extra text-channel tokens (BM25 ORs them with the query's own). The reranker's coverage counts a query token as
covered when the item holds the token or all the terms of one of its synonyms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from mmsearch.text import search_terms, tokenize_query

Groups = tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Expansion:
    tokens: list[str] = field(default_factory=list)  # extra tokens to search, in order, no repeats
    alternatives: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)  # query token -> synonym terms


@dataclass(frozen=True)
class Synonyms:
    """Compiled groups: each phrase as its tokens and its set of search terms."""

    phrases: tuple[tuple[tuple[tuple[str, ...], frozenset[str]], ...], ...]

    def expand(self, tokens: list[str]) -> Expansion:
        term_of = {tok: terms[0] for tok in tokens if (terms := search_terms([tok]))}
        query_terms = set(term_of.values())
        extra: dict[str, None] = {}
        alternatives: dict[str, list[tuple[str, ...]]] = {}
        for group in self.phrases:
            present = [terms for _, terms in group if terms and terms <= query_terms]
            if not present:
                continue
            others = [(toks, terms) for toks, terms in group if terms not in present]
            for toks, _ in others:
                extra.update(dict.fromkeys(t for t in toks if t not in tokens))
            for tok, term in term_of.items():
                if any(term in terms for terms in present):
                    alternatives.setdefault(tok, []).extend(tuple(sorted(terms)) for _, terms in others)
        return Expansion(list(extra), alternatives)


@lru_cache(maxsize=64)
def compile_synonyms(groups: Groups) -> Synonyms:
    """Compiled once per distinct list of groups (an application's config changes rarely; tokenising every phrase
    for every query would cost more than the search)."""
    compiled = []
    for group in groups:
        phrases = []
        for phrase in group:
            toks = tuple(tokenize_query(phrase))
            phrases.append((toks, frozenset(search_terms(list(toks)))))
        compiled.append(tuple(phrases))
    return Synonyms(tuple(compiled))
