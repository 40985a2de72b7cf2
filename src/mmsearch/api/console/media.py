"""Local pictures the results show, for a signed-in user, from under the configured roots only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mmsearch.api.console.pages import session_of
from mmsearch.api.console.session import PATH
from mmsearch.errors import MMSearchError
from mmsearch.media.local import load_local
from mmsearch.media.sniff import sniff_image_format

router = APIRouter(prefix=PATH)


@router.get("/media")
async def media(request: Request, ref: str) -> Response:
    """Under MMSEARCH_IMAGE_ROOTS / MEDIA_ROOTS only; anything else is a 404 that says nothing about the file."""
    if session_of(request) is None:
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
