"""Make small test videos with PyAV: coloured scenes with readable text, burned-in and muxed subtitles.

Everything is generated, so a test knows the truth: where the cuts are, what each frame shows, when each cue
starts. Text is drawn with the WQY font (CJK + Latin) large enough for OCR at the default 640x360.
Subtitle streams are encoded with PyAV's `encode_subtitle` (newer than PyAV 14; tested with 18.1): subrip, ass
and webvtt in .mkv, mov_text in .mp4. Sidecar files (.srt, .vtt, .ass) are written as text.
"""

from __future__ import annotations

import fractions
import random
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.subtitles.subtitle import SubtitleSet
from PIL import Image, ImageDraw

from render import font

Color = tuple[int, int, int]
CueSpec = tuple[float, float, str]  # start s, end s, text ("\n" separates lines)

TEXT_PX = 40
BAND_PX = 30


@dataclass
class Scene:
    """`seconds` of one picture: a flat `color`, optional `text` in the middle, optional `band` subtitle."""

    seconds: float
    color: Color
    text: str | None = None  # drawn large in the middle of the frame with the WQY font
    band: str | None = None  # a burned-in subtitle: white text on a black strip at the bottom
    fade: float = 0.0  # the last `fade` seconds crossfade into the next scene (a gradual transition)
    drift: float = 0.0  # pixels per second the text moves to the right (a stand-in for camera motion)


def text_color(color: Color) -> Color:
    """Black on a light background, white on a dark one, so OCR can read it."""
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luma >= 128 else (255, 255, 255)


def render_scene(scene: Scene, size: tuple[int, int], t: float = 0.0) -> Image.Image:
    """The scene's picture `t` seconds into it (the text moves when `drift` is set)."""
    image = Image.new("RGB", size, scene.color)
    draw = ImageDraw.Draw(image)
    w, h = size
    if scene.text:
        f = font(TEXT_PX)
        left, top, right, bottom = draw.textbbox((0, 0), scene.text, font=f)
        x = (w - (right - left)) / 2 - left + scene.drift * t
        y = (h - (bottom - top)) / 2 - top - (BAND_PX if scene.band else 0)
        draw.text((x, y), scene.text, font=f, fill=text_color(scene.color))
    if scene.band:
        f = font(BAND_PX)
        strip = BAND_PX + 20
        draw.rectangle((0, h - strip, w, h), fill=(0, 0, 0))
        left, top, right, bottom = draw.textbbox((0, 0), scene.band, font=f)
        draw.text(((w - (right - left)) / 2 - left, h - strip + 10 - top), scene.band, font=f, fill=(255, 255, 255))
    return image


def scene_bounds(scenes: Sequence[Scene]) -> list[float]:
    """The start time of each scene and the end of the last: the true cut times are the inner values."""
    out = [0.0]
    for s in scenes:
        out.append(out[-1] + s.seconds)
    return out


def _frames(scenes: Sequence[Scene], fps: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """RGB arrays frame by frame; a still scene is rendered once."""
    for i, scene in enumerate(scenes):
        n = round(scene.seconds * fps)
        still = None if scene.drift else np.asarray(render_scene(scene, size))
        nxt = np.asarray(render_scene(scenes[i + 1], size)).astype(np.float32) if i + 1 < len(scenes) else None
        fade_frames = round(scene.fade * fps) if nxt is not None else 0
        for k in range(n):
            frame = still if still is not None else np.asarray(render_scene(scene, size, k / fps))
            into = k - (n - fade_frames)
            if into >= 0 and nxt is not None:
                a = (into + 1) / (fade_frames + 1)
                frame = ((1 - a) * frame.astype(np.float32) + a * nxt).round().astype(np.uint8)
            yield frame


def _ass_text(text: str) -> str:
    return text.replace("\n", "\\N")


ASS_HEADER = """[Script Info]
ScriptType: v4.00+
PlayResX: 640
PlayResY: 360
ScaledBorderAndShadow: yes

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, \
MarginV, Encoding
Style: Default,Arial,16,&H00FFFFFF,&H00FFFFFF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""


def _video_codec(codec: str) -> str:
    if codec == "h264":
        return "libx264" if "libx264" in av.codecs_available else "mpeg4"
    return codec


def make_video(
    path: Path,
    scenes: list[Scene],
    fps: int = 10,
    size: tuple[int, int] = (640, 360),
    subtitles: list[CueSpec] | dict[str, list[CueSpec]] | None = None,
    codec: str = "h264",
    subtitle_codec: str = "subrip",
    keyint: float = 2.0,
    rotation: int = 0,
    options: dict[str, str] | None = None,
) -> Path:
    """Write `scenes` as a video (.mkv, or .mp4 when the path says so) with one video stream and, when
    `subtitles` is given, text subtitle streams: a list of cues is one stream without a language, a dict maps
    each language code ("chi", "eng") to its stream's cues. `codec` "h264" is libx264 (ultrafast) when the
    wheel has it, else mpeg4; a key frame every `keyint` seconds (plus x264's own at scene cuts). One encoder
    thread, so the bytes are the same on every machine (tests that damage a file depend on it). `rotation`
    (degrees, counter-clockwise, as FFmpeg's display matrix says) stores the video the way a phone does: -90 is a
    portrait video stored landscape, to be turned clockwise for display. `options` go to the encoder (e.g.
    {"preset": "fast"} for x264 with B-frames; the default is "ultrafast", which has none)."""
    path = Path(path)
    mp4 = path.suffix.lower() in (".mp4", ".mov")
    if mp4 and subtitles is not None and subtitle_codec == "subrip":
        subtitle_codec = "mov_text"
    tracks = {"": subtitles} if isinstance(subtitles, list) else dict(subtitles or {})
    ms = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        vcodec = _video_codec(codec)
        stream = out.add_stream(vcodec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(1, round(keyint * fps))
        stream.codec_context.thread_count = 1
        if rotation:
            stream.set_display_rotation(rotation)
        if vcodec == "libx264":
            stream.codec_context.options = {"preset": "ultrafast", **(options or {})}
        elif vcodec == "mpeg4":
            stream.codec_context.options = {"qscale": "3", **(options or {})}
        elif options:
            stream.codec_context.options = options
        subs: list[tuple[av.stream.Stream, list[CueSpec]]] = []
        for lang, cues in tracks.items():
            sub = out.add_stream(subtitle_codec)
            sub.codec_context.subtitle_header = ASS_HEADER.encode()
            sub.codec_context.time_base = ms
            if lang:
                sub.metadata["language"] = lang
            subs.append((sub, sorted(cues)))
        pending = [(start, end, text, s) for s, cues in subs for start, end, text in cues]
        pending.sort(key=lambda c: c[0])
        order: dict[int, int] = {}

        def mux_cues_until(t: float) -> None:
            while pending and pending[0][0] <= t:
                start, end, text, s = pending.pop(0)
                order[s.index] = order.get(s.index, -1) + 1  # ASS ReadOrder: the cue's number in its stream
                dialogue = f"{order[s.index]},0,Default,,0,0,0,,{_ass_text(text)}".encode()
                packet = s.codec_context.encode_subtitle(
                    SubtitleSet.create(dialogue, 0, round((end - start) * 1000), round(start * 1000))
                )
                packet.stream = s
                packet.time_base = ms
                out.mux(packet)

        for i, array in enumerate(_frames(scenes, fps, size)):
            mux_cues_until(i / fps)
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        mux_cues_until(float("inf"))
    return path


def _clock(t: float, sep: str = ",") -> str:
    ms = round(t * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def write_srt(path: Path, cues: list[CueSpec], encoding: str = "utf-8") -> Path:
    """A SubRip sidecar file (`encoding` lets a test write the GBK files Chinese subtitles often come in)."""
    blocks = [f"{i}\n{_clock(a)} --> {_clock(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1)]
    Path(path).write_bytes("\n".join(blocks).encode(encoding))
    return Path(path)


def write_vtt(path: Path, cues: list[CueSpec]) -> Path:
    """A WebVTT sidecar file."""
    blocks = [f"{_clock(a, '.')} --> {_clock(b, '.')}\n{text}\n" for a, b, text in cues]
    Path(path).write_text("WEBVTT\n\n" + "\n".join(blocks), encoding="utf-8")
    return Path(path)


def write_ass(path: Path, cues: list[CueSpec]) -> Path:
    """An Advanced SubStation Alpha sidecar file."""

    def clock(t: float) -> str:
        cs = round(t * 100)
        return f"{cs // 360_000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"

    lines = [f"Dialogue: 0,{clock(a)},{clock(b)},Default,,0,0,0,,{_ass_text(text)}" for a, b, text in cues]
    Path(path).write_text(ASS_HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


def corrupt_copy(src: Path, dst: Path, start: float = 0.4, end: float = 0.6, seed: int = 7) -> Path:
    """A copy whose bytes between `start` and `end` (fractions of the size) are random: the header survives,
    the middle of the stream is garbage."""
    shutil.copyfile(src, dst)
    size = Path(dst).stat().st_size
    a, b = int(size * start), int(size * end)
    with open(dst, "r+b") as fh:
        fh.seek(a)
        fh.write(random.Random(seed).randbytes(b - a))
    return Path(dst)
