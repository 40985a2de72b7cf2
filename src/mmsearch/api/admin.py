"""mmsearch's own management API (admin token): datasets, items, import jobs, applications, API keys, query log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mmsearch.catalog.accounts import MAX_CREDITS, MAX_QPS
from mmsearch.catalog.apps import AppConfig
from mmsearch.core import MMSearch
from mmsearch.ingest.jobs import submit_body
from mmsearch.unicode import require_valid_unicode


async def require_admin(request: Request) -> None:
    request.app.state.auth.admin(request)


router = APIRouter(prefix="/admin/v1", tags=["management"], dependencies=[Depends(require_admin)])


def _mm(request: Request) -> MMSearch:
    return request.app.state.mm


def _unicode(body: BaseModel) -> None:
    """A lone surrogate ("\\ud800") anywhere in a body is refused naming its field (`schema.fields[0].name`),
    before it reaches a message, the catalog or the store, none of which can encode it."""
    require_valid_unicode(body.model_dump(by_alias=True, exclude_none=True), "")


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="dataset id", examples=["products"])
    type: Literal["image_text", "video"] = "image_text"
    schema_: dict[str, Any] = Field(alias="schema", description='{"fields": [...]} as in the README')
    vector_dim: int | None = Field(default=None, ge=2, le=8192)


class ApplicationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    datasets: list[str] = Field(min_length=1)
    config: AppConfig = Field(default_factory=AppConfig)


class ApplicationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: list[str] | None = None
    config: AppConfig | None = None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    apps: list[str] = Field(min_length=1, description="applications the key may search")
    name: str = Field(default="", max_length=200)


class IdList(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=10_000)


def _dataset_dict(mm: MMSearch, dataset_id: str) -> dict[str, Any]:
    info = mm.dataset(dataset_id)
    return {"id": info.id, "type": info.type, "vector_dim": info.vector_dim,
            "schema": info.schema.model_dump(exclude_defaults=True), "stats": mm.stats(info.id)}


# -- datasets -------------------------------------------------------------------------------------------
@router.post("/datasets", status_code=201, summary="Create a dataset")
def create_dataset(body: DatasetCreate, request: Request) -> dict[str, Any]:
    _unicode(body)
    mm = _mm(request)
    mm.create_dataset(body.id, body.schema_, type=body.type, vector_dim=body.vector_dim)
    return _dataset_dict(mm, body.id)


@router.get("/datasets", summary="List datasets")
def list_datasets(request: Request) -> dict[str, Any]:
    mm = _mm(request)
    return {"datasets": [_dataset_dict(mm, d.id) for d in mm.datasets()]}


@router.get("/datasets/{dataset_id}", summary="Show a dataset with its schema and row counts")
def get_dataset(dataset_id: str, request: Request) -> dict[str, Any]:
    return _dataset_dict(_mm(request), dataset_id)


class Dictionary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dictionary: list[str] = Field(max_length=10_000, description="words jieba keeps whole: 2-32 Chinese "
                                  "characters each (brand names, product lines); replaces the dataset's list")


@router.put("/datasets/{dataset_id}/dictionary", summary="Replace a dataset's user words for segmentation")
def put_dictionary(dataset_id: str, body: Dictionary, request: Request) -> dict[str, Any]:
    _unicode(body)
    mm = _mm(request)
    mm.set_dictionary(dataset_id, body.dictionary)
    return _dataset_dict(mm, dataset_id)


@router.delete("/datasets/{dataset_id}", status_code=204, summary="Drop a dataset and its items")
def drop_dataset(dataset_id: str, request: Request) -> Response:
    mm = _mm(request)
    mm.drop_dataset(dataset_id)
    mm.spell.forget(dataset_id)
    return Response(status_code=204)


# -- items ------------------------------------------------------------------------------------------------
@router.post(
    "/datasets/{dataset_id}/items", status_code=202, summary="Upsert items (a durable import job)",
    description="Body: a JSON array of items, `{\"items\": [...]}`, or NDJSON (one item per line). The items are "
    "stored before the answer; the returned job applies them (`GET /admin/v1/jobs/{job_id}`).",
)
async def upsert_items(dataset_id: str, request: Request) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    mm = _mm(request)
    job = await run_in_threadpool(submit_body, mm, dataset_id, body)
    request.app.state.runner.wake()
    return job.as_dict()


@router.post("/datasets/{dataset_id}/items/delete", summary="Delete items by id")
def delete_items(dataset_id: str, body: IdList, request: Request) -> dict[str, Any]:
    _unicode(body)
    return {"deleted": _mm(request).delete(dataset_id, body.ids)}


@router.get(
    "/datasets/{dataset_id}/items/{item_id:path}",
    summary="Get one item (percent-encode the id: `a/b` as `a%2Fb`; the rest of the path is the id)",
)
def get_item(dataset_id: str, item_id: str, request: Request) -> dict[str, Any]:
    from mmsearch.errors import NotFound

    found = _mm(request).get(dataset_id, [item_id])
    if not found:
        raise NotFound(f"item_id: no item {item_id!r} in dataset {dataset_id!r}", field="item_id")
    return {"_id": item_id, "item": found[0]}


# -- jobs --------------------------------------------------------------------------------------------------
@router.get("/jobs", summary="List import jobs (newest first)")
def list_jobs(request: Request, dataset_id: str | None = None, status: str | None = None,
              limit: int = 100) -> dict[str, Any]:
    jobs = _mm(request).catalog.jobs.list(dataset_id=dataset_id, status=status, limit=max(1, min(limit, 1000)))
    return {"jobs": [j.as_dict() for j in jobs]}


@router.get("/jobs/{job_id}", summary="A job's status, progress, rate and per-item errors")
def get_job(job_id: str, request: Request) -> dict[str, Any]:
    return _mm(request).catalog.jobs.get(job_id).as_dict()


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    return _mm(request).catalog.jobs.cancel(job_id).as_dict()


# -- applications -------------------------------------------------------------------------------------------
@router.post("/applications", status_code=201, summary="Create an application over datasets")
def create_application(body: ApplicationCreate, request: Request) -> dict[str, Any]:
    _unicode(body)
    return _mm(request).catalog.apps.create(body.id, body.datasets, body.config).as_dict()


@router.get("/applications", summary="List applications")
def list_applications(request: Request) -> dict[str, Any]:
    return {"applications": [a.as_dict() for a in _mm(request).catalog.apps.list()]}


@router.get("/applications/{application_id}", summary="Show an application")
def get_application(application_id: str, request: Request) -> dict[str, Any]:
    return _mm(request).catalog.apps.get(application_id).as_dict()


@router.patch("/applications/{application_id}", summary="Change an application's datasets or config")
def update_application(application_id: str, body: ApplicationUpdate, request: Request) -> dict[str, Any]:
    _unicode(body)
    return _mm(request).catalog.apps.update(application_id, body.datasets, body.config).as_dict()


@router.delete("/applications/{application_id}", status_code=204, summary="Delete an application")
def delete_application(application_id: str, request: Request) -> Response:
    _mm(request).catalog.apps.remove(application_id)
    return Response(status_code=204)


# -- keys ----------------------------------------------------------------------------------------------------
@router.post("/keys", status_code=201, summary="Create an API key (shown once) with its AK/SK pair")
def create_key(body: KeyCreate, request: Request) -> dict[str, Any]:
    _unicode(body)
    return _mm(request).catalog.keys.create(body.apps, body.name).as_dict()


@router.get("/keys", summary="List keys (without secrets)")
def list_keys(request: Request) -> dict[str, Any]:
    return {"keys": [k.as_dict() for k in _mm(request).catalog.keys.list()]}


@router.delete("/keys/{key}", summary="Revoke a key (by id, access key id, or the key itself)")
def revoke_key(key: str, request: Request) -> dict[str, Any]:
    return _mm(request).catalog.keys.revoke(key).as_dict()


# -- query log ------------------------------------------------------------------------------------------------
@router.get("/query-log", summary="Recent searches: query, user, latency, result counts")
def query_log(request: Request, application_id: str | None = None, limit: int = 100) -> dict[str, Any]:
    entries = _mm(request).catalog.query_log.recent(application_id, limit=max(1, min(limit, 1000)))
    return {"entries": [{**e.__dict__, "ts": e.ts.isoformat()} for e in entries]}


# -- IQS accounts -----------------------------------------------------------------------------------------------
class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    plan: Literal["trial", "paid"] = "trial"
    qps: int = Field(default=10, ge=1, le=MAX_QPS)
    credits: int = Field(default=0, ge=0, le=MAX_CREDITS, description="paid plan: queries left")
    active: bool = True
    created_at: datetime | None = Field(default=None, description="for migrations: the trial counts 15 days from it")


class SubkeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    can_search: bool = True


class AccountUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: Literal["trial", "paid"] | None = None
    qps: int | None = Field(default=None, ge=1, le=MAX_QPS)
    credits: int | None = Field(default=None, ge=0, le=MAX_CREDITS, description="set the balance")
    add_credits: int | None = Field(default=None, ge=0, le=MAX_CREDITS,
                                    description="add to the balance (a recharge; the sum may not pass the maximum)")
    active: bool | None = None


@router.post("/accounts", status_code=201, summary="Create an IQS account with its AK/SK pair and API key (shown once)")
def create_account(body: AccountCreate, request: Request) -> dict[str, Any]:
    _unicode(body)
    return _mm(request).catalog.accounts.create(
        body.name, plan=body.plan, qps=body.qps, credits=body.credits, active=body.active, created_at=body.created_at
    ).as_dict()


@router.get("/accounts", summary="List IQS accounts")
def list_accounts(request: Request) -> dict[str, Any]:
    return {"accounts": [a.as_dict() for a in _mm(request).catalog.accounts.list()]}


@router.get("/accounts/{name}", summary="Show an IQS account, its keys and today's usage")
def get_account(name: str, request: Request) -> dict[str, Any]:
    return _mm(request).catalog.accounts.get(name).as_dict()


@router.patch("/accounts/{name}", summary="Activate/deactivate, change plan or qps, set or add credits")
def update_account(name: str, body: AccountUpdate, request: Request) -> dict[str, Any]:
    accounts = _mm(request).catalog.accounts
    if body.plan is not None or body.qps is not None:
        accounts.update(name, plan=body.plan, qps=body.qps)
    if body.credits is not None:
        accounts.set_credits(name, body.credits)
    if body.add_credits is not None:
        accounts.add_credits(name, body.add_credits)
    if body.active is not None:
        (accounts.activate if body.active else accounts.deactivate)(name)
    return accounts.get(name).as_dict()


@router.post("/accounts/{name}/subkeys", status_code=201, summary="Add a sub-account key pair and API key")
def create_subkey(name: str, body: SubkeyCreate, request: Request) -> dict[str, Any]:
    return _mm(request).catalog.accounts.subkey(name, can_search=body.can_search).as_dict()


@router.delete("/account-keys/{access_key_id}", summary="Revoke an IQS key pair (and its API key)")
def revoke_account_key(access_key_id: str, request: Request) -> dict[str, Any]:
    return _mm(request).catalog.accounts.revoke_key(access_key_id).as_dict()
