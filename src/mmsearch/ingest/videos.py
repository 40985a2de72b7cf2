"""Turn an item's video fields into segments (vector, time span), a timed transcript and generated fields.

Per video: probe it (limits), read its text subtitle streams, then one streaming pass over frames sampled at
`fps`: shot boundaries from frame differences (media/shots.py, with a maximum gap so a long shot is still
sampled), one keyframe per segment (CLIP embedding, OCR), and the lower band of sampled frames read by OCR
when it changed (burned-in subtitles). Embedding and OCR of one chunk of keyframes and bands run on a thread
while the next chunk decodes, so decoding, the image model and the OCR processes keep the cores busy
together. OCR reads of the same line in consecutive frames merge into one timed cue (`merge_repeats`). A
sidecar subtitle file (a `subtitle` field) joins the transcript. The generated title and summary come from
the transcript, the on-screen text and the item's own text (ingest/summarize.py).

A video that cannot be read (refused address, over a limit, corrupt, unsupported codec) is a warning on its
item, never a rejection: the item imports and stays searchable by its own text. A video that breaks part way
keeps what was read before the break, with a warning.
"""

from __future__ import annotations

import bisect
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.encoders.base import Encoder
from mmsearch.errors import MMSearchError
from mmsearch.ingest.images import OcrReader, OcrTextCache, check_dim, image_refs, read_texts, short
from mmsearch.ingest.summarize import Generated, Summarizer, VideoText
from mmsearch.media.errors import VideoError
from mmsearch.media.shots import Shot, detect_shots
from mmsearch.media.subtitles import Cue, merge_repeats, read_subtitle_file, read_subtitle_streams
from mmsearch.media.video import SampledFrame, VideoLimits, VideoProbe, probe_video, sample_frames
from mmsearch.schema.fields import DatasetInfo
from mmsearch.schema.validate import ItemError, ValidItem
from mmsearch.text import strings

OpenMedia = Callable[[str, str], AbstractContextManager[Path]]  # (ref, field) -> a local file while in use
CHUNK = 8  # pictures (keyframes and bands) embedded and read together: enough for the OCR process pool
KEYFRAME_OCR_SIDE = 640  # width keyframes are read by OCR at (bands keep the sampled 960: subtitle text is small)
BAND_SIGNATURE = (160, 24)  # the band, grey, at this size: what is compared between samples
BAND_PIXEL = 32  # grey levels a signature pixel must change by to count (compression noise stays under it)
MAX_MEDIA_CUES = 5_000  # cues kept per video in its media entry (what search reads to say where a hit matched)
SCREEN_CHARS = 4_000  # characters of on-screen text kept in the media entry's `ocr` (the rerank's OCR signal)


@dataclass(frozen=True)
class VideoConfig:
    """How a video is read; Settings: MMSEARCH_VIDEO_*."""

    limits: VideoLimits = field(default_factory=VideoLimits)
    fps: float = 2.0  # frames sampled per second for shot detection
    picture_side: int = 960  # longer side of sampled pictures (OCR reads subtitles at this size)
    max_gap: float = 10.0  # a shot longer than this is split: long shots still get sampled
    threshold: float = 0.30  # frame difference that makes a cut (media/shots.py)
    band_every: float = 1.0  # seconds between reads of the lower band (burned-in subtitles); 0 = none
    band_share: float = 0.25  # the lower quarter of the frame
    band_change: float = 0.005  # share of the band's pixels changed by BAND_PIXEL grey levels: read it again


@dataclass
class VideoStats:
    videos: int = 0
    failed: int = 0
    seconds: float = 0.0  # of video read
    frames: int = 0  # decoded
    segments: int = 0
    ocr_reads: int = 0  # pictures (keyframes, bands) read by OCR
    cues: int = 0
    wall: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        out = dict(self.__dict__)
        out["wall"] = round(self.wall, 2)
        out["seconds"] = round(self.seconds, 2)
        out["realtime"] = round(self.seconds / self.wall, 1) if self.wall else None
        return out


@dataclass
class VideoProgress:
    """What a long import shows: the video being read, frames decoded and segments found so far."""

    item: str
    field: str
    seconds: float  # position reached in the video
    duration: float
    frames: int
    segments: int


def clock(seconds: float) -> str:
    """12.5 -> "00:12", 3725 -> "1:02:05": a position as players show it."""
    whole = int(max(seconds, 0.0))
    h, rest = divmod(whole, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def video_message(p: VideoProgress) -> str:
    at = f"{clock(p.seconds)} of {clock(p.duration)}" if p.duration else clock(p.seconds)
    return f"item {p.item}: {p.field} at {at}, {p.frames} frames decoded, {p.segments} segments"


@dataclass
class Analysis:
    """One video's content, as `analyse` finds it (also what `mmsearch video inspect` prints)."""

    probe: VideoProbe | None = None
    spans: list[tuple[float, float]] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    keyframe_text: list[str] = field(default_factory=list)  # OCR of each segment's keyframe
    subtitles: list[Cue] = field(default_factory=list)
    screen: list[Cue] = field(default_factory=list)  # on-screen text, merged
    band_cues: list[Cue] = field(default_factory=list)  # lines read in the lower band, while reading
    frames: int = 0
    problem: str | None = None  # decoding stopped early: what was read is kept

    @property
    def transcript(self) -> list[Cue]:
        return sorted([*self.subtitles, *self.screen], key=lambda c: (c.start, c.end))


@dataclass
class ItemVideo:
    segments: np.ndarray | None = None  # [n, dim]
    spans: np.ndarray | None = None  # [n, 2]
    transcript: list[Cue] = field(default_factory=list)
    generated: Generated | None = None
    media: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[ItemError] = field(default_factory=list)


class VideoIndexer:
    def __init__(
        self,
        info: DatasetInfo | None,  # None: `analyse` files only (`mmsearch video inspect`)
        open_media: OpenMedia,
        encoder: Encoder | None = None,
        ocr: OcrReader | None = None,
        summarizer: Summarizer | None = None,
        config: VideoConfig | None = None,
        ocr_cache: OcrTextCache | None = None,
        on_progress: Callable[[VideoProgress], None] | None = None,
    ) -> None:
        if info is not None:
            check_dim(info, encoder)
        self.info = info
        self.open_media = open_media
        self.encoder = encoder
        self.ocr = ocr
        self.ocr_cache = ocr_cache if ocr is not None else None
        self.summarizer = summarizer or Summarizer()
        self.config = config or VideoConfig()
        self.on_progress = on_progress
        self.stats = VideoStats()

    @property
    def active(self) -> bool:
        return self.info is not None and self.info.type == "video"

    # -- items ----------------------------------------------------------------------------------------
    def process(self, items: Iterable[ValidItem]) -> dict[str, ItemVideo]:
        return {item.id: self.item(item) for item in items}

    def item(self, item: ValidItem) -> ItemVideo:
        assert self.info is not None
        out = ItemVideo()
        spans: list[tuple[float, float]] = []
        vectors: list[np.ndarray] = []
        subtitles: list[Cue] = []
        screen: list[Cue] = []
        for spec in self.info.schema.videos:
            for ref in image_refs(item.doc.get(spec.name), "video"):
                if not ref:
                    continue
                found, problem = self._read_video(item, spec.name, ref)
                if problem is not None:
                    out.warnings.append(ItemError(item.index, item.id, spec.name, "video", f"{short(ref)}: {problem}"))
                if found is None:
                    continue
                out.media.append(_media_entry(spec.name, ref, found))
                if len(found.vectors) == len(found.spans):  # none without an image model
                    spans += found.spans
                    vectors += found.vectors
                subtitles += found.subtitles
                screen += found.screen
        for spec in self.info.schema.subtitles:
            for ref in image_refs(item.doc.get(spec.name), "subtitle"):
                try:
                    with self.open_media(ref, spec.name) as path:
                        cues = read_subtitle_file(path, field=spec.name)
                except MMSearchError as exc:
                    out.warnings.append(ItemError(item.index, item.id, spec.name, "subtitle",
                                                  f"{short(ref)}: {exc.message}"))
                    continue
                subtitles += cues
                out.media.append({"field": spec.name, "ref": short(ref), "kind": "subtitle",
                                  "cues": [cue.as_dict() for cue in cues[:MAX_MEDIA_CUES]]})
        if vectors:
            out.segments = np.stack(vectors).astype(np.float32)
            out.spans = np.asarray(spans, dtype=np.float32).reshape(-1, 2)
        out.transcript = sorted([*subtitles, *screen], key=lambda c: (c.start, c.end))
        self.stats.cues += len(out.transcript)
        own = [v for s in self.info.schema.searchable for v in strings(item.doc.get(s.name))]
        text = VideoText(transcript=[c.text for c in subtitles], screen=[c.text for c in screen], own=own)
        out.generated = self.summarizer.generate(text)
        if out.generated.warning:
            out.warnings.append(ItemError(item.index, item.id, None, "generated", out.generated.warning))
        if self.info.schema.videos and not out.media and any(w.rule == "video" for w in out.warnings):
            out.warnings.append(ItemError(
                item.index, item.id, None, "no_video",
                "no video of this item could be indexed; it is searchable by its own text fields only",
            ))
        return out

    def _read_video(self, item: ValidItem, field_name: str, ref: str) -> tuple[Analysis | None, str | None]:
        started = time.perf_counter()
        try:
            with self.open_media(ref, field_name) as path:
                found = self.analyse(path, field_name, item.id)
        except MMSearchError as exc:
            self.stats.failed += 1
            return None, exc.message
        except Exception as exc:  # a broken file must not stop the import; the report names it
            self.stats.failed += 1
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            self.stats.wall += time.perf_counter() - started
        self.stats.videos += 1
        return found, found.problem

    # -- one video --------------------------------------------------------------------------------------
    def analyse(self, path: Path, field_name: str = "video", item_id: str = "") -> Analysis:
        """Probe, subtitles, shots, keyframe embeddings and OCR of one file. Raises VideoError when the file cannot
        be read at all; a break part way is `Analysis.problem`, with what came before it kept."""
        c = self.config
        out = Analysis(probe=probe_video(path, c.limits, field=field_name))
        duration = out.probe.duration
        try:
            out.subtitles = read_subtitle_streams(path, field=field_name)
        except VideoError as exc:
            out.problem = exc.message
        bands: list[tuple[float, Any]] = []  # (time, picture) of lower bands to read
        band_reads: list[float] = []  # when the band changed: a line read there lasts until the next change
        last_band: np.ndarray | None = None
        band_due = 0.0
        position = [0.0]
        found = [0]  # segments found so far (embedded and read a chunk later)

        def progress(decoded: int) -> None:
            out.frames += decoded
            self.stats.frames += decoded
            if self.on_progress is not None:
                self.on_progress(VideoProgress(item_id, field_name, position[0], duration, out.frames, found[0]))

        def tap(frames: Iterator[SampledFrame]) -> Iterator[SampledFrame]:
            nonlocal last_band, band_due
            for f in frames:
                position[0] = f.t
                if c.band_every > 0 and self.ocr is not None and f.t >= band_due:
                    # a subtitle line changes a small share of the band by a lot (a mean over the band hides it)
                    band_due = f.t + c.band_every
                    w, h = f.image.size
                    band = f.image.crop((0, round(h * (1 - c.band_share)), w, h))
                    sig = np.asarray(band.convert("L").resize(BAND_SIGNATURE), dtype=np.int16)
                    if last_band is None or float((np.abs(sig - last_band) > BAND_PIXEL).mean()) >= c.band_change:
                        last_band = sig
                        bands.append((f.t, band))
                        band_reads.append(f.t)
                yield f

        pending: Future[None] | None = None
        shots: list[Shot] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmsearch-video") as pool:
            def flush() -> None:
                nonlocal pending
                if pending is not None:
                    pending.result()  # one chunk in flight: bounded memory
                chunk, chunk_bands = list(shots), list(bands)
                shots.clear()
                bands.clear()
                pending = pool.submit(self._read_chunk, chunk, chunk_bands, out, c.band_every)

            try:
                frames = sample_frames(path, fps=c.fps, picture_side=c.picture_side, limits=c.limits,
                                       field=field_name, on_frame=progress)
                for shot in detect_shots(tap(frames), threshold=c.threshold, max_gap=c.max_gap, end=duration or None):
                    shots.append(shot)
                    found[0] += 1
                    if len(shots) + len(bands) >= CHUNK:
                        flush()
            except VideoError as exc:
                out.problem = exc.message
            progress(0)  # the last shots close after the last frame
            flush()
            if pending is not None:
                pending.result()
        last = duration or (out.spans[-1][1] if out.spans else 0.0)
        out.screen = merge_repeats(sorted([*out.screen, *_until_next(out.band_cues, band_reads, c.max_gap, last)],
                                          key=lambda cue: (cue.start, cue.end)), max_gap=c.band_every)
        out.band_cues = []
        self.stats.seconds += out.spans[-1][1] if out.spans else 0.0
        self.stats.segments += len(out.spans)
        if not out.spans and out.problem is None and out.frames == 0:
            out.problem = "no frame could be decoded"
        return out

    def _read_chunk(self, shots: list[Shot], bands: list[tuple[float, Any]], out: Analysis, every: float) -> None:
        """Embed and read (OCR) one chunk of keyframes and bands; runs beside the decoding of the next chunk."""
        pictures = [s.keyframe.image for s in shots]
        vectors = list(self.encoder.encode_image(pictures)) if self.encoder is not None and pictures else []
        above = [_above_band(p, self.config.band_share if every > 0 else 0.0) for p in pictures]
        texts = self._read_text(above + [b for _, b in bands]) if self.ocr is not None else []
        out.vectors += vectors
        for n, shot in enumerate(shots):
            out.spans.append((shot.start, shot.end))
            text = texts[n] if texts else ""
            out.keyframe_text.append(text)
            if text:
                out.screen.append(Cue(shot.start, shot.end, text, "ocr"))
        for (t, _), text in zip(bands, texts[len(shots):], strict=True):
            if text:
                out.band_cues.append(Cue(t, t + every, text, "ocr"))

    def _read_text(self, pictures: list[Any]) -> list[str]:
        """OCR text per picture, by pixel hash (a re-import of the same video decodes the same pixels, so the OCR
        cache answers); frames are upright, so no text-direction classifier."""
        assert self.ocr is not None
        hashes = [hashlib.sha256(p.tobytes()).hexdigest() for p in pictures]
        texts, read = read_texts(self.ocr, self.ocr_cache, dict(zip(hashes, pictures, strict=True)), upright=True)
        self.stats.ocr_reads += read
        return [_lines(texts[h]) for h in hashes]

def _lines(text: str) -> str:
    """OCR lines of at least two characters: in video frames a lone character is mostly a shape read as one
    (a square as 口 or ■), and a one-character caption is no help to a search."""
    return "\n".join(line for line in (raw.strip() for raw in text.split("\n")) if len(line) >= 2)


def _until_next(cues: list[Cue], reads: list[float], longest: float, last: float) -> list[Cue]:
    """A band line lasts until the band next changed (it was read at each change), at most `longest` seconds and
    not past the video's end (`last`, when known)."""
    out = []
    for cue in cues:
        at = bisect.bisect_right(reads, cue.start)
        end = min(reads[at] if at < len(reads) else cue.start + longest, cue.start + longest)
        if last > cue.start:
            end = min(end, last)
        out.append(Cue(cue.start, max(end, cue.end), cue.text, cue.source))
    return out


def _above_band(picture: Any, share: float) -> Any:
    """What of a keyframe OCR reads: without its lower band when the bands are read on their own (each subtitle
    line is then read once), at most KEYFRAME_OCR_SIDE wide (text on screen outside subtitles, titles and signs,
    is large; detection costs in proportion to pixels: 960 -> 640 px halves a keyframe's read)."""
    w, h = picture.size
    if share > 0:
        picture = picture.crop((0, 0, w, round(h * (1 - share))))
        h = picture.size[1]
    if w > KEYFRAME_OCR_SIDE:
        picture = picture.resize((KEYFRAME_OCR_SIDE, max(1, round(h * KEYFRAME_OCR_SIDE / w))))
    return picture


def _media_entry(field_name: str, ref: str, found: Analysis) -> dict[str, Any]:
    """What the item keeps of its video for search time: size, segments, the timed transcript (to say where a
    query's words occur) and the on-screen text (the rerank's OCR signal)."""
    probe = found.probe
    cues = found.transcript[:MAX_MEDIA_CUES]
    return {
        "field": field_name, "ref": short(ref), "kind": "video",
        "duration": round(probe.duration, 2) if probe else None,
        "width": probe.width if probe else None, "height": probe.height if probe else None,
        "codec": probe.codec if probe else None, "segments": len(found.spans),
        "cues": [cue.as_dict() for cue in cues],
        "ocr": " ".join(dict.fromkeys(t for t in found.keyframe_text if t))[:SCREEN_CHARS],
    }
