"""Local pictures and video keyframes the results show, for a signed-in user, from under the configured roots only."""

from __future__ import annotations

import io
import math

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mmsearch.api.console.cards import is_remote
from mmsearch.api.console.pages import session_of
from mmsearch.api.console.session import PATH
from mmsearch.errors import MMSearchError
from mmsearch.media.local import load_local
from mmsearch.media.sniff import sniff_image_format
from mmsearch.media.video import grab_frames

router = APIRouter(prefix=PATH)
FRAME_SIDE = 480  # a card's keyframe: the longer side in pixels


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


@router.get("/frame")
async def frame(request: Request, ref: str, t: float = 0.0) -> Response:
    """A local video's frame at `t` seconds, as a JPEG (the keyframe of a moment in the result grid)."""
    if session_of(request) is None:
        return Response(status_code=401)
    mm = request.app.state.mm
    if is_remote(ref) or not math.isfinite(t) or t < 0:
        return Response(status_code=404)

    def grab() -> bytes:
        with mm.open_media(ref) as path:
            found = grab_frames(path, [t], picture_side=FRAME_SIDE, limits=mm.video_config().limits)
        out = io.BytesIO()
        found[0].image.convert("RGB").save(out, "JPEG", quality=82)
        return out.getvalue()

    try:
        data = await run_in_threadpool(grab)
    except MMSearchError:
        return Response(status_code=404)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300",
                                                            "X-Content-Type-Options": "nosniff"})
