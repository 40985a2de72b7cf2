"""IQS in the console: web image search and the accounts that may call the IQS API.

Web search takes the IQS endpoint's own path: its body check (`parse_body`, so the same rules and messages) and
its search (`run_search`), but skips the account charge: the console is the admin, not a customer. The account
forms go through the admin API's own models (`AccountCreate`, `AccountUpdate`) and the catalog functions that
`/admin/v1/accounts` calls, so the limits and the messages are the API's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from mmsearch.api.admin import AccountCreate, AccountUpdate
from mmsearch.api.console.pages import checked, not_found, render, see, signed_in
from mmsearch.api.console.session import PATH, Session
from mmsearch.api.errors import describe_validation
from mmsearch.api.iqs import parse_body, run_search
from mmsearch.catalog.accounts import DEFAULT_QPS, MAX_CREDITS, MAX_QPS, PLANS, Accounts
from mmsearch.core import MMSearch
from mmsearch.errors import InvalidArgument, MMSearchError, NotFound
from mmsearch.ingest.web.corpus import page_host

router = APIRouter(prefix=PATH)
CRAWL = "mmsearch crawl https://example.com/ --name example --max-pages 500 --max-depth 3"
EMPTY_QUERY = "Type a query: 1 to 50 characters of text (the IQS API refuses an empty one)."
M = TypeVar("M", bound=BaseModel)


# -- web image search -------------------------------------------------------------------------------------------
def _ready(mm: MMSearch) -> bool:
    """Whether the web dataset exists and holds at least one image (else the page explains how to fill it)."""
    try:
        return mm.store.count(mm.dataset(mm.settings.web_dataset)) > 0
    except MMSearchError:
        return False


def _web_link(url: str) -> str:
    """A host page URL safe to link to (http/https only), else ""."""
    return url if urlsplit(url).scheme in ("http", "https") else ""


def _search(mm: MMSearch, q: str, exclude: str) -> dict[str, Any]:
    """The IQS endpoint's check and search on the form's values; raises the API's MMSearchError when refused."""
    raw = json.dumps({"query": q, "advancedParams": {"excludeSites": exclude}}, ensure_ascii=False).encode()
    checked = parse_body(raw, mm.settings.iqs_max_exclude_sites)
    started = time.perf_counter()
    items, total = run_search(mm, checked)
    cards = [{**item, "site": page_host(item["hostPageUrl"]), "link": _web_link(item["hostPageUrl"]),
              "date": item["publishedTime"][:10]} for item in items]
    return {"items": cards, "total": total, "excluded": checked.exclude,
            "took": round((time.perf_counter() - started) * 1000)}


@router.get("/web")
async def web(request: Request, q: str | None = None, exclude: str = "") -> Response:
    session = signed_in(request)
    mm: MMSearch = request.app.state.mm
    ready = await run_in_threadpool(_ready, mm)
    context: dict[str, Any] = {"q": q or "", "exclude": exclude, "ready": ready, "crawl": CRAWL,
                               "dataset": mm.settings.web_dataset, "found": None, "error": None}
    status = 200
    if q is not None and not q.strip():
        context["error"], status = EMPTY_QUERY, 400
    elif q is not None and ready:
        try:
            context["found"] = await run_in_threadpool(_search, mm, q, exclude)
        except MMSearchError as exc:
            context["error"], status = exc.message, 400
    return render(request, "web.html", session, nav="web", status=status, **context)


# -- IQS accounts -----------------------------------------------------------------------------------------------
def _checked(model: type[M], values: dict[str, str]) -> M:
    """Form values through the admin API's own model (`AccountCreate`, `AccountUpdate`): its limits (MAX_QPS,
    MAX_CREDITS) and its message when refused, so a non-number names its field instead of giving a 422 page."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        message, first, _ = describe_validation(exc.errors())
        raise InvalidArgument(message, field=first["field"]) from None


def _given(**values: str) -> dict[str, str]:
    """The non-empty fields of a form, stripped: an empty one keeps the default (or the current value)."""
    return {k: v.strip() for k, v in values.items() if v.strip()}


def _credits(field: str, value: str) -> int:
    """`credits` or `add_credits` through `AccountUpdate`; here an empty field is refused, not ignored."""
    amount: int = getattr(_checked(AccountUpdate, {field: value.strip()}), field)
    return amount


def _url(name: str) -> str:
    return f"{PATH}/accounts/{quote(name, safe='')}"


async def _accounts_page(request: Request, session: Session, error: str | None = None, status: int = 200,
                         form: dict[str, str] | None = None) -> HTMLResponse:
    found = await run_in_threadpool(request.app.state.mm.catalog.accounts.list)
    form = form or {"name": "", "plan": "trial", "qps": str(DEFAULT_QPS), "credits": "0"}
    return render(request, "accounts.html", session, nav="accounts", status=status, accounts=found, error=error,
                  form=form, plans=PLANS, max_qps=MAX_QPS, max_credits=MAX_CREDITS)


async def _account_page(request: Request, session: Session, name: str, created: Any = None,
                        error: str | None = None, status: int = 200) -> HTMLResponse:
    try:
        account = await run_in_threadpool(request.app.state.mm.catalog.accounts.get, name)
    except NotFound:
        return not_found(request, session, "No such account", f"There is no IQS account {name!r}.")
    return render(request, "account.html", session, nav="accounts", status=status, account=account,
                  created=created, error=error, plans=PLANS, max_qps=MAX_QPS, max_credits=MAX_CREDITS)


async def _change(request: Request, session: Session, name: str, change: Callable[[Accounts], Any]) -> Response:
    """Apply one change to an account; back to its page by GET, or the page again with the catalog's message."""
    try:
        await run_in_threadpool(change, request.app.state.mm.catalog.accounts)
    except MMSearchError as exc:
        return await _account_page(request, session, name, error=exc.message, status=400)
    return see(_url(name))


@router.get("/accounts")
async def accounts(request: Request) -> Response:
    session = signed_in(request)
    return await _accounts_page(request, session)


@router.post("/accounts")
async def create_account(request: Request, csrf: Annotated[str, Form(max_length=200)] = "",
                         name: Annotated[str, Form()] = "", plan: Annotated[str, Form()] = "trial",
                         qps: Annotated[str, Form()] = "", credits: Annotated[str, Form()] = "") -> Response:
    """A new account and its main key; the secrets are on this answer only (the catalog keeps a hash of the key)."""
    session = checked(request, csrf)
    form = {"name": name[:100], "plan": plan[:10], "qps": qps[:40], "credits": credits[:40]}
    mm = request.app.state.mm
    try:
        body = _checked(AccountCreate, {**_given(plan=plan, qps=qps, credits=credits), "name": name.strip()})
        created = await run_in_threadpool(mm.catalog.accounts.create, body.name, body.plan, body.qps, body.credits)
    except MMSearchError as exc:
        return await _accounts_page(request, session, error=exc.message, status=400, form=form)
    return await _account_page(request, session, created.account.name, created=created)


@router.get("/accounts/{name}")
async def account(request: Request, name: str) -> Response:
    session = signed_in(request)
    return await _account_page(request, session, name)


@router.post("/accounts/{name}/activate")
async def activate(request: Request, name: str, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    session = checked(request, csrf)
    return await _change(request, session, name, lambda a: a.activate(name))


@router.post("/accounts/{name}/deactivate")
async def deactivate(request: Request, name: str, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    session = checked(request, csrf)
    return await _change(request, session, name, lambda a: a.deactivate(name))


@router.post("/accounts/{name}/plan")
async def change_plan(request: Request, name: str, csrf: Annotated[str, Form(max_length=200)] = "",
                      plan: Annotated[str, Form()] = "", qps: Annotated[str, Form()] = "") -> Response:
    """Plan and QPS limit; an empty field stays as it is."""
    session = checked(request, csrf)
    return await _change(request, session, name, lambda a: a.update(
        name, **_checked(AccountUpdate, _given(plan=plan, qps=qps)).model_dump(include={"plan", "qps"})))


@router.post("/accounts/{name}/credits")
async def set_credits(request: Request, name: str, csrf: Annotated[str, Form(max_length=200)] = "",
                      credits: Annotated[str, Form()] = "") -> Response:
    session = checked(request, csrf)
    return await _change(request, session, name, lambda a: a.set_credits(name, _credits("credits", credits)))


@router.post("/accounts/{name}/recharge")
async def add_credits(request: Request, name: str, csrf: Annotated[str, Form(max_length=200)] = "",
                      add_credits: Annotated[str, Form()] = "") -> Response:
    """A recharge: added atomically by the catalog, refused past MAX_CREDITS."""
    session = checked(request, csrf)
    return await _change(request, session, name,
                         lambda a: a.add_credits(name, _credits("add_credits", add_credits)))


@router.post("/accounts/{name}/subkeys")
async def create_subkey(request: Request, name: str, csrf: Annotated[str, Form(max_length=200)] = "",
                        can_search: Annotated[str, Form()] = "") -> Response:
    """A sub-account key; its secrets are on this answer only."""
    session = checked(request, csrf)
    try:
        created = await run_in_threadpool(request.app.state.mm.catalog.accounts.subkey, name, bool(can_search))
    except MMSearchError as exc:
        return await _account_page(request, session, name, error=exc.message, status=400)
    return await _account_page(request, session, name, created=created)


@router.post("/account-keys/{access_key_id}/revoke")
async def revoke_key(request: Request, access_key_id: str,
                     csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Revoke a key pair and its API key: from then on it answers InvalidAccessKeyId.NotFound."""
    session = checked(request, csrf)
    try:
        key = await run_in_threadpool(request.app.state.mm.catalog.accounts.revoke_key, access_key_id)
    except MMSearchError as exc:
        return await _accounts_page(request, session, error=exc.message, status=400)
    return see(_url(key.account))
