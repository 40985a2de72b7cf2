"""Applications: the list, creation and the settings page (datasets, ranking, spelling, rerank, location,
synonyms and field weights).

The settings form becomes the same config object `POST /admin/v1/applications` takes and goes through the
catalog's `parse_app_config`, so a bad value gets the API's message (`config.max_page_size: …`). Numbers are
passed on as typed; pydantic reads "20" as 20 and names the field when a value is not a number.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from mmsearch.api.console.pages import checked, not_found, render, see, signed_in
from mmsearch.api.console.session import PATH, Session
from mmsearch.catalog.apps import AppConfig
from mmsearch.errors import InvalidArgument, MMSearchError, NotFound

router = APIRouter(prefix=PATH)
NUMBERS = ("max_page_size", "recall_size", "text_weight", "vlm_weight", "rerank_depth")
LOCATION_NUMBERS = ("radius_km", "weight")
_PHRASES = re.compile(r"\s*[,，、]\s*")
_WEIGHT = re.compile(r"^\s*([^:=\s]+)\s*[:=]\s*(\S+)\s*$")


@router.get("")
async def home(request: Request) -> Response:
    session = signed_in(request)
    apps = await run_in_threadpool(request.app.state.mm.catalog.apps.list)
    return render(request, "apps.html", session, nav="apps", apps=apps)


def config_from(data: FormData) -> dict[str, Any]:
    """The settings form as an application config (the management API's JSON), before validation."""
    def text(name: str) -> str:
        value = data.get(name)
        return value.strip()[:100_000] if isinstance(value, str) else ""

    config: dict[str, Any] = {n: text(n) for n in NUMBERS if text(n)}
    config["spell_correction"] = text("spell_correction") or "off"
    config["rerank"] = bool(data.get("rerank"))
    if text("fusion"):
        config["fusion"] = text("fusion")
    if text("location.field"):
        location: dict[str, Any] = {"field": text("location.field")}
        location.update({n: text(f"location.{n}") for n in LOCATION_NUMBERS if text(f"location.{n}")})
        location.update({n: text(f"location.{n}") for n in ("decay", "mode") if text(f"location.{n}")})
        config["location"] = location
    config["synonyms"] = [[p for p in _PHRASES.split(line.strip()) if p]
                          for line in text("synonyms").splitlines() if line.strip()]
    weights: dict[str, str] = {}
    for n, line in enumerate(text("field_weights").splitlines(), 1):
        if not line.strip():
            continue
        found = _WEIGHT.match(line)
        if found is None:
            raise InvalidArgument(f"config.field_weights: line {n}: write `field: weight`, got {line.strip()!r}",
                                  field="config.field_weights")
        weights[found.group(1)] = found.group(2)
    config["field_weights"] = weights
    return config


def _form_of(app_id: str, datasets: list[str], config: AppConfig | dict[str, Any]) -> dict[str, Any]:
    """What the settings form shows: a saved config, or what was just posted (with its mistake)."""
    cfg = config.model_dump() if isinstance(config, AppConfig) else config
    synonyms = cfg.get("synonyms") or []
    weights = cfg.get("field_weights") or {}
    return {"id": app_id, "datasets": datasets, "config": cfg, "location": cfg.get("location") or {},
            "synonyms": "\n".join(", ".join(g) for g in synonyms),
            "field_weights": "\n".join(f"{k}: {v}" for k, v in weights.items())}


def _posted(data: FormData, app_id: str, datasets: list[str]) -> dict[str, Any]:
    """The form as it was posted, to show again with the error: nothing the user typed is lost."""
    def text(name: str) -> str:
        value = data.get(name)
        return value[:100_000] if isinstance(value, str) else ""

    config: dict[str, Any] = {n: text(n) for n in (*NUMBERS, "spell_correction", "fusion")}
    config["rerank"] = bool(data.get("rerank"))
    location = {n: text(f"location.{n}") for n in ("field", "decay", "mode", *LOCATION_NUMBERS)}
    return {"id": app_id, "datasets": datasets, "config": config, "location": location,
            "synonyms": text("synonyms"), "field_weights": text("field_weights")}


async def _settings(request: Request, session: Session, form: dict[str, Any], new: bool, error: str | None = None,
                    status: int = 200) -> Response:
    mm = request.app.state.mm
    infos = await run_in_threadpool(mm.datasets)
    geo_fields = sorted({f.name for d in infos for f in d.schema.fields if f.type == "geo_point"})
    return render(request, "app_settings.html", session, nav="apps", status=status, form=form, new=new, error=error,
                  all_datasets=[d.id for d in infos], geo_fields=geo_fields)


@router.get("/applications/new")
async def new_app(request: Request, dataset: str = "") -> Response:
    session = signed_in(request)
    return await _settings(request, session, _form_of("", [dataset] if dataset else [], AppConfig()), new=True)


@router.get("/apps/{app_id}/settings")
async def app_settings(request: Request, app_id: str) -> Response:
    session = signed_in(request)
    try:
        app = await run_in_threadpool(request.app.state.mm.catalog.apps.get, app_id)
    except NotFound:
        return not_found(request, session, "No such application", f"There is no application {app_id!r}.")
    return await _settings(request, session, _form_of(app.id, app.datasets, app.config), new=False)


async def _save(request: Request, app_id: str | None) -> Response:
    data = await request.form(max_files=0, max_fields=200)
    session = checked(request, str(data.get("csrf") or ""))
    apps = request.app.state.mm.catalog.apps
    new_id = str(data.get("id") or "").strip()[:200]
    datasets = [d for d in data.getlist("datasets") if isinstance(d, str)][:100]
    try:
        config = config_from(data)
        if app_id is None:
            saved = await run_in_threadpool(apps.create, new_id, datasets, config)
        else:
            saved = await run_in_threadpool(apps.update, app_id, datasets, config)
    except NotFound as exc:
        if app_id is not None and exc.field == "application_id":
            return not_found(request, session, "No such application", f"There is no application {app_id!r}.")
        return await _settings(request, session, _posted(data, new_id or app_id or "", datasets),
                               new=app_id is None, error=exc.message, status=400)
    except MMSearchError as exc:
        return await _settings(request, session, _posted(data, new_id or app_id or "", datasets),
                               new=app_id is None, error=exc.message, status=400)
    return see(f"{PATH}/apps/{saved.id}/settings?saved=1")


@router.post("/applications/new")
async def create_app(request: Request) -> Response:
    return await _save(request, None)


@router.post("/apps/{app_id}/settings")
async def save_app(request: Request, app_id: str) -> Response:
    return await _save(request, app_id)


@router.post("/apps/{app_id}/delete")
async def delete_app(request: Request, app_id: str) -> Response:
    data = await request.form(max_files=0, max_fields=4)
    session = checked(request, str(data.get("csrf") or ""))
    try:
        await run_in_threadpool(request.app.state.mm.catalog.apps.remove, app_id)
    except NotFound:
        return not_found(request, session, "No such application", f"There is no application {app_id!r}.")
    return see(PATH)
