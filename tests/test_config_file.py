"""The config file (mmsearch.toml or MMSEARCH_CONFIG) under the environment, its errors, and `mmsearch config show`:
real files in temp directories, the CLI in-process and as the installed script, a real `serve --workers 2`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.config import CONFIG_ENV, ConfigError, Settings, get_settings
from mmsearch.config_sources import SECRET_SETTINGS, describe_settings, is_secret, mask

EXE = Path(sys.executable).with_name("mmsearch")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test in a fresh current directory, with no MMSEARCH_* variable of the caller's shell but the
    suite's CLIP_MODEL=none, and no settings cached by get_settings() in either direction."""
    for name in list(os.environ):
        if name.upper().startswith("MMSEARCH_") and name != "MMSEARCH_CLIP_MODEL":
            monkeypatch.delenv(name)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    get_settings.cache_clear()
    yield cwd
    get_settings.cache_clear()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def squeeze(text: str) -> str:
    """Rich wraps stderr at the terminal's width (even inside a long path): compare without whitespace."""
    return "".join(text.split())


# --- sources and precedence ---------------------------------------------------------------------------------


def test_file_then_environment_then_arguments(isolated, monkeypatch):
    write(isolated / "mmsearch.toml", 'home = "/data/mm"\nrecall_size = 300\nfusion = "rrf"\ntext_weight = 0.7\n'
                                      'store = "milvus:http://milvus:19530"\n')
    s = Settings()
    assert (s.home, s.recall_size, s.fusion, s.text_weight) == (Path("/data/mm"), 300, "rrf", 0.7)
    assert s.store == "milvus:http://milvus:19530" and s.vlm_weight == 0.5  # not in the file: the default

    monkeypatch.setenv("MMSEARCH_RECALL_SIZE", "400")
    s = Settings()
    assert (s.recall_size, s.fusion) == (400, "rrf")  # the variable wins over the file, the rest stays
    assert Settings(recall_size=500, fusion="weighted").recall_size == 500
    assert Settings(fusion="weighted").fusion == "weighted"


def test_mmsearch_config_replaces_the_local_file(isolated, tmp_path, monkeypatch):
    write(isolated / "mmsearch.toml", 'recall_size = 11\nfusion = "rrf"\n')
    named = write(tmp_path / "etc" / "search.toml", "recall_size = 22\n")
    assert (Settings().recall_size, Settings().fusion) == (11, "rrf")

    monkeypatch.setenv(CONFIG_ENV, str(named))
    s = Settings()
    assert (s.recall_size, s.fusion) == (22, "weighted")  # ./mmsearch.toml is not read at all then

    monkeypatch.setenv(CONFIG_ENV, "../etc/search.toml")  # relative to the current directory
    assert Settings().recall_size == 22

    monkeypatch.delenv(CONFIG_ENV)
    (isolated / "mmsearch.toml").unlink()
    assert Settings().recall_size == 200  # no file: the defaults


# --- errors name the file and the key -----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "key", "hint"), [
    ("recal_size = 5\n", "recal_size", "unknown setting (did you mean 'recall_size'?)"),
    ('MMSEARCH_FUSION = "rrf"\n', "MMSEARCH_FUSION", "unknown setting (did you mean 'fusion'?)"),
    ("colour = 3\n", "colour", "unknown setting; `mmsearch config show` lists them"),
    ("[mmsearch]\nrecall_size = 5\n", "mmsearch", "unknown table: settings are plain keys at the top of the file"),
])
def test_an_unknown_key_is_an_error_naming_it(isolated, text, key, hint):
    path = write(isolated / "mmsearch.toml", "recall_size = 300\n" + text)
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert str(caught.value).startswith(f"{path}: {key}: {hint}")
    assert caught.value.field == key and caught.value.code == "InvalidConfig"


@pytest.mark.parametrize(("line", "key", "rule"), [
    ("recall_size = 0", "recall_size", "Input should be greater than or equal to 1"),
    ('recall_size = "many"', "recall_size", "Input should be a valid integer"),
    ('store = "redis"', "store", "'redis' is not a store; use 'lance' or 'milvus:<uri>'"),
    ('catalog_url = "mysql://root@db/mm"', "catalog_url", "use postgresql+psycopg://"),
    ('fusion = "max"', "fusion", "String should match pattern '^(weighted|rrf)$'"),
    ('ocr = "maybe"', "ocr", "Input should be a valid boolean"),
])
def test_a_bad_value_names_the_file_the_key_and_the_rule(isolated, line, key, rule):
    path = write(isolated / "mmsearch.toml", f"text_weight = 0.2\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        Settings()
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: {rule}"), message
    assert f"MMSEARCH_{key.upper()}" not in message  # the file's key, not the variable's name
    assert caught.value.field == key


def test_every_problem_of_the_file_is_listed_at_once(isolated):
    path = write(isolated / "mmsearch.toml", 'recal_size = 3\nfusion = "max"\nrecall_size = 300\n')
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert [d["field"] for d in caught.value.details] == ["recal_size", "fusion"]
    assert f"{path}: recal_size: " in str(caught.value) and f"; {path}: fusion: " in str(caught.value)


def test_bad_toml_names_the_file_and_the_line(isolated):
    path = write(isolated / "mmsearch.toml", "recall_size = 300\nfusion = \n")
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert str(caught.value).startswith(f"{path}: not valid TOML: ")
    assert "line 2" in str(caught.value)


def test_a_missing_mmsearch_config_file_is_an_error(isolated, tmp_path, monkeypatch):
    write(isolated / "mmsearch.toml", "recall_size = 11\n")  # never a silent fallback to this one
    missing = tmp_path / "nowhere" / "mmsearch.toml"
    monkeypatch.setenv(CONFIG_ENV, str(missing))
    with pytest.raises(ConfigError, match=f"^MMSEARCH_CONFIG: {missing}: no such file$"):
        Settings()
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=f"^MMSEARCH_CONFIG: {tmp_path}: not a file$"):
        Settings()


def test_get_settings_is_read_once_and_the_suite_resets_it(isolated):
    """get_settings() caches for the process: the autouse fixture clears it around every test here, so no test
    sees another's file (it would otherwise: the second read below is still the first file's)."""
    path = write(isolated / "mmsearch.toml", "recall_size = 300\n")
    assert get_settings().recall_size == 300
    write(path, "recall_size = 301\n")
    assert get_settings().recall_size == 300
    get_settings.cache_clear()
    assert get_settings().recall_size == 301


# --- masking ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("admin_token", "t0k3n", "***"),
    ("admin_token", None, None),  # unset stays visible as unset
    ("llm_api_key", "", ""),
    ("s3_secret", "x", "***"),  # by the rule: settings added later are covered
    ("webhook_token", "x", "***"),
    ("smtp_password", "x", "***"),
    ("access_key_id", "x", "***"),
    ("catalog_url", "postgresql+psycopg://bob:hunter2@db:5432/mm", "postgresql+psycopg://bob:***@db:5432/mm"),
    ("catalog_url", "postgresql+psycopg://bob:p@ss@db/mm", "postgresql+psycopg://bob:***@db/mm"),
    ("catalog_url", "postgresql+psycopg://bob@db/mm", "postgresql+psycopg://bob@db/mm"),
    ("staging_url", "s3://bucket/prefix?token=abc&region=x", "s3://bucket/prefix?token=***&region=x"),
    ("store", "milvus:http://root:Milvus@milvus:19530", "milvus:http://root:***@milvus:19530"),
    ("llm_url", "http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("recall_size", 300, 300),
])
def test_mask(name, value, shown):
    assert mask(name, value) == shown


def test_the_explicit_secrets_are_settings_and_the_rule_agrees():
    assert set(SECRET_SETTINGS) <= set(Settings.model_fields)
    assert all(is_secret(n) for n in SECRET_SETTINGS)
    assert not is_secret("recall_size") and not is_secret("catalog_url")


# --- mmsearch config show -----------------------------------------------------------------------------------


def test_config_show_json_gives_every_value_its_source_and_masks_secrets(isolated, tmp_path, monkeypatch):
    conf = write(tmp_path / "conf" / "mm.toml", "\n".join([
        "recall_size = 300",
        'fusion = "rrf"',
        'catalog_url = "postgresql://bob:hunter2@db:5432/mm"',
        'admin_token = "file-admin-secret"',
        'staging_url = "s3://bucket/p?token=tok-secret&region=x"',
    ]) + "\n")
    monkeypatch.setenv(CONFIG_ENV, str(conf))
    monkeypatch.setenv("MMSEARCH_FUSION", "weighted")
    monkeypatch.setenv("MMSEARCH_LLM_API_KEY", "sk-env-secret")
    monkeypatch.setenv("MMSEARCH_LLM_URL", "http://user:llm-pw@llm:8000/v1")
    home = tmp_path / "h"
    done = CliRunner().invoke(app, ["--home", str(home), "config", "show", "--json"])
    assert done.exit_code == 0, (done.stdout, done.stderr)
    shown = json.loads(done.stdout)  # exactly one JSON value on stdout
    assert shown["file"] == str(conf)
    s = shown["settings"]
    assert list(s) == list(Settings.model_fields)
    assert s["recall_size"] == {"value": 300, "source": f"file:{conf}"}
    assert s["fusion"] == {"value": "weighted", "source": "env:MMSEARCH_FUSION"}
    assert s["home"] == {"value": str(home), "source": "option:--home"}
    assert s["vlm_weight"] == {"value": 0.5, "source": "default"}
    assert s["clip_model"] == {"value": "none", "source": "env:MMSEARCH_CLIP_MODEL"}
    assert s["catalog_url"] == {"value": "postgresql+psycopg://bob:***@db:5432/mm", "source": f"file:{conf}"}
    assert s["admin_token"] == {"value": "***", "source": f"file:{conf}"}
    assert s["llm_api_key"] == {"value": "***", "source": "env:MMSEARCH_LLM_API_KEY"}
    assert s["llm_url"]["value"] == "http://user:***@llm:8000/v1"
    assert s["staging_url"]["value"] == "s3://bucket/p?token=***&region=x"

    human = CliRunner().invoke(app, ["--home", str(home), "config", "show"])
    assert human.exit_code == 0, human.stderr
    assert f"config file: {conf}" in human.stdout and "recall_size" in human.stdout
    for secret in ("hunter2", "file-admin-secret", "tok-secret", "sk-env-secret", "llm-pw"):
        assert secret not in done.stdout + done.stderr + human.stdout + human.stderr


def test_config_show_tells_the_home_variable_from_the_option(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEARCH_HOME", str(tmp_path / "env-home"))
    done = CliRunner().invoke(app, ["config", "show", "--json"])  # Typer fills --home from the variable
    shown = json.loads(done.stdout)
    assert shown["file"] is None
    assert shown["settings"]["home"] == {"value": str(tmp_path / "env-home"), "source": "env:MMSEARCH_HOME"}
    done = CliRunner().invoke(app, ["--home", str(tmp_path / "opt"), "config", "show", "--json"])
    assert json.loads(done.stdout)["settings"]["home"]["source"] == "option:--home"


def test_describe_settings_is_plain_data(isolated):
    write(isolated / "mmsearch.toml", 'admin_token = "abc"\n')
    report = describe_settings()
    by_name = {s.name: s for s in report.settings}
    assert report.file == isolated / "mmsearch.toml"
    assert (by_name["admin_token"].value, by_name["admin_token"].source) == ("***", f"file:{report.file}")
    assert {s.name: s.value for s in describe_settings(masked=False).settings}["admin_token"] == "abc"


def test_a_bad_file_is_a_one_line_cli_error_and_the_server_refuses_to_start(isolated):
    write(isolated / "mmsearch.toml", "recal_size = 3\n")
    expected = f"{isolated / 'mmsearch.toml'}: recal_size: unknown setting (did you mean 'recall_size'?)"

    human = CliRunner().invoke(app, ["config", "show"])
    assert human.exit_code == 1
    assert squeeze(human.stderr) == squeeze(f"error: {expected}") and human.stdout == ""

    as_json = CliRunner().invoke(app, ["config", "show", "--json"])
    assert as_json.exit_code == 1 and as_json.stdout == ""
    assert json.loads(as_json.stderr)["error"] == {
        "code": "InvalidConfig", "message": expected, "field": "recal_size",
        "details": [{"field": "recal_size", "message": "unknown setting (did you mean 'recall_size'?)"}]}

    listed = CliRunner().invoke(app, ["dataset", "list", "--json"])  # any command that loads the settings
    assert listed.exit_code == 1 and json.loads(listed.stderr)["error"]["message"] == expected

    served = subprocess.run([str(EXE), "serve", "--port", str(free_port())], capture_output=True, text=True,
                            timeout=120, cwd=isolated)
    assert served.returncode == 1, served.stderr
    assert squeeze(served.stderr) == squeeze(f"error: {expected}") and "Traceback" not in served.stderr


# --- serve --workers N: its processes read the same file ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("text", "shared_state"), [('shared_state = "memory"\n', None), ("", "catalog")])
def test_serve_workers_hand_their_processes_the_file(isolated, tmp_path, monkeypatch, text, shared_state):
    """The mechanism: the processes uvicorn spawns rebuild Settings() from the environment they inherit, so
    run_server names the file it read in MMSEARCH_CONFIG (absolute: their directory does not matter) and exports
    only what must beat the file. Here uvicorn.run stands in and records that environment."""
    import uvicorn

    from mmsearch.commands.serve import run_server

    write(isolated / "mmsearch.toml", f"recall_size = 300\n{text}")
    seen: dict[str, str] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(os.environ))
    before = dict(os.environ)
    try:  # run_server sets variables for its processes in this one: none may outlive the test
        run_server(SimpleNamespace(settings=Settings(home=tmp_path / "home")), "127.0.0.1", 8000, workers=2)
    finally:
        os.environ.clear()
        os.environ.update(before)

    assert seen[CONFIG_ENV] == str(isolated / "mmsearch.toml")
    assert seen.get("MMSEARCH_SHARED_STATE") == shared_state
    monkeypatch.chdir(tmp_path)  # a worker elsewhere still reads the file, under the exported variables
    for name in (CONFIG_ENV, "MMSEARCH_HOME", "MMSEARCH_SHARED_STATE"):
        if name in seen:
            monkeypatch.setenv(name, seen[name])
    child = Settings()
    assert (child.recall_size, child.home, child.shared_state) == (300, tmp_path / "home", shared_state or "memory")


def test_a_value_from_the_file_reaches_serve_workers_processes(isolated, tmp_path):
    """A real `serve --workers 2`: only the spawned processes answer, and they refuse a 4 KB body with the
    file's 2048-byte limit (the default is 10 MB)."""
    write(isolated / "mmsearch.toml", "max_body_bytes = 2048\nocr = false\nconsole = false\n")
    port = free_port()
    proc = subprocess.Popen([str(EXE), "--home", str(tmp_path / "home"), "serve", "--workers", "2", "--port",
                             str(port), "--log-level", "warning"], cwd=isolated, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        import psutil

        assert len(psutil.Process(proc.pid).children(recursive=True)) >= 2  # the supervisor's processes serve
        for _ in range(4):  # a new connection each: either process may take it
            with httpx.Client(timeout=10) as client:
                answer = client.post(f"{url}/search/multimodal", content=b"x" * 4096,
                                     headers={"Content-Type": "application/json"})
            assert answer.status_code == 413 and "2048" in answer.text, answer.text
    finally:
        proc.terminate()
        proc.wait(30)
