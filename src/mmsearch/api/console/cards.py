"""Search hits as result cards: a picture (or a video's keyframes at its moments), a title and the scores.

Shared by the playground and a dataset's page. A local picture or video is served through `/console/media`
and `/console/frame` (session only, under the roots); a URL is left to the browser.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from mmsearch.api.console.session import PATH
from mmsearch.media.datauri import is_data_uri
from mmsearch.schema.fields import VIDEO_MOMENTS
from mmsearch.search.types import SearchHit

TITLE_FIELDS = ("title", "name", "my_title", "_video_generated_title")
MAX_FRAMES = 3  # keyframes shown per video card


def first_ref(value: Any) -> str | None:
    """The first media reference of a field value (a string, a list of them, or {"image_url": …})."""
    ref = value
    if isinstance(ref, list):
        ref = ref[0] if ref else None
    if isinstance(ref, dict):
        ref = ref.get("image_url") or ref.get("url")
    return ref if isinstance(ref, str) and ref else None


def is_remote(ref: str) -> bool:
    return is_data_uri(ref) or urlsplit(ref).scheme in ("http", "https")


def picture_url(ref: str | None) -> str | None:
    if ref is None:
        return None
    return ref if is_remote(ref) else f"{PATH}/media?ref={quote(ref, safe='')}"


def title_of(fields: dict[str, Any]) -> str:
    for key in TITLE_FIELDS:
        if isinstance(fields.get(key), str):
            return fields[key]
    first = next((v for v in fields.values() if isinstance(v, str)), "")
    return first[:80]


def clock(seconds: float | None) -> str:
    s = int(seconds or 0)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _moments(hit: SearchHit, video: str | None) -> list[dict[str, Any]]:
    """The hit's moments with their keyframe (a local video's frame at the moment's middle) and a label."""
    out = []
    for m in hit.fields.get(VIDEO_MOMENTS) or []:
        if not isinstance(m, dict):
            continue
        start, end = float(m.get("start") or 0.0), float(m.get("end") or m.get("start") or 0.0)
        frame = None
        if video is not None and not is_remote(video) and len(out) < MAX_FRAMES:
            frame = f"{PATH}/frame?" + urlencode({"ref": video, "t": f"{(start + end) / 2:.2f}"})
        out.append({"start": clock(start), "end": clock(end), "at": start, "reason": m.get("reason", ""),
                    "text": m.get("text", ""), "score": m.get("score"), "frame": frame})
    return out


def cards(mm: Any, info: Any, hits: list[SearchHit]) -> list[dict[str, Any]]:
    images = info.schema.images
    videos = info.schema.videos
    out = []
    for hit in hits:
        picture = picture_url(first_ref(hit.fields.get(images[0].name))) if images else None
        video = first_ref(hit.fields.get(videos[0].name)) if videos else None
        out.append({"hit": hit, "title": title_of(hit.fields), "picture": picture,
                    "video": video if video is not None and is_remote(video) else None,
                    "moments": _moments(hit, video)})
    return out
