"""`mmsearch serve` (the HTTP server) and `mmsearch quickstart` (demo data + application + key + server)."""

from __future__ import annotations

import base64
import json
import os
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mmsearch.cli import SAMPLES, err, errors, out, print_report
from mmsearch.config import Settings, get_settings
from mmsearch.core import MMSearch

Host = Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")]
Port = Annotated[int, typer.Option("--port", min=1, max=65535)]

QUICKSTART_APP = "demo"
QUICKSTART_DATASET = "demo_products"
QUICKSTART_CONFIG: dict[str, Any] = {
    "max_page_size": 20,
    "spell_correction": "auto",
    "rerank": True,
    "rerank_depth": 50,
    "location": {"field": "location", "radius_km": 50, "decay": "gauss", "weight": 0.3, "mode": "boost"},
}


def _settings() -> Settings:
    from mmsearch.cli import _state

    return _state.get("settings") or get_settings()


def _run_server(mm: MMSearch, host: str, port: int, log_level: str, jobs: bool = True) -> None:
    import uvicorn

    from mmsearch.api.app import create_app

    uvicorn.run(create_app(mm, run_jobs=jobs), host=host, port=port, log_level=log_level)


def serve(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    jobs: Annotated[bool, typer.Option("--jobs/--no-jobs", help="Run import jobs in this process.")] = True,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run the HTTP server: the AI Search API, the management API (/admin/v1) and OpenAPI docs (/docs)."""
    with errors(False):
        mm = MMSearch(_settings())
        from mmsearch.api.auth import admin_token

        admin_token(mm.settings)  # generated (and printed) before the first request, not during it
        out.print(f"mmsearch: data in {mm.settings.home.resolve()}; docs at http://{host}:{port}/docs")
    _run_server(mm, host, port, log_level, jobs)


# -- quickstart ---------------------------------------------------------------------------------------------
def sample_items(samples: Path) -> list[dict[str, Any]]:
    """The shipped catalogue, with image paths made absolute (they are relative to the samples folder)."""
    items = []
    for line in (samples / "products.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        for img in item.get("images") or []:
            if isinstance(img, dict) and isinstance(img.get("image_url"), str) and "://" not in img["image_url"]:
                img["image_url"] = str((samples / img["image_url"]).resolve())
        items.append(item)
    return items


def build_demo(mm: MMSearch, samples: Path, quiet: bool = False) -> None:
    """Create (or refresh) the demo dataset from the shipped products and their images, with progress."""
    items = sample_items(samples)
    if any(d.id == QUICKSTART_DATASET for d in mm.datasets()):
        if mm.store.count(mm.dataset(QUICKSTART_DATASET)) >= len(items):
            out.print(f"dataset [bold]{QUICKSTART_DATASET}[/] is already imported ({len(items)} items)")
            return
    else:
        schema = json.loads((samples / "products.schema.json").read_text(encoding="utf-8"))
        mm.create_dataset(QUICKSTART_DATASET, schema)
    columns = [TextColumn("[bold]importing products + images (OCR)"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
    with Progress(*columns, console=err, disable=quiet) as progress:
        task = progress.add_task("import", total=len(items), rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            t = progress.tasks[0]
            if t.elapsed:
                progress.update(task, rate=f"{t.completed / t.elapsed:,.1f} items/s")

        report = mm.import_items(QUICKSTART_DATASET, items, batch_size=40, on_progress=advance)
    print_report(report)


def ensure_app_and_key(mm: MMSearch) -> str:
    """The demo application, and an API key for it (kept in HOME/quickstart.json so re-runs reuse it)."""
    if not any(a.id == QUICKSTART_APP for a in mm.catalog.apps.list()):
        mm.catalog.apps.create(QUICKSTART_APP, [QUICKSTART_DATASET], QUICKSTART_CONFIG)
    state_file = mm.settings.home / "quickstart.json"
    if state_file.is_file():
        key = json.loads(state_file.read_text())["key"]
        found = mm.catalog.keys.by_bearer(key)
        if found is not None and found.allows(QUICKSTART_APP):
            return key
    key = mm.catalog.keys.create([QUICKSTART_APP], name="quickstart").key
    fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"key": key, "application": QUICKSTART_APP, "dataset": QUICKSTART_DATASET}, fh)
    return key


def curl_examples(base: str, key: str, image_body: Path) -> list[tuple[str, str]]:
    url = f"{base}/api/v1/application/{QUICKSTART_APP}/search"
    head = f"curl -s -X POST {url} -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json'"

    def body(d: dict[str, Any]) -> str:
        return shlex.quote(json.dumps({"dataset_id": QUICKSTART_DATASET, **d}, ensure_ascii=False))

    return [
        ("text query", f"{head} -d {body({'query': {'text': '运动鞋'}, 'page_size': 5})}"),
        ("filtered and sorted, near Shanghai", f"{head} -d " + body({
            "query": {"text": "女鞋 春夏"}, "page_size": 5,
            "filter": {"op": "and", "conds": [{"op": "must", "field": "status", "conds": [1, 2]},
                                              {"op": "range", "field": "price", "lt": 1000}]},
            "user": {"_user_id": "U90E89FF8045"},
            "context": {"location": {"latitude": "31.23", "longitude": "121.47"}},
        })),
        ("spell correction (运功鞋 → 运动鞋)", f"{head} -d {body({'query': {'text': '运功鞋'}, 'page_size': 3})}"),
        ("image query (needs an image model)", f"{head} -d @{image_body}"),
    ]


def write_image_query(mm: MMSearch, samples: Path) -> Path:
    items = sample_items(samples)
    first = next((i for i in items if i.get("images")), None)
    path = mm.settings.home / "quickstart-image-query.json"
    if first is not None:
        data = Path(first["images"][0]["image_url"]).read_bytes()
        uri = "data:image/jpeg;base64," + base64.b64encode(data).decode()
        path.write_text(json.dumps({"dataset_id": QUICKSTART_DATASET, "query": {"image_url": uri}, "page_size": 5}))
    return path


def quickstart(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    samples: Annotated[Path, typer.Option("--samples", help="Folder with products, schema, images.")] = SAMPLES,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Build everything, print the commands, exit.")] = False,
) -> None:
    """Demo dataset + application + API key from the shipped samples, then the server, with curl commands."""
    with errors(False):
        settings = _settings()
        roots = os.pathsep.join(p for p in (settings.image_roots, str(samples.resolve())) if p)
        mm = MMSearch(settings.model_copy(update={"image_roots": roots}))
        status = mm.encoder_status()
        if not status["available"]:
            err.print(f"[yellow]no image model[/] ({status['message']})\n"
                      "serving the text channel (fields + OCR text of the images); image queries answer 503")
        build_demo(mm, samples)
        key = ensure_app_and_key(mm)
        image_body = write_image_query(mm, samples)
        from mmsearch.api.auth import admin_token

        admin = admin_token(mm.settings, announce=False)
    base = f"http://{host}:{port}"
    out.print(f"\n[bold]application[/] {QUICKSTART_APP} over dataset {QUICKSTART_DATASET}; API key: {key}")
    out.print(f"admin token (management API, {base}/docs): {admin}\n")
    for title, cmd in curl_examples(base, key, image_body):
        out.print(f"[bold]# {title}[/]\n{cmd}\n", soft_wrap=True)
    if no_serve:
        return
    _run_server(mm, host, port, "info")
