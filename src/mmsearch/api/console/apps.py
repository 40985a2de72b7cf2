"""Applications: the list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mmsearch.api.console.pages import render, session_of, to_login
from mmsearch.api.console.session import PATH

router = APIRouter(prefix=PATH)


@router.get("")
async def home(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return to_login()
    apps = await run_in_threadpool(request.app.state.mm.catalog.apps.list)
    return render(request, "apps.html", session, nav="apps", apps=apps)
