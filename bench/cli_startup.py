"""CLI start-up: import time (`python -X importtime`) and wall time of `mmsearch` invocations.

Each case runs in a fresh interpreter `--runs` times; the import figure is the sum of the top-level
cumulative times that `-X importtime` prints (for `import mmsearch.cli`, that module's own line), the wall
figure a separate run without `-X importtime`. Min and median are shown: on a shared machine the min is
the uncontended cost, the median what a user waits. `--before-src DIR` measures another source tree (e.g.
`git archive HEAD src | tar -x -C /tmp/before`) in the same run, case by case, for a before/after table.

    .venv/bin/python bench/cli_startup.py --runs 9 --before-src /tmp/before/src --write
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docs_section import record_section

LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)")  # top-level lines only (one space of indent)

CASES: list[tuple[str, list[str] | None]] = [  # (label, CLI arguments; None = just `import mmsearch.cli`)
    ("import mmsearch.cli", None),
    ("mmsearch --help", ["--help"]),
    ("mmsearch dataset list --help", ["dataset", "list", "--help"]),
    ("mmsearch account list --json (catalog only)", ["account", "list", "--json"]),
    ("mmsearch dataset list --json (engine)", ["dataset", "list", "--json"]),
]


def command(args: list[str] | None, importtime: bool) -> list[str]:
    code = "import mmsearch.cli" if args is None else (
        f"import sys; sys.argv = ['mmsearch', *{args!r}]; from mmsearch.cli import app; app(prog_name='mmsearch')")
    return [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code]


def one_run(args: list[str] | None, env: dict[str, str]) -> tuple[float, float]:
    """(import seconds, wall seconds) of one fresh interpreter each."""
    done = subprocess.run(command(args, True), env=env, capture_output=True, text=True, timeout=300)
    lines = [(int(m[1]), m[2]) for m in map(LINE.match, done.stderr.splitlines()) if m]
    own = next((us for us, name in lines if name == "mmsearch.cli"), 0)
    imported = own if args is None else sum(us for us, _ in lines)
    started = time.perf_counter()
    subprocess.run(command(args, False), env=env, capture_output=True, timeout=300, check=True)
    return imported / 1e6, time.perf_counter() - started


def fmt(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before-src", type=Path, help="a source tree (its src/) to measure as 'before'")
    parser.add_argument("--write", action="store_true", help="record the table in docs/benchmarks.md")
    opts = parser.parse_args()
    home = tempfile.mkdtemp(prefix="mmsearch-cli-bench-")
    base = {**os.environ, "MMSEARCH_HOME": home, "MMSEARCH_CLIP_MODEL": "none", "COLUMNS": "100"}
    trees = {"after": base}
    if opts.before_src:
        trees = {"before": {**base, "PYTHONPATH": str(opts.before_src.resolve())}, "after": base}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for label, args in CASES:
        for _ in range(opts.runs):  # interleaved, so load from elsewhere falls on both trees alike
            for tree, env in trees.items():
                results.setdefault((label, tree), []).append(one_run(args, env))
    head = "| invocation | " + " | ".join(f"{t}: imports | {t}: wall" for t in trees) + " |"
    rows = [head, "|---|" + "---|---|" * len(trees)]
    for label, _ in CASES:
        cells = []
        for tree in trees:
            runs = results[(label, tree)]
            cells += [fmt([i for i, _ in runs]), fmt([w for _, w in runs])]
        rows.append(f"| `{label}` | " + " | ".join(cells) + " |")
    table = "\n".join(rows)
    print(table)
    if opts.write:
        load = os.getloadavg()[0]
        record_section("cli-startup", opts.runs, "\n".join([
            f"<!-- bench:cli-startup N={opts.runs} -->",
            f"### CLI start-up, {opts.runs} runs each (min / median; load average {load:.1f} on "
            f"{os.cpu_count()} cores while other work shared the CPU)",
            "",
            table,
            "",
            "<!-- /bench:cli-startup -->",
        ]))


if __name__ == "__main__":
    main()
