"""`POST /api/v1/application/{application_id}/search`: the AI Search spec's request and response, translated
to and from the API-neutral SearchRequest / SearchResult. No ranking logic lives here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from mmsearch.api.auth import Caller
from mmsearch.api.errors import request_id
from mmsearch.api.metrics import note_app, note_search
from mmsearch.core import AppSearchResult, MMSearch
from mmsearch.errors import InvalidArgument
from mmsearch.media import decode_image, is_data_uri, parse_data_uri
from mmsearch.media.images import DEFAULT_MAX_PIXELS, QUERY_DECODE_WAIT_S
from mmsearch.search import SearchRequest
from mmsearch.search.geo import parse_location
from mmsearch.unicode import require_valid_unicode

router = APIRouter(tags=["AI Search"])


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str | None = Field(default=None, description="text query", examples=["女鞋 春夏"])
    image_url: str | None = Field(default=None, description="image query: a base64 data URI only")
    image_query_instruction: str | None = Field(default=None, description="accepted; CLIP models do not use it")


class User(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    user_id: str | None = Field(default=None, alias="_user_id", max_length=256)


class Context(BaseModel):
    model_config = ConfigDict(extra="allow")

    location: Any = Field(default=None, description='{"latitude": "12.12", "longitude": "-13.43"}; invalid = ignored')


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: Query
    dataset_id: str = Field(min_length=1, max_length=64)
    page_number: int = Field(default=1, ge=1)
    page_size: int = Field(default=10, ge=1, description="1 .. the application's max_page_size")
    user: User | None = None
    filter: dict[str, Any] | None = None
    sort_by: str | None = None
    sort_order: Literal["asc", "desc"] = "desc"
    output_fields: list[str] | None = None
    context: Context | None = None


def to_request(body: SearchBody, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> SearchRequest:
    # JSON may spell lone surrogates ("\ud800"); anywhere in the body they are refused here, naming the field
    # (query.text, filter.conds[0].conds[1], user._user_id), before the engine or the query log chokes on them
    require_valid_unicode(body.model_dump(by_alias=True, exclude_none=True), "")
    q = body.query
    text = q.text if q.text and q.text.strip() else None
    image = None
    if q.image_url is not None:
        if not is_data_uri(q.image_url):
            raise InvalidArgument("query.image_url: must be a base64 data URI (data:<mime>;base64,<data>)",
                                  field="query.image_url")
        mime, data = parse_data_uri(q.image_url, "query.image_url")
        # pixels checked from the header; the decode waits briefly for a slot, then 503 + Retry-After
        image = decode_image(data, mime, field="query.image_url", max_pixels=max_pixels,
                             wait=QUERY_DECODE_WAIT_S).image
    if text is None and image is None:
        raise InvalidArgument("query: at least one of query.text and query.image_url is required", field="query")
    return SearchRequest(
        text=text, image=image, filter=body.filter, sort_by=body.sort_by, sort_order=body.sort_order,
        page_number=body.page_number, page_size=body.page_size, output_fields=body.output_fields,
        location=parse_location(body.context.location) if body.context else None,  # invalid: no boost
    )


def to_response(rid: str, found: AppSearchResult) -> dict[str, Any]:
    results = []
    for hit in found.result.hits:
        rerank: dict[str, Any] = {"is_reranked": hit.is_reranked}
        if hit.rerank_score is not None:
            rerank["rerank_score"] = round(hit.rerank_score, 6)
        results.append({
            "_id": hit.id,
            "display_fields": hit.fields,
            "score": round(hit.score, 6),
            "recall_info": [{"recall_reason": ch, "recall_score": round(sc, 6)} for ch, sc in hit.recall.items()],
            "rerank_info": rerank,
        })
    spell: dict[str, Any] = {"mode": found.spell_mode}
    if found.spell_mode != "off":
        spell["corrected_query"] = found.corrected_query
    total = found.result.total_items
    # The spec's table puts spell_correction and total_items beside `result`, its example inside it: both are sent.
    return {
        "request_id": rid,
        "result": {"search_results": results, "total_items": total, "spell_correction": spell},
        "spell_correction": spell,
        "total_items": total,
    }


class FastJSONResponse(JSONResponse):
    """JSON encoded by orjson straight from the answer's dicts, lists, strings and numbers: no jsonable_encoder
    pass, no second copy (~0.5 ms a page less than FastAPI's default). Same content as JSONResponse (UTF-8, no
    ASCII escaping, compact); what orjson refuses (an integer beyond 64 bits, a non-string key) goes through
    JSONResponse's encoder as before. One difference: a non-finite float is sent as null, where JSONResponse
    failed with a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except orjson.JSONEncodeError:
            return super().render(content)


async def _caller(request: Request, application_id: str) -> Caller:
    caller = await request.app.state.auth.search(request, application_id)
    note_app(request, application_id)  # the metrics' and the access log's application label
    return caller


@router.post(
    "/api/v1/application/{application_id}/search",
    summary="Search an application's dataset (AI Search `search`)",
    description="A text and/or image query over one of the application's datasets, with filters, sorting and "
    "pagination.",
    response_class=FastJSONResponse,
    response_model=None,  # the answer is built here (to_response) and sent as is: api/openapi.py documents it
)
async def search(application_id: str, body: SearchBody, request: Request,
                 caller: Annotated[Caller, Depends(_caller)]) -> FastJSONResponse:
    mm: MMSearch = request.app.state.mm
    rid = request_id(request)

    def run() -> AppSearchResult:
        req = to_request(body, max_pixels=mm.settings.max_image_pixels)
        user_id = body.user.user_id if body.user else None
        return mm.search_app(application_id, body.dataset_id, req, user_id=user_id, request_id=rid)

    # A text search over what is loaded is a few ms of Python: on the event loop it runs at once, where in a worker
    # thread it fights the loop and the other searches for the GIL (bench/http_load.py, 100k, 4 clients: ~1.4x
    # the QPS and a third of the p99). Images (decode and model) and anything that loads or reads go to a thread.
    if body.query.image_url is None and mm.answers_from_memory(application_id, body.dataset_id):
        found = run()
    else:
        found = await run_in_threadpool(run)
    note_search(request, found.result, corrected=bool(found.corrected_query))
    return FastJSONResponse(to_response(rid, found))
