"""Where in a video a hit matched, so a player can jump there (`_video_moments`, beyond the spec).

Two kinds of moment, each with its start and end second and why:
    vlm       the video's best segments for the query's vector (the vector channel's max-sim, with its cosine
              as `score`);
    subtitle  a subtitle line (a text stream in the file, or a sidecar subtitle file) holding the query's
    ocr       words, or text read on screen; `score` is the share of the query's words it holds, `text` the line.
Up to MAX_EACH of each kind, best first, text moments before vlm ones. Only the shown page's transcripts are
read (`Store.video_cues`: kept apart from the media rerank reads for its 50 hits).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np

from mmsearch.text import search_term

MAX_EACH = 3
TEXT_SHOWN = 200  # characters of a matched line returned with its moment


def query_words(tokens: list[str]) -> list[str]:
    """The query's words worth finding in a line: no stop words, no repeats, lower case."""
    return list(dict.fromkeys(t.lower() for t in tokens if t.strip() and search_term(t) is not None))


def text_moments(words: list[str], entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transcript lines holding most of `words` (`entries`: `Store.video_cues`, columns per video). Each
    video's lines are searched as one folded string (one normalisation, matches found in C, lines numbered with
    numpy), not line by line: a film has thousands of lines and a page ten films."""
    if not words:
        return []
    found: list[tuple[float, float, dict[str, Any]]] = []
    for entry in entries:
        texts = entry.get("text") or []
        if not texts:
            continue
        joined = unicodedata.normalize("NFKC", "\n".join(texts)).lower()
        if joined.count("\n") != len(texts) - 1:  # a line that folds into a line break: fold line by line
            joined = "\n".join(unicodedata.normalize("NFKC", t).lower().replace("\n", " ") for t in texts)
        breaks = np.flatnonzero(np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32) == 10)
        per_word = [np.unique(np.searchsorted(breaks, [m.start() for m in re.finditer(re.escape(w), joined)]))
                    for w in words]
        lines, held = np.unique(np.concatenate(per_word), return_counts=True)
        starts = np.array([entry["start"][n] or 0.0 for n in lines.tolist()], dtype=np.float64)
        for n in np.lexsort((starts, -held))[:MAX_EACH].tolist():
            line, share = int(lines[n]), int(held[n]) / len(words)
            found.append((-share, float(starts[n]), {
                "start": entry["start"][line], "end": entry["end"][line],
                "reason": (entry.get("source") or ["subtitle"] * len(texts))[line],
                "score": round(share, 4), "text": texts[line][:TEXT_SHOWN],
            }))
    found.sort(key=lambda f: (f[0], f[1]))
    return [m for _, _, m in found[:MAX_EACH]]


def vlm_moments(best: tuple[tuple[float, float, float], ...]) -> list[dict[str, Any]]:
    return [{"start": s, "end": e, "reason": "vlm", "score": round(sc, 4)} for s, e, sc in best[:MAX_EACH]]


def moments(words: list[str], best: tuple[tuple[float, float, float], ...],
            entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return text_moments(words, entries) + vlm_moments(best)
