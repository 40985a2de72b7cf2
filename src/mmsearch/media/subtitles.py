"""Timed text for videos: text subtitle streams inside a container, sidecar subtitle files, and `merge_repeats`,
which turns per-frame OCR reads of a burned-in subtitle into one timed line.

Everything is read through PyAV's own demuxers and decoders (srt, webvtt, ass, mov_text...): FFmpeg already
parses every timing syntax, and its decoders hand back one format (ASS dialogue) whatever the source, so the
cleaning here is one function. Written against PyAV 18.1: in PyAV 14 `decode2` does not exist and
subtitle decoding returns `SubtitleSet`s, so pyproject's `av>=14` is too loose for this module.
"""

from __future__ import annotations

import difflib
import html
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from av.container import InputContainer

from mmsearch.media.errors import VideoError
from mmsearch.media.video import StreamInfo, stream_info

# Text subtitle codecs (FFmpeg decoder names; "srt" and "ssa" are the names Matroska tracks get). Bitmap ones
# (dvd_subtitle, hdmv_pgs_subtitle, dvb_subtitle) are left out: their text needs OCR.
SUBTITLE_CODECS = frozenset({
    "mov_text", "subrip", "srt", "webvtt", "ass", "ssa", "text",
    "microdvd", "mpl2", "sami", "realtext", "subviewer", "subviewer1", "vplayer", "pjs", "jacosub", "stl",
})
MAX_SUBTITLE_BYTES = 20 * 1024 * 1024  # a sidecar file; a feature film's .srt is ~100 KB
CHINESE = frozenset({"chi", "zho", "zh", "chs", "cht", "cmn", "yue", "hans", "hant"})
ENGLISH = frozenset({"eng", "en"})
CHINESE_TITLE = re.compile(r"中文|简|繁|chinese|chs|cht", re.IGNORECASE)
DEFAULT_CUE_SECONDS = 3.0  # a cue whose container gives no duration lasts until the next one, at most this
SIDECAR_FORMATS = {".srt": "srt", ".vtt": "webvtt", ".webvtt": "webvtt", ".ass": "ass", ".ssa": "ass"}

_ASS_DRAWING = re.compile(r"\{[^}]*\\p[1-9][^}]*\}.*?(?=\{[^}]*\\p0[^}]*\}|$)", re.DOTALL)
_ASS_BLOCK = re.compile(r"\{[^}]*\}")
_ASS_BREAK = re.compile(r"\\[Nnh]")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<\d{1,2}:\d{2}[\d:.]*>")  # <i>, </font>, <c.yellow>, <v Bob>, <00:01.500>


@dataclass(frozen=True)
class Cue:
    """A line of text on screen from `start` to `end` (seconds from the start of the video)."""

    start: float
    end: float
    text: str
    source: str = "subtitle"  # "subtitle" | "ocr"

    def as_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 2), "end": round(self.end, 2), "text": self.text, "source": self.source}


def clean_text(raw: str) -> str:
    """Plain text of one cue: ASS override blocks and drawings, `\\N` breaks, HTML-ish tags and entities removed,
    whitespace collapsed (a line break becomes a space)."""
    text = _ASS_DRAWING.sub("", raw)
    text = _ASS_BLOCK.sub("", text)
    text = _ASS_BREAK.sub(" ", text)
    text = html.unescape(_TAG.sub("", text))
    return " ".join(text.split())


def _dialogue(ass: bytes) -> str:
    """The Text field of a decoded ASS event ("ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text")."""
    line = ass.decode("utf-8", errors="replace")
    if line.startswith("Dialogue:"):  # old FFmpeg's full event line
        return line.split(",", 9)[-1]
    return line.split(",", 8)[-1]


def _language_rank(info: StreamInfo) -> int:
    lang = (info.language or "").lower().replace("_", "-")
    parts = set(lang.split("-"))
    if parts & CHINESE or (not lang and info.title and CHINESE_TITLE.search(info.title)):
        return 0
    if parts & ENGLISH:
        return 1
    return 2


def _open(source: Path | io.BytesIO, field: str, what: str, format: str | None = None) -> InputContainer:
    try:
        container = av.open(source if isinstance(source, io.BytesIO) else str(source), format=format,
                            metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, av.FFmpegError | OSError) and exc.strerror else str(exc)
        raise VideoError(f"{field}: not a readable {what} ({reason})", field=field) from None
    assert isinstance(container, InputContainer)
    return container


def _ordered(container: InputContainer) -> list[av.stream.Stream]:
    """Subtitle streams, the preferred first: text before bitmap, Chinese, then English, then the rest, a
    forced-only track (it carries just the foreign-language lines) after a full one, then file order."""
    forced = int(av.stream.Disposition.forced)

    def key(stream: av.stream.Stream) -> tuple[int, int, int, int]:
        info = stream_info(stream)
        return (info.codec not in SUBTITLE_CODECS, _language_rank(info), bool(int(stream.disposition) & forced),
                stream.index)

    return sorted(container.streams.subtitles, key=key)


def subtitle_streams(path: Path, field: str = "video") -> list[StreamInfo]:
    """Every subtitle stream of the video, in the order `read_subtitle_streams` prefers them: the first one with
    cues is the one it reads. Bitmap streams (codec not in SUBTITLE_CODECS) come last: they need OCR."""
    with _open(Path(path), field, "media file") as container:
        return [stream_info(s) for s in _ordered(container)]


def _read(container: InputContainer, streams: list[av.stream.Stream], field: str, max_cues: int) -> dict[
    int, list[Cue]
]:
    """Cues per stream index, in one pass over the file (other streams are discarded by the demuxer unread)."""
    wanted = {s.index for s in streams}
    for stream in container.streams:
        if stream.index not in wanted:
            stream.discard = av.stream.Discard.all
    video = container.streams.video[0] if container.streams.video else None
    if video is not None and video.start_time is not None and video.time_base:
        origin = float(video.start_time * video.time_base)  # frame times count from the video's start
    else:
        origin = container.start_time / av.time_base if container.start_time else 0.0
    found: dict[int, list[Cue]] = {s.index: [] for s in streams}
    try:
        for packet in container.demux(*streams):
            if packet.pts is None or packet.size == 0:
                continue
            stream = packet.stream
            cues = found[stream.index]
            if len(cues) > max_cues:
                continue
            try:
                decoded = stream.codec_context.decode2(packet)
            except (av.FFmpegError, ValueError):
                continue  # one undecodable cue (bad UTF-8) loses that cue only
            if decoded is None:
                continue
            tb = stream.time_base
            start = float(packet.pts * tb) - origin
            if packet.duration:
                end = start + float(packet.duration * tb)
            elif 0 < decoded.end_display_time < 0xFFFFFFFF:
                end = start + decoded.end_display_time / 1000
            else:
                end = start  # filled in from the next cue below
            for rect in decoded:
                raw = getattr(rect, "ass", None)
                text = clean_text(_dialogue(raw)) if raw else ""
                if text:
                    cues.append(Cue(max(start, 0.0), max(end, 0.0), text))
    except (av.FFmpegError, OSError) as exc:
        if not any(found.values()):
            raise VideoError(f"{field}: subtitles could not be read ({exc.strerror or exc})", field=field) from None
    return {index: _finish(cues) for index, cues in found.items()}


def _finish(cues: list[Cue]) -> list[Cue]:
    """Sorted by start; a cue without a duration lasts until the next one starts (at most DEFAULT_CUE_SECONDS)."""
    cues.sort(key=lambda c: (c.start, c.end))
    out: list[Cue] = []
    for i, cue in enumerate(cues):
        if cue.end <= cue.start:
            nxt = cues[i + 1].start if i + 1 < len(cues) and cues[i + 1].start > cue.start else cue.start + 99
            cue = Cue(cue.start, min(nxt, cue.start + DEFAULT_CUE_SECONDS), cue.text, cue.source)
        out.append(cue)
    return out


def _over(field: str, max_cues: int) -> VideoError:
    return VideoError(f"{field}: more than {max_cues} subtitle cues (the limit)", field=field)


def read_subtitle_streams(path: Path, field: str = "video", max_cues: int = 20_000) -> list[Cue]:
    """The cues of ONE text subtitle stream inside the video, sorted by start, text cleaned (see `clean_text`).
    One stream only, the first with cues in `subtitle_streams` order (Chinese, then English, then the first):
    a series dubbed into five languages should not have each line indexed five times. [] when the video has no
    text subtitles. Raises VideoError for an unreadable file or a stream over `max_cues`."""
    with _open(Path(path), field, "media file") as container:
        streams = [s for s in _ordered(container) if stream_info(s).codec in SUBTITLE_CODECS]
        if not streams:
            return []
        order = [s.index for s in streams]  # read while open: a closed container's streams are freed memory
        found = _read(container, streams, field, max_cues)
    for index in order:
        cues = found[index]
        if len(cues) > max_cues:
            raise _over(field, max_cues)
        if cues:
            return cues
    return []


def _utf8(data: bytes, field: str) -> bytes:
    """The file as UTF-8: FFmpeg's text decoders refuse anything else, and Chinese subtitles often come in GBK
    or UTF-16."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace").encode()
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    if b"\0" in data[:4096]:
        raise VideoError(f"{field}: not a text subtitle file (binary data)", field=field)
    from charset_normalizer import from_bytes

    best = from_bytes(data[:200_000]).best()
    if best is None:
        raise VideoError(f"{field}: not a text subtitle file (unknown text encoding)", field=field)
    return data.decode(best.encoding, errors="replace").encode()


def read_subtitle_file(
    path: Path, field: str = "subtitle_url", max_cues: int = 20_000, max_bytes: int = MAX_SUBTITLE_BYTES
) -> list[Cue]:
    """The cues of a sidecar subtitle file (.srt, .vtt, .ass, .ssa and the other text formats FFmpeg reads),
    sorted and cleaned like `read_subtitle_streams`. The format is sniffed from the content (an .srt named .txt
    works); only when that fails does the extension decide. Non-UTF-8 text (GBK, UTF-16) is converted first.
    Raises VideoError naming `field` for a file that is not a subtitle file or has no cue, or is over `max_bytes`
    or `max_cues`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise VideoError(f"{field}: {size} bytes, over the limit of {max_bytes} bytes for a subtitle file",
                             field=field)
        data = path.read_bytes()
    except OSError as exc:
        raise VideoError(f"{field}: cannot read the file: {exc.strerror or exc}", field=field) from None
    data = _utf8(data, field)
    try:
        container = _open(io.BytesIO(data), field, "subtitle file")
    except VideoError:
        fmt = SIDECAR_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise
        container = _open(io.BytesIO(data), field, "subtitle file", format=fmt)
    with container:
        streams = list(container.streams)
        if not streams or any(s.type != "subtitle" for s in streams):
            kinds = ", ".join(sorted({s.type for s in streams})) or "no streams"
            raise VideoError(f"{field}: not a subtitle file ({kinds})", field=field)
        cues = _read(container, streams[:1], field, max_cues)[streams[0].index]
    if len(cues) > max_cues:
        raise _over(field, max_cues)
    if not cues:  # an empty file, or text the extension's demuxer was forced onto
        raise VideoError(f"{field}: no subtitle cues in the file (not a subtitle file?)", field=field)
    return cues


def _norm(text: str) -> str:
    """NFKC, case-folded, whitespace removed: OCR puts spaces between CJK characters in some frames only."""
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


def _same_line(a: str, b: str, similarity: float) -> bool:
    if not a or not b:
        return False
    if a == b or a in b or b in a:
        return True
    return similarity < 1.0 and difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= similarity


def merge_repeats(cues: Iterable[Cue], max_gap: float = 1.0, similarity: float = 0.8) -> list[Cue]:
    """Merge consecutive cues showing the same line: normalised text (NFKC, case-folded, whitespace ignored)
    equal, one containing the other (a subtitle typing itself out), or at least `similarity` alike (difflib
    ratio: OCR misreading a character in some frames; 1.0 turns this off), with at most `max_gap` seconds
    between them. The merged cue spans both and keeps the longer text (the first on a tie). This turns per-frame
    OCR reads of a burned-in subtitle into one timed line."""
    out: list[Cue] = []
    norm = ""
    for cue in sorted(cues, key=lambda c: (c.start, c.end)):
        n = _norm(cue.text)
        if out and cue.start - out[-1].end <= max_gap and _same_line(norm, n, similarity):
            prev = out[-1]
            text, norm = (cue.text, n) if len(n) > len(norm) else (prev.text, norm)
            out[-1] = Cue(min(prev.start, cue.start), max(prev.end, cue.end), text, prev.source)
            continue
        out.append(cue)
        norm = n
    return out
