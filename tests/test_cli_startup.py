"""The CLI starts without its engines (issue 10: `mmsearch --help` used to spend 4 s importing LanceDB, SQLAlchemy,
pypinyin...). Guarded by which modules are loaded, never by timing: a new top-level import of a heavy package in
`mmsearch.cli` or `mmsearch.commands` fails here. The figures are in docs/benchmarks.md ("CLI start-up")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

# packages (and mmsearch modules) that only the commands that need them may load
HEAVY = ("lancedb", "lance", "pyarrow", "sqlalchemy", "fastapi", "starlette", "uvicorn", "onnxruntime", "PIL",
         "jieba", "pypinyin", "symspellpy", "numpy", "pandas", "httpx", "pydantic_settings", "rapidocr",
         "rapidocr_onnxruntime", "mmsearch.core", "mmsearch.catalog", "mmsearch.store", "mmsearch.config",
         "mmsearch.ingest", "mmsearch.search", "mmsearch.api")

# in a fresh interpreter: import the CLI, then run `--help` of the app and of every command and group, each in
# turn as a user would (Typer exits after help), and print what was loaded after each step as one JSON object
PROBE = r"""
import json, sys
import typer.main
from mmsearch.cli import app

loaded = {"import": sorted(sys.modules)}
group = typer.main.get_command(app)
paths = [[]]
for name, cmd in group.commands.items():
    paths.append([name])
    paths += [[name, sub] for sub in getattr(cmd, "commands", {})]
for path in paths:
    try:
        app([*path, "--help"], prog_name="mmsearch")
    except SystemExit as exc:
        assert exc.code in (0, None), (path, exc.code)
    loaded[" ".join([*path, "--help"])] = sorted(sys.modules)
sys.stdout.write("\n@@MODULES@@" + json.dumps(loaded))
"""


def heavy_in(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.fixture(scope="module")
def probe() -> dict[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MMSEARCH_HOME": "/nonexistent/mmsearch-home"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.rsplit("@@MODULES@@", 1)[1])


def test_importing_the_cli_loads_no_engine(probe):
    assert heavy_in(probe["import"]) == []


def test_help_of_the_app_and_of_every_command_loads_no_engine(probe):
    assert len(probe) > 20  # the app, its commands and the subcommands of dataset/app/key/job/account
    assert "dataset list --help" in probe and "account create --help" in probe and "serve --help" in probe
    found = {step: heavy_in(modules) for step, modules in probe.items()}
    assert {step: mods for step, mods in found.items() if mods} == {}


def test_installed_script_help_lists_the_commands_and_creates_nothing(tmp_path):
    """The entry point users type (as tests/test_cli.py runs it); help never opens or creates the home."""
    exe = Path(sys.executable).with_name("mmsearch")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from mmsearch.cli import app; app()"]
    home = tmp_path / "home"
    done = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MMSEARCH_HOME": str(home), "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    for command in ("dataset", "import", "search", "serve", "quickstart", "account", "crawl", "import-warc"):
        assert command in done.stdout
    assert not home.exists()


def test_a_command_still_loads_what_it_needs(tmp_path):
    """The engine is imported inside the command: `dataset list` works on a fresh home and opens the catalog."""
    from mmsearch.cli import app

    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "dataset", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert (tmp_path / "home" / "catalog.sqlite3").exists()
    assert "mmsearch.core" in sys.modules


def test_catalog_only_commands_skip_the_store(tmp_path):
    """`app`, `key`, `job` and `account` commands open the catalog alone: LanceDB is never imported for them."""
    probe = ("import json, sys\nfrom mmsearch.cli import app\n"
             "for args in (['account', 'create', 'a1', '--json'], ['account', 'list', '--json'], ['app', 'list'],"
             " ['key', 'list'], ['job', 'list']):\n"
             "    try:\n        app(['--home', sys.argv[1], *args], prog_name='mmsearch')\n"
             "    except SystemExit as exc:\n        assert exc.code in (0, None), (args, exc.code)\n"
             "sys.stdout.write('\\n@@MODULES@@' + json.dumps(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "home")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    out, modules = done.stdout.rsplit("@@MODULES@@", 1)
    loaded = json.loads(modules)
    assert '"name": "a1"' in out  # the account was created and listed
    assert "sqlalchemy" in loaded and "mmsearch.catalog" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("lancedb", "lance", "pyarrow", "onnxruntime")] == []


def test_cli_default_qps_is_the_catalogs():
    """`account create --qps` shows its default without importing the catalog; the two must agree."""
    from mmsearch.catalog.accounts import DEFAULT_QPS
    from mmsearch.commands import accounts

    assert accounts.DEFAULT_QPS == DEFAULT_QPS
