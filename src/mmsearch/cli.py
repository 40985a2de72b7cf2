"""The `mmsearch` command line. With --json a command prints exactly one JSON value on stdout;
progress bars and messages go to stderr, so scripts can pipe the output.

This module only assembles the Typer app: the commands live in `mmsearch.commands`, and what they share
(consoles, the engine, JSON output, error exits) in `mmsearch.commands.common`."""

from __future__ import annotations

import typer

from mmsearch.commands.accounts import account_app
from mmsearch.commands.apps import app_app, job_app, key_app
from mmsearch.commands.backup import backup, restore
from mmsearch.commands.common import main_callback
from mmsearch.commands.config import config_app
from mmsearch.commands.crawl import crawl, import_warc
from mmsearch.commands.datasets import dataset_app
from mmsearch.commands.demo import demo, quickstart
from mmsearch.commands.doctor import doctor
from mmsearch.commands.evaluate import eval_
from mmsearch.commands.items import delete, export, get, import_, search_
from mmsearch.commands.serve import serve
from mmsearch.commands.video import video_app
from mmsearch.commands.web import import_web
from mmsearch.commands.worker import worker

app = typer.Typer(no_args_is_help=True, add_completion=False, help="mmsearch: self-hosted multimodal search.")
app.callback()(main_callback)

app.add_typer(dataset_app, name="dataset")
app.add_typer(video_app, name="video")
app.command("import")(import_)
app.command("export")(export)
app.command("backup")(backup)
app.command("restore")(restore)
app.command("delete")(delete)
app.command("get")(get)
app.command("search")(search_)
app.command("eval")(eval_)
app.command("doctor")(doctor)
app.add_typer(app_app, name="app")
app.add_typer(key_app, name="key")
app.add_typer(job_app, name="job")
app.command("serve")(serve)
app.command("worker")(worker)
app.command("quickstart")(quickstart)
app.command("demo")(demo)
app.add_typer(account_app, name="account")
app.add_typer(config_app, name="config")
app.command("import-web")(import_web)
app.command("crawl")(crawl)
app.command("import-warc")(import_warc)
