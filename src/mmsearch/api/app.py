"""The FastAPI application: routers, error mapping, request ids, body limits, metrics, access logs and the import
job worker.

    mmsearch serve --host 127.0.0.1 --port 8000      # or: uvicorn --factory mmsearch.api.app:create_app
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmsearch import __version__
from mmsearch.api import admin, iqs, openapi, volc
from mmsearch.api.auth import Authenticator, IqsAuth, admin_token
from mmsearch.api.errors import on_http_error, on_mmsearch_error, on_unexpected, on_validation_error
from mmsearch.api.metrics import Metrics, Observer, metrics_endpoint
from mmsearch.api.middleware import RequestContext
from mmsearch.core import MMSearch
from mmsearch.errors import MMSearchError
from mmsearch.ingest.jobs import JobRunner


def worker_app() -> Any:
    """The app of one of `serve --workers N`'s processes (uvicorn calls this factory in each): settings from
    the environment the parent set, import jobs unless MMSEARCH_SERVE_JOBS=false."""
    import os

    return create_app(MMSearch(), run_jobs=os.environ.get("MMSEARCH_SERVE_JOBS", "true") != "false")


def create_app(mm: MMSearch | None = None, run_jobs: bool = True) -> Any:
    """The ASGI app. `run_jobs=False` leaves import jobs to another process (e.g. a dedicated worker)."""
    mm = mm or MMSearch()
    runner = JobRunner(mm)
    metrics = Metrics(mm)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_jobs:
            runner.start()
        try:
            yield
        finally:
            runner.stop()
            mm.catalog.query_log.flush()
            metrics.close()

    api = FastAPI(
        title="mmsearch", version=__version__, lifespan=lifespan,
        strict_content_type=False,  # a JSON body without Content-Type is read as JSON; a non-JSON type gets 415
        description="Self-hosted multimodal search: the AI Search `search` API, IQS MultimodalSearch and "
        "mmsearch's management API.",
    )
    api.state.mm = mm
    api.state.runner = runner
    api.state.metrics = metrics
    api.state.auth = Authenticator(mm)
    api.state.iqs_auth = IqsAuth(mm)
    api.add_exception_handler(MMSearchError, on_mmsearch_error)
    api.add_exception_handler(RequestValidationError, on_validation_error)
    api.add_exception_handler(StarletteHTTPException, on_http_error)
    api.add_exception_handler(Exception, on_unexpected)
    api.include_router(volc.router)
    api.include_router(iqs.router)
    api.include_router(admin.router)
    if mm.settings.console:
        from fastapi.staticfiles import StaticFiles

        from mmsearch.api.console import routes as console
        from mmsearch.api.console.session import Sessions

        api.state.console_sessions = Sessions(admin_token(mm.settings, announce=False),
                                              mm.settings.console_session_hours)
        from mmsearch.api.console.pages import Refused, on_refused

        api.add_exception_handler(Refused, on_refused)  # sign in first, or a CSRF mismatch
        api.include_router(console.router)
        api.mount("/console/static", StaticFiles(directory=str(console.HERE / "static")), name="console-static")
    api.add_api_route("/healthz", healthz, methods=["GET"], tags=["ops"], summary="Liveness")
    api.add_api_route("/readyz", readyz, methods=["GET"], tags=["ops"], summary="Store, catalog and model status")
    api.add_api_route("/metrics", metrics_endpoint, methods=["GET"], tags=["ops"], response_class=Response,
                      summary="Prometheus metrics (admin token unless MMSEARCH_METRICS_PUBLIC=true)",
                      description="Requests by route, application and status; latency by route and search stage; "
                      "zero-result and spell-corrected searches; import jobs, queue and rate; dataset items and bytes; "
                      "model and OCR availability; IQS charges and refusals (see the README, Monitoring).")
    openapi.install(api)  # the document lists what is really sent: statuses, error bodies, raw bodies, auth

    settings = mm.settings

    def limit_for(path: str) -> int:
        if path.startswith("/admin/") and path.endswith("/items"):
            return settings.max_import_body_bytes
        if path.startswith("/console/datasets/") and path.endswith("/import"):  # the console's file upload
            return settings.max_import_body_bytes
        return settings.max_body_bytes

    return RequestContext(api, limit_for, Observer(metrics, lambda: api.routes))


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    mm: MMSearch = request.app.state.mm

    def check() -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            with mm.catalog.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            out["catalog"] = {"ok": True}
        except Exception as exc:
            out["catalog"] = {"ok": False, "message": str(exc)}
        try:
            out["store"] = {"ok": True, "datasets": len(mm.datasets())}
            mm.store.db.list_tables()
        except Exception as exc:
            out["store"] = {"ok": False, "message": str(exc)}
        model = mm.encoder_status()
        out["model"] = model
        out["channels"] = {"text": True, "vlm": bool(model["available"])}
        out["ocr"] = bool(mm.settings.ocr)
        return out

    status = await run_in_threadpool(check)
    ready = status["catalog"]["ok"] and status["store"]["ok"]
    return JSONResponse({"status": "ready" if ready else "not ready", **status}, status_code=200 if ready else 503)
