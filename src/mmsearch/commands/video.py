"""`mmsearch video inspect FILE`: what a video dataset would index of one video, before importing it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mmsearch.commands.common import JsonFlag, emit, engine, err, errors, out

if TYPE_CHECKING:
    from mmsearch.ingest.videos import Analysis

video_app = typer.Typer(no_args_is_help=True, help="Look at videos the way a video dataset indexes them.")


@video_app.command("inspect")
def inspect(
    file: Annotated[str, typer.Argument(help="A local video file, or an http(s) URL.")],
    subtitles: Annotated[
        str | None, typer.Option("--subtitles", help="A sidecar subtitle file (.srt, .vtt, .ass) to add.")
    ] = None,
    ocr: Annotated[bool, typer.Option("--ocr/--no-ocr", help="Read on-screen text (keyframes, lower band).")] = True,
    lines: Annotated[int, typer.Option("--lines", min=0, help="Transcript lines shown (all with --json).")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Duration, streams, segments, transcript and generated title and summary of one video."""
    from mmsearch.ingest.summarize import VideoText
    from mmsearch.ingest.videos import VideoIndexer, clock
    from mmsearch.media.subtitles import read_subtitle_file

    with errors(as_json):
        mm = engine()
        reader = mm.ocr if ocr else None
        indexer = VideoIndexer(None, mm.open_media, ocr=reader, summarizer=mm.summarizer, config=mm.video_config(),
                               ocr_cache=mm.ocr_cache if reader is not None else None)
        with contextlib.ExitStack() as stack:
            path = _local(file, stack, mm)
            found = _analyse(indexer, path, quiet=as_json)
            if subtitles:
                found.subtitles += read_subtitle_file(_local(subtitles, stack, mm, "--subtitles"),
                                                      field="--subtitles")
        generated = mm.summarizer.generate(VideoText(transcript=[c.text for c in found.subtitles],
                                                     screen=[c.text for c in found.screen], own=[]))
    report = _report(found, generated.title, generated.summary, generated.method, indexer.stats.as_dict())
    if as_json:
        emit(report)
        return
    p = found.probe
    assert p is not None
    out.print(f"[bold]{file}[/]: {clock(p.duration)} ({p.duration:.1f} s), {p.width}x{p.height} {p.codec}, "
              f"{p.fps:.2f} fps, {p.bytes:,} bytes, {p.format}")
    streams = Table("#", "type", "codec", "language", title="streams")
    for s in p.streams:
        streams.add_row(str(s.index), s.type, s.codec, s.language or "")
    out.print(streams)
    segments = Table("#", "start", "end", "on-screen text", title=f"{len(found.spans)} segments")
    for n, ((start, end), text) in enumerate(zip(found.spans, found.keyframe_text, strict=False), start=1):
        segments.add_row(str(n), clock(start), clock(end), text[:80])
    out.print(segments)
    transcript = found.transcript
    shown = Table("start", "end", "source", "text", title=f"transcript: {len(transcript)} lines")
    for cue in transcript[:lines]:
        shown.add_row(clock(cue.start), clock(cue.end), cue.source, cue.text[:100])
    out.print(shown)
    out.print(f"[bold]_video_generated_title[/] ({generated.method}): {generated.title}")
    out.print(f"[bold]_video_generated_summary[/]: {generated.summary}")
    if found.problem:
        err.print(f"[yellow]warning:[/] {found.problem}")
    if generated.warning:
        err.print(f"[yellow]warning:[/] {generated.warning}")
    s = indexer.stats
    err.print(f"[dim]{s.frames} frames decoded in {s.wall:.1f} s ({s.seconds / s.wall if s.wall else 0:.1f}x real "
              f"time), {s.ocr_reads} pictures read by OCR[/]")


def _local(ref: str, stack: contextlib.ExitStack, mm: Any, field: str = "FILE") -> Path:
    """A file the operator names on the command line is allowed wherever it is; a URL goes through the fetcher."""
    local = Path(ref).expanduser()
    if local.is_file():
        return local
    return stack.enter_context(mm.open_media(ref, field))


def _analyse(indexer: Any, path: Path, quiet: bool) -> Analysis:
    """Analyse with a Rich bar over the video's duration."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mmsearch.media.video import probe_video

    duration = probe_video(path, indexer.config.limits, field="FILE").duration
    with Progress(TextColumn("[bold]reading"), BarColumn(), TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                  console=err, disable=quiet) as bar:
        task = bar.add_task("video", total=duration or None, note="")
        started = time.perf_counter()

        def step(p: Any) -> None:
            bar.update(task, completed=p.seconds, note=f"{p.frames} frames, {p.segments} segments")

        indexer.on_progress = step
        found = indexer.analyse(path, "FILE")
        indexer.stats.wall += time.perf_counter() - started
        bar.update(task, completed=duration)
    return found


def _report(found: Analysis, title: str, summary: str, method: str, stats: dict[str, Any]) -> dict[str, Any]:
    p = found.probe
    return {
        "probe": p.as_dict() if p is not None else None,
        "segments": [{"start": round(a, 2), "end": round(b, 2), "ocr": t}
                     for (a, b), t in zip(found.spans, found.keyframe_text, strict=False)],
        "transcript": [c.as_dict() for c in found.transcript],
        "_video_generated_title": title,
        "_video_generated_summary": summary,
        "generated_by": method,
        "problem": found.problem,
        "stats": stats,
    }
