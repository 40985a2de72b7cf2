"""Where in a video a hit matched, so a player can jump there (`_video_moments`, beyond the spec).

Two kinds of moment, each with its start and end second and why:
    vlm       the video's best segments for the query's vector (the vector channel's max-sim, with its cosine
              as `score`);
    subtitle  a subtitle line (a text stream in the file, or a sidecar subtitle file) holding the query's
    ocr       words, or text read on screen; `score` is the share of the query's words it holds, `text` the line.
Up to MAX_EACH of each kind, best first, text moments before vlm ones. Only the shown page is looked at: its
transcripts come with the documents the page reads anyway.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from mmsearch.text import search_term

MAX_EACH = 3
TEXT_SHOWN = 200  # characters of a matched line returned with its moment


def query_words(tokens: list[str]) -> list[str]:
    """The query's words worth finding in a line: no stop words, no repeats, lower case."""
    return list(dict.fromkeys(t.lower() for t in tokens if t.strip() and search_term(t) is not None))


def text_moments(words: list[str], media: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transcript lines of the item's videos that hold most of `words`."""
    if not words:
        return []
    found: list[tuple[float, float, dict[str, Any]]] = []
    for entry in media:
        if entry.get("kind") not in ("video", "subtitle"):  # a video's transcript, a sidecar subtitle file
            continue
        for cue in entry.get("cues") or ():
            text = cue.get("text") or ""
            folded = unicodedata.normalize("NFKC", text).lower()
            held = sum(1 for w in words if w in folded)
            if held:
                share = held / len(words)
                found.append((-share, float(cue.get("start", 0.0)), {
                    "start": cue.get("start"), "end": cue.get("end"), "reason": cue.get("source", "subtitle"),
                    "score": round(share, 4), "text": text[:TEXT_SHOWN],
                }))
    found.sort(key=lambda f: (f[0], f[1]))
    return [m for _, _, m in found[:MAX_EACH]]


def vlm_moments(best: tuple[tuple[float, float, float], ...]) -> list[dict[str, Any]]:
    return [{"start": s, "end": e, "reason": "vlm", "score": round(sc, 4)} for s, e, sc in best[:MAX_EACH]]


def moments(words: list[str], best: tuple[tuple[float, float, float], ...],
            media: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return text_moments(words, media) + vlm_moments(best)
