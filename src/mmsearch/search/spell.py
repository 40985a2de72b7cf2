"""Spell correction for search queries: edit distance for Latin words, pinyin homophones for Chinese.

The vocabulary is the application's own data: the query-side jieba words (mmsearch.text.tokenize_query,
so no standalone CJK unigrams) of every searchable field and OCR text, counted once per text. The
caller builds it once per dataset version and caches the SpellCorrector built from it.

Latin words (letter runs of 3+ letters not in the vocabulary) are looked up with symspellpy: the
nearest vocabulary word wins, ties go to the more frequent word; words of 3-4 letters allow 1 edit,
longer words `max_edit_distance`. Digit runs and 1-2 letter words are never touched, nor is a word whose
stem (text.search_term) is a vocabulary word's stem: `shoes` is an inflection of `shoe`, not a typo, nor a
common English word (count >= 10 million in symspellpy's English frequency dictionary): `like` is not a typo
of a catalogue's `nike`, nor `bike` of it, while `blu` (2 million) still becomes `blue`.

Chinese runs are segmented by a small dynamic programme over characters. A piece is a vocabulary
word of 2+ characters (cost 0), a lone character (0.75 when it is a vocabulary word, else 1), or a
replacement of a 2+ character span that is not a vocabulary word by a vocabulary word of the same
length that sounds the same (0.5 per changed character: equal toneless pinyin, any reading of a
polyphonic typed character, e.g. 三题 -> 三体) or almost the same (0.7: one character differs and its
pinyin is one edit away, e.g. 运功鞋 -> 运动鞋). The cheapest segmentation wins; ties prefer fewer
replacements, then more frequent replacement words. Guards against "correcting" what the user meant:
- a run whose query words all have 2+ characters and are in the vocabulary is left alone;
- at most half the characters of a span may change (at least one);
- only characters outside every vocabulary word of 2+ characters in the run may change (in 电视剧集
  with 电视剧 known, 剧 stays);
- a span that is a common word of jieba's general dictionary is never replaced, a rare one only by a
  far more common exact homophone (蓝球 -> 篮球, but not 剧集 -> 募集).

Uncorrected parts of the query are returned as typed; corrected words in normalised (lower-case,
NFKC) form. `correct` returns "" when nothing changes.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pypinyin import Style, lazy_pinyin, pinyin
from symspellpy import SymSpell, Verbosity

from mmsearch.text import _CJK, _jieba, normalize, search_term, tokenize_query

SpellMode = Literal["off", "suggestion_only", "auto"]

# Same runs as mmsearch.text: CJK runs, letter runs, digit runs (on the text as typed: full-width
# letters and digits are letters and digits too).
_RUNS = re.compile(rf"[{_CJK}]+|[^\W\d_{_CJK}]+|\d+")
_IS_CJK = re.compile(rf"[{_CJK}]")
_LATIN_MIN = 3  # shorter letter runs are never corrected nor suggested
_MAX_WORD = 8  # longest Chinese word considered for replacement
_MAX_KEYS = 32  # cap on pinyin combinations tried for one span (polyphonic characters)
_MAX_PER_SOUND = 32  # most frequent vocabulary words kept per toneless pinyin
# jieba's dictionary says whether a typed span is a real word: a common one (frequency >= 20) is never
# replaced; a rare one (蓝球 4, 剧集 3, 运功 3) only by an exact homophone 10x as common there (篮球 634),
# never by a near-homophone (剧集 -> 募集, and so 运功 -> 运动 too: 运功鞋 needs 运动鞋 in the vocabulary)
_COMMON_WORD_FREQ = 20
# the Latin counterpart: an English word this common (Google n-gram counts, symspellpy's dictionary) is meant
_COMMON_ENGLISH_COUNT = 10_000_000
_RARE_WORD_RATIO = 10
# Segmentation costs: a vocabulary word of 2+ characters is free, a lone character is not (less so when
# it is a vocabulary word itself); a replacement costs per changed character, less than the lone
# characters it saves, so "蓝 + 球鞋" (蓝 a known word) still loses to "篮球鞋".
_COST_KNOWN_CHAR = 0.75
_COST_CHAR = 1.0
_COST_HOMOPHONE = 0.5
_COST_NEAR = 0.7


@dataclass(frozen=True)
class Vocabulary:
    """Word -> frequency (number of texts containing the word), words in normalised form."""

    words: Mapping[str, int]


def build_vocabulary(texts: Iterable[str]) -> Vocabulary:
    """Count the query-side words of raw field strings and OCR texts (one count per text)."""
    counts: Counter[str] = Counter()
    for text in texts:
        if text:
            counts.update(tokenize_query(text))
    return Vocabulary(dict(counts))


def merge_vocabularies(vocabs: Iterable[Vocabulary]) -> Vocabulary:
    """One vocabulary for an application over several datasets: frequencies add up."""
    counts: Counter[str] = Counter()
    for vocab in vocabs:
        counts.update(vocab.words)
    return Vocabulary(dict(counts))


@lru_cache(maxsize=1)
def common_english() -> frozenset[str]:
    """English words too common to be typos (read once from the dictionary symspellpy ships, ~80 ms)."""
    import importlib.resources

    text = (importlib.resources.files("symspellpy") / "frequency_dictionary_en_82_765.txt").read_text("utf-8")
    pairs = (line.split() for line in text.splitlines())
    return frozenset(p[0] for p in pairs if len(p) == 2 and int(p[1]) >= _COMMON_ENGLISH_COUNT)


@lru_cache(maxsize=8192)
def _readings(ch: str) -> tuple[str, ...]:
    """Every toneless reading of one character (the user may have typed any of them)."""
    return tuple(dict.fromkeys(pinyin(ch, style=Style.NORMAL, heteronym=True)[0]))


def _within_one_edit(a: str, b: str) -> bool:
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def _by_freq(entry: tuple[str, int]) -> tuple[int, str]:
    return -entry[1], entry[0]


@dataclass(frozen=True)
class _Replacement:
    word: str
    cost: float
    freq: int


class SpellCorrector:
    """Corrects queries against one vocabulary; build once per vocabulary and reuse (read-only after init)."""

    def __init__(self, vocab: Vocabulary, max_edit_distance: int = 2) -> None:
        self._words = vocab.words
        # the vocabulary's Latin words as search terms (stemmed): a typed word whose stem is among them is an
        # inflection of a known word (`shoes` of `shoe`, `running` of `run`), never a misspelling
        self._stems = frozenset(search_term(w) for w in vocab.words if w[:1].isascii() and w[:1].isalpha())
        self._max_edit_distance = max_edit_distance
        self._symspell = SymSpell(max_dictionary_edit_distance=max_edit_distance, prefix_length=7)
        # toneless pinyin "san ti" -> [(word, freq)] most frequent first
        by_sound: dict[str, list[tuple[str, int]]] = {}
        # word with one character masked, "三*" -> reading of the masked character "ti" -> [(word, freq)]
        by_mask: dict[str, dict[str, list[tuple[str, int]]]] = {}
        for word, freq in vocab.words.items():
            if freq <= 0:
                continue
            if _IS_CJK.match(word):
                if not 2 <= len(word) <= _MAX_WORD or not all(_IS_CJK.match(ch) for ch in word):
                    continue
                sound = lazy_pinyin(word)
                if len(sound) != len(word):
                    continue
                by_sound.setdefault(" ".join(sound), []).append((word, freq))
                for i, syllable in enumerate(sound):
                    masked = by_mask.setdefault(word[:i] + "*" + word[i + 1 :], {})
                    masked.setdefault(syllable, []).append((word, freq))
            elif len(word) >= _LATIN_MIN and not word.isdigit():
                self._symspell.create_dictionary_entry(word, freq)
        for key, entries in by_sound.items():
            by_sound[key] = sorted(entries, key=_by_freq)[:_MAX_PER_SOUND]
        for masked in by_mask.values():
            for entries in masked.values():
                entries.sort(key=_by_freq)
        self._by_sound = by_sound
        self._by_mask = by_mask
        self._syllables = frozenset(syl for masked in by_mask.values() for syl in masked)
        self._near_cache: dict[str, tuple[str, ...]] = {}
        self._jieba_freq = _jieba().FREQ

    def correct(self, query: str) -> str:
        """The corrected query, or "" when no word needs correcting."""
        out: list[str] = []
        changed = False
        pos = 0
        for match in _RUNS.finditer(query):
            out.append(query[pos : match.start()])
            pos = match.end()
            typed = match.group()
            if _IS_CJK.match(typed):
                fixed = self._correct_cjk(typed)
            elif typed[0].isdigit():
                fixed = None
            else:
                fixed = self._correct_latin(typed)
            if fixed is None:
                out.append(typed)
            else:
                out.append(fixed)
                changed = True
        out.append(query[pos:])
        return "".join(out) if changed else ""

    # Latin ------------------------------------------------------------------------------------------

    def _correct_latin(self, typed: str) -> str | None:
        word = normalize(typed)
        if len(word) < _LATIN_MIN or word in self._words or search_term(word) in self._stems:
            return None
        if word in common_english():
            return None
        distance = min(self._max_edit_distance, 1) if len(word) <= 4 else self._max_edit_distance
        # CLOSEST: the suggestions at the smallest distance, most frequent first
        suggestions = self._symspell.lookup(word, Verbosity.CLOSEST, max_edit_distance=distance)
        if not suggestions or suggestions[0].term == word:
            return None
        fixed = str(suggestions[0].term)
        if typed.isupper() and len(typed) > 1:
            return fixed.upper()  # NKIE -> NIKE
        return fixed[:1].upper() + fixed[1:] if typed[:1].isupper() else fixed  # Nkie -> Nike

    # Chinese ----------------------------------------------------------------------------------------

    def _correct_cjk(self, typed: str) -> str | None:
        run = normalize(typed)
        if not self._by_sound or all(len(tok) > 1 and tok in self._words for tok in tokenize_query(run)):
            return None
        n = len(run)
        # characters inside some vocabulary word of 2+ characters are taken as meant: a replacement may
        # only change the others (in 三体电视剧集, 剧 belongs to 电视剧, so 剧集 is not "corrected" to 聚集)
        covered = [False] * n
        for i in range(n):
            for j in range(i + 2, min(n, i + _MAX_WORD) + 1):
                if run[i:j] in self._words:
                    covered[i:j] = [True] * (j - i)
        # best[i] = (cost, replacements, -replacement frequency, pieces) for run[:i]
        best: list[tuple[float, int, int, tuple[tuple[int, int, str | None], ...]] | None] = [None] * (n + 1)
        best[0] = (0.0, 0, 0, ())
        for i in range(n):
            here = best[i]
            if here is None:
                continue
            cost, repl, negfreq, pieces = here
            lone = _COST_KNOWN_CHAR if run[i] in self._words else _COST_CHAR
            options: list[tuple[int, float, int, int, str | None]] = [(i + 1, lone, 0, 0, None)]
            for j in range(i + 2, min(n, i + _MAX_WORD) + 1):
                span = run[i:j]
                if span in self._words:
                    options.append((j, 0.0, 0, 0, None))
                    continue
                if all(covered[i:j]):
                    continue  # nothing in this span may change
                found = self._replacement(span, covered[i:j])
                if found is not None:
                    options.append((j, found.cost, 1, found.freq, found.word))
            for j, step, add_repl, freq, word in options:
                candidate = (cost + step, repl + add_repl, negfreq - freq, (*pieces, (i, j, word)))
                current = best[j]
                if current is None or candidate[:3] < current[:3]:
                    best[j] = candidate
        final = best[n]
        assert final is not None  # single characters always reach the end
        if final[1] == 0:
            return None
        chars = list(typed) if len(typed) == n else list(run)
        for i, j, word in final[3]:
            if word is not None:
                chars[i:j] = list(word)
        return "".join(chars)

    def _replacement(self, span: str, covered: list[bool]) -> _Replacement | None:
        span_freq = self._jieba_freq.get(span) or 0
        if span_freq >= _COMMON_WORD_FREQ:
            return None
        max_changes = max(1, len(span) // 2)
        readings = [_readings(ch) for ch in span]
        best: _Replacement | None = None

        def consider(word: str, per_change: float, freq: int) -> bool:
            nonlocal best
            changed = [k for k, (a, b) in enumerate(zip(word, span, strict=True)) if a != b]
            if not 0 < len(changed) <= max_changes or any(covered[k] for k in changed):
                return False
            if span_freq and (
                per_change != _COST_HOMOPHONE or self._jieba_freq.get(word, 0) < _RARE_WORD_RATIO * span_freq
            ):
                return False  # the span is a (rare) word itself: only a far more common homophone replaces it
            cost = per_change * len(changed)
            if best is None or (cost, -freq, word) < (best.cost, -best.freq, best.word):
                best = _Replacement(word, cost, freq)
            return True

        # equal toneless pinyin (any number of characters changed)
        for key in itertools.islice(itertools.product(*readings), _MAX_KEYS):
            for word, freq in self._by_sound.get(" ".join(key), ()):
                consider(word, _COST_HOMOPHONE, freq)
        # one character changed to one whose pinyin is one edit away
        for i in range(len(span)):
            masked = self._by_mask.get(span[:i] + "*" + span[i + 1 :]) if not covered[i] else None
            if not masked:
                continue
            for syllable in {near for r in readings[i] for near in self._near(r)}:
                if syllable in readings[i]:
                    continue  # an exact homophone, found above
                for word, freq in masked.get(syllable, ()):
                    if consider(word, _COST_NEAR, freq):
                        break  # most frequent first: the rest of this list cannot do better
        return best

    def _near(self, reading: str) -> tuple[str, ...]:
        """The vocabulary's syllables one edit away from a reading (cached: a few hundred syllables)."""
        near = self._near_cache.get(reading)
        if near is None:
            near = tuple(syl for syl in self._syllables if syl != reading and _within_one_edit(reading, syl))
            self._near_cache[reading] = near
        return near


@dataclass(frozen=True)
class SpellOutcome:
    """`query` is what to search; `corrected_query` what to report ("" = nothing to correct)."""

    query: str
    corrected_query: str


def apply_spell_correction(query: str, mode: SpellMode, corrector: SpellCorrector | None) -> SpellOutcome:
    """off: no correction; suggestion_only: search the original, report the suggestion; auto: search the correction."""
    if mode == "off" or corrector is None:
        return SpellOutcome(query, "")
    corrected = corrector.correct(query)
    if mode == "auto" and corrected:
        return SpellOutcome(corrected, corrected)
    return SpellOutcome(query, corrected)
