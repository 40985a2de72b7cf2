"""`mmsearch eval`: run judged queries against a dataset (or an application over it) and print nDCG@10, P@10,
recall@100, MRR and the zero-result rate (mmsearch.search.evaluate does the work)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mmsearch.commands.common import JsonFlag, emit, engine, err, errors, out, use_store

if TYPE_CHECKING:  # the engine and the evaluator load inside the command, not for `--help`
    from collections.abc import Callable

    from mmsearch.core import MMSearch
    from mmsearch.search.evaluate import Report

K = 10
DEPTH = 100


def dataset_runner(mm: MMSearch, dataset_id: str) -> Callable[[str], list[str]]:
    """The dataset searched directly with the engine's default ranking: one request of DEPTH items per query."""
    from mmsearch.search import SearchRequest

    mm.dataset(dataset_id)  # an unknown dataset fails before the first query

    def run(text: str) -> list[str]:
        return [h.id for h in mm.search(dataset_id, SearchRequest(text=text, page_size=DEPTH)).hits]

    return run


def app_runner(mm: MMSearch, app_id: str, dataset_id: str) -> tuple[Callable[[str], list[str]], int]:
    """The application's search (its ranking, spell correction, rerank) as its clients get it: pages of the largest
    size the application allows, until DEPTH items or the end of the results. Each page is a search of its own and
    is written to the application's query log, with request ids `eval:<n>:<page>`."""
    from mmsearch.search import SearchRequest

    size = min(mm.catalog.apps.get(app_id).config.max_page_size, DEPTH)
    counter = itertools.count(1)

    def run(text: str) -> list[str]:
        n = next(counter)
        ids: list[str] = []
        for page in range(1, math.ceil(DEPTH / size) + 1):
            answer = mm.search_app(app_id, dataset_id, SearchRequest(text=text, page_number=page, page_size=size),
                                   request_id=f"eval:{n}:{page}")
            ids += [h.id for h in answer.result.hits]
            if len(answer.result.hits) < size or page * size >= answer.result.total_items:
                break
        return ids[:DEPTH]

    return run, size


def eval_(
    dataset_id: Annotated[str, typer.Argument(metavar="DATASET")],
    judgements: Annotated[Path, typer.Argument(
        metavar="JUDGEMENTS", dir_okay=False,
        help='JSON Lines ({"query": "女鞋", "relevant": {"P0000": 3}}) or TREC qrels (with --queries).')],
    app_id: Annotated[str | None, typer.Option(
        "--app", help="Search through this application (its ranking, spelling, page limit) instead of the dataset "
                      "directly. Its queries go to the application's query log.")] = None,
    queries: Annotated[Path | None, typer.Option(
        "--queries", dir_okay=False, help="With TREC qrels: the query texts, one qid<TAB>text a line.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show each query's figures.")] = False,
    store: Annotated[str | None, typer.Option(
        "--store", help="The store to search: lance, or milvus:<uri> (default MMSEARCH_STORE): compare backends "
                        "on the same judgements.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Score a dataset's ranking on judged queries: nDCG@10, P@10, recall@100, MRR and the zero-result rate.

    Grades are 0..3 (0 = not relevant). Without --app the dataset is searched with the engine's defaults (one request
    of 100 items per query); with --app as the application's clients search it."""
    from mmsearch.search.evaluate import evaluate, load_judgements

    with errors(as_json):
        judged = load_judgements(judgements, queries)
        if store is not None:
            use_store(store)
        mm = engine()
        if app_id is None:
            run, how = dataset_runner(mm, dataset_id), f"dataset {dataset_id} (engine defaults)"
        else:
            run, size = app_runner(mm, app_id, dataset_id)
            how = f"application {app_id} over {dataset_id} (pages of {size})"
        report = evaluate(run, judged, k=K, depth=DEPTH)
        if app_id is not None:
            mm.catalog.query_log.flush()
    if as_json:
        emit({"dataset": dataset_id, "app": app_id, **report.as_dict(per_query=verbose)})
        return
    print_report(report, how, verbose)


def print_report(report: Report, how: str, verbose: bool) -> None:
    if verbose:
        table = Table("id", "query", "returned", "relevant", "found", *report.metric_names, title="per query")
        for q in report.queries:
            figures = [f"{q.metrics[n]:.3f}" for n in report.metric_names] if q.metrics else ["-"] * 4
            table.add_row(q.id, q.query, str(q.returned), str(q.relevant), str(q.found), *figures,
                          style="red" if q.metrics is not None and q.returned == 0 else None)
        out.print(table)
    unjudged = len(report.queries) - report.judged
    table = Table("metric", "mean", title=f"{report.judged} queries with relevant items"
                  + (f" ({unjudged} without, left out)" if unjudged else ""))
    for name in report.metric_names:
        table.add_row(name, f"{report.metrics[name]:.4f}")
    table.add_row("zero-result rate", f"{report.metrics['zero_result_rate']:.4f}")
    out.print(table)
    zero = report.zero_result_queries
    if zero:
        out.print(f"{len(zero)} queries returned nothing: " + ", ".join(q.query for q in zero), markup=False)
    err.print(f"[dim]searched {how}; {len(report.queries)} queries in {report.seconds:.1f}s[/]")
