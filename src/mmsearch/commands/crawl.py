"""`mmsearch crawl` (a polite, resumable crawl into the web corpus) and `mmsearch import-warc` (WARC archives).

Both hand their images to the one corpus import path (`WebCorpus`): downloads, size filters, dedup, OCR,
embeddings. Crawling or fetching loopback/private addresses (a local test site) needs
`MMSEARCH_ALLOW_PRIVATE_NETWORKS=true`; the SSRF guard refuses them otherwise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmsearch.commands.common import JsonFlag, emit, engine, err, errors, out
from mmsearch.commands.web import print_web_report
from mmsearch.errors import InvalidArgument

if TYPE_CHECKING:  # the crawler and the web corpus load when a command runs, not for `--help`
    from mmsearch.ingest.web.corpus import WebImportReport
    from mmsearch.ingest.web.crawler import CrawlProgress, CrawlReport, CrawlState
    from mmsearch.ingest.web.types import WebImage
    from mmsearch.ingest.web.warc import WarcReport

SHOWN_ERRORS = 20


def read_seeds(values: list[str]) -> list[str]:
    """Seed URLs from URLs and files of URLs (one a line; blank lines and # comments ignored)."""
    urls: list[str] = []
    for value in values:
        v = value.strip()
        if v.lower().startswith(("http://", "https://")):
            urls.append(v)
            continue
        path = Path(v)
        if not path.is_file():
            raise InvalidArgument(f"seeds: {value!r} is neither an http(s) URL nor a readable file", field="seeds")
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                urls.append(line)
    return urls


def merge_reports(total: WebImportReport, part: WebImportReport) -> None:
    """Add one batch's corpus report to the crawl's running total."""
    from mmsearch.ingest.web.corpus import WebImportReport

    for f in dataclasses.fields(WebImportReport):
        if f.name == "failures":
            for entry in part.failures:
                total.note(entry)
        elif f.name == "failures_truncated":
            total.failures_truncated = total.failures_truncated or part.failures_truncated
        else:
            setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))


def print_crawl_report(report: CrawlReport, state: CrawlState) -> None:
    table = Table("pages", "count", title=f"crawl {report.name!r} ({report.stopped_by})")
    for label, value in (
        ("parsed (HTML)", report.pages_done), ("redirects followed", report.redirects),
        ("failed (4xx/5xx, timeouts, refused)", report.pages_failed), ("skipped (not HTML)", report.pages_skipped),
        ("disallowed by robots.txt", report.blocked), ("still queued", report.pages_queued),
        ("images found on pages", report.images_found), ("images imported or updated", report.images_imported),
    ):
        table.add_row(label, str(value))
    out.print(table)
    out.print(f"this run: {report.fetched_this_run} requests in {report.elapsed:.1f}s ({report.rate:.2f} pages/s); "
              f"state in {state.path.parent}")
    if report.errors:
        errs = Table("url", "error", title="latest failures")
        for e in report.errors[-SHOWN_ERRORS:]:
            errs.add_row(e["url"], e["error"])
        out.print(errs)
    if report.interrupted or report.pages_queued:
        out.print(f"resume with: mmsearch crawl --name {report.name} (add --max-pages to go further)")


def crawl(
    more: Annotated[list[str] | None, typer.Argument(metavar="[URL|FILE]...", help="More seeds.",
                                                     show_default=False)] = None,
    seeds: Annotated[list[str] | None, typer.Option(
        "--seeds", help="A seed URL, or a file with one URL a line (repeatable; more may follow as arguments).",
        show_default=False)] = None,
    name: Annotated[str, typer.Option("--name", help="The crawl's name: its state is kept in "
                                      "HOME/crawls/NAME, and running it again resumes it.")] = "default",
    scope: Annotated[str, typer.Option("--scope", help="same-site (a seed's host and subdomains, www. ignored), "
                                       "same-host or any.")] = "same-site",
    max_pages: Annotated[int, typer.Option("--max-pages", min=1, help="Page requests over all runs of the crawl.")
                         ] = 1000,
    max_depth: Annotated[int, typer.Option("--max-depth", min=0, help="Links followed from a seed.")] = 3,
    delay: Annotated[float, typer.Option("--delay", min=0.0, help="Seconds between requests to one host "
                                         "(robots.txt Crawl-delay wins when larger).")] = 1.0,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256, help="Pages in flight in all.")] = 8,
    per_host: Annotated[int, typer.Option("--per-host", min=1, max=32, help="Pages in flight per host.")] = 1,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Read timeout of a request (s).")] = 15.0,
    dataset: Annotated[str, typer.Option("--dataset", help="The web dataset (created when missing).")] = "web",
    min_side: Annotated[int, typer.Option("--min-side", min=1, max=6000,
                                          help="Skip pictures with a shorter side under this (px).")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Crawl web pages politely (robots.txt, per-host delay) and import their images into the web corpus.
    Stop it any time (Ctrl-C); the same --name continues where it stopped."""
    from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus, WebImportReport
    from mmsearch.ingest.web.crawler import SCOPES, CrawlConfig, Crawler, CrawlState

    with errors(as_json):
        if scope not in SCOPES:
            raise InvalidArgument(f"scope: must be one of {', '.join(SCOPES)}", field="scope")
        mm = engine()
        urls = read_seeds([*(seeds or []), *(more or [])])
        state = CrawlState.open(mm.settings.home, name)
        state.add_seeds(urls)
        if not state.seeds():
            raise InvalidArgument(f"seeds: crawl {name!r} has no seeds yet; give --seeds URL|FILE", field="seeds")
        config = CrawlConfig(scope=scope, max_pages=max_pages, max_depth=max_depth,  # type: ignore[arg-type]
                             delay=delay, concurrency=concurrency, per_host=per_host, timeout=timeout,
                             allow_private=mm.settings.allow_private_networks)
        total = WebImportReport()
        columns = [TextColumn("[bold]crawling"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
        # image downloads of a crawl keep its per-host concurrency and user agent (they are not delayed)
        fetch = dataclasses.replace(mm.fetcher.config, per_host=per_host, user_agent=config.user_agent)
        with WebCorpus(mm, dataset, CorpusConfig(min_side=min_side, fetch=fetch)) as corpus, \
                Progress(*columns, console=err, disable=as_json) as progress:
            corpus.ensure_dataset()
            task = progress.add_task("crawl", total=max_pages, info="")

            def sink(images: list[WebImage]) -> int:
                part = corpus.add(images)
                merge_reports(total, part)
                return part.imported + part.updated

            def advance(p: CrawlProgress) -> None:
                progress.update(task, completed=min(p.fetched, max_pages), info=(
                    f"{p.pages_queued} queued, {p.pages_failed} failed, {p.images_found} images found, "
                    f"{p.images_imported} imported, {p.rate:.1f} pages/s"))

            crawler = Crawler(state, sink, config, on_progress=advance)
            try:
                report = crawler.run()
            finally:
                crawler.close()
        state.close()
    if as_json:
        emit({"dataset": dataset, "crawl": report.as_dict(), "corpus": total.as_dict()})
    else:
        print_crawl_report(report, state)
        if total.seen:
            print_web_report(total, dataset)
    if report.pages_done == 0:
        raise typer.Exit(1)


def print_warc_report(report: WarcReport) -> None:
    table = Table("records", "count", title=f"{report.files} WARC file(s)")
    for label, value in (
        ("records read", report.records), ("HTML pages", report.pages), ("pages that failed", report.pages_failed),
        ("image records", report.image_records), ("images referenced", report.images_found),
        ("images with bytes from the WARC", report.images_from_warc),
        ("images left to download", report.images_to_fetch), ("images not in the WARC (dropped)",
                                                              report.images_missing),
        *((f"skipped: {reason}", n) for reason, n in report.skipped.items()),
    ):
        table.add_row(label, str(value))
    out.print(table)
    if report.errors:
        errs = Table("file", "offset", "uri", "error", title="records that failed")
        for e in report.errors[:SHOWN_ERRORS]:
            errs.add_row(e["file"], str(e["offset"]), e["uri"], e["error"])
        out.print(errs)


def import_warc(
    files: Annotated[list[Path], typer.Argument(help=".warc or .warc.gz files", exists=True, dir_okay=False)],
    dataset: Annotated[str, typer.Option("--dataset", help="The web dataset (created when missing).")] = "web",
    fetch_missing: Annotated[bool, typer.Option(
        "--fetch-missing/--no-fetch-missing",
        help="Download images that pages reference but the WARC does not hold (default: drop them, no network).",
    )] = False,
    min_side: Annotated[int, typer.Option("--min-side", min=1, max=6000,
                                          help="Skip pictures with a shorter side under this (px).")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Import web images from WARC archives: HTML responses become pages, image responses supply the bytes.
    Exits non-zero when nothing was imported or updated."""
    from mmsearch.ingest.web.corpus import CorpusConfig, WebCorpus, WebImportReport
    from mmsearch.ingest.web.warc import import_warcs

    with errors(as_json):
        mm = engine()
        columns = [TextColumn("[bold]importing WARC"), TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
        with WebCorpus(mm, dataset, CorpusConfig(min_side=min_side)) as corpus, \
                Progress(*columns, console=err, disable=as_json) as progress:
            task = progress.add_task("warc", total=None, info="")

            def advance(r: WarcReport) -> None:
                c: dict[str, Any] = r.corpus
                progress.update(task, info=f"{r.records} records, {r.pages} pages, {c.get('seen', 0)} images, "
                                           f"{c.get('imported', 0)} new items")

            report = import_warcs(files, corpus, fetch_missing=fetch_missing, on_progress=advance)
    if as_json:
        emit({"dataset": dataset, **report.as_dict()})
    else:
        print_warc_report(report)
        if report.corpus:
            print_web_report(WebImportReport(**{k: v for k, v in report.corpus.items()
                                                if k in {f.name for f in dataclasses.fields(WebImportReport)}}),
                             dataset)
    c = report.corpus
    if sum(c.get(k, 0) for k in ("imported", "updated", "unchanged", "duplicates_merged")) == 0:
        raise typer.Exit(1)
