"""Import jobs: the list, one job's page with its per-item errors, and cancel.

A job's progress box is a fragment (`/jobs/{id}/progress`) that htmx polls every second while the job runs,
the same data as `GET /admin/v1/jobs/{id}`; the list page refreshes itself while any job runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mmsearch.api.console.pages import checked, not_found, render, see, session_of, signed_in
from mmsearch.api.console.session import PATH
from mmsearch.errors import MMSearchError, NotFound

router = APIRouter(prefix=PATH)
ACTIVE = ("queued", "running")


@router.get("/jobs")
async def jobs(request: Request) -> Response:
    session = signed_in(request)
    found = await run_in_threadpool(request.app.state.mm.catalog.jobs.list, None, None, 100)
    running = any(j.status in ACTIVE for j in found)
    return render(request, "jobs.html", session, nav="jobs", jobs=found, running=running)


@router.get("/jobs/{job_id}")
async def job(request: Request, job_id: str) -> Response:
    session = signed_in(request)
    try:
        found = await run_in_threadpool(request.app.state.mm.catalog.jobs.get, job_id)
    except NotFound:
        return not_found(request, session, "No such job", f"There is no import job {job_id!r}.")
    return render(request, "job.html", session, nav="jobs", job=found, active=found.status in ACTIVE)


@router.get("/jobs/{job_id}/progress")
async def progress(request: Request, job_id: str) -> Response:
    """The progress box alone, for htmx to swap in; it stops polling once the job has ended."""
    session = session_of(request)
    if session is None:
        return Response(status_code=401)
    try:
        found = await run_in_threadpool(request.app.state.mm.catalog.jobs.get, job_id)
    except NotFound:
        return Response(status_code=404)
    return render(request, "job_progress.html", session, job=found, active=found.status in ACTIVE)


@router.post("/jobs/{job_id}/cancel")
async def cancel(request: Request, job_id: str, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    session = checked(request, csrf)
    try:
        await run_in_threadpool(request.app.state.mm.catalog.jobs.cancel, job_id)
    except MMSearchError as exc:
        return render(request, "error.html", session, status=400, title="The job cannot be cancelled",
                    message=exc.message)
    return see(f"{PATH}/jobs/{job_id}")
