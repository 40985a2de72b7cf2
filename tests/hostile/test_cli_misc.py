"""The CLI on a busy port (quickstart used to import for a minute, print every curl command and then die with
`Errno 98`), and the layering the CLI and ingest must keep (no command imports `mmsearch.cli`, which imports
them; ingest never names `mmsearch.core`, which sits above it)."""

from __future__ import annotations

import ast
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mmsearch
from mmsearch.cli import app

SRC = Path(mmsearch.__file__).parent


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port with a listening socket on it, as another server would hold it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_quickstart_on_a_busy_port_fails_at_once_naming_port(tmp_path, busy_port):
    home = tmp_path / "home"
    started = time.monotonic()
    result = CliRunner().invoke(app, ["--home", str(home), "quickstart", "--port", str(busy_port)])
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert f"127.0.0.1:{busy_port}" in result.stderr and "--port" in result.stderr
    assert "Errno" not in result.output and "Traceback" not in result.output
    assert "curl" not in result.stdout  # nothing printed that could not work
    assert elapsed < 10  # refused before the import (about a minute on two cores)
    assert not (home / "tables").exists()  # no engine was even opened


def test_serve_on_a_busy_port_fails_naming_port(tmp_path, busy_port):
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "serve", "--port", str(busy_port)])
    assert result.exit_code == 1, result.output
    assert "--port" in result.stderr and str(busy_port) in result.stderr


def test_quickstart_no_serve_does_not_need_the_port(tmp_path, busy_port):
    """--no-serve never listens, so a busy port is no reason to refuse it (checked by reaching the samples)."""
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "quickstart", "--port", str(busy_port),
                                      "--no-serve", "--samples", str(tmp_path / "missing")])
    assert "--port" not in result.output
    assert isinstance(result.exception, FileNotFoundError)  # it went on to read the (missing) samples


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_commands_do_not_import_the_cli_module():
    for path in sorted((SRC / "commands").glob("*.py")):
        assert "mmsearch.cli" not in imports_of(path), f"{path.name} imports mmsearch.cli"


def test_cli_module_only_assembles_the_app():
    tree = ast.parse((SRC / "cli.py").read_text(encoding="utf-8"))
    defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert defined == [], f"cli.py defines {defined}: helpers belong in mmsearch.commands.common"


def test_ingest_never_names_core():
    for path in sorted((SRC / "ingest").rglob("*.py")):
        found = {m for m in imports_of(path) if m == "mmsearch.core" or m.startswith("mmsearch.core.")}
        assert not found, f"{path.relative_to(SRC)} imports {found}"
