"""`mmsearch serve`: the HTTP server over MMSEARCH_HOME."""

from __future__ import annotations

import math
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from mmsearch.commands.common import cli_settings, errors, out
from mmsearch.errors import InvalidArgument
from mmsearch.home import exposure

if TYPE_CHECKING:
    from mmsearch.core import MMSearch

Host = Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")]
Port = Annotated[int, typer.Option("--port", min=1, max=65535)]


def check_port_free(host: str, port: int) -> None:
    """Bind host:port once, as uvicorn will (SO_REUSEADDR), so a busy port fails now with a clear message,
    not after minutes of import with a bare `Errno 98`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidArgument(f"--host: cannot listen on {host!r}: {exc}", field="--host") from None
    family, kind, proto, _canon, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise InvalidArgument(
                f"--port: cannot listen on {host}:{port} ({exc.strerror or exc}); another process may be using it: "
                "stop it or pick a free port with --port", field="--port",
            ) from None


def run_server(mm: MMSearch, host: str, port: int, log_level: str = "info", jobs: bool = True,
               workers: int = 1) -> None:
    import os

    import uvicorn

    from mmsearch.api.access_log import uvicorn_log_config
    from mmsearch.api.app import create_app
    from mmsearch.api.auth import admin_token

    admin_token(mm.settings)  # generated (and printed) before the first request, not during it
    # MMSEARCH_LOG_FORMAT for every log line; one access line per request from mmsearch.access (uvicorn's own
    # would print raw paths with their query strings, where signatures travel)
    logs = {"log_config": uvicorn_log_config(mm.settings.log_format, log_level), "access_log": False}
    # SIGTERM: uvicorn closes the listening socket and waits up to the grace for requests in flight; then the
    # app's lifespan hands back the import job in hand (JobRunner.stop). Each worker process does the same.
    grace = math.ceil(mm.settings.shutdown_grace_s)
    if workers == 1:
        uvicorn.run(create_app(mm, run_jobs=jobs), host=host, port=port, log_level=log_level,
                    timeout_graceful_shutdown=grace, **logs)
        return
    # N processes, each its own engine over the same home and catalog: they count throttling and replays in the
    # catalog (MMSEARCH_SHARED_STATE=catalog unless set), claim import jobs from it one at a time, and see keys
    # revoked by any of them within 2 s. Settings reach them through the environment they inherit and the same
    # config file: MMSEARCH_CONFIG is set to the absolute path this process read (config_path() has already
    # checked it), so no process depends on its directory. Only what differs from the file goes in variables,
    # which rank above it: the home (--home may have changed it) and shared_state (only when `auto`, so a file's
    # `shared_state = "memory"` is kept).
    from mmsearch.config import CONFIG_ENV, config_path

    if (config_file := config_path()) is not None:
        os.environ[CONFIG_ENV] = str(config_file)
    os.environ["MMSEARCH_HOME"] = str(mm.settings.home.resolve())
    if mm.settings.shared_state == "auto":
        os.environ["MMSEARCH_SHARED_STATE"] = "catalog"
    os.environ["MMSEARCH_SERVE_JOBS"] = "true" if jobs else "false"
    # the workers count metrics in files here, summed by whichever answers a scrape (api/metrics.py)
    import shutil

    from mmsearch.api.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

    metrics_dir = prepare_multiprocess_dir(mm.settings.home.resolve())
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    try:
        uvicorn.run("mmsearch.api.app:worker_app", factory=True, workers=workers, host=host, port=port,
                    log_level=log_level, timeout_graceful_shutdown=grace, **logs)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def serve(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    jobs: Annotated[bool, typer.Option("--jobs/--no-jobs", help="Run import jobs in this process.")] = True,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Server processes (they share the "
                                         "catalog's limits; PostgreSQL via MMSEARCH_CATALOG_URL for many hosts).")] = 1,
) -> None:
    """Run the HTTP server: the AI Search API, the management API (/admin/v1) and OpenAPI docs (/docs)."""
    from mmsearch.core import MMSearch

    with errors(False):
        check_port_free(host, port)
        mm = MMSearch(cli_settings())
        out.print(f"mmsearch: data in {mm.settings.home.resolve()}; docs at http://{host}:{port}/docs")
        if (exposed := exposure(mm.settings.home)) is not None:
            out.print(f"[yellow]warning:[/] {exposed}")
    run_server(mm, host, port, log_level, jobs, workers)
