"""What every CLI command shares: the consoles, the engine of this invocation, JSON output, error exits and the
import report. Commands import these from here; `mmsearch.cli` only assembles the Typer app, so no command
module imports the module that imports it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mmsearch.errors import MMSearchError

if TYPE_CHECKING:  # the engine, its settings and reports load when a command runs, not for `--help`
    from mmsearch.catalog import Catalog
    from mmsearch.config import Settings
    from mmsearch.core import MMSearch
    from mmsearch.ingest import ImportReport

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
_state: dict[str, Any] = {}  # this invocation's --home, settings and engine; reset by the app callback

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON value on stdout, nothing else.")]


def main_callback(
    home: Annotated[
        Path | None, typer.Option("--home", envvar="MMSEARCH_HOME", help="Data directory.", show_default=False)
    ] = None,
) -> None:
    """The app callback: fresh state per invocation, so several runs in one process (tests) do not mix homes.
    It runs before a subcommand's `--help` too, so it only notes --home: settings load on first use."""
    _state.clear()
    _state["home"] = home


def home_option() -> Path | None:
    """This invocation's --home (Typer fills it from MMSEARCH_HOME when the option is absent), for commands that
    report where a setting came from."""
    return _state.get("home")


def cli_settings() -> Settings:
    """The settings of this invocation (`--home` applied), made on first use (pydantic is not needed for help)."""
    if "settings" not in _state:
        from mmsearch.config import Settings, get_settings

        home = _state.get("home")
        _state["settings"] = Settings(home=home) if home else get_settings()
    return _state["settings"]


def use_store(store: str) -> None:
    """This invocation's engine on another store than MMSEARCH_STORE's (before `engine()` makes it)."""
    from pydantic import ValidationError

    from mmsearch.config import Settings
    from mmsearch.errors import InvalidArgument

    settings = cli_settings()
    try:
        _state["settings"] = Settings(**{**settings.model_dump(), "store": store})
    except ValidationError as exc:
        rule = str(exc.errors()[0]["msg"]).removeprefix("Value error, ").replace("MMSEARCH_STORE", "--store")
        raise InvalidArgument(rule, field="--store") from None


def engine() -> MMSearch:
    """One engine per invocation, created on first use (commands that fail early never open the catalog);
    imported here so that the CLI's start-up and `--help` never load LanceDB, SQLAlchemy or the models."""
    if "engine" not in _state:
        from mmsearch.core import MMSearch

        _state["engine"] = MMSearch(cli_settings())
    return _state["engine"]


def catalog() -> Catalog:
    """The control plane alone (the engine's when one is open), for commands that touch no dataset's table:
    applications, keys, jobs and accounts start without importing LanceDB (~2 s) or any model."""
    if "engine" in _state:
        return _state["engine"].catalog
    if "catalog" not in _state:
        from mmsearch.catalog import Catalog
        from mmsearch.home import make_home

        settings = cli_settings()
        make_home(settings.home)  # 0700 when we create it, as the engine does: the catalog holds secrets
        _state["catalog"] = Catalog(settings.catalog_dsn, shared=settings.shares_state)
    return _state["catalog"]


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


def display(fields: dict[str, Any], path: str) -> str:
    """A (dotted) field of a hit as table text; missing is empty."""
    value: Any = fields
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def print_report(report: ImportReport) -> None:
    rate = f"{report.imported / report.seconds:,.0f} items/s" if report.seconds else ""
    out.print(f"imported {report.imported} ({report.inserted} new, {report.replaced} replaced), "
              f"rejected {report.rejected}, in {report.seconds:.1f}s {rate}")
    if report.images:
        i = report.images
        out.print(f"images: {i['loaded']} loaded, {i['failed']} failed, {i['embedded']} embedded, "
                  f"{i['reused']} reused by content hash, {i['ocr_chars']} characters read by OCR"
                  + (f" ({i['ocr_cached']} pictures from the OCR cache)" if i.get("ocr_cached") else ""))
    if report.videos:
        v = report.videos
        out.print(f"videos: {v['videos']} read, {v['failed']} failed, {v['seconds']:.0f} s of video in "
                  f"{v['wall']:.0f} s ({v['realtime'] or 0}x real time), {v['frames']} frames decoded, "
                  f"{v['segments']} segments, {v['ocr_reads']} pictures read by OCR, {v['cues']} transcript lines")
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
