"""The catalog on PostgreSQL as on SQLite: Alembic migrations (fresh, and a catalog made before migrations),
the models and the migrations agreeing, concurrent job claims, and the whole engine over a PostgreSQL catalog.

The server is a throwaway one (tests/postgres.py): Debian's postgresql, started for the run.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

import postgres
from conftest import EXAMPLE_SCHEMA, VECTOR_DIM
from mmsearch.catalog.db import Catalog
from mmsearch.catalog.migrate import MIGRATIONS, SCHEMA_REVISION, revision
from mmsearch.catalog.models import Base
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder
from mmsearch.search import SearchRequest


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _drift(engine) -> list:
    """What Alembic's autogenerate finds between the database and the models."""
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    return postgres.database(request.getfixturevalue("postgres_server"))


def test_the_code_names_the_newest_migration():
    config = _config()
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_a_new_catalog_is_migrated_to_the_models_exactly(url: str):
    catalog = Catalog(url)
    assert revision(catalog.engine) == SCHEMA_REVISION
    assert _drift(catalog.engine) == []  # what autogenerate would write next: nothing
    Catalog(url)  # opening it again: already current


def test_the_migrations_from_nothing_give_the_models_schema(url: str):
    from alembic import command

    config = _config()
    engine = create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    assert _drift(engine) == []
    assert revision(engine) == SCHEMA_REVISION
    Catalog(url).datasets()  # and the catalog opens it as current


def test_a_catalog_at_the_first_revision_is_upgraded_keeping_its_rows(url: str):
    from alembic import command

    config = _config()
    engine = create_engine(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text("INSERT INTO accounts (id, name, plan, active, credits, qps, created_at, updated_at) "
                          "VALUES ('a1', 'acme', 'paid', true, 5, 10, '2026-01-01', '2026-01-01')"))
    catalog = Catalog(url)
    assert revision(catalog.engine) == SCHEMA_REVISION
    catalog.accounts.add_credits("acme", 2**40)  # beyond 32 bits: the 0002 column type
    assert catalog.accounts.get("acme").credits == 2**40 + 5


def test_a_catalog_made_before_migrations_is_stamped_and_upgraded(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)  # as the code before migrations made it: no ts index, no shared state yet
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_query_log_ts"))
        conn.execute(text("DROP TABLE throttle_windows"))
        conn.execute(text("DROP TABLE replay_guard"))
        conn.execute(text("DROP TABLE web_image_looks"))  # the corpus made these on first use: one was made
        conn.execute(text("DROP INDEX ix_web_image_hashes_b3"))
        conn.execute(text("INSERT INTO datasets (id, type, schema_json, vector_dim, created_at) "
                          "VALUES ('kept', 'image_text', '{\"fields\": []}', 8, '2026-01-01 00:00:00')"))
    catalog = Catalog(url)
    assert revision(catalog.engine) == SCHEMA_REVISION
    assert "ix_query_log_ts" in {ix["name"] for ix in inspect(catalog.engine).get_indexes("query_log")}
    assert "ix_web_image_hashes_b3" in {ix["name"] for ix in inspect(catalog.engine).get_indexes("web_image_hashes")}
    assert _drift(catalog.engine) == []
    with catalog.engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM datasets")).scalars().all() == ["kept"]


def test_processes_opening_a_new_catalog_at_once_all_succeed(postgres_server: str):
    url = postgres.database(postgres_server)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Catalog(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert revision(Catalog(url).engine) == SCHEMA_REVISION


def test_each_queued_job_is_claimed_by_exactly_one_worker(url: str):
    catalog = Catalog(url)
    jobs = [catalog.jobs.create("products", f"/staged/{n}.ndjson", 1) for n in range(6)]
    claimed: dict[str, list[str]] = {}
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := catalog.jobs.claim(name)) is not None:
            with lock:
                claimed.setdefault(job.id, []).append(name)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(j.id for j in jobs)
    assert all(len(names) == 1 for names in claimed.values()), claimed


def test_the_engine_runs_on_a_postgresql_catalog(postgres_server: str, tmp_path: Path, product_items):
    settings = Settings(home=tmp_path, catalog_url=postgres.database(postgres_server), ocr=False)
    mm = MMSearch(settings, encoder=HashingEncoder(VECTOR_DIM))
    mm.create_dataset("products", copy.deepcopy(EXAMPLE_SCHEMA), vector_dim=VECTOR_DIM)
    assert mm.import_items("products", copy.deepcopy(product_items)).rejected == 0
    mm.catalog.apps.create("shop", ["products"], {"spell_correction": "auto"})
    found = mm.search_app("shop", "products", SearchRequest(text="runing shoe"), user_id="u1")
    assert found.corrected_query == "running shoe" and found.result.hits
    mm.catalog.query_log.flush()
    entry = mm.catalog.query_log.recent("shop", limit=1)[0]
    assert entry.user_id == "u1" and entry.corrected_query == "running shoe"
    assert not (tmp_path / "catalog.sqlite3").exists()  # nothing went to SQLite
    # a second engine (another process, in effect) sees the same catalog
    other = MMSearch(Settings(home=tmp_path, catalog_url=settings.catalog_url, ocr=False),
                     encoder=HashingEncoder(VECTOR_DIM))
    assert [a.id for a in other.catalog.apps.list()] == ["shop"]


def test_a_bad_catalog_url_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="MMSEARCH_CATALOG_URL"):
        Settings(catalog_url="mysql://root@localhost/mm")
    assert Settings(catalog_url="postgresql://u@h/db").catalog_url == "postgresql+psycopg://u@h/db"
