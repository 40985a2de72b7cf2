"""`mmsearch quickstart`: demo data with pictures (OCR), an application, a key, and curl commands that work
against the server it starts. A 12-item subset of the shipped samples keeps OCR fast."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from live import LiveServer
from mmsearch.api.app import create_app
from mmsearch.cli import app
from mmsearch.commands.demo import QUICKSTART_APP, QUICKSTART_DATASET
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.samples import SAMPLES_DIR

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


@pytest.fixture
def subset(tmp_path: Path) -> Path:
    """The first 12 products and their pictures: P0000-P0009 carry the slogan 限时特惠 on the picture only."""
    out = tmp_path / "samples"
    (out / "images").mkdir(parents=True)
    lines = (SAMPLES_DIR / "products.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    (out / "products.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(SAMPLES_DIR / "products.schema.json", out)
    for line in lines:
        name = json.loads(line)["images"][0]["image_url"]
        shutil.copy(SAMPLES_DIR / name, out / name)
    return out


def curl_requests(stdout: str) -> list[tuple[str, dict, dict]]:
    """(url, headers, json body) of each printed curl command."""
    found = []
    for line in stdout.splitlines():
        if not line.startswith("curl "):
            continue
        args = shlex.split(line)
        url = next(a for a in args if a.startswith("http://"))
        headers = dict(args[i + 1].split(": ", 1) for i, a in enumerate(args) if a == "-H")
        data = args[args.index("-d") + 1]
        body = json.loads(Path(data[1:]).read_text()) if data.startswith("@") else json.loads(data)
        found.append((url, headers, body))
    return found


def test_quickstart_builds_everything_and_its_commands_work(tmp_path, subset):
    if not FONT.exists():
        pytest.skip("fonts-wqy-microhei is not installed (make test installs it)")
    home = tmp_path / "home"
    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(home), "quickstart", "--samples", str(subset), "--no-serve",
                                 "--port", "8765"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "imported 12" in result.stdout and "no image model" in result.stderr
    commands = curl_requests(result.stdout)
    assert len(commands) == 5
    key = json.loads((home / "quickstart.json").read_text())["key"]
    assert all(h["Authorization"] == f"Bearer {key}" for _, h, _ in commands)

    again = runner.invoke(app, ["--home", str(home), "quickstart", "--samples", str(subset), "--no-serve"])
    assert again.exit_code == 0 and "reusing it" in again.stdout and key in again.stdout  # idempotent

    mm = MMSearch(Settings(home=home))
    with LiveServer(create_app(mm)) as server:
        answers = []
        for url, headers, body in commands:
            path = url.split("8765", 1)[1]
            answers.append(httpx.post(server.url + path, headers=headers, json=body, timeout=30))
    text, filtered, ocr, spelled, image = answers
    assert text.status_code == 200 and text.json()["result"]["search_results"]
    assert filtered.status_code == 200
    rows = filtered.json()["result"]["search_results"]
    assert all(set(r["display_fields"]) <= {"title", "price", "status"} for r in rows)
    assert [r["display_fields"]["price"] for r in rows] == sorted(r["display_fields"]["price"] for r in rows)
    found = {r["_id"] for r in ocr.json()["result"]["search_results"]}
    assert found == {f"P{n:04d}" for n in range(10)}  # the slogan is only on the pictures
    assert spelled.json()["spell_correction"] == {"mode": "auto", "corrected_query": "运动鞋"}
    assert image.status_code == 503 and image.json()["error"]["field"] == "query.image_url"
    assert mm.catalog.apps.get(QUICKSTART_APP).datasets == [QUICKSTART_DATASET]
