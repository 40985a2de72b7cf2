"""The console tests' browser: Debian's Chromium through Playwright, and their screenshots.

Playwright cannot download its own browser here, so the system's (`chromium`, installed by `.ci/run` and
`make test`) is launched through `executable_path`, with `--no-sandbox` because CI runs as root; without it the
browser tests are skipped with a note. `conftest.py` registers the fixture.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module (the sync API's loop must not outlive the module's tests)."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def shot(page: Any, tmp_path: Path, name: str) -> None:
    """A full-page screenshot into the test's folder, and into MMSEARCH_CONSOLE_SHOTS when set."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    extra = os.environ.get("MMSEARCH_CONSOLE_SHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(extra) / f"{name}.png"), full_page=True)
