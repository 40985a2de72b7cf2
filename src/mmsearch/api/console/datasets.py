"""Datasets: the list with counts and sizes, creation from a schema editor, a dataset's page (schema, indexes,
sample items, a search box) and import by uploading a file.

The schema editor posts one row of inputs per field (`f3.name`, `f3.type`, `f3.searchable`, …); the rows become
the same `{"fields": [...]}` the management API takes and go through `MMSearch.create_dataset`, so the console
shows the API's own validation messages. An upload is staged and queued by `ingest.jobs.submit_upload` and the
browser is sent to the job's page, which follows it live.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from mmsearch.api.console.cards import cards
from mmsearch.api.console.pages import checked, not_found, render, see, signed_in
from mmsearch.api.console.session import PATH, Session
from mmsearch.errors import MMSearchError, NotFound
from mmsearch.ingest.jobs import submit_upload
from mmsearch.ingest.readers import SUFFIXES
from mmsearch.schema.fields import ALL_TYPES

router = APIRouter(prefix=PATH)
FLAGS = ("primary_key", "required", "searchable", "filterable", "sortable")
MAX_FIELDS = 256  # rows the editor reads; a schema wider than this is posted as JSON
BLANK_ROWS = 3
SAMPLE = 10
STARTER = [{"name": "id", "type": "string", "primary_key": True},
           {"name": "title", "type": "string", "searchable": True},
           {"name": "image", "type": "image"}]


@router.get("/datasets")
async def datasets(request: Request) -> Response:
    session = signed_in(request)
    mm = request.app.state.mm

    def rows() -> list[dict[str, Any]]:
        out = []
        for info in mm.datasets():
            try:
                stats: dict[str, Any] = mm.stats(info.id)
            except MMSearchError as exc:
                stats = {"error": exc.message}
            out.append({"info": info, "stats": stats, "apps": mm.catalog.apps.using_dataset(info.id)})
        return out

    return render(request, "datasets.html", session, nav="datasets", datasets=await run_in_threadpool(rows))


@router.get("/datasets/new")
async def new_dataset(request: Request) -> Response:
    session = signed_in(request)
    return _editor(request, session, {"id": "", "type": "image_text", "vector_dim": "", "ocr": True,
                                      "rows": STARTER + [{}] * BLANK_ROWS, "json": ""})


def _editor(request: Request, session: Session, form: dict[str, Any], error: str | None = None,
            status: int = 200) -> Response:
    return render(request, "dataset_new.html", session, nav="datasets", status=status, form=form, error=error,
                  types=ALL_TYPES, flags=FLAGS)


def _rows(data: FormData) -> list[dict[str, Any]]:
    """The editor's rows as field specs, in order; a row without a name is left out (the blank ones)."""
    rows: list[dict[str, Any]] = []
    for i in range(MAX_FIELDS):
        name = data.get(f"f{i}.name")
        if name is None:
            break
        if not isinstance(name, str) or not name.strip():
            continue
        row: dict[str, Any] = {"name": name.strip(), "type": str(data.get(f"f{i}.type") or "string")}
        row.update({flag: True for flag in FLAGS if data.get(f"f{i}.{flag}")})
        max_length = str(data.get(f"f{i}.max_length") or "").strip()
        if max_length:
            row["max_length"] = int(max_length) if max_length.isdigit() else max_length  # the API names a bad one
        rows.append(row)
    return rows


@router.post("/datasets/new")
async def create_dataset(request: Request) -> Response:
    """`action=add` redraws the editor with one more row; `action=create` creates the dataset."""
    data = await request.form(max_files=0, max_fields=MAX_FIELDS * 8 + 16)
    session = checked(request, str(data.get("csrf") or ""))
    rows = _rows(data)
    raw_json = str(data.get("schema_json") or "").strip()
    form = {"id": str(data.get("id") or "").strip(), "type": str(data.get("type") or "image_text"),
            "vector_dim": str(data.get("vector_dim") or "").strip(), "ocr": bool(data.get("ocr")),
            "rows": rows, "json": raw_json}
    if data.get("action") == "add":
        form["rows"] = rows + [{}] * BLANK_ROWS
        return _editor(request, session, form)
    try:
        schema = _schema(raw_json, rows, form["ocr"])
        dim = form["vector_dim"]
        if dim and not dim.isdigit():
            raise MMSearchError("vector_dim: must be an integer in [2, 8192]", field="vector_dim")
        mm = request.app.state.mm
        await run_in_threadpool(mm.create_dataset, form["id"], schema, form["type"], int(dim) if dim else None)
    except MMSearchError as exc:
        form["rows"] = rows + [{}] * BLANK_ROWS
        return _editor(request, session, form, error=exc.message, status=400)
    return see(f"{PATH}/datasets/{form['id']}")


def _schema(raw_json: str, rows: list[dict[str, Any]], ocr: bool) -> Any:
    """The pasted JSON schema when there is one (it wins over the rows), else the rows."""
    if raw_json:
        try:
            return json.loads(raw_json)
        except json.JSONDecodeError as exc:
            raise MMSearchError(f"schema: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                                field="schema") from None
    return {"fields": rows, "ocr": ocr}


@router.get("/datasets/{dataset_id}")
async def dataset_page(request: Request, dataset_id: str, q: str = "") -> Response:
    session = signed_in(request)
    return await _dataset_page(request, session, dataset_id, q[:1_000])


async def _dataset_page(request: Request, session: Session, dataset_id: str, q: str = "",
                        error: str | None = None, status: int = 200) -> Response:
    from mmsearch.search import SearchRequest

    mm = request.app.state.mm
    try:
        info = await run_in_threadpool(mm.dataset, dataset_id)
    except NotFound:
        return not_found(request, session, "No such dataset", f"There is no dataset {dataset_id!r}.")

    def gather() -> dict[str, Any]:
        out: dict[str, Any] = {"apps": mm.catalog.apps.using_dataset(info.id), "found": None, "search_error": None}
        try:
            out["stats"] = mm.stats(info.id)
            out["sample"] = mm.sample(info.id, SAMPLE)
        except MMSearchError as exc:
            out["stats"], out["sample"], out["store_error"] = {}, [], exc.message
        if q.strip():
            try:
                out["found"] = mm.search(info.id, SearchRequest(text=q.strip(), page_size=20))
            except MMSearchError as exc:
                out["search_error"] = exc.message
        return out

    context = await run_in_threadpool(gather)
    if context["found"] is not None:
        context["cards"] = cards(mm, info, context["found"].hits)
    jobs = await run_in_threadpool(mm.catalog.jobs.list, info.id, None, 5)
    return render(request, "dataset.html", session, nav="datasets", status=status, info=info, q=q, error=error,
                  jobs=jobs, suffixes=SUFFIXES, sample_json=[(i, json.dumps(d, ensure_ascii=False, indent=1))
                                                             for i, d in context.pop("sample")], **context)


@router.post("/datasets/{dataset_id}/import")
async def import_file(request: Request, dataset_id: str) -> Response:
    """Stage the uploaded file and follow its job (the body limit is MMSEARCH_MAX_IMPORT_BODY_BYTES)."""
    data = await request.form(max_files=1, max_fields=4)
    session = checked(request, str(data.get("csrf") or ""))
    upload = data.get("file")
    mm = request.app.state.mm
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise MMSearchError("file: choose a file to import", field="file")
        job = await run_in_threadpool(submit_upload, mm, dataset_id, upload.filename, upload.file)
    except NotFound:
        return not_found(request, session, "No such dataset", f"There is no dataset {dataset_id!r}.")
    except MMSearchError as exc:
        return await _dataset_page(request, session, dataset_id, error=exc.message, status=400)
    finally:
        await data.close()
    request.app.state.runner.wake()
    return see(f"{PATH}/jobs/{job.id}")
