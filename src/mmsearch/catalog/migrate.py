"""The catalog's schema, brought to the code's revision by Alembic on open: SQLite and PostgreSQL alike.

Opening a catalog at the current revision costs one query, and making a new one costs `create_all` (no Alembic
import either time). An older catalog is upgraded through the migrations. A catalog made by `create_all`
before migrations existed gets what the baseline has and it lacks (tables, indexes), is stamped at the
baseline and upgraded. On PostgreSQL an advisory lock keeps two processes from migrating at once; on SQLite the
migration's write transaction does, and a process that lost the race finds the catalog current and goes on.
A new revision: `alembic -c <(echo) revision -m "…"` from `catalog/migrations` (see its env.py), then bump
SCHEMA_REVISION (tests/test_catalog_postgres.py checks they agree).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from mmsearch.catalog import accounts as _accounts  # noqa: F401  (its tables join the metadata)
from mmsearch.catalog.models import Base

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_REVISION = "0004"
BASELINE = "0001"
BASELINE_TABLES = ("accounts", "api_keys", "applications", "datasets", "jobs", "query_log", "account_keys",
                   "account_usage", "api_key_applications", "application_datasets")
_LOCK_ID = 7_270_736_900  # pg_advisory_lock key: "mmsearch catalog migration"


def revision(engine: Engine) -> str | None:
    """The catalog's Alembic revision; None when it has none (empty, or made before migrations)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def _exclusive(engine: Engine) -> Iterator[None]:
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_ID})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_ID})
            conn.commit()


def migrate(engine: Engine) -> None:
    if revision(engine) == SCHEMA_REVISION:
        return
    with _exclusive(engine):
        try:
            _upgrade(engine)
        except DBAPIError:
            if revision(engine) != SCHEMA_REVISION:  # not another process having done it meanwhile
                raise


def _upgrade(engine: Engine) -> None:
    if revision(engine) == SCHEMA_REVISION:
        return
    with engine.begin() as conn:
        if not inspect(conn).get_table_names():
            # a new catalog: the models' tables as they are and the newest revision, as `alembic stamp head`
            # would write it (without importing Alembic: ~100 ms a process; the migrations give the same schema,
            # tests/test_catalog_postgres.py compares them)
            Base.metadata.create_all(conn)
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                              "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": SCHEMA_REVISION})
            return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        found = inspect(conn)
        if not found.has_table("alembic_version") and found.has_table("datasets"):
            # what the baseline has and this catalog lacks (a table or index added before migrations existed)
            tables = [Base.metadata.tables[name] for name in BASELINE_TABLES]
            Base.metadata.create_all(conn, tables=tables)
            for table in tables:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
