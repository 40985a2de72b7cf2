"""IQS MultimodalSearch: `POST /search/multimodal` (HTTP, API key) and the path the official SDK
`alibabacloud_iqs20241111` calls (ACS3-HMAC-SHA256 with AK/SK). A text query returns web images from the
`web` dataset. Thin translation: the search itself is the shared pipeline.

Errors use the shape the SDK reads into `TeaException` (`code`, `message`, `requestId`):

    {"requestId": "…", "code": "Retrieval.Arrears", "message": "Please recharge first."}
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from mmsearch.api.auth import IqsAuth
from mmsearch.api.errors import request_id, status_of
from mmsearch.catalog.accounts import IqsError
from mmsearch.core import MMSearch
from mmsearch.errors import MMSearchError
from mmsearch.search import SearchRequest

router = APIRouter(tags=["IQS MultimodalSearch"])

SDK_PATH = "/linked-retrieval/linked-retrieval-entry/v1/iqs/multimodal/unified"
MAX_QUERY_CHARS = 50


class MultimodalSearchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str = Field(description="1-50 characters", examples=["狮子"])
    advancedParams: dict[str, Any] | None = Field(  # the spec's name
        default=None, description='{"excludeSites": "www.360doc.com,weibo.com"}'
    )


def iqs_error(rid: str, status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"requestId": rid, "code": code, "message": message}, status_code=status,
                        headers={"x-acs-request-id": rid})


def parse_body(raw: bytes) -> MultimodalSearchBody:
    try:
        body = MultimodalSearchBody.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        if first["type"] == "json_invalid":
            raise IqsError(400, "InvalidParameter", "body: not valid JSON", "body") from None
        raise IqsError(400, "InvalidParameter", f"{where}: {first['msg']}", where) from None
    n = len(body.query.strip())
    if not 1 <= n <= MAX_QUERY_CHARS:
        raise IqsError(400, "InvalidParameter",
                       f"query: must be 1 to {MAX_QUERY_CHARS} characters, got {n}", "query")
    return body


def exclude_sites(params: dict[str, Any] | None) -> list[str]:
    """`excludeSites`: comma-separated hosts; each excludes that host and its subdomains."""
    raw = (params or {}).get("excludeSites")
    if raw is None:
        return []
    if not isinstance(raw, str):
        raise IqsError(400, "InvalidParameter", "advancedParams.excludeSites: must be a comma-separated string",
                       "advancedParams.excludeSites")
    hosts = []
    for part in raw.split(","):
        part = part.strip().lower()
        if not part:
            continue
        host = (urlsplit(part).hostname or "") if "//" in part else part.split("/")[0].split(":")[0]
        host = host.strip(".")
        if not host or " " in host:
            raise IqsError(400, "InvalidParameter", f"advancedParams.excludeSites: {part!r} is not a host name",
                           "advancedParams.excludeSites")
        hosts.append(host)
    return list(dict.fromkeys(hosts))


def image_items(hits: list[Any]) -> list[dict[str, Any]]:
    out = []
    for h in hits:
        f = h.fields
        out.append({
            "title": str(f.get("title") or ""),
            "hostPageUrl": str(f.get("hostPageUrl") or ""),
            "imageUrl": str(f.get("imageUrl") or ""),
            "publishedTime": str(f.get("publishedTime") or ""),
            "height": int(f.get("height") or 0),
            "width": int(f.get("width") or 0),
        })
    return out


def run_search(mm: MMSearch, body: MultimodalSearchBody) -> tuple[list[dict[str, Any]], int]:
    settings = mm.settings
    try:
        info = mm.dataset(settings.web_dataset)
    except MMSearchError:
        raise IqsError(503, "Retrieval.IndexNotReady",
                       f"no web image corpus yet (dataset {settings.web_dataset!r}); build it with mmsearch crawl, "
                       "import-warc or import-web") from None
    excluded = exclude_sites(body.advancedParams)
    flt = {"op": "must_not", "field": "site_domains", "conds": excluded} if excluded else None
    req = SearchRequest(text=body.query.strip(), filter=flt, page_size=settings.iqs_results)
    result = mm.search(info.id, req, dataclasses.replace(mm.options(), rerank=True))
    return image_items(result.hits), result.total_items


async def handle(request: Request) -> JSONResponse:
    rid = request_id(request) or str(uuid.uuid4())  # the id the X-Request-Id header carries too
    started = time.perf_counter()
    mm: MMSearch = request.app.state.mm
    auth: IqsAuth = request.app.state.iqs_auth
    try:
        raw = await request.body()
        key = await run_in_threadpool(auth.authenticate, request, raw)
        body = parse_body(raw)  # a bad request is refused before it is charged
        charge = await run_in_threadpool(auth.charge, key)
        try:
            items, _total = await asyncio.wait_for(run_in_threadpool(run_search, mm, body),
                                                   timeout=mm.settings.iqs_timeout_s)
        except TimeoutError:
            await run_in_threadpool(auth.refund, charge)
            raise IqsError(504, "Retrieval.Timeout",
                           f"the search did not finish within {mm.settings.iqs_timeout_s:g} s") from None
        except IqsError:
            await run_in_threadpool(auth.refund, charge)
            raise
    except MMSearchError as exc:
        return iqs_error(rid, status_of(exc), exc.code, exc.message)
    took = round((time.perf_counter() - started) * 1000)
    return JSONResponse({
        "requestId": rid,
        "imageItems": items,
        "searchInformation": {"searchTime": took},
        "queryContext": {"originalQuery": {"query": body.query}},
    }, headers={"x-acs-request-id": rid})


router.add_api_route("/search/multimodal", handle, methods=["POST"], summary="MultimodalSearch (HTTP, API key)",
                     description="Body: {\"query\": \"狮子\", \"advancedParams\": {\"excludeSites\": \"a.com,b.cn\"}}")
router.add_api_route(SDK_PATH, handle, methods=["POST"], summary="MultimodalSearch (alibabacloud_iqs20241111 SDK)")
