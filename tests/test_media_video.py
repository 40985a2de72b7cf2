"""The video media layer on generated videos whose truth is known: probe and limits, frame sampling and
seeking, damaged files, shot detection, subtitle streams and sidecar files, OCR cue merging, and streaming a
download to a file through a loopback server."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mmsearch.media.errors import FetchError, VideoError
from mmsearch.media.fetch import FetchConfig, Fetcher
from mmsearch.media.shots import detect_shots, difference
from mmsearch.media.subtitles import (
    Cue,
    clean_text,
    merge_repeats,
    read_subtitle_file,
    read_subtitle_streams,
    subtitle_streams,
)
from mmsearch.media.video import SampledFrame, VideoLimits, grab_frames, probe_video, sample_frames
from videos import Scene, corrupt_copy, make_video, scene_bounds, write_ass, write_srt, write_vtt

RED, GREEN, BLUE = (210, 40, 40), (40, 170, 60), (50, 60, 200)
THREE = [Scene(2, RED, "第一幕"), Scene(2, GREEN, "Two", band="字幕"), Scene(2, BLUE, "三")]
CHI = [(0.5, 1.5, "<i>你好</i>\n世界"), (2.5, 3.25, "第二句")]
ENG = [(0.5, 1.5, "Hello\nworld"), (2.5, 3.25, "Second line")]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("video")


@pytest.fixture(scope="module")
def three(media) -> Path:
    """6 s, 10 fps, 640x360 h264 in Matroska: red, green, blue scenes (cuts at 2 and 4 s), two subtitle tracks."""
    return make_video(media / "three.mkv", THREE, subtitles={"eng": ENG, "chi": CHI})


def colour_of(frame: SampledFrame) -> tuple[int, int, int]:
    """The picture's colour at a corner, away from the text."""
    r, g, b = frame.image.getpixel((8, 8))
    return r, g, b


def near(color: tuple[int, int, int], expected: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(color, expected, strict=True))


# --- probe and limits -------------------------------------------------------------------------------------------


def test_probe_reads_the_header(three):
    probe = probe_video(three)
    assert abs(probe.duration - 6.0) <= 0.2
    assert (probe.width, probe.height, probe.codec, probe.format) == (640, 360, "h264", "matroska")
    assert probe.fps == pytest.approx(10.0)
    assert probe.bytes == three.stat().st_size
    assert [(s.index, s.type, s.language) for s in probe.streams] == [
        (0, "video", None), (1, "subtitle", "eng"), (2, "subtitle", "chi")
    ]
    assert {s.codec for s in probe.streams[1:]} <= {"srt", "subrip"}
    data = probe.as_dict()
    assert json.loads(json.dumps(data)) == data and data["streams"][2]["language"] == "chi"


def test_probe_mp4_with_mov_text(media):
    path = make_video(media / "clip.mp4", THREE[:1], subtitles=[(0.2, 1.0, "mp4 字幕")])
    probe = probe_video(path)
    assert probe.format == "mp4" and abs(probe.duration - 2.0) <= 0.2
    assert [(s.type, s.codec) for s in probe.streams] == [("video", "h264"), ("subtitle", "mov_text")]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (VideoLimits(max_bytes=1000),
         r"video_url: \d+ bytes, over the limit of 1000 bytes \(MMSEARCH_VIDEO_MAX_BYTES\)"),
        (VideoLimits(max_seconds=5), r"video_url: 6 s long, over the limit of 5 s \(MMSEARCH_VIDEO_MAX_SECONDS\)"),
        (VideoLimits(max_pixels=640 * 360 - 1),
         r"video_url: 640x360 = 230400 pixels, over the limit of 230399 \(MMSEARCH_VIDEO_MAX_PIXELS\)"),
    ],
)
def test_each_limit_refuses_naming_its_setting(three, limits, message):
    with pytest.raises(VideoError, match=message) as err:
        probe_video(three, limits, field="video_url")
    assert err.value.field == "video_url" and err.value.code == "VideoUnreadable"
    with pytest.raises(VideoError, match=message):
        next(sample_frames(three, limits=limits, field="video_url"))
    with pytest.raises(VideoError, match=message):
        grab_frames(three, [1.0], field="video_url", limits=limits)


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _no_decoder(path: Path) -> Path:
    """An MP4 whose video track is EVC, a codec FFmpeg knows by name but this build cannot decode."""
    with av.open(str(path), "w") as out:
        stream = out.add_mux_stream("evc", rate=10, width=320, height=240)
        stream.time_base = Fraction(1, 10)
        for i in range(5):
            packet = av.Packet(b"\0\0\1" + bytes(100))
            packet.stream, packet.pts, packet.dts, packet.time_base, packet.duration = stream, i, i, Fraction(1, 10), 1
            packet.is_keyframe = i == 0
            out.mux(packet)
    return path


def test_things_that_are_not_videos(media):
    text = media / "notes.mp4"
    text.write_text("just some text, not a video\n" * 20)
    png = media / "picture.mkv"
    Image.new("RGB", (64, 48), RED).save(png, format="PNG")
    cases = [
        (text, r"video: not a readable media file \(Invalid data found"),
        (png, r"video: a still image \(png\), not a video"),
        (_audio_only(media / "sound.wav"), r"video: no video stream \(the file has: audio\)"),
        (_no_decoder(media / "evc.mp4"), "video: the video codec of stream 0 has no decoder in this FFmpeg build"),
        (media / "missing.mkv", "video: cannot read the file: No such file or directory"),
        (media, "video: not a regular file"),
    ]
    for path, message in cases:
        with pytest.raises(VideoError, match=message):
            probe_video(path)
    with pytest.raises(VideoError, match="not a readable media file"):
        list(sample_frames(text))


def test_damaged_files_keep_what_decodes(media):
    """Garbage over the header: refused at probe. Garbage in the middle: the frames before (and after) it come
    out, then a VideoError says what went wrong. A truncated download: the frames it has, then an error naming
    where it ends."""
    colours = (RED, GREEN, BLUE, (220, 220, 60), (60, 200, 220))
    src = make_video(media / "ten.mkv", [Scene(2, c, f"场景 {i}") for i, c in enumerate(colours)])
    head = corrupt_copy(src, media / "head.mkv", start=0.0, end=0.01)
    with pytest.raises(VideoError, match=r"video: (not a readable media file|.*\(corrupt header\))"):
        probe_video(head)

    middle = corrupt_copy(src, media / "middle.mkv", start=0.4, end=0.6)
    assert probe_video(middle).duration == pytest.approx(10.0, abs=0.2)  # the header is intact
    got: list[float] = []
    with pytest.raises(VideoError, match=r"^video: (damaged stream \(.*\); the first at|decoding stopped at) \d"):
        for frame in sample_frames(middle):
            got.append(frame.t)
    assert 0 < len(got) < 20 and got[0] == 0.0 and got[-1] > 9.0  # a stretch lost, the rest kept

    short = media / "short.mkv"
    short.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    got = []
    with pytest.raises(VideoError, match=r"video: the video ends at \d\.\d s of the 10\.0 s its header declares"):
        for frame in sample_frames(short):
            got.append(frame.t)
    assert got and max(got) < 7.0


# --- sampling and seeking ---------------------------------------------------------------------------------------


def test_sample_frames_streams_samples_at_the_rate(three):
    progress: list[int] = []
    frames = list(sample_frames(three, fps=2, picture_side=320, on_frame=progress.append))
    times = [f.t for f in frames]
    assert times == pytest.approx([i / 2 for i in range(12)], abs=0.01)  # the first frame at or after each k/2 s
    assert sum(progress) == 60 and all(0 < n <= 50 for n in progress)  # every decoded frame counted
    first = frames[0]
    assert first.image.mode == "RGB" and first.image.size == (320, 180)
    assert first.small.shape == (36, 64) and first.small.dtype == np.uint8
    assert first.color is not None and first.color.shape == (9, 16, 3) and first.color.dtype == np.uint8
    assert first.keyframe
    scene_of = {0.0: RED, 1.5: RED, 2.0: GREEN, 3.5: GREEN, 4.0: BLUE, 5.5: BLUE}
    for frame in frames:
        if frame.t in scene_of:
            assert near(colour_of(frame), scene_of[frame.t]), (frame.t, colour_of(frame))
            assert near(tuple(frame.color[0, 0]), scene_of[frame.t])
    assert max(next(sample_frames(three, picture_side=2000)).image.size) == 640  # never upscaled


@pytest.mark.skipif("libx264" not in av.codecs_available, reason="needs libx264 for B-frames")
def test_sampling_skips_frames_nothing_is_built_from(media):
    """x264 "fast" at 25 fps makes B-frames that no other frame references: sampled at 2 a second they are not
    decoded at all (a third of the work), and each sample is still within a few frames of its time."""
    path = make_video(media / "bframes.mkv", [Scene(2, RED, "快"), Scene(2, BLUE, "慢")], fps=25, size=(320, 180),
                      options={"preset": "fast", "tune": "animation"})
    decoded: list[int] = []
    frames = list(sample_frames(path, fps=2, on_frame=decoded.append))
    assert [round(f.t * 2) for f in frames] == list(range(8))
    assert all(0 <= f.t - i / 2 <= 0.2 for i, f in enumerate(frames))
    assert sum(decoded) < 100 * 0.8  # of 100 frames
    every: list[int] = []
    assert len(list(sample_frames(path, fps=20, on_frame=every.append))) == 80 and sum(every) == 100


def test_keyframes_only_decodes_key_frames(three):
    every = list(sample_frames(three, fps=10))
    keys = list(sample_frames(three, fps=10, keyframes_only=True))
    assert len(every) == 60
    assert 2 <= len(keys) < 10 and all(f.keyframe for f in keys)
    assert [f.t for f in keys] == [f.t for f in every if f.keyframe]  # a key frame every 2 s: 0, 2, 4


@pytest.mark.skipif("libx264" not in av.codecs_available, reason="needs libx264 to encode with intra refresh")
def test_keyframes_only_falls_back_when_key_frames_are_rare(media):
    """x264's intra refresh makes one key frame, at the start: keyframes_only must not stop at it."""
    path = media / "refresh.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 160, 90, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "x264-params": "intra-refresh=1:keyint=10"}
        for i in range(40 * 5):
            frame = av.VideoFrame.from_ndarray(np.full((90, 160, 3), i % 250, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    frames = list(sample_frames(path, fps=0.5, keyframes_only=True))
    assert sum(f.keyframe for f in frames) == 1
    assert [f.t for f in frames] == [2.0 * i for i in range(20)]  # every sample, as without keyframes_only


def test_rotated_phone_video_comes_out_upright(media):
    """Stored landscape, red on the left, with a display matrix saying "turn 90 degrees clockwise": the picture
    comes out portrait with red on top, as a player shows it. make_video's `rotation` stores it the same way."""
    path = media / "phone.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.set_display_rotation(-90)
        picture = np.zeros((180, 320, 3), np.uint8)
        picture[:, :160], picture[:, 160:] = RED, BLUE
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    frame = next(sample_frames(path))
    assert frame.image.size == (180, 320)
    assert near(frame.image.getpixel((90, 20)), RED, 20) and near(frame.image.getpixel((90, 300)), BLUE, 20)
    assert probe_video(path).width == 320  # the probe reports the stored picture
    made = make_video(media / "phone2.mp4", [Scene(1, RED)], size=(320, 180), rotation=-90)
    assert next(sample_frames(made)).image.size == (180, 320)


def test_grab_frames_seeks_to_the_times_asked(three):
    frames = grab_frames(three, [4.5, 0.25, 2.55, 100.0, 1.0], picture_side=320)
    assert [round(f.t, 2) for f in frames] == [4.5, 0.3, 2.6, 5.9, 1.0]
    assert [near(colour_of(f), c) for f, c in zip(frames, [BLUE, RED, GREEN, BLUE, RED], strict=True)] == [True] * 5
    assert max(frames[0].image.size) == 320
    assert grab_frames(three, []) == []


# --- shots ------------------------------------------------------------------------------------------------------


def shots_of(path: Path, **kw):
    return list(detect_shots(sample_frames(path, fps=2), end=probe_video(path).duration, **kw))


def test_cuts_between_scenes_are_found_at_the_cut(three):
    shots = shots_of(three)
    assert [(s.start, s.end) for s in shots] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]  # within a sample of 2 and 4
    assert [s.frames for s in shots] == [4, 4, 4]
    assert [s.keyframe.t for s in shots] == [1.0, 3.0, 5.0]  # nearest the middle
    assert [near(colour_of(s.keyframe), c) for s, c in zip(shots, [RED, GREEN, BLUE], strict=True)] == [True] * 3


def test_flat_colours_of_equal_brightness_still_cut(media):
    a, b, c = (200, 60, 60), (40, 140, 40), (90, 90, 200)
    lum = [0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2] for x in (a, b, c)]
    assert max(lum) - min(lum) < 12  # the grey frames are nearly the same: only colour tells them apart
    path = make_video(media / "hues.mkv", [Scene(2, a), Scene(2, b), Scene(2, c)], size=(320, 180))
    assert [s.start for s in shots_of(path)] == scene_bounds([Scene(2, a)] * 3)[:-1]


def test_long_shot_is_split_every_max_gap(media):
    path = make_video(media / "long.mkv", [Scene(25, (200, 200, 200), "同一个镜头")], size=(320, 180))
    shots = shots_of(path, max_gap=10.0)
    assert [(s.start, s.end) for s in shots] == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]


def test_fades_and_motion_do_not_cut_at_every_sample(media):
    scenes = [Scene(4, (230, 230, 230), "白天", fade=3), Scene(4, (20, 20, 40), "夜晚", fade=3),
              Scene(3, (240, 200, 60), "早晨")]
    faded = make_video(media / "fade.mkv", scenes, size=(320, 180))
    assert len(shots_of(faded)) <= 3  # 22 samples, most of them mid-fade
    hard = make_video(media / "hard.mkv", [Scene(s.seconds, s.color, s.text) for s in scenes], size=(320, 180))
    assert [s.start for s in shots_of(hard)] == [0.0, 4.0, 8.0]  # the same pictures without fades: cut
    moving = make_video(media / "drift.mkv", [Scene(5, (240, 240, 200), "移动 moving", drift=40)], size=(320, 180))
    assert len(shots_of(moving)) == 1


def test_a_small_jump_in_still_footage_is_a_cut_but_not_in_moving_footage():
    """Two similar greys 0.13 apart: under the threshold, but a spike over still frames (difference ~0) is a cut;
    the same jump amid frames that change by 0.1 each sample (a pan) is not."""
    a, b = (100, 100, 100), (140, 130, 120)
    still = [_frame(i / 2, a) for i in range(6)] + [_frame(3 + i / 2, b) for i in range(6)]
    assert 0.12 < difference(still[5], still[6]) < 0.30
    assert [s.start for s in detect_shots(still)] == [0.0, 3.0]
    greys = [10, 36, 62, 88, 114, 140, 192, 218, 244]  # steps of 0.1, one of 0.2 (a still-footage cut's size)
    moving = [_frame(i / 2, (g, g, g)) for i, g in enumerate(greys)]
    steps = [difference(x, y) for x, y in itertools.pairwise(moving)]
    assert min(steps) > 0.09 and 0.12 < max(steps) < 0.30  # every sample moves: the bigger step is no spike
    assert len(list(detect_shots(moving))) == 1


def _frame(t: float, color: tuple[int, int, int]) -> SampledFrame:
    image = Image.new("RGB", (64, 36), color)
    return SampledFrame(t=t, small=np.asarray(image.convert("L")), image=image, keyframe=False)


def test_short_shots_merge_into_the_previous_one():
    """Hand-made frames at 10 per second: a 0.2 s flash inside a red shot joins it, the last shot ends one sample
    after its last frame when no `end` is given, and `color` defaults to the picture's."""
    frames = [_frame(i / 10, RED) for i in range(10)] + [_frame(1.0, (255, 255, 255)), _frame(1.1, (255, 255, 255))]
    frames += [_frame(1.2 + i / 10, BLUE) for i in range(10)]
    assert frames[0].color is not None and near(tuple(frames[0].color[4, 8]), RED, 1)
    assert difference(frames[0], frames[1]) == 0.0 and difference(frames[9], frames[10]) > 0.3
    shots = list(detect_shots(frames))
    assert [(round(s.start, 2), round(s.end, 2), s.frames) for s in shots] == [(0.0, 1.2, 12), (1.2, 2.2, 10)]
    assert shots[0].keyframe.t == pytest.approx(0.6)
    assert list(detect_shots([])) == []


# --- subtitles --------------------------------------------------------------------------------------------------


def test_subtitle_stream_prefers_chinese_and_cleans_text(three):
    assert [(s.language, s.type) for s in subtitle_streams(three)] == [("chi", "subtitle"), ("eng", "subtitle")]
    cues = read_subtitle_streams(three)
    assert [c.text for c in cues] == ["你好 世界", "第二句"]
    assert [t for c in cues for t in (c.start, c.end)] == pytest.approx([0.5, 1.5, 2.5, 3.25], abs=0.05)
    assert cues[0].as_dict() == {"start": 0.5, "end": 1.5, "text": "你好 世界", "source": "subtitle"}


@pytest.mark.parametrize(("codec", "suffix"), [("ass", ".mkv"), ("webvtt", ".mkv"), ("subrip", ".mp4")])
def test_subtitle_stream_codecs(media, codec, suffix):
    tracks = {"fre": [(0.2, 0.9, "Bonjour")], "eng": [(0.3, 1.1, r"{\i1}Hello{\i0}, <b>world</b>")]}
    path = make_video(media / f"subs-{codec}{suffix}", THREE[:1], subtitles=tracks, subtitle_codec=codec)
    assert subtitle_streams(path)[0].language == "eng"  # no Chinese: English before French
    cues = read_subtitle_streams(path)
    assert [(c.text, round(c.start, 2), round(c.end, 2)) for c in cues] == [("Hello, world", 0.3, 1.1)]


def test_video_without_subtitles_has_no_cues(media):
    path = make_video(media / "plain.mkv", THREE[:1], size=(320, 180))
    assert read_subtitle_streams(path) == [] and subtitle_streams(path) == []


SIDECAR = [(1.0, 2.5, "第一行\n第二行"), (3.0, 4.0, "<i>Italic</i> & more"), (65.5, 70.0, "一分钟后")]
EXPECTED = [("第一行 第二行", 1.0, 2.5), ("Italic & more", 3.0, 4.0), ("一分钟后", 65.5, 70.0)]


@pytest.mark.parametrize(
    ("writer", "name"),
    [(write_srt, "a.srt"), (write_vtt, "a.vtt"), (write_ass, "a.ass"), (write_srt, "srt-named.txt")],
)
def test_sidecar_subtitle_files(media, writer, name):
    cues = read_subtitle_file(writer(media / name, SIDECAR))
    assert [c.text for c in cues] == [e[0] for e in EXPECTED]
    assert [t for c in cues for t in (c.start, c.end)] == pytest.approx([t for e in EXPECTED for t in e[1:]], abs=0.01)
    assert {c.source for c in cues} == {"subtitle"}


def test_sidecar_in_gbk_and_utf16(media):
    lines = ["你好，世界", "这是一个用中文写的字幕文件"]
    for encoding in ("gbk", "utf-16"):
        path = write_srt(media / f"{encoding}.srt", [(1.0, 2.0, lines[0]), (3.0, 4.0, lines[1])], encoding=encoding)
        assert [c.text for c in read_subtitle_file(path)] == lines


def test_sidecar_that_is_not_subtitles(media, three):
    text = media / "readme.srt"
    text.write_text("This is a readme, not subtitles.\nSecond line.\n")
    with pytest.raises(VideoError, match=r"subtitle_url: no subtitle cues in the file"):
        read_subtitle_file(text)  # FFmpeg's sniffing refuses it; the .srt demuxer, forced, finds no cue
    text.rename(media / "readme.md")
    with pytest.raises(VideoError, match=r"subtitle_url: not a readable subtitle file \(Invalid data"):
        read_subtitle_file(media / "readme.md")
    with pytest.raises(VideoError, match=r"subtitle_url: not a text subtitle file \(binary data\)"):
        read_subtitle_file(three)
    with pytest.raises(VideoError, match=r"subtitle_url: 34 bytes, over the limit of 2 bytes for a subtitle file"):
        read_subtitle_file(write_srt(media / "tiny.srt", [(0, 1, "x")]), max_bytes=2)
    many = write_srt(media / "many.srt", [(i, i + 0.5, f"line {i}") for i in range(5)])
    with pytest.raises(VideoError, match="subtitle_url: more than 3 subtitle cues"):
        read_subtitle_file(many, max_cues=3)


def test_clean_text():
    assert clean_text(r"{\an8}{\i1}Hi{\i0}\Nthere\h!") == "Hi there !"
    assert clean_text('<font color="#ff0000">red</font> <c.yellow>v</c> <00:00:01.500>a &amp; b') == "red v a & b"
    assert clean_text(r"{\p1}m 0 0 l 100 0 100 100{\p0}sign") == "sign"
    assert clean_text("  a <  b  ") == "a < b"


def test_merge_repeats_joins_one_line_read_many_times():
    typing = [Cue(0.0, 0.5, "你", "ocr"), Cue(0.5, 1.0, "你好", "ocr"), Cue(1.0, 1.5, "你好世界", "ocr"),
              Cue(1.5, 2.0, "你好 世界", "ocr"), Cue(2.5, 3.0, "ＨＥＬＬＯ", "ocr"), Cue(3.0, 3.5, "hello", "ocr")]
    merged = merge_repeats(typing)
    assert [(c.start, c.end, c.text, c.source) for c in merged] == [
        (0.0, 2.0, "你好世界", "ocr"), (2.5, 3.5, "ＨＥＬＬＯ", "ocr")
    ]
    misread = [Cue(0, 1, "今天天气很好我们去公园"), Cue(1, 2, "今天天气很好我们去公圆"), Cue(2, 3, "明天见")]
    assert [c.text for c in merge_repeats(misread)] == ["今天天气很好我们去公园", "明天见"]
    assert len(merge_repeats(misread, similarity=1.0)) == 3
    apart = [Cue(0, 1, "同一句"), Cue(2.5, 3, "同一句")]  # 1.5 s apart: said twice
    assert len(merge_repeats(apart)) == 2 and len(merge_repeats(apart, max_gap=2.0)) == 1
    assert merge_repeats([]) == []


# --- download_to ------------------------------------------------------------------------------------------------


class _Server:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.hits: dict[str, int] = {}


def _handler(state: _Server):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state.hits[self.path] = hits = state.hits.get(self.path, 0) + 1
            body = state.body
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/video.mkv")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == "/missing":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/x-matroska")
            if self.path != "/no-length":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path == "/cut-once" and hits == 1:  # half the body, then the connection drops
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="module")
def server(three) -> Iterator[tuple[str, _Server]]:
    state = _Server(three.read_bytes())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()


def fetcher(**kw) -> Fetcher:
    return Fetcher(FetchConfig(allowed_networks=("127.0.0.1/32",), backoff=0.01, **kw))


def test_download_to_streams_into_a_file(server, media):
    base, state = server
    out = media / "downloaded.mkv"
    with fetcher(max_bytes=1000) as f, out.open("w+b") as sink:
        sink.write(b"stale bytes from before")
        result = f.download_to(f"{base}/redirect", sink, field="video_url", max_bytes=len(state.body))
    assert out.read_bytes() == state.body
    assert (result.status, result.data, result.format, result.redirects) == (200, b"", "", 1)
    assert result.final_url == f"{base}/video.mkv" and result.content_type == "video/x-matroska"
    assert probe_video(out).duration == pytest.approx(6.0, abs=0.2)
    with fetcher() as f, pytest.raises(FetchError, match="is not an image"):
        f.fetch(f"{base}/video.mkv")  # the image path still sniffs; download_to does not


def test_download_to_refuses_over_max_bytes(server, media):
    base, state = server
    with fetcher() as f, (media / "big.mkv").open("w+b") as sink:
        size = len(state.body)
        with pytest.raises(FetchError, match=rf"video_url: .* declares {size} bytes, over the limit of 1000"):
            f.download_to(f"{base}/video.mkv", sink, field="video_url", max_bytes=1000)
        with pytest.raises(FetchError, match="sent more than the limit of 1000 bytes"):
            f.download_to(f"{base}/no-length", sink, max_bytes=1000)
        with pytest.raises(FetchError, match="HTTP 404"):
            f.download_to(f"{base}/missing", sink)
    # the config's cap applies when none is given
    with fetcher(max_bytes=1000) as f, (media / "big.mkv").open("w+b") as sink, pytest.raises(FetchError):
        f.download_to(f"{base}/video.mkv", sink)


def test_download_to_retry_starts_the_file_over(server, media):
    base, state = server
    out = media / "retried.mkv"
    with fetcher(max_bytes=10 * len(state.body)) as f, out.open("w+b") as sink:
        result = f.download_to(f"{base}/cut-once", sink)
    assert result.attempts == 2 and state.hits["/cut-once"] == 2
    assert out.read_bytes() == state.body  # not the first half followed by the whole
