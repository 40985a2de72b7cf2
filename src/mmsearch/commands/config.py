"""`mmsearch config show`: the settings in effect, where each comes from, secrets masked. The work (sources,
masking) is `mmsearch.config_sources`'; this module only renders it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from mmsearch.commands.common import JsonFlag, emit, errors, home_option, out

config_app = typer.Typer(no_args_is_help=True, help="Show the settings in effect and where each comes from.")


@config_app.command("show")
def config_show(as_json: JsonFlag = False) -> None:
    """Every setting, its value in effect and its source: default, file:PATH (MMSEARCH_CONFIG, else
    ./mmsearch.toml), env:MMSEARCH_X or option:--home. Tokens, keys and URL passwords are masked."""
    from mmsearch.config_sources import describe_settings

    home = home_option()
    env_home = os.environ.get("MMSEARCH_HOME")
    from_option = home is not None and (env_home is None or Path(env_home) != home)  # not Typer's envvar fill-in
    with errors(as_json):
        report = describe_settings({"home": home} if from_option else None, "option:--home")
    if as_json:
        emit(report.as_dict())
        return
    out.print(f"config file: {escape(str(report.file))}" if report.file
              else "config file: none (MMSEARCH_CONFIG is not set and there is no ./mmsearch.toml)")
    table = Table("setting")
    table.add_column("value", overflow="fold")  # folded, never cut: a path or URL is read whole
    table.add_column("source", overflow="fold")
    for s in report.settings:
        table.add_row(s.name, escape(_text(s.value)), escape(s.source))
    out.print(table)


def _text(value: Any) -> str:
    """As it would be written in the environment: `true`, not `True`; unset as empty."""
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)
