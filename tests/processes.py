"""Real `mmsearch serve` and `mmsearch worker` processes on loopback, for the multi-process tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

EXE = Path(sys.executable).parent / "mmsearch"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(home: Path, env: dict[str, str], jobs: bool, *extra: str, log: Path | None = None,
          start_s: float = 60.0) -> tuple[subprocess.Popen, str]:
    """A server on a free port, once it answers /healthz; its output goes to `log` (at level info) when given,
    else nowhere (at level warning)."""
    port = free_port()
    args = [str(EXE), "--home", str(home), "serve", "--port", str(port), "--log-level",
            "info" if log else "warning", *([] if jobs else ["--no-jobs"]), *extra]
    if log is None:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        with log.open("wb") as out:
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    said = log.read_text(errors="replace")[-2000:] if log else ""
    raise AssertionError(f"the server did not start {said}")


def worker(home: Path, env: dict[str, str], batch_size: int = 25) -> subprocess.Popen:
    return subprocess.Popen([str(EXE), "--home", str(home), "worker", "--batch-size", str(batch_size)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each process still running, and wait for it."""
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
