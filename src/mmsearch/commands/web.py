"""`mmsearch import-web FILE...`: fill the web image corpus from LAION/Wukong-style metadata files."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmsearch.commands.common import JsonFlag, emit, engine, err, errors, out

if TYPE_CHECKING:  # the web corpus (and the engine under it) loads when a command runs, not for `--help`
    from mmsearch.ingest.web.corpus import WebImportReport

SHOWN_FAILURES = 20


def print_web_report(report: WebImportReport, dataset_id: str) -> None:
    table = Table("images", "count", title=f"web corpus {dataset_id!r}")
    rows = [
        ("seen", report.seen), ("bad rows", report.bad_rows), ("downloaded", report.downloaded),
        ("skipped: small (icons, spacers, pixels)", report.skipped_small),
        ("skipped: not an image", report.skipped_not_image), ("skipped: data URI", report.skipped_data_uri),
        ("failed", report.failed), ("duplicates merged", report.duplicates_merged),
        ("already indexed", report.unchanged), ("new items", report.imported), ("items updated", report.updated),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    out.print(table)
    out.print(f"in {report.seconds:.1f}s, {report.rate:,.1f} images/s")
    if report.failures:
        failures = Table("row / url", "reason", title="failures and bad rows")
        for f in report.failures[:SHOWN_FAILURES]:
            failures.add_row(str(f.get("row", f.get("url", ""))), str(f["reason"]))
        out.print(failures)
        if len(report.failures) > SHOWN_FAILURES or report.failures_truncated:
            out.print("… more in --json (up to 1000)")


def import_web(
    files: Annotated[list[Path], typer.Argument(help=".parquet or .jsonl metadata (LAION/Wukong columns)",
                                                exists=True, dir_okay=False)],
    dataset: Annotated[str, typer.Option("--dataset", help="The web dataset (created when missing).")] = "web",
    min_side: Annotated[int, typer.Option("--min-side", min=1, max=6000,
                                          help="Skip pictures with a shorter side under this (px).")] = 100,
    workers: Annotated[int, typer.Option("--workers", min=1, max=128, help="Concurrent downloads.")] = 8,
    as_json: JsonFlag = False,
) -> None:
    """Download, check, deduplicate, read (OCR) and embed the images listed in metadata files.
    Exits non-zero when no listed image could be used (none new, updated, already indexed or merged)."""
    from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus
    from mmsearch.ingest.web.laion import count_rows, read_laion

    with errors(as_json):
        mm = engine()
        total = sum(count_rows(f) for f in files)
        columns = [TextColumn("[bold]importing images"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
        with WebCorpus(mm, dataset, CorpusConfig(min_side=min_side, workers=workers)) as corpus, \
                Progress(*columns, console=err, disable=as_json) as progress:
            task = progress.add_task("import", total=total, rate="")

            def advance(r: WebImportReport) -> None:
                progress.update(task, completed=r.seen + r.bad_rows, rate=f"{r.rate:,.1f} images/s")

            report = corpus.add(itertools.chain.from_iterable(read_laion(f) for f in files), on_progress=advance)
    if as_json:
        emit({"dataset": dataset, **report.as_dict()})
    else:
        print_web_report(report, dataset)
    if report.imported + report.updated + report.unchanged + report.duplicates_merged == 0:  # nothing usable
        raise typer.Exit(1)
