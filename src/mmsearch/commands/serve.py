"""`mmsearch serve`: the HTTP server over MMSEARCH_HOME."""

from __future__ import annotations

from typing import Annotated

import typer

from mmsearch.cli import errors, out
from mmsearch.config import Settings, get_settings
from mmsearch.core import MMSearch

Host = Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")]
Port = Annotated[int, typer.Option("--port", min=1, max=65535)]


def cli_settings() -> Settings:
    from mmsearch.cli import _state

    return _state.get("settings") or get_settings()


def run_server(mm: MMSearch, host: str, port: int, log_level: str = "info", jobs: bool = True) -> None:
    import uvicorn

    from mmsearch.api.app import create_app
    from mmsearch.api.auth import admin_token

    admin_token(mm.settings)  # generated (and printed) before the first request, not during it
    uvicorn.run(create_app(mm, run_jobs=jobs), host=host, port=port, log_level=log_level)


def serve(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    jobs: Annotated[bool, typer.Option("--jobs/--no-jobs", help="Run import jobs in this process.")] = True,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run the HTTP server: the AI Search API, the management API (/admin/v1) and OpenAPI docs (/docs)."""
    with errors(False):
        mm = MMSearch(cli_settings())
        out.print(f"mmsearch: data in {mm.settings.home.resolve()}; docs at http://{host}:{port}/docs")
    run_server(mm, host, port, log_level, jobs)
