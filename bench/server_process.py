"""`mmsearch serve` in its own process for the HTTP benchmarks (so the load generator does not share its GIL), and
what one load run against it measured."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

HOST = "127.0.0.1"  # loopback only
R = TypeVar("R", bound="LoadRun")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`mmsearch --home H serve` with the given model and OCR off; import jobs run only with `jobs=True`."""

    def __init__(self, home: Path, model: str, log: Path, jobs: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = log
        self.admin_token = secrets.token_urlsafe(24)
        env = {**os.environ, "MMSEARCH_HOME": str(home), "MMSEARCH_CLIP_MODEL": model, "MMSEARCH_OCR": "false",
               "MMSEARCH_ADMIN_TOKEN": self.admin_token, "HF_HUB_OFFLINE": "1"}
        exe = Path(sys.executable).parent / "mmsearch"
        cmd = [str(exe), "--home", str(home), "serve", "--host", HOST, "--port", str(self.port),
               "--log-level", "warning", *([] if jobs else ["--no-jobs"])]
        self.out = log.open("wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"server exited ({self.proc.returncode}):\n{self.tail()}")
                try:
                    r = client.get("/readyz")
                    if r.status_code == 200:
                        return r.json()
                except httpx.TransportError:
                    pass
                time.sleep(0.25)
        raise SystemExit(f"server not ready after {timeout:.0f} s:\n{self.tail()}")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process so far (from /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self, which: str = "VmHWM") -> float:
        """Peak resident memory (VmHWM), or the current one with "VmRSS"."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(f"{which}:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def tail(self, lines: int = 30) -> str:
        self.out.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()


@dataclass
class LoadRun:
    """One scenario at one concurrency against the server: latencies of the answers that counted, and errors."""

    scenario: str
    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # ms, successful requests only
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def qps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        return float(np.percentile(self.latencies, p)) if self.latencies else float("nan")


async def _closed_loop(url: str, key: str, path: str, bodies: list[dict[str, Any]], concurrency: int, seconds: float,
                       run: LoadRun | None, accept: Callable[[httpx.Response], bool]) -> None:
    """`concurrency` closed-loop clients on keep-alive connections until the deadline. An answer counts when
    `accept` says so (it may record more into the run); run None = a warm-up, nothing recorded."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    payloads = [json.dumps(b, ensure_ascii=False).encode() for b in bodies]
    turn = iter(range(1 << 62))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, headers=headers) as client:
        deadline = time.perf_counter() + seconds

        async def client_loop() -> None:
            while time.perf_counter() < deadline:
                body = payloads[next(turn) % len(payloads)]
                t = time.perf_counter()
                try:
                    r = await client.post(path, content=body)
                except httpx.HTTPError as exc:
                    if run is not None:
                        run.errors += 1
                        run.error_samples.append(f"{type(exc).__name__}: {exc}")
                    continue
                ms = (time.perf_counter() - t) * 1000
                if run is None:
                    continue
                if accept(r):
                    run.latencies.append(ms)
                else:
                    run.errors += 1
                    run.error_samples.append(f"{r.status_code}: {r.text[:200]}")

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))


def measure_load(server: ServerProcess, key: str, path: str, bodies: list[dict[str, Any]], run: R, warmup: float,
                 seconds: float, accept: Callable[[httpx.Response], bool]) -> R:
    """A warm-up, then `seconds` of load recorded into `run`, with the server's and this process's CPU time."""
    asyncio.run(_closed_loop(server.url, key, path, bodies, run.concurrency, warmup, None, accept))
    cpu0, client0, t0 = server.cpu_s(), time.process_time(), time.perf_counter()
    asyncio.run(_closed_loop(server.url, key, path, bodies, run.concurrency, seconds, run, accept))
    run.seconds = time.perf_counter() - t0
    run.server_cpu_s = server.cpu_s() - cpu0
    run.client_cpu_s = time.process_time() - client0
    return run
