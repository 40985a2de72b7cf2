"""Write a benchmark's figures into docs/benchmarks.md between its own markers, leaving the rest alone."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def record_section(bench: str, n: int, section: str, path: Path = DOC, intro: str = "# Benchmarks\n") -> None:
    """Replace the `<!-- bench:{bench} N={n} -->` section, or append it; other sections are left as they are."""
    text = path.read_text(encoding="utf-8") if path.exists() else intro
    pattern = re.compile(rf"<!-- bench:{bench} N={n} -->.*?<!-- /bench:{bench} -->", re.S)
    text, replaced = pattern.subn(lambda _m: section, text)
    if not replaced:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
