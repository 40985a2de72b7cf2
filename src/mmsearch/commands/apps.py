"""`mmsearch app ...`, `mmsearch key ...` and `mmsearch job ...`: the control plane from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from mmsearch.commands.common import JsonFlag, catalog, emit, err, errors, out

app_app = typer.Typer(no_args_is_help=True, help="Create, list, show and delete applications.")
key_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
job_app = typer.Typer(no_args_is_help=True, help="List and inspect import jobs.")


def _read_config(path: Path | None) -> object:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/] config: {path} is not valid JSON: {exc.msg} (line {exc.lineno})")
        raise typer.Exit(1) from None


@app_app.command("create")
def app_create(
    app_id: Annotated[str, typer.Argument(metavar="ID")],
    dataset: Annotated[list[str], typer.Option("--dataset", help="A dataset to bind (repeatable).")],
    config: Annotated[Path | None, typer.Option("--config", help="Application config JSON file.", exists=True,
                                                dir_okay=False)] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an application over one or more datasets."""
    with errors(as_json):
        created = catalog().apps.create(app_id, dataset, _read_config(config))
    if as_json:
        emit(created.as_dict())
    else:
        out.print(f"created application [bold]{created.id}[/] over {', '.join(created.datasets)}")


@app_app.command("update")
def app_update(
    app_id: Annotated[str, typer.Argument(metavar="ID")],
    dataset: Annotated[list[str] | None, typer.Option("--dataset", help="Replace the bound datasets.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Replace the config (JSON file).", exists=True,
                                                dir_okay=False)] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change an application's datasets or config."""
    with errors(as_json):
        updated = catalog().apps.update(app_id, dataset or None, _read_config(config))
    if as_json:
        emit(updated.as_dict())
    else:
        out.print(f"updated application [bold]{updated.id}[/]")


@app_app.command("list")
def app_list(as_json: JsonFlag = False) -> None:
    """List applications."""
    with errors(as_json):
        apps = catalog().apps.list()
    if as_json:
        emit([a.as_dict() for a in apps])
        return
    table = Table("id", "datasets", "max_page_size", "spell", "rerank", "location")
    for a in apps:
        c = a.config
        table.add_row(a.id, ", ".join(a.datasets), str(c.max_page_size), c.spell_correction,
                      f"{c.rerank_depth}" if c.rerank else "off", c.location.field if c.location else "-")
    out.print(table if apps else "no applications yet: mmsearch app create ID --dataset DS")


@app_app.command("show")
def app_show(app_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False) -> None:
    """Show an application's datasets and config."""
    with errors(as_json):
        found = catalog().apps.get(app_id)
    emit(found.as_dict()) if as_json else out.print_json(json.dumps(found.as_dict(), ensure_ascii=False))


@app_app.command("delete")
def app_delete(app_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False) -> None:
    """Delete an application (its datasets stay)."""
    with errors(as_json):
        catalog().apps.remove(app_id)
    emit({"deleted": app_id}) if as_json else out.print(f"deleted application [bold]{app_id}[/]")


@key_app.command("create")
def key_create(
    app: Annotated[list[str], typer.Option("--app", help="An application the key may search (repeatable).")],
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; the key and its secret access key are printed once."""
    with errors(as_json):
        new = catalog().keys.create(app, name)
    if as_json:
        emit(new.as_dict())
        return
    out.print(f"API key (shown once): [bold]{new.key}[/]")
    out.print(f"access key id:        {new.info.access_key_id}")
    out.print(f"secret access key:    {new.secret_access_key}")
    out.print(f"applications:         {', '.join(new.info.apps)}")


@key_app.command("list")
def key_list(as_json: JsonFlag = False) -> None:
    """List keys (never their secrets)."""
    with errors(as_json):
        keys = catalog().keys.list()
    if as_json:
        emit([k.as_dict() for k in keys])
        return
    table = Table("id", "access key id", "applications", "name", "created", "revoked")
    for k in keys:
        table.add_row(k.id, k.access_key_id, ", ".join(k.apps), k.name, k.created_at.strftime("%Y-%m-%d %H:%M"),
                      k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "")
    out.print(table if keys else "no keys yet: mmsearch key create --app ID")


@key_app.command("revoke")
def key_revoke(key: Annotated[str, typer.Argument(help="The key, its id or its access key id.")],
               as_json: JsonFlag = False) -> None:
    """Revoke a key: it stops working within seconds, on every server sharing this home."""
    with errors(as_json):
        revoked = catalog().keys.revoke(key)
    emit(revoked.as_dict()) if as_json else out.print(f"revoked key [bold]{revoked.id}[/]")


@job_app.command("list")
def job_list(
    dataset: Annotated[str | None, typer.Option("--dataset")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List import jobs, newest first."""
    with errors(as_json):
        jobs = catalog().jobs.list(dataset_id=dataset, status=status)
    if as_json:
        emit([j.as_dict() for j in jobs])
        return
    table = Table(Column("job", no_wrap=True, min_width=16), "dataset", "status", "done/total", "imported", "failed",
                  "items/s", "created")
    for j in jobs:
        table.add_row(j.id, j.dataset_id, j.status, f"{j.done}/{j.total}", str(j.imported), str(j.failed),
                      f"{j.rate:.0f}", j.created_at.strftime("%Y-%m-%d %H:%M:%S"))
    out.print(table if jobs else "no jobs")


@job_app.command("show")
def job_show(job_id: Annotated[str, typer.Argument(metavar="JOB")], as_json: JsonFlag = False) -> None:
    """A job's status, progress, rate and per-item errors."""
    with errors(as_json):
        job = catalog().jobs.get(job_id)
    emit(job.as_dict()) if as_json else out.print_json(json.dumps(job.as_dict(), ensure_ascii=False))
