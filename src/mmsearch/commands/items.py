"""`mmsearch import|delete|get|search`: items in and out of a dataset, and searching it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mmsearch.commands.common import JsonFlag, display, emit, engine, err, errors, out, print_report
from mmsearch.errors import InvalidArgument, MMSearchError

if TYPE_CHECKING:  # the engine's modules load inside the commands, not for `--help`
    from mmsearch.catalog.jobs import Job
    from mmsearch.core import MMSearch
    from mmsearch.ingest import ImportReport
    from mmsearch.ingest.videos import VideoProgress
    from mmsearch.search import SearchResult


def import_with_progress(mm: MMSearch, dataset_id: str, file: Path, batch_size: int, quiet: bool) -> ImportReport:
    """The import runs as a job (listed by `mmsearch job list`, resumable by a server on the same home), with a
    Rich progress bar and the item rate on stderr (plain lines every few seconds when stderr is no terminal)."""
    from mmsearch.commands.progress import ImportProgress
    from mmsearch.ingest import count_items
    from mmsearch.ingest.jobs import run_file_import
    from mmsearch.ingest.videos import video_message

    mm.dataset(dataset_id)
    with ImportProgress("importing", count_items(file), err, disable=quiet) as progress:

        def advance(job: Job) -> None:
            progress.update(job.done)
            if job.retry_at is not None and not quiet:  # the store failed: the job waits, then is retried
                err.print(f"[yellow]job {job.id}:[/] {job.message}")

        def video(p: VideoProgress) -> None:
            progress.note(video_message(p))

        job, report = run_file_import(mm, dataset_id, file, batch_size=batch_size, on_progress=advance,
                                      on_video=video)
    if job.status == "failed" and report.total == 0 and job.message.startswith("file:"):
        raise InvalidArgument(job.message, field="file")  # the file cannot be read as items at all
    if job.status != "succeeded":  # never silently partial: the job says how far it got and why it stopped
        raise MMSearchError(f"job_id: job {job.id} {job.status} with {job.done} of {job.total} items processed: "
                            f"{job.message} (mmsearch job show {job.id})", field="job_id")
    if not quiet:
        err.print(f"job {job.id}: {job.status} (mmsearch job show {job.id})")
    return report


def import_(
    dataset_id: Annotated[str, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(help=".jsonl, .json, .csv or .parquet", exists=True, dir_okay=False)],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000)] = 1_000,
    as_json: JsonFlag = False,
) -> None:
    """Import items from a file (upsert by primary key). Exits non-zero when nothing was imported."""
    with errors(as_json):
        report = import_with_progress(engine(), dataset_id, file, batch_size, quiet=as_json)
    if as_json:
        emit(report.as_dict())
    else:
        print_report(report)
    if report.imported == 0:
        raise typer.Exit(1)


def export(
    dataset_id: Annotated[str, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(help=".jsonl or .parquet (written whole, through a temporary file)",
                                         dir_okay=False)],
    vectors: Annotated[bool, typer.Option("--vectors", help="Add each item's stored vector as `_vector`.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write a dataset's items as they were imported, so that importing the file elsewhere gives the same
    results (with --vectors, the same vectors without the image model)."""
    from mmsearch.commands.progress import ImportProgress

    with errors(as_json):
        mm = engine()
        total = mm.store.count(mm.dataset(dataset_id))
        with ImportProgress(f"exporting {dataset_id}", total, err, disable=as_json) as bar:
            written = mm.export(dataset_id, file, vectors=vectors, on_progress=bar.update)
    if as_json:
        emit({"dataset": dataset_id, "file": str(file), "items": written, "vectors": vectors})
    else:
        out.print(f"exported {written} items of {dataset_id} to {file}")


def delete(
    dataset_id: Annotated[str, typer.Argument(metavar="ID")],
    ids: Annotated[str, typer.Option("--ids", help="Comma-separated primary keys.")],
    as_json: JsonFlag = False,
) -> None:
    """Delete items by primary key."""
    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    with errors(as_json):
        deleted = engine().delete(dataset_id, wanted)
    if as_json:
        emit({"requested": len(wanted), "deleted": deleted})
    else:
        out.print(f"deleted {deleted} of {len(wanted)} ids")


def get(
    dataset_id: Annotated[str, typer.Argument(metavar="ID")],
    ids: Annotated[str, typer.Option("--ids", help="Comma-separated primary keys.")],
) -> None:
    """Print items by primary key as a JSON array (missing ids are left out)."""
    with errors(False):
        emit(engine().get(dataset_id, [i.strip() for i in ids.split(",") if i.strip()]))


def hit_dicts(result: SearchResult) -> list[dict[str, Any]]:
    """Hits in the AI Search response shape."""
    hits = []
    for h in result.hits:
        rerank: dict[str, Any] = {"is_reranked": h.is_reranked}
        if h.rerank_score is not None:
            rerank["rerank_score"] = h.rerank_score
        hits.append({
            "_id": h.id,
            "display_fields": h.fields,
            "score": h.score,
            "recall_info": [{"recall_reason": c, "recall_score": s} for c, s in h.recall.items()],
            "rerank_info": rerank,
        })
    return hits


def search_(
    dataset_id: Annotated[str, typer.Argument(metavar="ID")],
    text: Annotated[str, typer.Argument(help="Query text (may be empty with --image).")],
    filter_: Annotated[
        str | None, typer.Option("--filter", help="Filter JSON (must, must_not, range, and, or).")
    ] = None,
    sort_by: Annotated[str | None, typer.Option("--sort-by")] = None,
    sort_order: Annotated[str, typer.Option("--sort-order", help="asc or desc.")] = "desc",
    page: Annotated[int, typer.Option("--page", min=1)] = 1,
    size: Annotated[int, typer.Option("--size", min=1, max=100)] = 10,
    output_fields: Annotated[str | None, typer.Option("--fields", help="Comma-separated display fields.")] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Query image: a local file, an http(s) URL or a data URI.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Search a dataset by text and/or image: a table, or the hits as JSON with --json."""
    from mmsearch.search import SearchRequest

    with errors(as_json):
        try:
            parsed_filter = json.loads(filter_) if filter_ else None
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"filter: not valid JSON: {exc.msg}", field="filter") from None
        mm = engine()
        picture = None
        if image:
            # a file the operator names on the command line is allowed whatever the image roots
            local = Path(image)
            if local.is_file():
                picture = load_local_image(local, mm.settings.max_image_pixels)
            else:
                picture = mm.load_image(image, field="--image").image
        request = SearchRequest(
            text=text or None, image=picture, filter=parsed_filter, sort_by=sort_by, sort_order=sort_order,  # type: ignore[arg-type]
            page_number=page, page_size=size,
            output_fields=[f.strip() for f in output_fields.split(",")] if output_fields else None,
        )
        result = mm.search(dataset_id, request)
        info = mm.dataset(dataset_id)
    if as_json:
        emit({"total_items": result.total_items, "search_results": hit_dicts(result)})
        return
    if "vlm" in result.unavailable:
        err.print("[dim]vlm channel unavailable (no image model configured): text channel only[/]")
    shown = [f.name for f in info.schema.searchable][:2] or [info.schema.primary_key.name]
    if sort_by and sort_by not in shown:
        shown.append(sort_by)
    video = info.type == "video"
    if video and len(shown) < 2:
        shown.append("_video_generated_title")
    moments = ("where",) if video else ()
    table = Table("#", "_id", "score", "recall", *shown, *moments, title=f"{result.total_items} matches, page {page}")
    start = (page - 1) * size
    for n, h in enumerate(result.hits, start=start + 1):
        recall = " ".join(f"{c}={s:.2f}" for c, s in h.recall.items())
        values = [display(h.fields, f) for f in shown]
        where = [moments_text(h.fields.get("_video_moments"))] if video else []
        table.add_row(str(n), h.id, f"{h.score:.3f}", recall, *values, *where)
    out.print(table)


def moments_text(found: Any) -> str:
    """`_video_moments` as a player shows positions: "00:12-00:17 subtitle", one per line."""
    from mmsearch.ingest.videos import clock

    if not isinstance(found, list):
        return ""
    return "\n".join(f"{clock(m.get('start') or 0)}-{clock(m.get('end') or 0)} {m.get('reason', '')}"
                     for m in found if isinstance(m, dict))


def load_local_image(path: Path, max_pixels: int) -> Any:
    from mmsearch.media import decode_image

    return decode_image(path.read_bytes(), field="--image", max_pixels=max_pixels).image
