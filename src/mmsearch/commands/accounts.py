"""`mmsearch account ...`: IQS accounts, their plans, keys and credits from the command line."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mmsearch.commands.common import JsonFlag, catalog, emit, errors, out
from mmsearch.errors import InvalidArgument

if TYPE_CHECKING:  # the catalog (SQLAlchemy) loads when a command runs, not for `--help`
    from mmsearch.catalog.accounts import Account, NewAccountKey

DEFAULT_QPS = 10  # the catalog's DEFAULT_QPS, repeated so --help need not import it (tests/test_cli_startup.py)

account_app = typer.Typer(no_args_is_help=True, help="IQS accounts: plans, key pairs, activation, credits.")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The account's name.")]
KeyArg = Annotated[str, typer.Argument(metavar="ACCESS_KEY_ID")]


def _parse_time(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument(f"created_at: {raw!r} is not an ISO 8601 time (e.g. 2025-01-31T08:00:00Z)",
                              field="created_at") from None


def _print_new(new: NewAccountKey, what: str) -> None:
    a = new.account
    out.print(f"{what} for account [bold]{a.name}[/] ({a.plan}, {'active' if a.active else 'not activated'})")
    out.print(f"access key id:     {new.access_key_id}")
    out.print(f"access key secret: {new.access_key_secret}")
    out.print(f"API key:           {new.api_key}")
    out.print("[dim]the secret and the API key are shown once; keep them now[/]")


def _print_account(a: Account, as_json: bool, message: str) -> None:
    emit(a.as_dict()) if as_json else out.print(message)


@account_app.command("create")
def account_create(
    name: NameArg,
    plan: Annotated[str, typer.Option("--plan", help="trial (15 days, 1000 queries a day) or paid (credits).")]
    = "trial",
    qps: Annotated[int, typer.Option("--qps", help="Queries per second per key.")] = DEFAULT_QPS,
    credits: Annotated[int, typer.Option("--credits", help="Paid balance, in queries.")] = 0,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it not yet activated.")] = False,
    created_at: Annotated[str | None, typer.Option("--created-at", help="ISO 8601 creation time (migrations); "
                                                   "the trial's 15 days count from it.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an account and its key pair; the secret and API key are printed once."""
    with errors(as_json):
        new = catalog().accounts.create(name, plan=plan, qps=qps, credits=credits, active=not inactive,
                                               created_at=_parse_time(created_at))
    emit(new.as_dict()) if as_json else _print_new(new, "created key pair")


@account_app.command("subkey")
def account_subkey(
    name: NameArg,
    no_permission: Annotated[bool, typer.Option("--no-permission", help="Without the search permission "
                                                "(AliyunIQSFullAccess); grant it later.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Add a sub-account key pair and API key to an account."""
    with errors(as_json):
        new = catalog().accounts.subkey(name, can_search=not no_permission)
    emit(new.as_dict()) if as_json else _print_new(new, "created sub-account key pair")


@account_app.command("activate")
def account_activate(name: NameArg, as_json: JsonFlag = False) -> None:
    """Activate the search service for an account."""
    with errors(as_json):
        a = catalog().accounts.activate(name)
    _print_account(a, as_json, f"activated account [bold]{a.name}[/]")


@account_app.command("deactivate")
def account_deactivate(name: NameArg, as_json: JsonFlag = False) -> None:
    """Deactivate an account: its keys get Retrieval.NotActivate."""
    with errors(as_json):
        a = catalog().accounts.deactivate(name)
    _print_account(a, as_json, f"deactivated account [bold]{a.name}[/]")


@account_app.command("credits")
def account_credits(
    name: NameArg,
    amount: Annotated[int, typer.Argument(metavar="N", help="The new balance, in queries.")],
    add: Annotated[bool, typer.Option("--add", help="Add N to the balance (a recharge) instead of setting it.")]
    = False,
    as_json: JsonFlag = False,
) -> None:
    """Set (or with --add, top up) a paid account's balance."""
    with errors(as_json):
        accounts = catalog().accounts
        a = accounts.add_credits(name, amount) if add else accounts.set_credits(name, amount)
    _print_account(a, as_json, f"account [bold]{a.name}[/] has {a.credits} credits")


@account_app.command("update")
def account_update(
    name: NameArg,
    plan: Annotated[str | None, typer.Option("--plan", help="trial or paid.")] = None,
    qps: Annotated[int | None, typer.Option("--qps", help="Queries per second per key.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change an account's plan or QPS limit."""
    with errors(as_json):
        a = catalog().accounts.update(name, plan=plan, qps=qps)
    _print_account(a, as_json, f"account [bold]{a.name}[/]: plan {a.plan}, {a.qps} qps")


@account_app.command("grant")
def account_grant(
    access_key_id: KeyArg,
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the search permission away instead.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Give a sub-account key the search permission (or take it away)."""
    with errors(as_json):
        k = catalog().accounts.grant(access_key_id, can_search=not revoke)
    emit(k.as_dict()) if as_json else out.print(
        f"key [bold]{k.access_key_id}[/] {'may' if k.can_search else 'may not'} search")


@account_app.command("revoke")
def account_revoke(access_key_id: KeyArg, as_json: JsonFlag = False) -> None:
    """Revoke a key pair (and its API key): it gets InvalidAccessKeyId.NotFound from then on."""
    with errors(as_json):
        k = catalog().accounts.revoke_key(access_key_id)
    emit(k.as_dict()) if as_json else out.print(f"revoked key [bold]{k.access_key_id}[/]")


@account_app.command("list")
def account_list(as_json: JsonFlag = False) -> None:
    """List accounts (never their secrets)."""
    with errors(as_json):
        accounts = catalog().accounts.list()
    if as_json:
        emit([a.as_dict() for a in accounts])
        return
    table = Table("name", "plan", "active", "credits", "qps", "today", "keys", "created")
    for a in accounts:
        table.add_row(a.name, a.plan, "yes" if a.active else "no", str(a.credits) if a.plan == "paid" else "-",
                      str(a.qps), str(a.queries_today), str(sum(k.active for k in a.keys)),
                      a.created_at.strftime("%Y-%m-%d %H:%M"))
    out.print(table if accounts else "no accounts yet: mmsearch account create NAME")


@account_app.command("show")
def account_show(name: NameArg, as_json: JsonFlag = False) -> None:
    """An account's plan, balance, today's usage and keys."""
    with errors(as_json):
        a = catalog().accounts.get(name)
    emit(a.as_dict()) if as_json else out.print_json(json.dumps(a.as_dict(), ensure_ascii=False))
