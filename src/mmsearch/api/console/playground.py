"""The search playground of an application: the AI Search request built from a form, run, shown as a grid.

The form becomes the spec's request body (query text and/or a picture as a data URI, filter, sort, page, user,
location), which goes through the API's own `SearchBody` model, `to_request` and `MMSearch.search_app`: the
same checks, messages and results as `POST /api/v1/application/{id}/search`, and the body is what "copy as
curl" and "copy as Python" print. Text searches are links (GET); a picture is posted (multipart), by the file
input or, with script, pasted or dropped and sent as a data URI.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from mmsearch.api.console.cards import cards
from mmsearch.api.console.filterform import JOINS, MAX_ROWS, OPS, Condition, build_filter, conditions_from
from mmsearch.api.console.pages import checked, not_found, render, signed_in
from mmsearch.api.console.session import PATH, Session
from mmsearch.api.console.snippets import curl, python_sdk
from mmsearch.api.errors import describe_validation
from mmsearch.api.volc import SearchBody, to_request
from mmsearch.errors import MMSearchError, NotFound
from mmsearch.media.sniff import sniff_image_format

router = APIRouter(prefix=PATH)
PAGE_SIZES = (10, 20, 50, 100)
BLANK_ROWS = 2  # empty filter rows offered under the ones in use


@dataclass
class Form:
    """What the playground's form holds, parsed leniently: the search itself checks every value."""

    q: str = ""
    dataset: str | None = None
    page: int = 1
    size: int = 10
    sort_by: str = ""
    sort_order: str = "desc"
    lat: str = ""
    lon: str = ""
    user: str = ""
    join: str = "and"
    conditions: list[Condition] = field(default_factory=list)
    filter_json: str = ""
    image_url: str = ""  # a data URI
    image_name: str = ""

    @classmethod
    def read(cls, params: Any) -> Form:
        def text(name: str, limit: int = 1_000) -> str:
            value = params.get(name)
            return value[:limit] if isinstance(value, str) else ""

        def number(name: str, default: int) -> int:
            value = text(name, 12).strip()
            return int(value) if value.isdigit() else default

        return cls(q=text("q"), dataset=text("dataset", 64) or None, page=max(1, min(number("page", 1), 10_000)),
                   size=max(1, min(number("size", 10), 1_000)), sort_by=text("sort_by", 256).strip(),
                   sort_order="asc" if text("sort_order") == "asc" else "desc", lat=text("lat", 32).strip(),
                   lon=text("lon", 32).strip(), user=text("user", 256).strip(),
                   join=text("join") if text("join") in JOINS else "and", conditions=conditions_from(params),
                   filter_json=text("filter_json", 100_000).strip(), image_url=text("image_url", 20_000_000),
                   image_name=text("image_name", 100))

    def body(self, dataset: str, schema: Any) -> dict[str, Any]:
        """The spec's request body for this form."""
        query: dict[str, Any] = {}
        if self.q.strip():
            query["text"] = self.q.strip()
        if self.image_url:
            query["image_url"] = self.image_url
        body: dict[str, Any] = {"query": query, "dataset_id": dataset, "page_number": self.page,
                                "page_size": self.size}
        if self.filter_json:
            try:
                body["filter"] = json.loads(self.filter_json)
            except json.JSONDecodeError as exc:
                raise MMSearchError(f"filter: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                                    field="filter") from None
        else:
            built = build_filter(self.conditions, self.join, schema)
            if built is not None:
                body["filter"] = built
        if self.sort_by:
            body["sort_by"], body["sort_order"] = self.sort_by, self.sort_order
        if self.lat or self.lon:
            body["context"] = {"location": {"latitude": self.lat, "longitude": self.lon}}
        if self.user:
            body["user"] = {"_user_id": self.user}
        return body

    def link(self, **changes: Any) -> str:
        """This text search (another page of it) as a query string."""
        f = replace(self, **changes)
        params: dict[str, Any] = {"q": f.q, "dataset": f.dataset or "", "size": f.size, "page": f.page}
        for name in ("sort_by", "sort_order", "lat", "lon", "user", "filter_json"):
            if getattr(f, name) and not (name == "sort_order" and not f.sort_by):
                params[name] = getattr(f, name)
        if f.conditions and not f.filter_json:
            params["join"] = f.join
            for i, c in enumerate(f.conditions):
                params.update({f"c{i}.field": c.field, f"c{i}.op": c.op, f"c{i}.value": c.value, f"c{i}.to": c.to})
        return "?" + urlencode(params)


def _search(mm: Any, app: Any, dataset: str, form: Form, schema: Any) -> Any:
    body = form.body(dataset, schema)
    try:
        parsed = SearchBody.model_validate(body)
    except ValidationError as exc:
        raise MMSearchError(describe_validation(exc.errors())[0]) from None
    request = to_request(parsed, max_pixels=mm.settings.max_image_pixels)
    return body, mm.search_app(app.id, dataset, request, user_id=form.user or None)


async def _playground(request: Request, session: Session, app_id: str, form: Form) -> Response:
    mm = request.app.state.mm
    try:
        app = await run_in_threadpool(mm.catalog.apps.get, app_id)
    except NotFound:
        return not_found(request, session, "No such application", f"There is no application {app_id!r}.")
    dataset = form.dataset if form.dataset in app.datasets else (app.datasets[0] if app.datasets else None)
    form.dataset = dataset
    info = await run_in_threadpool(mm.dataset, dataset) if dataset else None
    sizes = sorted({s for s in PAGE_SIZES if s <= app.config.max_page_size} | {app.config.max_page_size})
    context: dict[str, Any] = {"app": app, "form": form, "info": info, "sizes": sizes, "found": None, "error": None,
                               "ops": OPS, "joins": JOINS,
                               "rows": (form.conditions + [Condition()] * BLANK_ROWS)[:MAX_ROWS]}
    if info is not None:
        context["filterable"] = info.schema.filterable
        context["sortable"] = info.schema.sortable_keys()
    if info is not None and (form.q.strip() or form.image_url):
        try:
            body, found = await run_in_threadpool(_search, mm, app, info.id, form, info.schema)
        except MMSearchError as exc:
            context["error"] = exc.message
        else:
            context["found"] = found
            context["cards"] = cards(mm, info, found.result.hits)
            context["pages"] = max(1, -(-found.result.total_items // form.size))
            base = str(request.base_url)
            context["curl"] = curl(base, app.id, body)
            context["python"] = python_sdk(base, app.id, body)
    return render(request, "playground.html", session, nav="apps", **context)


@router.get("/apps/{app_id}")
async def playground(request: Request, app_id: str) -> Response:
    session = signed_in(request)
    form = Form.read(request.query_params)
    form.image_url = ""  # pictures are posted, never put in a URL
    return await _playground(request, session, app_id, form)


@router.post("/apps/{app_id}")
async def playground_post(request: Request, app_id: str) -> Response:
    """A search with a picture: the file input's upload or the script's data URI (paste, drop), posted with
    the rest of the form; the page then holds the data URI so that its paging posts it again."""
    settings = request.app.state.mm.settings
    data = await request.form(max_files=1, max_fields=200, max_part_size=settings.max_body_bytes)
    try:
        session = checked(request, str(data.get("csrf") or ""))
        form = Form.read(data)
        upload = data.get("image")
        if isinstance(upload, UploadFile) and upload.filename:
            raw = await upload.read(settings.max_body_bytes + 1)
            if len(raw) > settings.max_body_bytes:
                return _refused(request, session, f"image: over the limit of {settings.max_body_bytes} bytes")
            kind = sniff_image_format(raw[:64])
            if kind is None:
                return _refused(request, session, "image: not a picture (JPEG, PNG, WebP, GIF, BMP or TIFF)")
            form.image_url = f"data:image/{kind};base64,{base64.b64encode(raw).decode()}"
            form.image_name = upload.filename[:100]
        if data.get("action") == "clear_picture":
            form.image_url = form.image_name = ""
    finally:
        await data.close()
    return await _playground(request, session, app_id, form)


def _refused(request: Request, session: Session, message: str) -> Response:
    return render(request, "error.html", session, status=400, title="That picture cannot be searched",
                  message=message)
