"""`mmsearch backup DEST` and `mmsearch restore SRC`: options and rendering only; the work is in
`mmsearch.backup` (what is copied, in which order, and what that guarantees while imports run)."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from mmsearch.commands.common import JsonFlag, cli_settings, emit, err, errors, out

if TYPE_CHECKING:
    from rich.progress import Progress

    from mmsearch.backup import Step


class StepBars:
    """One Rich bar per step on stderr (a plain line per step when stderr is no terminal); nothing with --json."""

    def __init__(self, console: Console, disable: bool = False) -> None:
        self.console = console
        self.disable = disable
        self.plain = not disable and not console.is_terminal
        self._bar: Progress | None = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> StepBars:
        if not self.disable and not self.plain:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[amount]}"), TimeElapsedColumn(), console=self.console)
            self._bar.__enter__()
        return self

    def __call__(self, step: Step) -> None:
        if self.disable:
            return
        new = step.name not in self._tasks
        if self.plain:
            if new:
                self._tasks[step.name] = None
                self.console.print(f"{step.name} ...", markup=False, highlight=False, soft_wrap=True)
            return
        assert self._bar is not None
        if new:
            self._tasks[step.name] = self._bar.add_task(step.name, total=max(step.total, 1), amount="")
        amount = f"{step.done / 2**20:,.1f}/{step.total / 2**20:,.1f} MiB" if step.unit == "bytes" else ""
        self._bar.update(self._tasks[step.name], completed=step.done, total=max(step.total, 1), amount=amount)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)


def _datasets(found: list[dict[str, Any]]) -> str:
    return ", ".join(f"{d['id']} (version {d['version']}, {d['items']:,} items)" for d in found) or "no datasets"


def backup(
    dest: Annotated[Path, typer.Argument(help="A new or empty folder (outside the home).", file_okay=False)],
    dataset: Annotated[str | None, typer.Option("--dataset", metavar="ID",
                                                help="Copy only this dataset's table (and the whole catalog).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier backup in DEST.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Copy the home consistently while it serves and imports: the catalog (SQLite backup API, or pg_dump), each
    table at one version, the serving indexes, staged imports and the admin token, with a sha256 per file."""
    from mmsearch.backup import backup as run

    with errors(as_json), StepBars(err, disable=as_json) as bars:
        manifest = run(cli_settings(), dest, dataset=dataset, force=force, on_progress=bars)
    summary = {k: manifest[k] for k in ("created_at", "mmsearch_version", "schema_revision", "catalog", "dataset",
                                        "datasets", "bytes", "seconds")}
    if as_json:
        emit({"dest": str(dest), **summary, "files": len(manifest["files"])})
    else:
        out.print(f"backed up {_datasets(manifest['datasets'])} and the {manifest['catalog']['kind']} catalog to "
                  f"{dest}: {len(manifest['files'])} files, {manifest['bytes'] / 2**20:,.1f} MiB in "
                  f"{manifest['seconds']:.1f}s")


def restore(
    src: Annotated[Path, typer.Argument(help="A folder written by `mmsearch backup`.", exists=True, file_okay=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace what a non-empty home holds.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Bring a backup back into the configured home (checked file by file against its sha256 first). Imports that
    were queued or running when it was taken are queued again and resume at their checkpoint."""
    from mmsearch.backup import restore as run

    with errors(as_json), StepBars(err, disable=as_json) as bars:
        report = run(cli_settings(), src, force=force, on_progress=bars)
    if as_json:
        emit(report)
    else:
        out.print(f"restored {_datasets(report['datasets'])} and the {report['catalog']} catalog from the backup of "
                  f"{report['created_at']} into {report['home']} in {report['seconds']:.1f}s")
