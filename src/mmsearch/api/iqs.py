"""IQS MultimodalSearch: `POST /search/multimodal` (HTTP, API key) and the path the official SDK
`alibabacloud_iqs20241111` calls (ACS3-HMAC-SHA256 with AK/SK). A text query returns web images from the
`web` dataset. Thin translation: the search itself is the shared pipeline.

Errors use the shape the SDK reads into `TeaException` (`code`, `message`, `requestId`):

    {"requestId": "…", "code": "Retrieval.Arrears", "message": "Please recharge first."}

A refused query is never charged: the body is checked (JSON, Content-Type, valid Unicode, query length,
`excludeSites` size) before the charge, and whatever stops the search after it (timeout, a refused value, an
unexpected exception) refunds the charge before the error is answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from mmsearch.api.auth import IqsAuth
from mmsearch.api.errors import (
    IQS_SDK_PATH,
    iqs_code,
    iqs_response,
    is_json_media_type,
    media_type,
    request_id,
    status_of,
)
from mmsearch.api.metrics import note_iqs, note_search
from mmsearch.catalog.accounts import IqsError
from mmsearch.core import MMSearch
from mmsearch.errors import MMSearchError
from mmsearch.search import SearchRequest, SearchResult
from mmsearch.unicode import find_invalid_unicode

router = APIRouter(tags=["IQS MultimodalSearch"])

SDK_PATH = IQS_SDK_PATH
MAX_QUERY_CHARS = 50
MAX_HOST_CHARS = 253  # a DNS name
CHARS_PER_EXCLUDED_SITE = 256  # the raw excludeSites string may hold this many characters per allowed host


class MultimodalSearchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str = Field(description="1-50 characters", examples=["狮子"])
    advancedParams: dict[str, Any] | None = Field(  # the spec's name
        default=None, description='{"excludeSites": "www.360doc.com,weibo.com"}'
    )


def iqs_error(rid: str, status: int, code: str, message: str) -> JSONResponse:
    return iqs_response(rid, status, code, message)


def invalid(where: str, rule: str) -> IqsError:
    return IqsError(400, "InvalidParameter", f"{where}: {rule}", where)


@dataclasses.dataclass(frozen=True)
class Query:
    """A checked MultimodalSearch body: what the search needs, nothing left to refuse."""

    query: str  # as sent (echoed in queryContext)
    text: str  # stripped, 1-50 characters
    exclude: list[str]  # hosts, lower case, deduplicated


def check_content_type(content_type: str | None) -> None:
    """JSON, or no Content-Type at all (read as JSON, as the AI Search endpoint does)."""
    media = media_type(content_type)
    if media and not is_json_media_type(media):
        raise IqsError(415, "UnsupportedMediaType",
                       f"Content-Type: send the body as application/json, got {media!r}", "Content-Type")


def parse_body(raw: bytes, max_sites: int = 1_024) -> Query:
    """The body, refused with 400 InvalidParameter naming the field: before anything is charged."""
    try:
        data = json.loads(raw or b"{}")  # stdlib: a lone surrogate is read, then refused naming its field
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        at = f" ({exc.msg} at line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise invalid("body", f"not valid JSON{at}") from None
    except RecursionError:
        raise invalid("body", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise invalid("body", f"must be a JSON object, got {type(data).__name__}")
    bad = find_invalid_unicode(data, "")
    if bad is not None:
        raise invalid(bad, "not valid Unicode (a lone UTF-16 surrogate such as \\ud800); send UTF-8 text")
    try:
        body = MultimodalSearchBody.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise invalid(where, first["msg"]) from None
    n = len(body.query.strip())
    if not 1 <= n <= MAX_QUERY_CHARS:
        raise invalid("query", f"must be 1 to {MAX_QUERY_CHARS} characters, got {n}")
    return Query(query=body.query, text=body.query.strip(), exclude=exclude_sites(body.advancedParams, max_sites))


def exclude_sites(params: dict[str, Any] | None, max_sites: int = 1_024) -> list[str]:
    """`excludeSites`: comma-separated hosts; each excludes that host and its subdomains. At most `max_sites`
    distinct hosts, and the string is bounded before it is split (256 characters per allowed host)."""
    where = "advancedParams.excludeSites"
    raw = (params or {}).get("excludeSites")
    if raw is None:
        return []
    if not isinstance(raw, str):
        raise invalid(where, "must be a comma-separated string")
    if len(raw) > max_sites * CHARS_PER_EXCLUDED_SITE:
        raise invalid(where, f"at most {max_sites * CHARS_PER_EXCLUDED_SITE} characters, got {len(raw)}")
    hosts: dict[str, None] = {}
    for part in raw.split(","):
        part = part.strip().lower()
        if not part:
            continue
        host = (urlsplit(part).hostname or "") if "//" in part else part.split("/")[0].split(":")[0]
        host = host.strip(".")
        if not host or any(c.isspace() for c in host) or len(host) > MAX_HOST_CHARS:
            raise invalid(where, f"{part[:100]!r} is not a host name")
        hosts[host] = None
        if len(hosts) > max_sites:
            raise invalid(where, f"at most {max_sites} hosts (MMSEARCH_IQS_MAX_EXCLUDE_SITES)")
    return list(hosts)


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


def run_search(mm: MMSearch, body: Query) -> tuple[list[dict[str, Any]], int]:
    result = search_web(mm, body)
    return image_items(result.hits), result.total_items


def search_web(mm: MMSearch, body: Query) -> SearchResult:
    """The web image search behind MultimodalSearch (the pipeline's result, stage timings included)."""
    settings = mm.settings
    try:
        info = mm.dataset(settings.web_dataset)
    except MMSearchError:
        raise IqsError(503, "Retrieval.IndexNotReady",
                       f"no web image corpus yet (dataset {settings.web_dataset!r}); build it with mmsearch crawl, "
                       "import-warc or import-web") from None
    flt = {"op": "must_not", "field": "site_domains", "conds": body.exclude} if body.exclude else None
    req = SearchRequest(text=body.text, filter=flt, page_size=settings.iqs_results)
    return mm.search(info.id, req, dataclasses.replace(mm.options(), rerank=True))


async def handle(request: Request) -> JSONResponse:
    rid = request_id(request) or str(uuid.uuid4())  # the id the X-Request-Id header carries too
    started = time.perf_counter()
    mm: MMSearch = request.app.state.mm
    auth: IqsAuth = request.app.state.iqs_auth
    try:
        raw = await request.body()
        key = await run_in_threadpool(auth.authenticate, request, raw)
        check_content_type(request.headers.get("content-type"))
        body = parse_body(raw, mm.settings.iqs_max_exclude_sites)  # a bad request is refused before it is charged
        charge = await run_in_threadpool(auth.charge, key)
        note_iqs(request, charged=True)
        try:
            result = await asyncio.wait_for(run_in_threadpool(search_web, mm, body),
                                            timeout=mm.settings.iqs_timeout_s)
        except TimeoutError:
            await run_in_threadpool(auth.refund, charge)
            note_iqs(request, refunded=True)
            raise IqsError(504, "Retrieval.Timeout",
                           f"the search did not finish within {mm.settings.iqs_timeout_s:g} s") from None
        except Exception:  # refused or failed after the charge, for whatever reason: not charged
            await run_in_threadpool(auth.refund, charge)
            note_iqs(request, refunded=True)
            raise  # an MMSearchError is answered below; anything else is the IQS-shaped 500 (errors.on_unexpected)
    except MMSearchError as exc:
        code = iqs_code(exc)
        note_iqs(request, refused=code)
        return iqs_error(rid, status_of(exc), code, exc.message)
    note_search(request, result)
    items = image_items(result.hits)
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
