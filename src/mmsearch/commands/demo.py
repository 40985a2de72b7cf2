"""`mmsearch quickstart` (demo data + application + key + server, with curl commands) and `mmsearch demo`
(the same data, searched from the CLI). Both import the shipped catalogue with its pictures (OCR)."""

from __future__ import annotations

import base64
import json
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mmsearch.commands.common import cli_settings, display, err, errors, out, print_report
from mmsearch.commands.serve import Host, Port, check_port_free, run_server
from mmsearch.samples import SAMPLES_DIR

if TYPE_CHECKING:  # the engine loads when a command runs, not for `--help`
    from mmsearch.core import MMSearch
    from mmsearch.ingest import ImportReport

QUICKSTART_APP = "demo"
QUICKSTART_DATASET = "demo_products"
QUICKSTART_CONFIG: dict[str, Any] = {
    "max_page_size": 20,
    "spell_correction": "auto",
    "rerank": True,
    "rerank_depth": 50,
    "location": {"field": "location", "radius_km": 50, "decay": "gauss", "weight": 0.3, "mode": "boost"},
    # what shoppers type for what the catalogue says: brands in the other script, everyday product words
    "synonyms": [
        ["耐克", "nike"], ["阿迪达斯", "adidas"], ["优衣库", "uniqlo"], ["索尼", "sony"], ["李宁", "li-ning"],
        ["bag", "backpack", "背包", "双肩包"], ["earphones", "headphones", "耳机", "耳麦"],
        ["tshirt", "t-shirt", "T恤", "体恤"], ["television", "tv", "电视", "电视机"], ["book", "图书", "书籍"],
    ],
}
DEMO_QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("运动鞋", {}),
    ("鞋", {"filter": {"op": "and", "conds": [
        {"op": "must", "field": "sizes", "conds": [38]},
        {"op": "range", "field": "price", "lt": 1000}]}, "sort_by": "price", "sort_order": "asc"}),
    ("wireless headphones", {"sort_by": "product.rating"}),
    ("限时特惠", {}),  # a slogan printed on the pictures only: found through OCR
]
Samples = Annotated[Path, typer.Option("--samples", help="Folder with products.jsonl, its schema and images/.")]


def samples_engine(samples: Path) -> MMSearch:
    """An engine that may read the sample pictures (local files must lie under MMSEARCH_IMAGE_ROOTS)."""
    from mmsearch.core import MMSearch

    settings = cli_settings()
    roots = os.pathsep.join(p for p in (settings.image_roots, str(samples.resolve())) if p)
    return MMSearch(settings.model_copy(update={"image_roots": roots}))


def sample_items(samples: Path) -> list[dict[str, Any]]:
    """The items as written (`images/P0003.png`): the loader finds them under the samples root, and results
    show the reference the user imported, never the server's absolute path."""
    lines = (samples / "products.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def import_samples(mm: MMSearch, dataset_id: str, samples: Path) -> ImportReport:
    """(Re)create `dataset_id` from the samples, with a progress bar: pictures are read by OCR, so this
    takes about a minute on two cores."""
    if any(d.id == dataset_id for d in mm.datasets()):
        mm.drop_dataset(dataset_id)
    mm.create_dataset(dataset_id, json.loads((samples / "products.schema.json").read_text(encoding="utf-8")))
    items = sample_items(samples)
    from mmsearch.commands.progress import ImportProgress

    with ImportProgress("importing products + pictures", len(items), err) as progress:

        def advance(n: int) -> None:
            progress.update(progress.done + n)

        report = mm.import_items(dataset_id, items, batch_size=40, on_progress=advance)
    print_report(report)
    return report


def say_model_status(mm: MMSearch) -> None:
    status = mm.encoder_status()
    if not status["available"]:
        err.print(f"[yellow]no image model[/] ({status['message']})\n"
                  "searching with the text channel only: product fields + the OCR text of the pictures")


def ensure_app_and_key(mm: MMSearch) -> str:
    """The demo application and an API key for it, kept in HOME/quickstart.json so re-runs print the same."""
    if any(a.id == QUICKSTART_APP for a in mm.catalog.apps.list()):
        mm.catalog.apps.update(QUICKSTART_APP, [QUICKSTART_DATASET], QUICKSTART_CONFIG)
    else:
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


def write_image_query(mm: MMSearch, samples: Path) -> Path:
    """A ready request body for an image query (a sample picture as a data URI): curl -d @file."""
    picture = next(iter(sorted((samples / "images").glob("*.png"))), None)
    path = mm.settings.home / "quickstart-image-query.json"
    body: dict[str, Any] = {"dataset_id": QUICKSTART_DATASET, "page_size": 5, "query": {}}
    if picture is not None:
        body["query"]["image_url"] = "data:image/png;base64," + base64.b64encode(picture.read_bytes()).decode()
    path.write_text(json.dumps(body))
    return path


def curl_examples(base: str, key: str, image_body: Path) -> list[tuple[str, str]]:
    url = f"{base}/api/v1/application/{QUICKSTART_APP}/search"
    head = f"curl -s -X POST {url} -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json'"

    def body(d: dict[str, Any]) -> str:
        return shlex.quote(json.dumps({"dataset_id": QUICKSTART_DATASET, **d}, ensure_ascii=False))

    return [
        ("text query", f"{head} -d {body({'query': {'text': '运动鞋'}, 'page_size': 5})}"),
        ("filtered and sorted, from a user near Shanghai", f"{head} -d " + body({
            "query": {"text": "女鞋 春夏"}, "page_size": 5,
            "filter": {"op": "and", "conds": [{"op": "must", "field": "status", "conds": [1, 2]},
                                              {"op": "range", "field": "price", "lt": 1000}]},
            "sort_by": "price", "sort_order": "asc", "output_fields": ["title", "price", "status"],
            "user": {"_user_id": "U90E89FF8045"},
            "context": {"location": {"latitude": "31.23", "longitude": "121.47"}},
        })),
        ("words printed on the pictures only (OCR)", f"{head} -d {body({'query': {'text': '限时特惠'}})}"),
        ("spell correction: 运功鞋 -> 运动鞋", f"{head} -d {body({'query': {'text': '运功鞋'}, 'page_size': 3})}"),
        ("image query (needs an image model: see mmsearch doctor)", f"{head} -d @{image_body}"),
    ]


def quickstart(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    samples: Samples = SAMPLES_DIR,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Build everything, print the commands, exit.")] = False,
) -> None:
    """Demo dataset + application + API key from the shipped samples, then the server, with curl commands."""
    with errors(False):
        if not no_serve:
            check_port_free(host, port)  # before the import, which takes a minute
        mm = samples_engine(samples)
        say_model_status(mm)
        dataset = next((d for d in mm.datasets() if d.id == QUICKSTART_DATASET), None)
        if dataset is not None and mm.store.count(dataset) >= len(sample_items(samples)):
            out.print(f"dataset [bold]{QUICKSTART_DATASET}[/] is already imported; reusing it")
        else:
            if QUICKSTART_APP in mm.catalog.apps.using_dataset(QUICKSTART_DATASET):
                mm.catalog.apps.remove(QUICKSTART_APP)  # re-created below; its keys are re-issued
            import_samples(mm, QUICKSTART_DATASET, samples)
        key = ensure_app_and_key(mm)
        image_body = write_image_query(mm, samples)
        from mmsearch.api.auth import admin_token

        admin = admin_token(mm.settings, announce=False)
    base = f"http://{host}:{port}"
    out.print(f"\n[bold]application[/] {QUICKSTART_APP} over dataset {QUICKSTART_DATASET}")
    out.print(f"API key: {key}")
    out.print(f"admin token (management API, see {base}/docs): {admin}")
    if mm.settings.console:
        out.print(f"web console: {base}/console (sign in with the admin token)")
    out.print()
    for title, cmd in curl_examples(base, key, image_body):
        out.print(f"[bold]# {title}[/]")
        out.print(cmd, soft_wrap=True, markup=False)
        out.print()
    if no_serve:
        return
    out.print(f"serving on {base} (Ctrl-C stops)")
    run_server(mm, host, port)


def demo(
    dataset_id: Annotated[str, typer.Option("--dataset", help="Name of the demo dataset.")] = "demo",
    samples: Samples = SAMPLES_DIR,
) -> None:
    """Build a demo dataset from the shipped sample catalogue and run a few searches from the CLI."""
    from mmsearch.search import SearchRequest

    with errors(False):
        mm = samples_engine(samples)
        say_model_status(mm)
        import_samples(mm, dataset_id, samples)  # refuses a dataset an application uses
        for text, extra in DEMO_QUERIES:
            cli = f"mmsearch search {dataset_id} {json.dumps(text, ensure_ascii=False)}"
            if "filter" in extra:
                cli += f" --filter '{json.dumps(extra['filter'], ensure_ascii=False)}'"
            if "sort_by" in extra:
                cli += f" --sort-by {extra['sort_by']} --sort-order {extra.get('sort_order', 'desc')}"
            out.print(f"\n[bold]$ {cli} --size 5[/]")
            result = mm.search(dataset_id, SearchRequest(text=text, page_size=5, **extra))
            for n, h in enumerate(result.hits, start=1):
                sort_note = f"  {extra['sort_by']}={display(h.fields, extra['sort_by'])}" if "sort_by" in extra else ""
                out.print(f"  {n}. {h.id}  {h.score:.3f}  {h.fields.get('title')}{sort_note}")
            out.print(f"  ({result.total_items} matches)")
    out.print(f"\nData lives in {mm.settings.home.resolve()}. Try: mmsearch dataset show {dataset_id}")
