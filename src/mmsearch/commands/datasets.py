"""`mmsearch dataset create|list|show|dictionary|drop`: datasets, their schemas and user words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mmsearch.commands.common import JsonFlag, catalog, emit, engine, err, errors, out

if TYPE_CHECKING:
    from mmsearch.schema.fields import DatasetInfo

dataset_app = typer.Typer(no_args_is_help=True, help="Create, list, show and drop datasets.")


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


@dataset_app.command("dictionary")
def dataset_dictionary(
    dataset_id: Annotated[str, typer.Argument(metavar="ID")],
    add: Annotated[list[str] | None, typer.Option("--add", help="A word to add (repeatable).")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="A word to remove (repeatable).")] = None,
    from_file: Annotated[Path | None, typer.Option(
        "--file", help="Replace the list with this file's words (one a line, # comments).", exists=True,
        dir_okay=False)] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every word.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show or change the words segmentation keeps whole in a dataset (brand names, product lines).

    Queries use a change at once; items imported before it keep their tokens until imported again."""
    with errors(as_json):
        cat = catalog()
        words = [] if clear else list(cat.dataset(dataset_id).schema.dictionary)
        if from_file is not None:
            lines = from_file.read_text(encoding="utf-8").splitlines()
            words = [w.strip() for w in lines if w.strip() and not w.lstrip().startswith("#")]
        words += list(add or [])
        words = [w for w in words if w not in set(remove or [])]
        changed = clear or from_file is not None or add or remove
        info = cat.set_dictionary(dataset_id, words) if changed else cat.dataset(dataset_id)
    if as_json:
        emit({"id": info.id, "dictionary": list(info.schema.dictionary)})
    else:
        verb = "now holds" if changed else "holds"
        out.print(f"dataset [bold]{info.id}[/] {verb} {len(info.schema.dictionary)} words"
                  + (": " + ", ".join(info.schema.dictionary) if info.schema.dictionary else ""))


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
