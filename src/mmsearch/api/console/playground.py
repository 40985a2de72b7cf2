"""The search playground of an application: text or picture queries, results as a grid with score bars."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mmsearch.api.console.pages import form_session, not_found, render, session_of, to_login
from mmsearch.api.console.session import PATH, Session
from mmsearch.errors import MMSearchError, NotFound
from mmsearch.media.datauri import is_data_uri
from mmsearch.media.images import decode_image

router = APIRouter(prefix=PATH)
PAGE_SIZES = (10, 20, 50)
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # the spec's body limit: an image query is at most this


def _image_field(mm: Any, dataset_id: str) -> str | None:
    images = mm.dataset(dataset_id).schema.images
    return images[0].name if images else None


def _picture(value: Any) -> str | None:
    """The first image reference of a field value, as a URL the browser can load."""
    ref = value
    if isinstance(ref, list):
        ref = ref[0] if ref else None
    if isinstance(ref, dict):
        ref = ref.get("image_url")
    if not isinstance(ref, str) or not ref:
        return None
    if is_data_uri(ref) or urlsplit(ref).scheme in ("http", "https"):
        return ref
    return f"{PATH}/media?ref={quote(ref, safe='')}"


def _curl(request: Request, app_id: str, body: dict[str, Any]) -> str:
    url = f"{request.base_url}api/v1/application/{app_id}/search".replace("//api", "/api")
    data = json.dumps(body, ensure_ascii=False)
    return (f"curl -s -X POST '{url}' \\\n  -H \"Authorization: Bearer $MMSEARCH_API_KEY\" "
            f"-H 'Content-Type: application/json' \\\n  -d '{data}'")


async def _playground(request: Request, session: Session, app_id: str, dataset: str | None, q: str,
                      page: int, size: int, image: Any = None, image_name: str = "") -> HTMLResponse:
    from mmsearch.search import SearchRequest

    mm = request.app.state.mm
    try:
        app = await run_in_threadpool(mm.catalog.apps.get, app_id)
    except NotFound:
        return not_found(request, session, "No such application", f"There is no application {app_id!r}.")
    dataset = dataset if dataset in app.datasets else (app.datasets[0] if app.datasets else None)
    context: dict[str, Any] = {"app": app, "dataset": dataset, "q": q, "page": page, "size": size,
                               "sizes": PAGE_SIZES, "image_name": image_name, "found": None, "error": None}
    if dataset is not None and (q.strip() or image is not None):
        request_ = SearchRequest(text=q.strip() or None, image=image, page_number=page, page_size=size)
        try:
            found = await run_in_threadpool(mm.search_app, app_id, dataset, request_)
        except MMSearchError as exc:
            context["error"] = exc.message
        else:
            field = _image_field(mm, dataset)
            context["found"] = found
            context["cards"] = [{"hit": h, "picture": _picture(h.fields.get(field)) if field else None,
                                 "title": _title(h.fields)} for h in found.result.hits]
            context["pages"] = max(1, -(-found.result.total_items // size))
            body = {"query": {"text": q.strip()} if image is None else {"image_url": "data:image/…;base64,…"},
                    "dataset_id": dataset, "page_number": page, "page_size": size}
            context["curl"] = _curl(request, app_id, body)
    return render(request, "playground.html", session, nav="apps", **context)


def _title(fields: dict[str, Any]) -> str:
    for key in ("title", "name", "my_title", "_video_generated_title"):
        if isinstance(fields.get(key), str):
            return fields[key]
    first = next((v for v in fields.values() if isinstance(v, str)), "")
    return first[:80]


@router.get("/apps/{app_id}")
async def playground(request: Request, app_id: str, q: str = "", dataset: str | None = None, page: int = 1,
                     size: int = 10) -> Response:
    session = session_of(request)
    if session is None:
        return to_login()
    page = max(1, min(page, 10_000))
    size = size if size in PAGE_SIZES else PAGE_SIZES[0]
    return await _playground(request, session, app_id, dataset, q[:1_000], page, size)


@router.post("/apps/{app_id}")
async def playground_image(request: Request, app_id: str, image: UploadFile,
                           csrf: Annotated[str, Form(max_length=200)] = "",
                           dataset: Annotated[str | None, Form(max_length=64)] = None,
                           size: Annotated[int, Form()] = 10) -> Response:
    """Search by an uploaded picture: decoded under the same limits as the API's data URIs."""
    session = form_session(request, csrf)
    if not isinstance(session, Session):
        return session
    data = await image.read(MAX_UPLOAD_BYTES + 1)
    size = size if size in PAGE_SIZES else PAGE_SIZES[0]
    try:
        if len(data) > MAX_UPLOAD_BYTES:
            raise MMSearchError(f"image: over the limit of {MAX_UPLOAD_BYTES} bytes", field="image")
        picture = decode_image(data, None, field="image", max_pixels=request.app.state.mm.settings.max_image_pixels)
    except MMSearchError as exc:
        return render(request, "error.html", session, status=400, title="That picture cannot be searched",
                     message=exc.message)
    name = (image.filename or "picture")[:100]
    return await _playground(request, session, app_id, dataset, "", 1, size, image=picture.image, image_name=name)
