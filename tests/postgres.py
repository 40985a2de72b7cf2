"""A throwaway PostgreSQL server for the catalog tests: Debian's `postgresql` package (installed by `.ci/run` and
`make test`), a fresh cluster in a temporary folder, TCP on loopback, trust authentication, stopped afterwards.

MMSEARCH_TEST_POSTGRES_URL, when set, names a server to use instead (each test gets its own database there).
PostgreSQL refuses to run as root, so under root the cluster is made and run as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def available() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    if os.environ.get("MMSEARCH_TEST_POSTGRES_URL"):
        return None
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        return "Debian's postgresql is not installed (make test installs it)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL cannot be started"
    return None


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server() -> Iterator[str]:
    """A running server's base URL (`postgresql+psycopg://user@127.0.0.1:port`), without a database name."""
    given = os.environ.get("MMSEARCH_TEST_POSTGRES_URL")
    if given:
        yield given.rstrip("/")
        return
    folder = Path(tempfile.mkdtemp(prefix="mmsearch-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        os.chmod(folder, 0o700)
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    port = _port()
    subprocess.run(_as_owner([_bin("initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
                              "--no-sync"]), check=True, stdout=subprocess.DEVNULL)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
    subprocess.run(_as_owner([_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w",
                              "start"]), check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_owner([_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)


def database(base: str) -> str:
    """A new, empty database on the server; its URL."""
    import psycopg

    name = f"mm_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    for attempt in range(50):  # the server may still be starting
        try:
            with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return f"{base}/{name}"
        except psycopg.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One PostgreSQL server for the whole run (tests take a fresh database each: `database(url)`)."""
    why = available()
    if why is not None:
        pytest.skip(why)
    with server() as url:
        yield url
