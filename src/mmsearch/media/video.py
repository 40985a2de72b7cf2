"""Read videos with PyAV (FFmpeg inside the wheel): probe them, sample frames as they decode, grab frames at times.

Why PyAV and not an ffmpeg subprocess: no system binary to install or match, frames arrive as arrays without a
pipe, and swscale scales each sampled frame in C as it is decoded. Memory stays bounded whatever the length:
frames are decoded one packet at a time and only the sampled ones are converted.

Every failure is a `VideoError` whose message names the field, the value found and the rule (with the setting
that changes a limit); a raw av/OS exception never leaves this module.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream
from PIL import Image

from mmsearch.media.errors import VideoError

SMALL = (64, 36)  # width, height of the grey frame compared between samples
COLOR = (16, 9)  # width, height of the colour signature (tells apart hues of equal brightness)
EPS = 1e-3  # seconds: a frame stamped 0.4999 s counts as "at" 0.5 s
MAX_BAD_PACKETS = 100  # damaged packets in a row before decoding gives up on the rest of the file
PROGRESS_EVERY = 50  # decoded frames between on_frame calls
KEY_GAP = 30.0  # seconds without a key frame before keyframes_only decodes every frame (intra-refresh streams)
# Decoders that skip non-reference frames (no other frame is built from them, so skipping one damages nothing)
# when asked: sampling 2 frames a second from 25, half the decoding work is not needed (measured 30% faster).
SKIP_NONREF_CODECS = frozenset({"h264", "hevc"})
STILL_IMAGE_FORMATS = frozenset({"image2", "gif_pipe"})  # plus every "*_pipe" demuxer: one picture, not a video


@dataclass(frozen=True)
class VideoLimits:
    """What one video may cost; each limit has a setting that raises it (named in the error)."""

    max_bytes: int = 2 * 1024**3  # file size (MMSEARCH_VIDEO_MAX_BYTES)
    max_seconds: float = 4 * 3600.0  # duration (MMSEARCH_VIDEO_MAX_SECONDS)
    max_pixels: int = 3840 * 2160  # width x height of the video stream (MMSEARCH_VIDEO_MAX_PIXELS)


@dataclass(frozen=True)
class StreamInfo:
    """One stream of the container, as FFmpeg sees it."""

    index: int
    type: str  # "video", "audio", "subtitle", "data", "attachment"
    codec: str  # FFmpeg's decoder name ("h264", "subrip"); "" when this FFmpeg has no decoder for it
    language: str | None = None  # ISO 639-2 as tagged ("chi", "eng"); None for missing or "und"
    title: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VideoProbe:
    """What the container says about a video, checked against the limits; nothing decoded yet."""

    duration: float  # seconds; 0.0 when the container does not say
    width: int  # of the stored picture (a phone video's rotation is applied to sampled pictures)
    height: int
    fps: float  # average frame rate; 0.0 when unknown
    codec: str
    bytes: int
    format: str  # FFmpeg's demuxer ("matroska", "mp4", "mov", "webm"...)
    streams: tuple[StreamInfo, ...]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration"] = round(self.duration, 3)
        out["fps"] = round(self.fps, 3)
        out["streams"] = [s.as_dict() for s in self.streams]
        return out


@dataclass
class SampledFrame:
    """One decoded frame, already scaled three ways: a picture to embed or OCR, two tiny ones to compare."""

    t: float  # seconds from the start
    small: np.ndarray  # uint8 grayscale, shape (36, 64): for frame differences
    image: Image.Image  # RGB, longer side at most `picture_side` (never upscaled), rotation applied
    keyframe: bool  # the decoder marked it a key frame
    color: np.ndarray | None = None  # uint8 RGB, shape (9, 16, 3); computed from `image` when not given

    def __post_init__(self) -> None:
        if self.color is None:
            self.color = np.asarray(self.image.convert("RGB").resize(COLOR, Image.Resampling.BOX))


def _setting(name: str) -> str:
    return f"MMSEARCH_VIDEO_MAX_{name}"


def _reason(exc: BaseException) -> str:
    """FFmpeg's reason without the file path PyAV appends (a server path is nobody's business)."""
    if isinstance(exc, av.FFmpegError | OSError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__


def _open_container(path: Path, limits: VideoLimits | None, field: str) -> tuple[InputContainer, int]:
    """The opened container and the file size; the size limit is checked first, before FFmpeg reads a byte."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise VideoError(f"{field}: cannot read the file: {_reason(exc)}", field=field) from None
    if not Path(path).is_file():
        raise VideoError(f"{field}: not a regular file", field=field)
    if limits is not None and size > limits.max_bytes:
        raise VideoError(
            f"{field}: {size} bytes, over the limit of {limits.max_bytes} bytes ({_setting('BYTES')})", field=field
        )
    try:
        container = av.open(str(path), metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise VideoError(f"{field}: not a readable media file ({_reason(exc)})", field=field) from None
    if not isinstance(container, InputContainer):  # pragma: no cover - av.open of a path in read mode
        container.close()
        raise VideoError(f"{field}: not a readable media file", field=field)
    return container, size


def _tag(stream: av.stream.Stream, key: str) -> str | None:
    value = (stream.metadata or {}).get(key)
    value = value.strip() if isinstance(value, str) else None
    return None if not value or (key == "language" and value.lower() == "und") else value


def stream_info(stream: av.stream.Stream) -> StreamInfo:
    """A stream as plain data (also used by subtitles.py)."""
    cc = stream.codec_context
    return StreamInfo(stream.index, stream.type, cc.name if cc is not None else "", _tag(stream, "language"),
                      _tag(stream, "title"))


def _format_name(container: InputContainer, path: Path) -> str:
    """FFmpeg names a demuxer by all it reads ("mov,mp4,m4a,3gp,3g2,mj2"): the file's extension when it is one of
    them, else the first."""
    names = container.format.name.split(",")
    ext = Path(path).suffix.lower().lstrip(".")
    return ext if ext in names else names[0]


def _video_stream(container: InputContainer, field: str) -> VideoStream:
    """The first video stream that is not cover art (an mp3's picture is a "video" stream with one frame)."""
    attached = int(av.stream.Disposition.attached_pic)
    for stream in container.streams.video:
        if not int(stream.disposition) & attached:
            return stream
    kinds = sorted({s.type for s in container.streams}) or ["none"]
    raise VideoError(f"{field}: no video stream (the file has: {', '.join(kinds)})", field=field)


def _duration(container: InputContainer, stream: VideoStream) -> float:
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return 0.0


def _inspect(container: InputContainer, path: Path, size: int, limits: VideoLimits, field: str) -> tuple[
    VideoProbe, VideoStream
]:
    fmt = container.format.name
    if fmt in STILL_IMAGE_FORMATS or fmt.endswith("_pipe"):
        raise VideoError(f"{field}: a still image ({fmt.removesuffix('_pipe')}), not a video", field=field)
    stream = _video_stream(container, field)
    cc = stream.codec_context
    if cc is None:
        raise VideoError(
            f"{field}: the video codec of stream {stream.index} has no decoder in this FFmpeg build", field=field
        )
    duration = _duration(container, stream)
    if duration > limits.max_seconds:
        raise VideoError(
            f"{field}: {duration:.0f} s long, over the limit of {limits.max_seconds:.0f} s ({_setting('SECONDS')})",
            field=field,
        )
    width, height = cc.width, cc.height
    if width <= 0 or height <= 0:
        raise VideoError(f"{field}: the video stream has no picture size (corrupt header)", field=field)
    if width * height > limits.max_pixels:
        raise VideoError(
            f"{field}: {width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels} "
            f"({_setting('PIXELS')})",
            field=field,
        )
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    probe = VideoProbe(
        duration=duration, width=width, height=height, fps=float(rate) if rate else 0.0, codec=cc.name, bytes=size,
        format=_format_name(container, path), streams=tuple(stream_info(s) for s in container.streams),
    )
    return probe, stream


def _open(path: Path, limits: VideoLimits, field: str) -> tuple[InputContainer, VideoStream, VideoProbe]:
    container, size = _open_container(path, limits, field)
    try:
        probe, stream = _inspect(container, path, size, limits, field)
    except BaseException:
        container.close()
        raise
    return container, stream, probe


def probe_video(path: Path, limits: VideoLimits = VideoLimits(), field: str = "video") -> VideoProbe:
    """Open `path`, check it is a video this FFmpeg can decode within `limits`, and describe it.
    Reads the header only (nothing is decoded); raises VideoError."""
    container, _, probe = _open(path, limits, field)
    container.close()
    return probe


class _Decoder:
    """Frames of one stream with their times in seconds from the stream's start, and a record of the damage met.

    A damaged packet is skipped; `MAX_BAD_PACKETS` in a row (or a demuxer error) stop the decoding. Two kinds
    of damage raise nothing in FFmpeg and are recorded too: frames the decoder flags as concealed, and stretches
    the Matroska demuxer skips to find its way again (seen as a hole of over 4 KB between one packet's end and
    the next one's position together with a jump of over a second in the video's packet times: either alone
    has innocent causes, block additions such as a VP9 alpha plane, a variable frame rate). `read_to` is how far
    the packets reached, so a file that ends early can be told from a whole one.

    `keys_only` decodes key frames alone; once the packets run KEY_GAP seconds past the last frame decoded, the
    decoder goes back to that frame and decodes everything from there on (a stream encoded with intra refresh
    has a single key frame, at the start)."""

    def __init__(self, container: InputContainer, stream: VideoStream, keys_only: bool = False,
                 skip_nonref: bool = False) -> None:
        self.container = container
        self.stream = stream
        self.time_base = stream.time_base or Fraction(1, 90_000)
        start = stream.start_time if stream.start_time is not None else 0
        self.start = float(start * self.time_base)
        rate = stream.average_rate or stream.guessed_rate
        self.frame_step = 1.0 / float(rate) if rate else 0.04
        self.sequential = container.format.name.startswith("matroska")  # packets lie in file order
        self.last_t = -self.frame_step
        self.read_to = 0.0  # seconds: the end of the last packet read
        self.bad_packets = 0  # could not be decoded
        self.bad_frames = 0  # decoded with errors concealed
        self.lost_bytes = 0  # skipped by the demuxer
        self.problem: str | None = None  # the first damage, as "at 12.3 s: reason"
        self.stopped = False  # decoding gave up before the end
        self.keys_only = keys_only
        self.everything = "NONREF" if skip_nonref else "DEFAULT"  # what to decode when not key frames only
        stream.codec_context.skip_frame = "NONKEY" if keys_only else self.everything

    def _note(self, t: float, reason: str) -> None:
        if self.problem is None:
            self.problem = f"at {max(t, 0.0):.1f} s: {reason}"

    def time(self, frame: VideoFrame) -> float:
        t = float(frame.pts * self.time_base) - self.start if frame.pts is not None else self.last_t + self.frame_step
        self.last_t = t
        return max(t, 0.0)

    def frames(self) -> Generator[tuple[VideoFrame, float], None, None]:
        demux = self.container.demux()  # every stream: the other streams' packets fill the file between ours
        index = self.stream.index
        in_a_row = 0
        block, end_of_last, hole = -1, -1, 0  # file positions: the last block, where its data ended, a hole since
        last_at: float | None = None  # the previous video packet's time
        last_frame = 0.0  # the time of the last frame decoded
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except (av.FFmpegError, OSError, ValueError) as exc:
                self._note(self.read_to, _reason(exc))
                self.stopped = True
                return
            pos = packet.pos if self.sequential and packet.pos is not None else -1
            if pos >= 0:
                if pos == block:  # laced frames of one block share its position
                    end_of_last += packet.size
                else:
                    if end_of_last >= 0 and pos - end_of_last > 4096:
                        hole += pos - end_of_last
                    block, end_of_last = pos, pos + packet.size
            if packet.stream_index != index:
                continue
            pts = packet.pts if packet.pts is not None else packet.dts
            at = float(pts * self.time_base) - self.start if pts is not None else self.read_to
            if pts is not None:
                self.read_to = max(self.read_to, at + float((packet.duration or 0) * self.time_base))
                if hole and last_at is not None and at - last_at > max(1.0, 10 * self.frame_step):
                    self.lost_bytes += hole
                    self._note(last_at, f"the demuxer skipped {hole} unreadable bytes ({at - last_at:.1f} s)")
                hole, last_at = 0, at if last_at is None else max(last_at, at)
                if self.keys_only and at - last_frame > KEY_GAP:
                    self.keys_only = False
                    self.stream.codec_context.skip_frame = self.everything
                    self.container.seek(int((last_frame + self.start) / self.time_base), stream=self.stream)
                    continue
            try:
                decoded = packet.decode()
            except (av.FFmpegError, ValueError) as exc:
                self.bad_packets += 1
                self._note(at, _reason(exc))
                in_a_row += 1
                if in_a_row >= MAX_BAD_PACKETS:
                    self.stopped = True
                    return
                continue
            in_a_row = 0
            for frame in decoded:
                t = last_frame = self.time(frame)
                if frame.is_corrupt:
                    self.bad_frames += 1
                    self._note(t, "a frame decoded with errors concealed")
                yield frame, t

    def error(self, field: str, yielded: int, duration: float = 0.0) -> VideoError | None:
        """What went wrong, as an error for the caller once the frames are out (None when nothing did).
        `duration` (from the header) reveals a file that ends early: packets up to within 10% (at least 2 s)
        of it count as complete."""
        if self.problem is not None and not yielded:
            return VideoError(f"{field}: no frame could be decoded ({self.problem})", field=field)
        if self.stopped:
            return VideoError(f"{field}: decoding stopped {self.problem}", field=field)
        if duration > 0 and self.read_to < duration - max(2.0, 0.1 * duration):
            return VideoError(
                f"{field}: the video ends at {self.read_to:.1f} s of the {duration:.1f} s its header declares "
                "(truncated or damaged file)",
                field=field,
            )
        if self.problem is None:
            return None
        counts = [(self.bad_packets, "undecodable packet(s)"), (self.bad_frames, "frame(s) decoded with damage"),
                  (self.lost_bytes, "unreadable byte(s) skipped")]
        what = ", ".join(f"{n} {label}" for n, label in counts if n)
        return VideoError(f"{field}: damaged stream ({what}); the first {self.problem}", field=field)


ROTATIONS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, -180: Image.Transpose.ROTATE_180,
             -90: Image.Transpose.ROTATE_270, 270: Image.Transpose.ROTATE_270}


class _Scaler:
    """Turns decoded frames into SampledFrames with swscale. One reformatter per output size keeps its scaler
    context between frames: building a context per call costs more than the scaling (measured at 1280x720:
    0.3 ms per tiny array with a kept context, 3-8 ms with a new one; `to_image` is slower than
    `Image.fromarray(to_ndarray)`)."""

    def __init__(self, side: int, sar: Fraction | None) -> None:
        self.side = side
        self.sar = float(sar) if sar and sar > 0 else 1.0  # non-square pixels (DVD, some broadcast) are widened
        self.picture = VideoReformatter()
        self.small = VideoReformatter()
        self.color = VideoReformatter()

    def size(self, frame: VideoFrame) -> tuple[int, int]:
        """The display size scaled so its longer side is at most `side` (never upscaled)."""
        width = frame.width * self.sar
        scale = min(1.0, self.side / max(width, frame.height))
        return max(1, round(width * scale)), max(1, round(frame.height * scale))

    def __call__(self, frame: VideoFrame, t: float) -> SampledFrame:
        width, height = self.size(frame)
        rgb = self.picture.reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA")
        image = Image.fromarray(rgb.to_ndarray())
        rotation = frame.rotation  # a phone's portrait video is stored landscape with a display matrix
        if rotation in ROTATIONS:
            image = image.transpose(ROTATIONS[rotation])
        small = self.small.reformat(frame, width=SMALL[0], height=SMALL[1], format="gray", interpolation="AREA")
        color = self.color.reformat(frame, width=COLOR[0], height=COLOR[1], format="rgb24", interpolation="AREA")
        return SampledFrame(t=t, small=small.to_ndarray(), image=image, keyframe=bool(frame.key_frame),
                            color=color.to_ndarray())


def sample_frames(
    path: Path,
    fps: float = 2.0,
    picture_side: int = 960,
    limits: VideoLimits = VideoLimits(),
    keyframes_only: bool = False,
    field: str = "video",
    on_frame: Callable[[int], None] | None = None,
) -> Iterator[SampledFrame]:
    """Decode the first video stream frame by frame and yield the first frame at or after each sample time
    (0, 1/fps, 2/fps, ...), stopping at `limits.max_seconds`. When the video has over 2.5 frames per sample,
    H.264 and HEVC decoders skip non-reference frames, so "a frame" is then the first reference frame (at most a
    few frames later). `on_frame(n)` gets the frames decoded since its last call (every ~50 and at the end).

    `keyframes_only=True` is the fast mode for long videos: the decoder skips every frame but key frames
    (typically one per 1-10 s), and the samples are the first key frame at or after each sample time (so an
    all-intra codec still gives `fps` samples a second, not all of them). Where key frames are over 30 s apart
    (intra-refresh encodes have one, at the start), decoding falls back to every frame from the last key frame.

    A generator: the file is opened (and probed against `limits`) on the first `next()`, and errors are raised
    there. Damage does not lose what decodes: a damaged packet is skipped (100 in a row stop the decoding), and
    once every frame that could be decoded has been yielded, a VideoError says what happened, so the caller keeps
    the frames and records a warning: "video: decoding stopped at 12.3 s: <reason>", "video: damaged stream
    (2 undecodable packet(s), 5903 unreadable byte(s) skipped); the first at 2.4 s: <reason>", or "video: the
    video ends at 4.1 s of the 10.0 s its header declares (truncated or damaged file)". A VideoError before any
    frame means nothing could be used."""
    if fps <= 0 or picture_side < 1:
        raise ValueError("fps and picture_side must be positive")
    container, stream, probe = _open(path, limits, field)
    with container:
        # Frame threads use every core but hold frames back (one per thread): with key frames alone that delay is
        # tens of seconds, which would look like a stream without key frames. Slice threads add no delay.
        stream.codec_context.thread_type = "SLICE" if keyframes_only else "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        skip_nonref = stream.codec_context.name in SKIP_NONREF_CODECS and bool(rate) and float(rate) > 2.5 * fps
        decoder = _Decoder(container, stream, keyframes_only, skip_nonref)
        scale = _Scaler(picture_side, stream.sample_aspect_ratio)
        step = 1.0 / fps
        next_t = 0.0
        yielded = decoded = pending = 0
        restarted = at_limit = False
        while True:  # twice at most: a keyframes_only pass that found no key frame is repeated decoding all
            for frame, t in decoder.frames():
                decoded += 1
                pending += 1
                if on_frame is not None and pending >= PROGRESS_EVERY:
                    on_frame(pending)
                    pending = 0
                if t > limits.max_seconds:
                    at_limit = True
                    break
                if t + EPS < next_t:
                    continue
                yield scale(frame, t)
                yielded += 1
                next_t = (math.floor(t / step + EPS) + 1) * step
            if decoded or not keyframes_only or restarted or decoder.problem:
                break
            restarted = True
            container.seek(0, backward=True)
            decoder = _Decoder(container, stream, skip_nonref=skip_nonref)
        if on_frame is not None and pending:
            on_frame(pending)
        error = decoder.error(field, yielded, 0.0 if at_limit else probe.duration)
        if error is None and not yielded:
            error = VideoError(f"{field}: the video stream has no decodable frame", field=field)
        if error is not None:
            raise error


def grab_frames(
    path: Path,
    times: list[float],
    picture_side: int = 960,
    field: str = "video",
    limits: VideoLimits = VideoLimits(),
) -> list[SampledFrame]:
    """The first frame at or after each of `times` (seconds), in the order asked, without decoding the whole
    video: each time seeks to the key frame before it and decodes forward (a time a few seconds after the
    previous one just decodes on). A time past the end gets the last frame. Raises VideoError when the file is
    unreadable or no frame decodes."""
    if not times:
        return []
    container, stream, _ = _open(path, limits, field)
    out: dict[int, SampledFrame] = {}
    with container:
        stream.codec_context.thread_type = "AUTO"
        decoder = _Decoder(container, stream)
        scale = _Scaler(picture_side, stream.sample_aspect_ratio)
        frames: Generator[tuple[VideoFrame, float], None, None] | None = None
        last: tuple[VideoFrame, float] | None = None
        for i in sorted(range(len(times)), key=lambda k: times[k]):
            want = max(0.0, float(times[i]))
            if frames is None or last is None or want + EPS < last[1] or want - last[1] > 5.0:
                try:
                    container.seek(int((want + decoder.start) / decoder.time_base), stream=stream, backward=True)
                except (av.FFmpegError, OSError) as exc:
                    raise VideoError(f"{field}: cannot seek to {want:.1f} s ({_reason(exc)})", field=field) from None
                if frames is not None:
                    frames.close()
                frames = decoder.frames()
                last = None
            if last is None or last[1] + EPS < want:
                for frame, t in frames:
                    last = (frame, t)
                    if t + EPS >= want:
                        break
            if last is None:
                problem = decoder.problem or "no frame after the seek"
                raise VideoError(f"{field}: no frame could be decoded near {want:.1f} s ({problem})", field=field)
            out[i] = scale(*last)
    return [out[i] for i in range(len(times))]
