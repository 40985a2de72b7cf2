"""A video's generated title and summary (AI Search's `_video_generated_title` / `_video_generated_summary`).

Extractive (offline, deterministic): the text is split into sentences, fragments and near-duplicates dropped.
jieba's TextRank (PageRank over word co-occurrence) weighs keywords: jieba's POS-tagged words for Chinese, stemmed
content words for mostly-Latin text. A sentence scores its keywords' weights over √length, plus a small early prior.
Summary: the best sentences that fit, back in time order. Title: the best short clause holding the top keywords,
else the top keywords joined by "、" (", " in English). An OpenAI-compatible LLM, when configured, writes both
instead; any failure of it falls back to the extractive result, with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import httpx

from mmsearch.errors import InvalidArgument
from mmsearch.text import _CJK, _jieba, normalize, search_term

log = logging.getLogger(__name__)

TITLE_MAX = 30  # characters of a Chinese title (a CJK character counts 1)
SUMMARY_MAX = 200  # characters of a Chinese summary
TITLE_MAX_LATIN = 60  # mostly-Latin text: whole words
SUMMARY_MAX_LATIN = 400  # mostly-Latin text: cut at a sentence, else a word boundary
EXTRACT_MAX_CHARS = 60_000  # text ranked per video (jieba's POS tagging runs ~100k characters/s); longer is sampled
MIN_UNITS = 3  # a sentence needs 3 CJK characters or Latin words: "好", "OK", "00:12", "第3集" are fragments
DUPLICATE_OVERLAP = 0.8  # share of the shorter sentence's shingles that makes two sentences one
POSITION_PRIOR = 0.05  # score bonus of the first sentence, falling to 0 at the end: a tie goes to the earlier one
KEYWORDS = 20
LINE_MAX = 1_000  # characters of one line kept (a line is a subtitle or an OCR read, not a document)

_CJK_CHAR = re.compile(rf"[{_CJK}]")
_LATIN_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_SHINGLE_RUNS = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
# a sentence ends at Chinese or English closing punctuation, an English period before a space, or a line break
_SENTENCE = re.compile(r"[。！？!?；;…\n\r]+|(?<=[^\s.\d][.])\s+")
_CLAUSE = re.compile(r"[，,、：:]\s*")
_SENTENCE_END = re.compile(r"[。！？!?；;]+|[.](?=\s)")
_WORD_GAP = re.compile(r"[，,、：:\s]")
_MARKUP = re.compile(r"<[^<>]{1,30}>|\{\\[^{}]{0,60}\}")  # <i>, </font>, {\an8} in subtitle lines
_CUE = re.compile(r"^[\[(（【♪][^\])）】]{0,30}[\])）】♪]?$")  # a whole-line cue: [Music], (笑), ♪
_EDGE = " \t-–—~～·•*#>|/\\\"'“”‘’「」『』《》〈〉()（）[]【】，,、。.!！?？;；:：…♪"
_LATIN_STOP = frozenset({  # English function words: never a keyword
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do",
    "does", "doing", "done", "down", "during", "each", "even", "ever", "every", "few", "for", "from", "further",
    "get", "gets", "getting", "got", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him",
    "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "let", "like", "ll", "me",
    "more", "most", "much", "must", "my", "myself", "no", "nor", "not", "now", "of", "off", "oh", "ok", "okay", "on",
    "once", "one", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "re", "really", "right",
    "same", "say", "says", "said", "she", "should", "so", "some", "still", "such", "than", "that", "the", "their",
    "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "upon", "us", "ve", "very", "was", "we", "well", "were", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "would", "yeah", "yes", "yet", "you", "your", "yours", "yourself",
    "yourselves",
})
# jieba POS tags of keywords: nouns, names (person, place, organisation, other), verbal nouns, verbs, Latin words
_ZH_POS = ("n", "nr", "nrt", "nrfg", "ns", "nt", "nz", "vn", "v", "eng")


@dataclass(frozen=True)
class VideoText:
    transcript: list[str]  # spoken/subtitle lines in time order
    screen: list[str]  # on-screen text read by OCR (keyframes, lower band), in time order
    own: list[str]  # the item's own searchable text fields' values


@dataclass(frozen=True)
class Generated:
    title: str
    summary: str
    method: str  # "extractive" | "llm" | "none"
    warning: str | None = None  # e.g. the LLM failed and the extractive result was used


NOTHING = Generated("", "", "none")


# -- extractive ---------------------------------------------------------------------------------------------------


# (time as a share of the stream 0..1, the item's own text -1; stream; line; sentence in the line): transcript
# and screen lines carry no times, so the two streams are interleaved by their relative position
_Order = tuple[float, int, int, int]


@dataclass
class _Sentence:
    text: str
    order: _Order
    shingles: frozenset[str]
    units: int
    own_title: bool = False  # a short own value (the item's title): keywords only, never copied as the title


def extractive(text: VideoText) -> Generated:
    """Title and summary from the text alone; the same input always gives the same output."""
    sentences = _sentences(text)
    if not sentences:
        return NOTHING
    latin = _mostly_latin(" ".join(s.text for s in sentences))
    keywords = _keywords([s.text for s in sentences], latin)
    scores = [_score(s, keywords, latin) for s in sentences]
    summary = _summary(sentences, scores, latin)
    title = _title(sentences, keywords, latin, summary)
    return Generated(title, summary, "extractive")


def _sentences(text: VideoText) -> list[_Sentence]:
    """Sentences in time order, fragments and near-duplicates out. The transcript is read first, then the screen,
    then the item's own text, so a duplicate keeps the transcript's place (and the longer wording)."""
    streams = [_sample(text.transcript, EXTRACT_MAX_CHARS), _sample(text.screen, EXTRACT_MAX_CHARS // 4)]
    raw: list[tuple[str, _Order, bool]] = []
    for rank, lines in enumerate(streams):
        for i, line in enumerate(lines):
            raw += [(p, (i / len(lines), rank, i, j), False) for j, p in enumerate(_split(line))]
    for i, value in enumerate(text.own):
        pieces = _split(value)
        title_like = len(pieces) == 1 and len(pieces[0]) <= (TITLE_MAX_LATIN if _mostly_latin(value) else TITLE_MAX)
        raw += [(p, (-1.0, 2, i, j), title_like) for j, p in enumerate(pieces)]
    kept = _unique([r for r in raw if _units(r[0]) >= MIN_UNITS])
    if not kept:  # only fragments ("好", "OK"): they are all there is
        kept = _unique([r for r in raw if _units(r[0]) > 0])
    return sorted(kept, key=lambda s: s.order)


def _unique(raw: list[tuple[str, _Order, bool]]) -> list[_Sentence]:
    """The first of each group of near-duplicates, in the wording of the longest."""
    kept: list[_Sentence] = []
    postings: dict[str, list[int]] = {}
    for piece, order, title_like in raw:
        shingles = _shingles(piece)
        overlap: Counter[int] = Counter(k for g in shingles for k in postings.get(g, ()))
        dup = next((k for k, n in sorted(overlap.items())
                    if n >= DUPLICATE_OVERLAP * min(len(shingles), len(kept[k].shingles))), None)
        if dup is None:
            for g in shingles:
                postings.setdefault(g, []).append(len(kept))
            kept.append(_Sentence(piece, order, shingles, _units(piece), title_like))
        elif len(piece) > len(kept[dup].text) and not title_like:
            old = kept[dup]
            for g in shingles - old.shingles:
                postings.setdefault(g, []).append(dup)
            kept[dup] = _Sentence(piece, old.order, old.shingles | shingles, _units(piece), old.own_title)
    return kept


def _split(line: str) -> list[str]:
    """A line's sentences, trimmed of edge punctuation; subtitle markup and whole-line cues ([Music]) dropped."""
    line = _MARKUP.sub("", line)
    out = []
    for piece in _SENTENCE.split(line):
        piece = " ".join(piece.split())
        if not _CUE.match(piece) and (piece := piece.strip(_EDGE)):
            out.append(piece)
    return out


def _shingles(s: str) -> frozenset[str]:
    """CJK character bigrams and whole Latin/digit words, lower-cased: what near-duplicate detection compares."""
    out: set[str] = set()
    for run in _SHINGLE_RUNS.findall(normalize(s)):
        if _CJK_CHAR.match(run):
            out.update(run[i : i + 2] for i in range(max(len(run) - 1, 1)))
        else:
            out.add(run)
    return frozenset(out)


def _units(s: str) -> int:
    return len(_CJK_CHAR.findall(s)) + len(_LATIN_WORD.findall(_CJK_CHAR.sub(" ", s)))


def _mostly_latin(s: str) -> bool:
    return len(_LATIN_WORD.findall(_CJK_CHAR.sub(" ", s))) > len(_CJK_CHAR.findall(s))


def _sample(lines: list[str], budget: int) -> list[str]:
    """Lines evenly spread over the whole list whose characters (plus a newline each) fit the budget."""
    lines = _lines(lines)
    cost = _cost(lines)
    if cost <= budget:
        return lines
    k = max(1, len(lines) * budget // cost)
    while k > 1:
        picked = [lines[i * len(lines) // k] for i in range(k)]
        if _cost(picked) <= budget:
            return picked
        k -= max(1, k // 10)
    return [lines[0][: max(budget - 1, 0)]] if budget > 1 else []


# -- keywords -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Keyword:
    word: str  # as shown (the Latin word's most frequent spelling)
    key: str  # what a sentence is matched on: the Chinese word lower-cased, the Latin word's stem
    weight: float  # TextRank's, the top keyword 1.0


def _keywords(sentences: list[str], latin: bool) -> list[_Keyword]:
    ranker = _textrank()
    joined = "\n".join(sentences)
    if not latin:
        ranker.tokenizer = _ChineseWords()
        ranked = ranker.textrank(joined, topK=KEYWORDS, withWeight=True, allowPOS=_ZH_POS)
        return [_Keyword(w, w.lower(), wt) for w, wt in ranked]
    words = _LatinWords(joined)
    ranker.tokenizer = words
    ranked = ranker.textrank(joined, topK=KEYWORDS, withWeight=True, allowPOS=("eng",))
    return [_Keyword(words.shown[stem], stem, wt) for stem, wt in ranked]


def _textrank() -> Any:
    """A fresh jieba TextRank (instances hold their tokenizer; a shared one would race between threads)."""
    from jieba.analyse import TextRank  # imported on first use: loading jieba.analyse costs ~130 MB

    ranker = TextRank()
    ranker.stop_words = ranker.stop_words | _LATIN_STOP
    return ranker


@lru_cache(maxsize=1)
def _pos_tagger() -> Any:
    """jieba's POS tagger over the word dictionary `mmsearch.text` already loaded (one dictionary per process)."""
    from jieba.posseg import POSTokenizer

    return POSTokenizer(_jieba())


class _ChineseWords:
    """jieba's POS-tagged words, a split name joined again: 林(ng) 小雨(nr) -> 林小雨, 雷(nr) 志成(nrfg) -> 雷志成."""

    def cut(self, sentence: str) -> Iterator[Any]:
        from jieba.posseg import pair

        held = None
        for wp in _pos_tagger().cut(sentence):
            if held is not None and wp.flag.startswith("nr") and len(wp.word) <= 2 and _CJK_CHAR.match(wp.word):
                wp, held = pair(held.word + wp.word, "nr"), None
            if held is not None:
                yield held
            held = wp if len(wp.word) == 1 and wp.flag in ("nr", "ng") else None
            if held is None:
                yield wp
        if held is not None:
            yield held


class _LatinWords:
    """Lower-cased, stemmed content words (stop words out) for TextRank; jieba's own tagger would count the spaces
    between words in its co-occurrence window and keep case and inflections apart."""

    def __init__(self, text: str) -> None:
        spellings: dict[str, Counter[str]] = {}
        for w in _LATIN_WORD.findall(text):
            stem = _stem(w)
            if stem is not None:
                spellings.setdefault(stem, Counter())[w] += 1
        # the most frequent spelling, ties to the lower-case one (a name is capitalised everywhere)
        self.shown = {s: max(c.items(), key=lambda kv: (kv[1], kv[0].islower()))[0] for s, c in spellings.items()}

    def cut(self, sentence: str) -> Iterator[Any]:
        from jieba.posseg import pair

        for w in _LATIN_WORD.findall(sentence):
            stem = _stem(w)
            if stem is not None:
                yield pair(stem, "eng")


def _stem(word: str) -> str | None:
    low = word.lower().replace("’", "'")
    if len(low) < 2 or low in _LATIN_STOP or low.split("'")[0] in _LATIN_STOP:
        return None
    return search_term(low)


def _score(s: _Sentence, keywords: list[_Keyword], latin: bool) -> float:
    """The weight of the distinct keywords a sentence holds over the square root of its length, plus the prior."""
    found = _found(s.text, keywords, latin)
    prior = POSITION_PRIOR * (1.0 - max(s.order[0], 0.0))
    return sum(k.weight for k in found) / math.sqrt(max(s.units, 1)) + (prior if found else 0.0)


def _found(text: str, keywords: list[_Keyword], latin: bool) -> list[_Keyword]:
    if latin:
        stems = {_stem(w) for w in _LATIN_WORD.findall(text)}
        return [k for k in keywords if k.key in stems]
    low = text.lower()
    return [k for k in keywords if k.key in low]


# -- summary and title ------------------------------------------------------------------------------------------------


def _summary(sentences: list[_Sentence], scores: list[float], latin: bool) -> str:
    """The best-scoring sentences that fit the cap together, in time order. The item's own title is left out
    unless it is all there is; sentences without a keyword only when no sentence has one."""
    limit, joiner, end = (SUMMARY_MAX_LATIN, ". ", ".") if latin else (SUMMARY_MAX, "，", "。")
    pool = [i for i, s in enumerate(sentences) if not s.own_title] or list(range(len(sentences)))
    with_keywords = [i for i in pool if scores[i] > 0]
    pool = with_keywords or pool
    chosen: list[int] = []
    used = len(end) - len(joiner)
    for i in sorted(pool, key=lambda i: (-scores[i], i)):
        cost = len(sentences[i].text) + len(joiner)
        if used + cost <= limit:
            chosen.append(i)
            used += cost
    if not chosen:  # the best sentence alone is over the cap
        return _clip(_sentence_case(sentences[pool[0]].text, latin) + end, limit)
    parts = [_sentence_case(sentences[i].text, latin) for i in sorted(chosen)]
    return joiner.join(parts) + end


def _sentence_case(s: str, latin: bool) -> str:
    return s[:1].upper() + s[1:] if latin else s


def _title(sentences: list[_Sentence], keywords: list[_Keyword], latin: bool, summary: str) -> str:
    """The best short clause holding at least two of the top three keywords (or the one there is); otherwise the
    top keywords joined. The item's own title-like value is never the answer, only a source of keywords."""
    limit = TITLE_MAX_LATIN if latin else TITLE_MAX
    own_titles = {normalize(s.text) for s in sentences if s.own_title}
    top = keywords[:3]
    need = min(2, len(top))
    best: tuple[float, int, str] | None = None
    for n, s in enumerate(sentences):
        if s.own_title:
            continue
        for clause in dict.fromkeys([s.text, *(c.strip(_EDGE) for c in _CLAUSE.split(s.text))]):
            if not clause or len(clause) > limit or normalize(clause) in own_titles or _units(clause) < 2:
                continue
            held = _found(clause, top, latin)
            if len(held) < need or need == 0:
                continue
            score = sum(k.weight for k in _found(clause, keywords, latin)) / math.sqrt(max(_units(clause), 1))
            if best is None or (-score, n) < (-best[0], best[1]):
                best = (score, n, clause)
    if best is not None:
        return _sentence_case(best[2], latin)
    joiner = ", " if latin else "、"
    words: list[str] = []
    for k in keywords[:4]:
        if len(joiner.join([*words, k.word])) > limit:
            break
        words.append(k.word)
    if len(words) >= 2 or (words and normalize(words[0]) not in own_titles):
        return _sentence_case(joiner.join(words), latin)
    fallback = next((s.text for s in sentences if not s.own_title), summary)
    return _clip(_sentence_case(fallback, latin), limit)


def _clip(s: str, limit: int) -> str:
    """`s` in at most `limit` characters: cut after a sentence, else at a clause or word boundary with "…" (counted),
    else anywhere with "…"; a boundary counts when it keeps at least half."""
    s = s.strip()
    if len(s) <= limit:
        return s
    ends = [e for m in _SENTENCE_END.finditer(s[: limit + 1]) if (e := m.end()) <= limit]
    if ends and ends[-1] >= limit // 2:
        return s[: ends[-1]].strip()
    head = s[: limit - 1]
    cuts = [m.start() for m in _WORD_GAP.finditer(head + s[limit - 1 : limit])]
    if cuts and cuts[-1] >= limit // 2:
        return head[: cuts[-1]].rstrip(_EDGE) + "…"
    return head + "…"


# -- LLM ---------------------------------------------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You write the title and summary of one video for a search engine, from its transcript, on-screen text and "
    'catalogue text. Reply with only a JSON object: {"title": "...", "summary": "..."}. Write in the language of '
    "the transcript (Chinese content gets Chinese). title: at most 30 characters (60 for English), what happens in "
    'this video, e.g. "叶文洁承认杀害雷志成"; not the series name or episode number. summary: one paragraph of at most '
    "200 characters (400 for English) telling the main events in order, with people's names as they appear; no "
    'preamble such as "本视频" or "This video". Use only what the text says.'
)
_SECTIONS = ("Item text:", "Transcript (in time order; sampled evenly when long):", "On-screen text (OCR):")


@dataclass(frozen=True)
class LlmConfig:
    url: str  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str = field(default="", repr=False)  # never logged, printed or put in a warning
    timeout_s: float = 30.0
    max_input_chars: int = 12_000

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise InvalidArgument(f"llm_url must be an http(s) URL, got {self.url[:100]!r}", field="llm_url")
        if not self.model.strip():
            raise InvalidArgument("llm_model must name the model when llm_url is set", field="llm_model")
        if not 0 < self.timeout_s <= 600:
            raise InvalidArgument("llm_timeout_s must be > 0 and <= 600", field="llm_timeout_s")
        if self.max_input_chars < 200:
            raise InvalidArgument("llm_max_input_chars must be >= 200", field="llm_max_input_chars")

    @classmethod
    def from_settings(cls, settings: Any) -> LlmConfig | None:
        """The LLM of `MMSEARCH_LLM_*`; None when `llm_url` is empty (extractive only)."""
        if not settings.llm_url.strip():
            return None
        return cls(settings.llm_url.strip().rstrip("/"), settings.llm_model.strip(), settings.llm_api_key,
                   settings.llm_timeout_s, settings.llm_max_input_chars)


class _LlmFailure(Exception):
    """Why the LLM gave no usable answer, in words safe to show (a status or an exception class, never the key)."""


class Summarizer:
    """Titles and summaries by the LLM when one is configured, extractive otherwise or when it fails."""

    RETRY_BACKOFF_S = 0.5  # the wait before the one retry of a 429, 5xx or timeout

    def __init__(self, llm: LlmConfig | None = None, client: httpx.Client | None = None) -> None:
        self.llm = llm
        self._owns_client = client is None and llm is not None
        self._client = client
        if self._owns_client and llm is not None:
            self._client = httpx.Client(timeout=httpx.Timeout(llm.timeout_s), trust_env=False)

    def generate(self, text: VideoText) -> Generated:
        """The LLM's title and summary, or the extractive ones (with a warning when the LLM failed)."""
        if self.llm is None:
            return extractive(text)
        if not _sentences(text):  # nothing to summarise: the LLM is not asked
            return NOTHING
        try:
            title, summary = self._ask(text)
        except _LlmFailure as e:
            warning = f"llm failed ({e}); the extractive title and summary were used"
            log.info("video summary: %s", warning)
            base = extractive(text)
            return Generated(base.title, base.summary, "extractive", warning)
        return Generated(title, summary, "llm")

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()

    def __enter__(self) -> Summarizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, text: VideoText) -> tuple[str, str]:
        assert self.llm is not None and self._client is not None
        llm = self.llm
        body = {
            "model": llm.model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": user_message(text, llm.max_input_chars)}],
            "temperature": 0.2,
            "response_format": {"type": "json_object"},
        }
        headers = {"Authorization": f"Bearer {llm.api_key}"} if llm.api_key else {}
        url = llm.url.rstrip("/") + "/chat/completions"
        for attempt in (1, 2):
            try:
                response = self._client.post(url, json=body, headers=headers, timeout=llm.timeout_s)
            except httpx.TimeoutException as e:
                if attempt == 1:
                    time.sleep(self.RETRY_BACKOFF_S)
                    continue
                raise _LlmFailure(f"{type(e).__name__} after {attempt} attempts of {llm.timeout_s:g} s") from None
            except httpx.HTTPError as e:
                raise _LlmFailure(type(e).__name__) from None
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == 1:
                    time.sleep(self.RETRY_BACKOFF_S)
                    continue
                raise _LlmFailure(f"HTTP {response.status_code} after {attempt} attempts")
            if not response.is_success:
                raise _LlmFailure(f"HTTP {response.status_code}")
            return _parse(response)
        raise AssertionError("unreachable")


def _parse(response: httpx.Response) -> tuple[str, str]:
    """The capped title and summary of a chat completion whose message is the JSON object asked for."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, LookupError, TypeError):
        raise _LlmFailure("the reply is not a chat completion") from None
    if not isinstance(content, str):
        raise _LlmFailure("the reply's message has no text content")
    fenced = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", content, re.S)
    try:
        answer = json.loads(fenced.group(1) if fenced else content)
    except ValueError:
        raise _LlmFailure("the reply's message is not JSON") from None
    if not isinstance(answer, dict):
        raise _LlmFailure("the reply's message is not a JSON object")
    out = []
    for key in ("title", "summary"):
        value = answer.get(key)
        if not isinstance(value, str) or not value.strip():
            raise _LlmFailure(f"the reply's {key!r} is missing, not a string or empty")
        value = " ".join(value.split())
        latin = _mostly_latin(value)
        if key == "title":
            out.append(_clip(value, TITLE_MAX_LATIN if latin else TITLE_MAX))
        else:
            out.append(_clip(value, SUMMARY_MAX_LATIN if latin else SUMMARY_MAX))
    return out[0], out[1]


def user_message(text: VideoText, max_chars: int) -> str:
    """The video's text for the LLM in at most `max_chars` characters: the item's own text (up to a fifth), the
    on-screen lines not already in the transcript (up to a third of the rest) and the transcript, each sampled
    evenly over the video when too long, so the end of the story is there too."""
    spoken = {normalize(ln.strip()) for ln in text.transcript}
    own, transcript = _lines(text.own), _lines(text.transcript)
    screen = [ln for ln in _lines(text.screen) if normalize(ln) not in spoken]
    budget = max_chars - sum(len(h) + 2 for h in _SECTIONS)
    own = _sample(own, min(_cost(own), budget // 5))
    budget -= _cost(own)
    screen_share = budget // 3 if transcript else budget
    transcript = _sample(transcript, budget - min(_cost(screen), screen_share))
    screen = _sample(screen, budget - _cost(transcript))
    parts = [f"{head}\n" + "\n".join(lines) for head, lines in zip(_SECTIONS, (own, transcript, screen), strict=True)
             if lines]
    return "\n\n".join(parts)[:max_chars]


def _lines(lines: list[str]) -> list[str]:
    return [ln.strip()[:LINE_MAX] for ln in lines if ln.strip()]


def _cost(lines: list[str]) -> int:
    return sum(len(ln) + 1 for ln in lines)
