"""SQLAlchemy 2 over SQLite by default, or PostgreSQL (MMSEARCH_CATALOG_URL); only portable SQL, and the schema
kept by Alembic migrations (migrate.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mmsearch.catalog.accounts import Accounts
from mmsearch.catalog.apps import Apps
from mmsearch.catalog.cache import ReadCache
from mmsearch.catalog.jobs import Jobs
from mmsearch.catalog.keys import Keys
from mmsearch.catalog.migrate import migrate
from mmsearch.catalog.models import DatasetRow, require
from mmsearch.catalog.querylog import QueryLog
from mmsearch.errors import AlreadyExists
from mmsearch.home import create_private_file, make_home
from mmsearch.schema.fields import DatasetInfo, parse_schema


def _info(row: DatasetRow) -> DatasetInfo:
    return DatasetInfo(
        id=row.id, type=row.type,  # type: ignore[arg-type]
        schema=parse_schema(json.loads(row.schema_json)), vector_dim=row.vector_dim,
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the CLI write while a server reads; busy_timeout waits instead of failing on a lock
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Catalog:
    def __init__(self, url: str, shared: bool = False) -> None:
        """`shared`: several processes use this catalog at once; throttling and replay checks count in it."""
        path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
        if path and path != ":memory:":  # it holds secrets: its folder 0700 if new, the file (and its WAL) 0600
            make_home(Path(path).parent)
            create_private_file(Path(path))
        if url.startswith("sqlite"):
            self.engine = create_engine(url)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:  # a server: connections checked before use (it may have restarted), enough of them for the threads
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        migrate(self.engine)
        self.cache = ReadCache()  # applications and datasets on the search path; every write below clears it
        self.apps = Apps(self.engine, self.cache)
        self.keys = Keys(self.engine)
        self.shared = shared
        self.accounts = Accounts(self.engine, shared=shared)
        self.jobs = Jobs(self.engine)
        self.query_log = QueryLog(self.engine)

    def add_dataset(self, info: DatasetInfo) -> None:
        row = DatasetRow(
            id=info.id, type=info.type, schema_json=info.schema.model_dump_json(exclude_defaults=True),
            vector_dim=info.vector_dim,
        )
        try:
            with Session(self.engine) as s, s.begin():
                s.add(row)
        except IntegrityError:
            raise AlreadyExists(f"dataset_id: dataset {info.id!r} already exists", field="dataset_id") from None
        self.cache.clear()

    def has_dataset(self, dataset_id: str) -> bool:
        with Session(self.engine) as s:
            return s.get(DatasetRow, dataset_id) is not None

    def dataset(self, dataset_id: str) -> DatasetInfo:
        with Session(self.engine) as s:
            row = require(s, DatasetRow, dataset_id, "dataset_id", "dataset")
            return _info(row)

    def dataset_cached(self, dataset_id: str) -> DatasetInfo:
        """`dataset` for the search path: kept for the cache's ttl, cleared by every write through this catalog."""
        return self.cache.get(("dataset", dataset_id), lambda: self.dataset(dataset_id))

    def set_dictionary(self, dataset_id: str, words: list[str]) -> DatasetInfo:
        """Replace the dataset's user words (schema `dictionary`), checked by the schema's rules."""
        with Session(self.engine) as s, s.begin():
            row = require(s, DatasetRow, dataset_id, "dataset_id", "dataset")
            raw = _info(row).schema.model_dump(mode="json", exclude_defaults=True)
            raw["dictionary"] = words
            row.schema_json = parse_schema(raw).model_dump_json(exclude_defaults=True)
        self.cache.clear()
        return self.dataset(dataset_id)

    def datasets(self) -> list[DatasetInfo]:
        with Session(self.engine) as s:
            return [_info(row) for row in s.scalars(select(DatasetRow).order_by(DatasetRow.id))]

    def remove_dataset(self, dataset_id: str) -> None:
        with Session(self.engine) as s, s.begin():
            row = require(s, DatasetRow, dataset_id, "dataset_id", "dataset")
            s.delete(row)
        self.cache.clear()
