"""API keys: create (the secret shown on the page once; the catalog keeps only its hash) and revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mmsearch.api.console.pages import checked, render, see, signed_in
from mmsearch.api.console.session import PATH, Session
from mmsearch.errors import MMSearchError

router = APIRouter(prefix=PATH)


@router.get("/keys")
async def keys(request: Request) -> Response:
    session = signed_in(request)
    return await _keys_page(request, session)


async def _keys_page(request: Request, session: Session, created: Any = None, error: str | None = None,
                     status: int = 200) -> HTMLResponse:
    mm = request.app.state.mm
    found = await run_in_threadpool(mm.catalog.keys.list)
    apps = await run_in_threadpool(mm.catalog.apps.list)
    return render(request, "keys.html", session, nav="keys", status=status, keys=found, apps=apps, created=created,
                  error=error)


@router.post("/keys")
async def create_key(request: Request, csrf: Annotated[str, Form(max_length=200)] = "",
                     apps: Annotated[list[str] | None, Form()] = None,
                     name: Annotated[str, Form(max_length=200)] = "") -> Response:
    session = checked(request, csrf)
    mm = request.app.state.mm
    try:
        created = await run_in_threadpool(mm.catalog.keys.create, list(apps or []), name.strip())
    except MMSearchError as exc:
        return await _keys_page(request, session, error=exc.message, status=400)
    return await _keys_page(request, session, created=created)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    session = checked(request, csrf)
    mm = request.app.state.mm
    try:
        await run_in_threadpool(mm.catalog.keys.revoke, key_id)
    except MMSearchError as exc:
        return await _keys_page(request, session, error=exc.message, status=400)
    return see(f"{PATH}/keys")
