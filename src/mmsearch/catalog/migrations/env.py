"""Alembic's environment for the catalog: the connection comes from `catalog.migrate` (or sqlalchemy.url when
alembic is run by hand: `alembic -x url=... upgrade head` from this folder)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from mmsearch.catalog import accounts as _accounts  # noqa: F401  (its tables join the metadata)
from mmsearch.catalog.models import Base

config = context.config


def _run(connection: Connection) -> None:
    # SQLite alters a table by copying it: "batch" mode does that for the operations it cannot do in place
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        _run(conn)
