"""Datasets: the list with counts and sizes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mmsearch.api.console.pages import render, session_of, to_login
from mmsearch.api.console.session import PATH
from mmsearch.errors import MMSearchError

router = APIRouter(prefix=PATH)


@router.get("/datasets")
async def datasets(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return to_login()
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

    return render(request, "datasets.html", session, nav="datasets", datasets=await run_in_threadpool(rows))
