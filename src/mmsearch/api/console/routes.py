"""The web console at /console: sign-in with the admin token, applications, datasets, keys, a search playground.

Server-rendered Jinja2 pages and plain HTML forms (no build step, nothing fetched from a CDN: the console works
offline). Pages call the same engine functions as the HTTP APIs (`MMSearch.search_app` for the playground), so
nothing is implemented twice. Sessions and CSRF: `session.py`.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from mmsearch.api.console.session import COOKIE, LOGIN_COOKIE, PATH, Session, Sessions, same
from mmsearch.errors import MMSearchError, NotFound
from mmsearch.media.datauri import is_data_uri
from mmsearch.media.images import decode_image
from mmsearch.media.local import load_local
from mmsearch.media.sniff import sniff_image_format

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix=PATH, include_in_schema=False)
PAGE_SIZES = (10, 20, 50)
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # the spec's body limit: an image query is at most this


def _sessions(request: Request) -> Sessions:
    return request.app.state.console_sessions


def _session(request: Request) -> Session | None:
    return _sessions(request).read(request.cookies.get(COOKIE))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _to_login() -> RedirectResponse:
    return RedirectResponse(f"{PATH}/login", status_code=303)


def _page(request: Request, name: str, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"csrf": session.csrf if session else "", **context},
                                      status_code=status, headers={"Cache-Control": "no-store"})


def _form_session(request: Request, csrf: str) -> Session | Response:
    """The session of a state-changing form, or the response refusing it (not signed in, or a CSRF mismatch)."""
    session = _session(request)
    if session is None:
        return _to_login()
    if not same(csrf, session.csrf):
        return _forbidden(request)
    return session


def _forbidden(request: Request) -> HTMLResponse:
    return _page(request, "error.html", None, status=403, title="Request refused",
                 message="This form is out of date or was not sent by the console (CSRF check failed). "
                         "Reload the page and try again.")


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    page = _page(request, "login.html", None, login_csrf=token, error=None)
    page.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path=PATH, max_age=600,
                    secure=_secure(request))
    return page


@router.post("/login")
async def login(request: Request, token: Annotated[str, Form(max_length=1_000)] = "",
                csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    if not same(csrf, request.cookies.get(LOGIN_COOKIE)):
        return _forbidden(request)
    sessions = _sessions(request)
    if not sessions.check_token(token):
        fresh = secrets.token_urlsafe(24)
        page = _page(request, "login.html", None, status=401, login_csrf=fresh,
                     error="That is not the admin token (MMSEARCH_ADMIN_TOKEN, or HOME/admin_token).")
        page.set_cookie(LOGIN_COOKIE, fresh, httponly=True, samesite="strict", path=PATH, max_age=600,
                        secure=_secure(request))
        return page
    value, _ = sessions.issue()
    response = RedirectResponse(PATH, status_code=303)
    response.set_cookie(COOKIE, value, httponly=True, samesite="strict", path=PATH, max_age=sessions.seconds,
                        secure=_secure(request))
    response.delete_cookie(LOGIN_COOKIE, path=PATH)
    return response


@router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    session = _session(request)
    if session is not None and not same(csrf, session.csrf):
        return _forbidden(request)
    response = _to_login()
    response.delete_cookie(COOKIE, path=PATH)
    return response


@router.get("")
async def home(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_login()
    mm = request.app.state.mm
    apps = await run_in_threadpool(mm.catalog.apps.list)
    return _page(request, "apps.html", session, apps=apps)


@router.get("/datasets")
async def datasets(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_login()
    mm = request.app.state.mm

    def rows() -> list[dict[str, Any]]:
        out = []
        for info in mm.datasets():
            try:
                count: int | str = mm.store.count(info)
            except MMSearchError as exc:
                count = exc.message
            out.append({"info": info, "count": count, "apps": mm.catalog.apps.using_dataset(info.id)})
        return out

    return _page(request, "datasets.html", session, datasets=await run_in_threadpool(rows))


@router.get("/jobs")
async def jobs(request: Request) -> Response:
    """Import jobs, newest first, with their progress and message (a video import says where it is); the page
    refreshes itself every few seconds while a job runs."""
    session = _session(request)
    if session is None:
        return _to_login()
    found = await run_in_threadpool(request.app.state.mm.catalog.jobs.list, None, None, 100)
    running = any(j.status in ("queued", "running") for j in found)
    return _page(request, "jobs.html", session, jobs=found, running=running)


@router.get("/keys")
async def keys(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_login()
    return await _keys_page(request, session)


async def _keys_page(request: Request, session: Session, created: Any = None, error: str | None = None,
                     status: int = 200) -> HTMLResponse:
    mm = request.app.state.mm
    found = await run_in_threadpool(mm.catalog.keys.list)
    apps = await run_in_threadpool(mm.catalog.apps.list)
    return _page(request, "keys.html", session, status=status, keys=found, apps=apps, created=created, error=error)


@router.post("/keys")
async def create_key(request: Request, csrf: Annotated[str, Form(max_length=200)] = "",
                     apps: Annotated[list[str] | None, Form()] = None,
                     name: Annotated[str, Form(max_length=200)] = "") -> Response:
    """A new API key: its secret is shown on this page once (the catalog keeps only its hash)."""
    session = _form_session(request, csrf)
    if not isinstance(session, Session):
        return session
    mm = request.app.state.mm
    try:
        created = await run_in_threadpool(mm.catalog.keys.create, list(apps or []), name.strip())
    except MMSearchError as exc:
        return await _keys_page(request, session, error=exc.message, status=400)
    return await _keys_page(request, session, created=created)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    session = _form_session(request, csrf)
    if not isinstance(session, Session):
        return session
    mm = request.app.state.mm
    try:
        await run_in_threadpool(mm.catalog.keys.revoke, key_id)
    except MMSearchError as exc:
        return await _keys_page(request, session, error=exc.message, status=400)
    return RedirectResponse(f"{PATH}/keys", status_code=303)


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
        return _page(request, "error.html", session, status=404, title="No such application",
                     message=f"There is no application {app_id!r}.")
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
    return _page(request, "playground.html", session, **context)


def _title(fields: dict[str, Any]) -> str:
    for key in ("title", "name", "my_title", "_video_generated_title"):
        if isinstance(fields.get(key), str):
            return fields[key]
    first = next((v for v in fields.values() if isinstance(v, str)), "")
    return first[:80]


@router.get("/apps/{app_id}")
async def playground(request: Request, app_id: str, q: str = "", dataset: str | None = None, page: int = 1,
                     size: int = 10) -> Response:
    session = _session(request)
    if session is None:
        return _to_login()
    page = max(1, min(page, 10_000))
    size = size if size in PAGE_SIZES else PAGE_SIZES[0]
    return await _playground(request, session, app_id, dataset, q[:1_000], page, size)


@router.post("/apps/{app_id}")
async def playground_image(request: Request, app_id: str, image: UploadFile,
                           csrf: Annotated[str, Form(max_length=200)] = "",
                           dataset: Annotated[str | None, Form(max_length=64)] = None,
                           size: Annotated[int, Form()] = 10) -> Response:
    """Search by an uploaded picture: decoded under the same limits as the API's data URIs."""
    session = _form_session(request, csrf)
    if not isinstance(session, Session):
        return session
    data = await image.read(MAX_UPLOAD_BYTES + 1)
    size = size if size in PAGE_SIZES else PAGE_SIZES[0]
    try:
        if len(data) > MAX_UPLOAD_BYTES:
            raise MMSearchError(f"image: over the limit of {MAX_UPLOAD_BYTES} bytes", field="image")
        picture = decode_image(data, None, field="image", max_pixels=request.app.state.mm.settings.max_image_pixels)
    except MMSearchError as exc:
        return _page(request, "error.html", session, status=400, title="That picture cannot be searched",
                     message=exc.message)
    name = (image.filename or "picture")[:100]
    return await _playground(request, session, app_id, dataset, "", 1, size, image=picture.image, image_name=name)


@router.get("/media")
async def media(request: Request, ref: str) -> Response:
    """A local picture the results show (under MMSEARCH_IMAGE_ROOTS / MEDIA_ROOTS only), for a signed-in user."""
    if _session(request) is None:
        return Response(status_code=401)
    mm = request.app.state.mm
    try:
        data = await run_in_threadpool(load_local, ref, mm.settings.image_root_paths, "ref")
    except MMSearchError:
        return Response(status_code=404)
    fmt = sniff_image_format(data[:64])
    if fmt is None:
        return Response(status_code=404)
    return Response(data, media_type=f"image/{fmt}", headers={"Cache-Control": "private, max-age=300",
                                                                "X-Content-Type-Options": "nosniff"})
