"""The `mmsearch` command line. With --json a command prints exactly one JSON value on stdout;
progress bars and messages go to stderr, so scripts can pipe the output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmsearch import __version__
from mmsearch.catalog.jobs import Job
from mmsearch.config import Settings, get_settings
from mmsearch.core import MMSearch
from mmsearch.errors import InvalidArgument, MMSearchError
from mmsearch.ingest import ImportReport, count_items
from mmsearch.ingest.jobs import run_file_import
from mmsearch.schema.fields import DatasetInfo
from mmsearch.search import SearchRequest, SearchResult

app = typer.Typer(no_args_is_help=True, add_completion=False, help="mmsearch: self-hosted multimodal search.")
dataset_app = typer.Typer(no_args_is_help=True, help="Create, list, show and drop datasets.")
app.add_typer(dataset_app, name="dataset")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
_state: dict[str, Any] = {}

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON value on stdout, nothing else.")]


@app.callback()
def _main(
    home: Annotated[
        Path | None, typer.Option("--home", envvar="MMSEARCH_HOME", help="Data directory.", show_default=False)
    ] = None,
) -> None:
    _state.clear()
    _state["settings"] = Settings(home=home) if home else get_settings()


def engine() -> MMSearch:
    if "engine" not in _state:
        _state["engine"] = MMSearch(_state.get("settings") or get_settings())
    return _state["engine"]


def emit(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


@contextmanager
def errors(as_json: bool) -> Iterator[None]:
    """Known errors become a one-line message (or a JSON error object) on stderr and exit code 1."""
    try:
        yield
    except MMSearchError as exc:
        if as_json:
            sys.stderr.write(json.dumps({"error": exc.as_dict()}, ensure_ascii=False) + "\n")
        else:
            err.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(1) from None


def dataset_dict(info: DatasetInfo, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    out_: dict[str, Any] = {
        "id": info.id,
        "type": info.type,
        "vector_dim": info.vector_dim,
        "schema": info.schema.model_dump(mode="json", exclude_defaults=True),
    }
    if stats is not None:
        out_["stats"] = stats
    return out_


# -- datasets -------------------------------------------------------------------------------------------
@dataset_app.command("create")
def dataset_create(
    dataset_id: Annotated[str, typer.Argument(metavar="ID", help="[A-Za-z0-9_-]{1,64}")],
    schema: Annotated[Path, typer.Option("--schema", help="Schema JSON file.", exists=True, dir_okay=False)],
    type_: Annotated[str, typer.Option("--type", help="image_text or video.")] = "image_text",
    dim: Annotated[int | None, typer.Option("--dim", help="Embedding dimension (default: the encoder's).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a dataset from a schema file."""
    with errors(as_json):
        try:
            raw = json.loads(schema.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            err.print(f"[red]error:[/] schema: {schema} is not valid JSON: {exc.msg} (line {exc.lineno})")
            raise typer.Exit(1) from None
        info = engine().create_dataset(dataset_id, raw, type=type_, vector_dim=dim)
    if as_json:
        emit(dataset_dict(info))
    else:
        out.print(f"created dataset [bold]{info.id}[/] ({info.type}, {len(info.schema.fields)} fields)")


@dataset_app.command("list")
def dataset_list(as_json: JsonFlag = False) -> None:
    """List datasets with their item counts."""
    with errors(as_json):
        mm = engine()
        rows = [(info, mm.store.count(info)) for info in mm.datasets()]
    if as_json:
        emit([{**dataset_dict(info), "items": n} for info, n in rows])
        return
    table = Table("id", "type", "items", "fields", "vector_dim")
    for info, n in rows:
        table.add_row(info.id, info.type, str(n), str(len(info.schema.fields)), str(info.vector_dim))
    out.print(table if rows else "no datasets yet: mmsearch dataset create ID --schema schema.json")


@dataset_app.command("show")
def dataset_show(dataset_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False) -> None:
    """Show a dataset's schema, size and indexes."""
    with errors(as_json):
        mm = engine()
        info = mm.dataset(dataset_id)
        stats = mm.stats(dataset_id)
    if as_json:
        emit(dataset_dict(info, stats))
        return
    out.print(f"[bold]{info.id}[/] ({info.type}) — {stats['rows']} items, {stats['vectors']} with vectors, "
              f"version {stats['version']}")
    table = Table("field", "type", "flags")
    for f in info.schema.fields:
        flags = [k for k in ("primary_key", "required", "searchable", "filterable", "sortable") if getattr(f, k)]
        flags += [f"sortable_paths={','.join(f.sortable_paths)}"] if f.sortable_paths else []
        table.add_row(f.name, f.type, " ".join(flags))
    out.print(table)
    out.print("indexes: " + (", ".join(f"{c} ({k})" for c, k in stats["indexes"].items()) or "none yet"))


@dataset_app.command("drop")
def dataset_drop(
    dataset_id: Annotated[str, typer.Argument(metavar="ID")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete a dataset and all its items."""
    with errors(as_json):
        mm = engine()
        mm.dataset(dataset_id)
        if not yes and not typer.confirm(f"Drop dataset {dataset_id!r} and all its items?", err=True):
            raise typer.Exit(1)
        mm.drop_dataset(dataset_id)
    if as_json:
        emit({"id": dataset_id, "dropped": True})
    else:
        out.print(f"dropped dataset [bold]{dataset_id}[/]")


# -- items ----------------------------------------------------------------------------------------------
def print_report(report: ImportReport) -> None:
    rate = f"{report.imported / report.seconds:,.0f} items/s" if report.seconds else ""
    out.print(f"imported {report.imported} ({report.inserted} new, {report.replaced} replaced), "
              f"rejected {report.rejected}, in {report.seconds:.1f}s {rate}")
    if report.images:
        i = report.images
        out.print(f"images: {i['loaded']} loaded, {i['failed']} failed, {i['embedded']} embedded, "
                  f"{i['reused']} reused by content hash, {i['ocr_chars']} characters read by OCR")
    if report.warnings:
        table = Table("index", "id", "field", "rule", "message", title="imported with warnings")
        for w in report.warnings[:20]:
            table.add_row(str(w.index), w.id or "", w.field or "", w.rule, w.message)
        out.print(table)
    if report.errors:
        table = Table("index", "id", "field", "rule", "message", title="rejected items")
        for e in report.errors[:20]:
            table.add_row(str(e.index), e.id or "", e.field or "", e.rule, e.message)
        out.print(table)
        if len(report.errors) > 20 or report.errors_truncated:
            out.print(f"… {report.rejected} items rejected in all; --json lists up to 1000 errors")


def import_with_progress(mm: MMSearch, dataset_id: str, file: Path, batch_size: int, quiet: bool) -> ImportReport:
    """The import runs as a job (listed by `mmsearch job list`, resumable by a server on the same home), with a
    Rich progress bar and the item rate on stderr."""
    mm.dataset(dataset_id)
    columns = [TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
    with Progress(*columns, console=err, disable=quiet) as progress:
        task = progress.add_task("import", total=count_items(file), rate="")

        def advance(job: Job) -> None:
            progress.update(task, completed=job.done, rate=f"{job.rate:,.0f} items/s" if job.rate else "")

        job, report = run_file_import(mm, dataset_id, file, batch_size=batch_size, on_progress=advance)
    if job.status == "failed" and report.total == 0:
        raise InvalidArgument(f"file: {job.message}", field="file")
    if not quiet:
        err.print(f"job {job.id}: {job.status} (mmsearch job show {job.id})")
    return report


@app.command("import")
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


@app.command("delete")
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


@app.command("get")
def get(
    dataset_id: Annotated[str, typer.Argument(metavar="ID")],
    ids: Annotated[str, typer.Option("--ids", help="Comma-separated primary keys.")],
) -> None:
    """Print items by primary key as a JSON array (missing ids are left out)."""
    with errors(False):
        emit(engine().get(dataset_id, [i.strip() for i in ids.split(",") if i.strip()]))


# -- search ---------------------------------------------------------------------------------------------
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


@app.command("search")
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
            picture = load_local_image(local) if local.is_file() else mm.load_image(image, field="--image").image
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
    table = Table("#", "_id", "score", "recall", *shown, title=f"{result.total_items} matches, page {page}")
    start = (page - 1) * size
    for n, h in enumerate(result.hits, start=start + 1):
        recall = " ".join(f"{c}={s:.2f}" for c, s in h.recall.items())
        values = [_display(h.fields, f) for f in shown]
        table.add_row(str(n), h.id, f"{h.score:.3f}", recall, *values)
    out.print(table)


def _display(fields: dict[str, Any], path: str) -> str:
    value: Any = fields
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def load_local_image(path: Path) -> Any:
    from mmsearch.media import decode_image

    return decode_image(path.read_bytes(), field="--image").image


@app.command("doctor")
def doctor(as_json: JsonFlag = False) -> None:
    """Check the setup: image model, OCR, data directory and datasets."""
    from mmsearch.encoders.ocr import ocr_available

    with errors(as_json):
        mm = engine()
        model = mm.encoder_status()
        ocr_ok, ocr_detail = ocr_available() if mm.settings.ocr else (False, "disabled (MMSEARCH_OCR=false)")
        report = {
            "version": __version__,
            "home": str(mm.settings.home.resolve()),
            "datasets": len(mm.datasets()),
            "model": model,
            "vlm_channel": "available" if model["available"] else "unavailable",
            "ocr": {"available": ocr_ok, "detail": ocr_detail},
            "image_roots": [str(p) for p in mm.settings.image_root_paths],
            "allow_private_networks": mm.settings.allow_private_networks,
        }
    if as_json:
        emit(report)
        return
    mark = {True: "[green]ok[/]", False: "[yellow]unavailable[/]"}
    out.print(f"mmsearch {__version__}, data in {report['home']} ({report['datasets']} datasets)")
    out.print(f"image model  {mark[model['available']]}  {model['model']}"
              + (f"  dim={model['dim']} providers={','.join(model['providers'])}" if model["available"] else ""))
    if not model["available"]:
        out.print(f"             {model['message']}")
        out.print("             the vlm channel is unavailable; the text channel (fields + OCR) still answers")
    out.print(f"OCR          {mark[ocr_ok]}  {ocr_detail}")
    out.print(f"image roots  {', '.join(report['image_roots']) or 'none (local image paths are refused)'}")


# -- demo -----------------------------------------------------------------------------------------------
# Command groups live in mmsearch.commands; imported last because they use the helpers above.
from mmsearch.commands.apps import app_app, job_app, key_app  # noqa: E402
from mmsearch.commands.demo import demo, quickstart  # noqa: E402
from mmsearch.commands.serve import serve  # noqa: E402

app.add_typer(app_app, name="app")
app.add_typer(key_app, name="key")
app.add_typer(job_app, name="job")
app.command("serve")(serve)
app.command("quickstart")(quickstart)
app.command("demo")(demo)

from mmsearch.commands.accounts import account_app  # noqa: E402

app.add_typer(account_app, name="account")

from mmsearch.commands.web import import_web  # noqa: E402

app.command("import-web")(import_web)

from mmsearch.commands.crawl import crawl, import_warc  # noqa: E402

app.command("crawl")(crawl)
app.command("import-warc")(import_warc)
