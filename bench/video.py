"""Video benchmark: decode, shot detection, keyframe embedding, OCR and the whole video import, in video seconds
processed per wall second on this machine (the issue's goal: 20x real time on 2 cores with OCR on sampled
frames and the image model on keyframes).

A synthetic episode is made once with PyAV (libx264, 1280x720, 25 fps): scenes of 3-9 s (a colour gradient
and a moving block, so frames really differ and the decoder works as on real footage), a burned-in subtitle
line in the lower band that changes every 3 s, and a text subtitle stream. Stages, each timed alone:

1. *floor*: PyAV decoding every frame, nothing else (what FFmpeg costs; the ratio says what sampling adds);
2. *decode*: `sample_frames` at the dataset's fps (2), scaled pictures and thumbnails;
3. *decode, keyframes only*: `sample_frames(keyframes_only=True)`;
4. *shots*: decode + `detect_shots`;
5. *embed*: the keyframes through the tiny CLIP-shaped model (`--model` for a real one);
6. *OCR*: the keyframes and the changed lower bands the indexer reads, through `OcrEngine.read_many`
   (RapidOCR in one process per core);
7. *analyse*: `VideoIndexer.analyse`, everything above together (decoding overlaps embedding and OCR);
8. *import*: `MMSearch.import_items` of the episode into a video dataset (LanceDB write included), and again.

    python bench/video.py --seconds 300

Figures are printed and written to docs/benchmarks.md between `<!-- bench:video ... -->` markers.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import datetime as dt
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.table import Table

from docs_section import DOC, record_section
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.clip import load_clip
from mmsearch.encoders.ocr import OcrEngine
from mmsearch.ingest.videos import VideoConfig, VideoIndexer
from mmsearch.media.shots import detect_shots
from mmsearch.media.video import probe_video, sample_frames

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import tiny_clip

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
LINES = ["今天我们去海边看海豚", "The dolphins jump out of the water", "晚上的城市灯火通明",
         "A train crosses the bridge", "他们在山顶看日出", "The market opens at six", "雨后的森林很安静",
         "Children play in the park"]
console = Console()


def make_episode(path: Path, seconds: int, fps: int = 25, size: tuple[int, int] = (1280, 720), seed: int = 0) -> int:
    """The synthetic episode; returns its number of scenes."""
    rng = np.random.default_rng(seed)
    w, h = size
    font = ImageFont.truetype(FONT, 40)
    srt = path.with_suffix(".srt")
    cues = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "26"}
        bands: dict[int, np.ndarray] = {}
        scene_end, scene, scenes = 0.0, None, 0
        ys, xs = np.mgrid[0:h, 0:w]
        for n in range(seconds * fps):
            t = n / fps
            if t >= scene_end:
                a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
                mix = (xs / w)[..., None]
                scene = (a * (1 - mix) + b * mix + 10 * np.sin(ys / 37.0)[..., None]).clip(0, 255).astype(np.uint8)
                scene_end, scenes = t + float(rng.uniform(3, 9)), scenes + 1
            frame = scene.copy()
            x = int((t * 120) % (w - 200))
            frame[200:400, x : x + 200] = (255 - scene[300, x]).astype(np.uint8)
            line = int(t // 3)
            if line not in bands:
                band = Image.new("RGB", (w, 80), (0, 0, 0))
                ImageDraw.Draw(band).text((40, 15), LINES[line % len(LINES)], font=font, fill=(255, 255, 255))
                bands[line] = np.asarray(band)
                cues.append((line * 3.0, line * 3.0 + 3.0, LINES[line % len(LINES)]))
            frame[h - 100 : h - 20] = bands[line]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with srt.open("w", encoding="utf-8") as fh:
        for i, (a, b, text) in enumerate(cues, 1):
            fh.write(f"{i}\n{_srt_time(a)} --> {_srt_time(b)}\n{text}\n\n")
    return scenes


def _srt_time(s: float) -> str:
    ms = round(s * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=300, help="length of the synthetic episode")
    parser.add_argument("--model", default=None, help="a real CLIP model directory (default: the tiny test model)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="mmsearch-bench-video-") as tmp:
        root = Path(tmp)
        video = root / "episode.mp4"
        made, scenes = timed(lambda: make_episode(video, args.seconds))
        probe = probe_video(video)
        console.print(f"episode: {probe.duration:.1f} s, {probe.width}x{probe.height} {probe.codec}, {scenes} scenes, "
                      f"{video.stat().st_size / 1e6:.1f} MB, made in {made:.1f} s")
        length = probe.duration
        rows: list[tuple[str, float, str]] = []

        def row(stage: str, wall: float, note: str = "") -> None:
            rows.append((stage, wall, note))
            console.print(f"{stage}: {wall:.2f} s, {length / wall:.1f}x real time {note}")

        def bare_decode() -> int:
            with av.open(str(video)) as c:
                s = c.streams.video[0]
                s.thread_type = "AUTO"
                return sum(1 for _ in c.decode(s))

        wall, frames = timed(bare_decode)
        floor = wall
        row("floor: PyAV decode of every frame", wall, f"{frames} frames")
        wall, sampled = timed(lambda: list(sample_frames(video, fps=2.0)))
        row("decode: sample_frames, 2 fps, 960 px + thumbnails", wall, f"{len(sampled)} sampled")
        wall, keys = timed(lambda: sum(1 for _ in sample_frames(video, keyframes_only=True)))
        row("decode: key frames only", wall, f"{keys} key frames")
        wall, shots = timed(lambda: list(detect_shots(sample_frames(video, fps=2.0), end=length)))
        row("decode + shot detection", wall, f"{len(shots)} segments for {scenes} scenes (max gap 10 s)")
        del sampled
        model = args.model or str(tiny_clip.build_immich(root / "model", ))
        encoder = load_clip(model)
        pictures = [s.keyframe.image for s in shots]
        encoder.encode_image(pictures[:2])  # warm-up
        wall, _ = timed(lambda: encoder.encode_image(pictures))
        row(f"embed keyframes ({'tiny CLIP' if not args.model else Path(args.model).name})", wall,
            f"{len(pictures)} keyframes, {len(pictures) / wall:.1f} /s")
        ocr = OcrEngine(workers=0)  # as the engine builds it (MMSEARCH_OCR_WORKERS=0: one process per core)
        ocr.read(pictures[0])  # model load
        ocr.read_many(pictures[:8] * 2)  # the worker processes start (~2 s) and load their models: an import's
        # first chunk pays that once, and they stay up between videos
        indexer = VideoIndexer(None, lambda ref, f: None, encoder=encoder, ocr=ocr,  # type: ignore[arg-type]
                               config=VideoConfig())
        wall, found = timed(lambda: indexer.analyse(video, "video"))
        reads = indexer.stats.ocr_reads
        lines = len({c.text.replace(" ", "") for c in found.screen} & {t.replace(" ", "") for t in LINES})
        row("analyse: VideoIndexer.analyse (all of the above + OCR)", wall,
            f"{len(found.spans)} segments, {reads} pictures read by OCR, {len(found.screen)} on-screen lines "
            f"({lines} of the {len(LINES)} subtitle texts read exactly)")
        ocr_pictures = [s.keyframe.image for s in shots]
        wall, _ = timed(lambda: ocr.read_many(ocr_pictures, upright=True))
        row("OCR of the keyframes alone (read_many, whole 960 px frames)", wall, f"{len(ocr_pictures)} pictures, "
            f"{len(ocr_pictures) / wall:.2f} /s")
        keys_only = VideoIndexer(None, lambda ref, f: None, encoder=encoder, ocr=ocr,  # type: ignore[arg-type]
                                 config=VideoConfig(band_every=0))
        wall, found = timed(lambda: keys_only.analyse(video, "video"))
        row("analyse, OCR on keyframes only (MMSEARCH_VIDEO_BAND_EVERY_S=0)", wall,
            f"{keys_only.stats.ocr_reads} pictures read by OCR, {len(found.screen)} on-screen lines")
        no_ocr = VideoIndexer(None, lambda ref, f: None, encoder=encoder, ocr=None, config=VideoConfig())
        wall, _ = timed(lambda: no_ocr.analyse(video, "video"))
        row("analyse without OCR", wall, "")
        # the import: the episode into a video dataset through the engine (LanceDB write included), then again
        # (a re-import: its pictures' OCR text comes from the cache)
        mm = MMSearch(Settings(home=root / "home", media_roots=str(root)), encoder=encoder)
        mm._ocr = ocr
        mm.create_dataset("episodes", {"fields": [
            {"name": "id", "type": "string", "primary_key": True},
            {"name": "title", "type": "string", "searchable": True},
            {"name": "video_url", "type": "video"}]}, type="video")
        items = [{"id": "e1", "title": "episode 1", "video_url": str(video)}]
        wall, report = timed(lambda: mm.import_items("episodes", items))
        import_wall = wall
        v = report.videos
        rows.append(("import: MMSearch.import_items of the episode", wall,
                     f"{v['segments']} segments, {v['ocr_reads']} OCR reads, {v['cues']} transcript lines"))
        wall, report = timed(lambda: mm.import_items("episodes", items))
        rows.append(("import again (OCR text from the cache)", wall, f"{report.videos['ocr_reads']} OCR reads"))
        console.print(f"import: {import_wall:.1f} s for {length:.0f} s of video")
        ocr.close()
    per_hour = 3600 / (length / rows[5][1]) / 60
    table = Table("stage", "wall s", "x real time", "note", title=f"video: {length:.0f} s episode, {cores} cores")
    for stage, wall, note in rows:
        secs = length
        table.add_row(stage, f"{wall:.2f}", f"{secs / wall:.1f}", note)
    console.print(table)
    console.print(f"analyse: {per_hour:.1f} min per video hour; floor ratio {rows[1][1] / floor:.2f}")
    if args.no_record:
        return
    lines = [f"<!-- bench:video N={args.seconds} -->",
             f"Run {dt.date.today()} on {platform.machine()}, {cores} cores, Python {platform.python_version()}, "
             f"PyAV {av.__version__} (FFmpeg {getattr(av, 'ffmpeg_version_info', '?')}): "
             f"`python bench/video.py --seconds {args.seconds}`. A synthetic {length:.0f} s "
             f"episode, {probe.width}x{probe.height} H.264 at {probe.fps:.0f} fps, {scenes} scenes of 3-9 s, a "
             "burned-in subtitle changing every 3 s. Model: "
             + ("tiny CLIP-shaped ONNX (32x32 input: the pipeline's cost, not a CLIP network's)" if not args.model
                else args.model) + "; OCR: RapidOCR, one process per core.", "",
             "| stage | wall s | x real time | note |", "|---|---|---|---|"]
    for stage, wall, note in rows:
        secs = length
        lines.append(f"| {stage} | {wall:.2f} | {secs / wall:.1f} | {note} |")
    lines += ["", f"- analyse: {per_hour:.1f} min of wall time per hour of video; import "
              f"{import_wall / length * 60:.1f} min per video hour.",
              f"- sampling costs {rows[1][1] / floor:.2f}x the bare decode of every frame (the floor).",
              "<!-- /bench:video -->"]
    record_section("video", args.seconds, "\n".join(lines), DOC)


if __name__ == "__main__":
    main()
