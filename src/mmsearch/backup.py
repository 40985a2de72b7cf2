"""`mmsearch backup` and `mmsearch restore`: a consistent copy of a running home, and bringing it back.

A backup is a folder laid out like a home (`catalog.sqlite3` or `catalog.pgdump`, `tables/<id>.lance`,
`tables/<id>.serving/`, `jobs/`, `admin_token`, ...) plus `manifest.json`: the mmsearch version, the catalog's
schema revision and kind, the datasets (their catalog rows, the table version copied and its item count) and the
sha256 of every file. `manifest.json` is written last, so a folder without it is an unfinished backup.

Order, and what it guarantees while imports and searches go on (neither is stopped):

1. The catalog, in one snapshot: SQLite's online backup API (one step, one read transaction; WAL writers go
   on), or on PostgreSQL `pg_dump --format=custom` inside a REPEATABLE READ transaction that exported its
   snapshot (`--snapshot`), the same snapshot the dataset and job rows are read from.
2. The staged items of every job the snapshot holds unfinished (`jobs/<id>.ndjson`, uploads). A staged file is
   removed only after its job succeeded; one already gone belonged to a job that finished after the snapshot, so
   its final state is read from the live catalog and recorded (`jobs.finished`), and restore applies it.
3. Each dataset's table at its latest version (after 1 and 2): a job checkpoints after its batch is committed, so
   every item the catalog snapshot counts as applied is in the table copy. Items applied later may be there too.
4. Derived and small files: the newest serving-index snapshot at or before the copied version with the journal
   lines up to it (so the restored server loads instead of rebuilding: 46 s + 98 s of IVF training at 1M items),
   the admin token, quickstart's files, the OCR cache and crawl states (SQLite files, by the backup API).

The restored home is the catalog at step 1 with every table at its copied version. Jobs that were queued or
running are restored as queued (`worker` cleared) and resume at their checkpoint: upserts are keyed by primary key,
so re-applying items the table already holds is idempotent. Imports accepted after step 1 are not in the restored
catalog; the rows they had written by step 3 are in the tables. A file import run by the CLI (its job reads the
user's file, not a staged copy) resumes only where that file exists.

Tables are copied with Lance's `deep_clone` of one version: exactly the data, deletion and index files that version
references, the same version number at the destination, no re-encoding. On a 10,000-item table (512-d vectors, 21
MiB; `bench/backup.py`) it took 0.02 s, the same as copying the files `tracked_files` lists for the version, while
reading the version and writing a new table (`checkout` + `write_dataset`, then the scalar indexes again) took
0.13-0.30 s, and that gives a new version history. Lance deciding which files a version needs is the reason to
prefer the clone over the list copy: a new Lance file kind cannot be silently left out. A copy can race only one
thing: maintenance's cleanup removes files of versions older than an hour, so a clone of an idle table's hour-old
version fails if a compaction lands meanwhile; it is retried at the new latest version, and the last attempt holds
the table's write lock (imports wait for that one copy).

`--dataset ID` copies the whole catalog and that one table: the other datasets are restored empty (their schemas,
applications and keys kept) and their unfinished jobs cancelled, so the restored home has no catalog row without
its table. Milvus (`MMSEARCH_STORE=milvus:...`) is refused: it has no table versions to pin, so a copy taken while
imports run is no point in time, and Milvus's own milvus-backup snapshots its segments consistently.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from glob import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsearch import __version__
from mmsearch.errors import InvalidArgument, MMSearchError, NotFound
from mmsearch.home import create_private_file, make_home

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from mmsearch.config import Settings
    from mmsearch.store.lance import LanceStore

FORMAT = 1
MANIFEST = "manifest.json"
MARKER = ".mmsearch-backup"  # written first: --force may replace a folder holding it, and no other
CLONE_ATTEMPTS = 3  # the last one under the table's write lock
TERMINAL = ("succeeded", "failed", "cancelled")
SMALL_FILES = ("admin_token", "quickstart.json", "quickstart-image-query.json")
SECRET = ("admin_token", "catalog.sqlite3", "quickstart.json")  # 0600: credentials
SQLITE_FILES = ("ocr-cache.sqlite3",)  # besides the catalog and crawls/<name>/state.sqlite3
# what a restore with --force replaces; anything else in the home is left alone
HOME_ENTRIES = ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm", "tables", "jobs", "crawls",
                *SMALL_FILES, "ocr-cache.sqlite3", "ocr-cache.sqlite3-wal", "ocr-cache.sqlite3-shm")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Step:
    """Where a backup or restore is: `done` of `total` files or tables, or bytes when `unit` is "bytes"."""

    name: str
    done: int
    total: int
    unit: str = ""


Progress = Callable[[Step], None]


def _quiet(_: Step) -> None:
    pass


# -- backup -------------------------------------------------------------------------------------------
def backup(settings: Settings, dest: Path, dataset: str | None = None, force: bool = False,
           on_progress: Progress | None = None) -> dict[str, Any]:
    """Back the home up into `dest` (see the module docstring); the manifest written. A failure leaves `dest`
    empty (or removes it, when it was made here)."""
    from mmsearch.store.lance import LanceStore

    progress = on_progress or _quiet
    started = time.perf_counter()
    _lance_only(settings, "back up")
    home = Path(settings.home).resolve()
    dest = Path(dest).resolve()
    _check_dest(home, dest, force)
    if settings.catalog_url.startswith("postgres"):
        kind, catalog_file = "postgresql", "catalog.pgdump"
    else:
        kind, catalog_file = "sqlite", "catalog.sqlite3"
        if not (home / "catalog.sqlite3").is_file():
            raise NotFound(f"home: no catalog at {home / 'catalog.sqlite3'}: nothing to back up", field="home")
    created = not dest.exists()
    make_home(dest)  # 0700 when new: the catalog and the admin token are secrets
    try:
        _empty(dest)
        (dest / MARKER).write_text("an mmsearch backup; manifest.json is written when it is complete\n")
        progress(Step("catalog", 0, 1))
        snap = _snapshot_catalog(settings, dest / catalog_file)
        progress(Step("catalog", 1, 1))
        if dataset is not None and dataset not in snap.datasets:
            raise NotFound(f"dataset_id: no dataset {dataset!r} in the catalog", field="dataset_id")
        jobs = _copy_staged(settings, home, dest, snap, progress)
        store = LanceStore(settings.tables_dir)
        datasets = [_copy_table(store, dest, row, progress)
                    for row in snap.datasets.values() if dataset is None or row["id"] == dataset]
        _copy_small_files(home, dest, progress)
        files = _checksums(dest, progress)
        manifest = {
            "format": FORMAT, "mmsearch_version": __version__, "schema_revision": snap.revision,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "catalog": {"kind": kind, "file": catalog_file},
            "dataset": dataset, "catalog_datasets": sorted(snap.datasets), "datasets": datasets, "jobs": jobs,
            "files": files, "bytes": sum(f["bytes"] for f in files.values()),
            "seconds": round(time.perf_counter() - started, 3),
        }
        _write_json(dest / MANIFEST, manifest)
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            _empty(dest)
        raise
    return manifest


def _lance_only(settings: Settings, what: str) -> None:
    if settings.store != "lance":
        raise InvalidArgument(
            f"store: cannot {what} a Milvus store ({settings.store}): Milvus has no table versions to copy at one "
            "point in time; use Milvus's own backup tool (milvus-backup) for the collections, and `mmsearch export "
            "ID FILE --vectors` for a portable copy of a dataset's items", field="store")


def _overlaps(home: Path, path: Path) -> bool:
    """Whether a backup folder at `path` would hold the home, or sit where a backup reads or a restore writes."""
    return path == home or home.is_relative_to(path) or any(path.is_relative_to(home / p) for p in
                                                             ("tables", "jobs", "crawls"))


def _check_dest(home: Path, dest: Path, force: bool) -> None:
    if _overlaps(home, dest):
        raise InvalidArgument(f"dest: {dest} overlaps the home {home}; back up to a folder outside it "
                              "(another disk, ideally)", field="dest")
    if dest.exists() and not dest.is_dir():
        raise InvalidArgument(f"dest: {dest} is a file; name a folder", field="dest")
    if dest.is_dir() and any(dest.iterdir()):
        if not force:
            raise InvalidArgument(f"dest: {dest} is not empty; name a new folder, or pass --force to replace the "
                                  "backup in it", field="dest")
        if not (dest / MARKER).exists():
            raise InvalidArgument(f"dest: {dest} holds files that are not an mmsearch backup; --force replaces only "
                                  "a backup", field="dest")


def _empty(folder: Path) -> None:
    for entry in list(folder.iterdir()) if folder.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@dataclass
class _CatalogSnapshot:
    revision: str | None
    datasets: dict[str, dict[str, Any]]  # id -> its catalog row
    unfinished: list[dict[str, Any]]  # jobs queued or running: id, dataset_id, kind, source


@contextmanager
def _reaching(url: str) -> Iterator[None]:
    """A catalog that cannot be reached (server down, no such database) as one line naming it, password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except OperationalError as exc:
        where = make_url(url).render_as_string(hide_password=True)
        raise MMSearchError(f"catalog: cannot reach {where}: {str(exc.orig).strip()}", field="catalog") from None


def _read_rows(conn: Connection) -> _CatalogSnapshot:
    from sqlalchemy import inspect, select, text

    from mmsearch.catalog.models import DatasetRow, JobRow

    names = set(inspect(conn).get_table_names())
    revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() \
        if "alembic_version" in names else None
    datasets = {r.id: {"id": r.id, "type": r.type, "vector_dim": r.vector_dim, "schema": json.loads(r.schema_json)}
                for r in conn.execute(select(DatasetRow.id, DatasetRow.type, DatasetRow.vector_dim,
                                             DatasetRow.schema_json).order_by(DatasetRow.id))}
    jobs = [{"id": r.id, "dataset_id": r.dataset_id, "kind": r.kind, "source": r.source}
            for r in conn.execute(select(JobRow.id, JobRow.dataset_id, JobRow.kind, JobRow.source)
                                  .where(JobRow.status.not_in(TERMINAL)))]
    return _CatalogSnapshot(revision, datasets, jobs)


def _snapshot_catalog(settings: Settings, target: Path) -> _CatalogSnapshot:
    from sqlalchemy import create_engine

    create_private_file(target)
    if settings.catalog_url.startswith("postgres"):
        engine = create_engine(settings.catalog_url)
        try:
            with _reaching(settings.catalog_url), \
                    engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
                from sqlalchemy import text

                exported = conn.execute(text("SELECT pg_export_snapshot()")).scalar()
                snap = _read_rows(conn)  # the rows of the very snapshot pg_dump copies
                _pg_tool("pg_dump", ["--format=custom", f"--snapshot={exported}", "--file", str(target)],
                         settings.catalog_url)
            return snap
        finally:
            engine.dispose()
    _sqlite_copy(Path(settings.home) / "catalog.sqlite3", target)
    engine = create_engine(f"sqlite:///{target}")
    try:
        with engine.connect() as conn:
            return _read_rows(conn)
    finally:
        engine.dispose()


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup in one step (one read transaction: a consistent copy while writers go on), as one
    self-contained file (no WAL)."""
    create_private_file(target)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def _pg_tool(name: str, args: list[str], url: str) -> None:
    """Run pg_dump or pg_restore on the catalog URL; the password goes through the environment, not argv."""
    from sqlalchemy.engine import make_url

    debian = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]) if
                    Path(p).parts[-3].isdigit() else 0)  # Debian's versioned client tools, newest last
    found = shutil.which(name) or (debian[-1] if debian else None)
    if found is None:
        raise MMSearchError(f"catalog: {name} is not installed; install the PostgreSQL client tools (the server's "
                            "major version or newer)", field="catalog")
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    dsn = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    done = subprocess.run([found, *args, "--dbname", dsn], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise MMSearchError(f"catalog: {name} failed: {done.stderr.strip()[-2_000:]}", field="catalog")


def _copy_staged(settings: Settings, home: Path, dest: Path, snap: _CatalogSnapshot,
                 progress: Progress) -> dict[str, Any]:
    """The staged files of the snapshot's unfinished jobs (before any table is copied: see the module docstring)."""
    staged: dict[str, str] = {}
    finished: dict[str, dict[str, Any]] = {}
    elsewhere: list[str] = []
    folder = home / "jobs"
    for n, job in enumerate(snap.unfinished):
        progress(Step("staged items", n, len(snap.unfinished)))
        source = Path(job["source"]) if "://" not in job["source"] else None
        if source is not None and not source.is_absolute() and source.parent.name == "jobs":
            source = folder / source.name  # staged under a home given as a relative path
        if source is None or not source.resolve().is_relative_to(folder):
            elsewhere.append(job["id"])  # the user's file (a CLI import) or object storage: not ours to copy
            continue
        try:
            shutil.copyfile(source, _parent(dest / "jobs" / source.name))
            staged[job["id"]] = f"jobs/{source.name}"
        except FileNotFoundError:
            live = _live_job(settings, job["id"])
            if live is not None:
                finished[job["id"]] = live
    progress(Step("staged items", len(snap.unfinished), len(snap.unfinished)))
    return {"staged": staged, "finished": finished, "not_copied": elsewhere}


def _live_job(settings: Settings, job_id: str) -> dict[str, Any] | None:
    """The final state of a job that finished after the catalog snapshot (its staged file is gone)."""
    from sqlalchemy import create_engine, select

    from mmsearch.catalog.models import JobRow

    engine = create_engine(settings.catalog_dsn)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(JobRow).where(JobRow.id == job_id)).mappings().first()
    finally:
        engine.dispose()
    if row is None or row["status"] not in TERMINAL:
        return None
    keep = ("status", "done", "imported", "failed", "warned", "errors_json", "warnings_json", "message",
            "run_seconds", "finished_at")
    return {k: (row[k].isoformat() if isinstance(row[k], datetime) else row[k]) for k in keep}


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _copy_table(store: LanceStore, dest: Path, row: dict[str, Any], progress: Progress) -> dict[str, Any]:
    import lance

    from mmsearch.schema.fields import DatasetInfo, parse_schema

    name = f"table {row['id']}"
    progress(Step(name, 0, 1))
    info = DatasetInfo(id=row["id"], type=row["type"], schema=parse_schema(row["schema"]),
                       vector_dim=row["vector_dim"])
    tables = dest / "tables"
    tables.mkdir(exist_ok=True)
    if not (store.root / f"{info.id}.lance").is_dir():
        raise MMSearchError(f"dataset_id: the table of dataset {info.id!r} is gone (dropped while the backup ran?); "
                            "run the backup again", field="dataset_id")
    for attempt in range(CLONE_ATTEMPTS):
        shutil.rmtree(tables / f"{info.id}.lance", ignore_errors=True)
        try:
            version = store.clone_latest(info, tables, hold_lock=attempt == CLONE_ATTEMPTS - 1)
            break
        except (OSError, RuntimeError, ValueError):  # a file removed by a cleanup: copy the newer version
            if attempt == CLONE_ATTEMPTS - 1:
                raise
    items = lance.dataset(str(tables / f"{info.id}.lance")).count_rows()
    serving = _copy_serving(store.root, tables, info.id, version)
    progress(Step(name, 1, 1))
    return {**row, "version": version, "items": items, "serving_snapshot": serving}


def _copy_serving(source: Path, tables: Path, dataset_id: str, version: int) -> int | None:
    """The newest serving-index snapshot at or before `version`, with the journal lines from it up to `version`;
    None when there is none (the restored server builds the index from the table: derived data, never lost)."""
    from mmsearch.store.serving import snapshot

    folder = snapshot.folder(source, dataset_id)
    found = []
    with suppress(OSError):
        for path in folder.iterdir():
            if path.name.startswith("v") and path.name[1:].isdigit() and (path / "meta.json").exists():
                found.append((int(path.name[1:]), path))
    for saved, path in sorted(found, reverse=True):
        if saved > version:
            continue
        target = snapshot.folder(tables, dataset_id)
        try:
            shutil.copytree(path, target / path.name)
        except (OSError, shutil.Error):  # pruned by a newer save meanwhile: try an older one
            shutil.rmtree(target, ignore_errors=True)
            continue
        lines = []
        with suppress(FileNotFoundError), open(folder / "journal.jsonl", "rb") as fh:
            for raw in fh:
                try:
                    entry = json.loads(raw)
                    start, end = int(entry["from"]), int(entry["to"])
                except (ValueError, KeyError, TypeError):
                    break  # a line being written: the chain ends here, and the restored index catches up from the table
                if start >= saved and end <= version:
                    lines.append(raw if raw.endswith(b"\n") else raw + b"\n")
        (target / "journal.jsonl").write_bytes(b"".join(lines))
        return saved
    return None


def _copy_small_files(home: Path, dest: Path, progress: Progress) -> None:
    crawls = sorted(home.glob("crawls/*/state.sqlite3"))
    todo = [*SMALL_FILES, *SQLITE_FILES, *(str(p.relative_to(home)) for p in crawls)]
    for n, rel in enumerate(todo):
        progress(Step("files", n, len(todo)))
        source = home / rel
        if not source.is_file():
            continue
        if rel.endswith(".sqlite3"):
            _sqlite_copy(source, _parent(dest / rel))
        else:
            if rel in SECRET:
                create_private_file(dest / rel)
            shutil.copyfile(source, dest / rel)
    progress(Step("files", len(todo), len(todo)))


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            yield Path(dirpath) / name


def _checksums(dest: Path, progress: Progress) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file of the backup (read back from disk, and synced)."""
    paths = [p for p in _walk(dest) if p.parent != dest or p.name not in (MANIFEST, MARKER)]
    total = sum(p.stat().st_size for p in paths)
    done = 0
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(paths):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                done += len(chunk)
                progress(Step("checksums", done, total, "bytes"))
            os.fsync(fh.fileno())
        files[path.relative_to(dest).as_posix()] = {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}
    progress(Step("checksums", total, total, "bytes"))
    return files


def _write_json(path: Path, value: Any) -> None:
    part = path.with_name(f".{path.name}.part")
    with open(part, "w", encoding="utf-8") as fh:
        json.dump(value, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, path)


# -- restore ------------------------------------------------------------------------------------------
def read_manifest(src: Path) -> dict[str, Any]:
    """The backup's manifest, checked for what this mmsearch can restore (before any file is read)."""
    from mmsearch.catalog.migrate import MIGRATIONS, SCHEMA_REVISION

    path = Path(src) / MANIFEST
    if not path.is_file():
        raise InvalidArgument(f"src: {src} has no {MANIFEST}: not an mmsearch backup, or one that did not finish",
                              field="src")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files, kind = manifest["files"], manifest["catalog"]["kind"]
        if not isinstance(files, dict) or kind not in ("sqlite", "postgresql"):
            raise TypeError(kind)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"src: {MANIFEST} is damaged ({type(exc).__name__}: {exc})", field="src") from None
    if manifest.get("format") != FORMAT:
        raise InvalidArgument(f"src: backup format {manifest.get('format')!r}; this mmsearch reads format {FORMAT}",
                              field="src")
    revision = manifest.get("schema_revision")
    known = {p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("*.py")}
    if revision is not None and revision not in known:
        raise InvalidArgument(f"src: the catalog is at schema revision {revision}, made by a newer mmsearch "
                              f"({manifest.get('mmsearch_version')}); this one knows up to {SCHEMA_REVISION}",
                              field="src")
    for rel in files:
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise InvalidArgument(f"src: {MANIFEST} names a file outside the backup: {rel!r}", field="src")
    return manifest


def home_contents(settings: Settings) -> list[str]:
    """What makes a home non-empty for restore: catalog rows, tables, staged items (empty list: none)."""
    from sqlalchemy import create_engine, func, inspect, select, table

    found = []
    home = Path(settings.home)
    url = settings.catalog_url
    if url or (home / "catalog.sqlite3").is_file():  # never create a SQLite file just to look
        engine = create_engine(settings.catalog_dsn)
        try:
            with _reaching(settings.catalog_dsn), engine.connect() as conn:
                names = set(inspect(conn).get_table_names())
                for name in ("datasets", "applications", "api_keys", "accounts", "jobs"):
                    if name in names and (n := conn.execute(select(func.count()).select_from(table(name))).scalar()):
                        found.append(f"{n} {name} in the catalog")
        finally:
            engine.dispose()
    tables = sorted(p.name for p in (home / "tables").glob("*.lance"))
    if tables:
        found.append(f"tables {', '.join(tables)}")
    if (home / "jobs").is_dir() and any((home / "jobs").iterdir()):
        found.append("staged items in jobs/")
    return found


def restore(settings: Settings, src: Path, force: bool = False, on_progress: Progress | None = None
            ) -> dict[str, Any]:
    """Bring the backup in `src` back into the configured home (see the module docstring). Every file is copied
    into a folder inside the home and checked against its sha256 first: a damaged backup changes nothing."""
    progress = on_progress or _quiet
    started = time.perf_counter()
    _lance_only(settings, "restore into")
    src = Path(src).resolve()
    manifest = read_manifest(src)
    kind = manifest["catalog"]["kind"]
    here = "postgresql" if settings.catalog_url.startswith("postgres") else "sqlite"
    if kind != here:
        names = {"sqlite": "SQLite (a home without MMSEARCH_CATALOG_URL)",
                 "postgresql": "PostgreSQL (MMSEARCH_CATALOG_URL=postgresql+psycopg://...)"}
        raise InvalidArgument(f"src: the backup's catalog is {names[kind]} and the configured one is {names[here]}; "
                              "restore into a home configured like the one backed up", field="src")
    home = Path(settings.home).resolve()
    if _overlaps(home, src):
        raise InvalidArgument(f"src: the backup {src} and the home {home} overlap", field="src")
    found = home_contents(settings)
    if found and not force:
        raise InvalidArgument(f"home: {home} is not empty ({'; '.join(found)}); restore into a new home, or pass "
                              "--force to replace what it holds (stop its servers and workers first)", field="home")
    make_home(home)
    stage = home / f".restore-{secrets.token_hex(4)}"
    stage.mkdir(mode=0o700)
    try:
        _stage_files(src, stage, manifest["files"], progress)
        if force:
            for name in HOME_ENTRIES:
                _remove(home / name)
        else:  # an empty home may still hold an empty catalog file, with a WAL SQLite would replay onto ours
            for name in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm"):
                _remove(home / name)
        progress(Step("catalog", 0, 1))
        catalog_file = stage / manifest["catalog"]["file"]
        if kind == "postgresql":
            _pg_tool("pg_restore", ["--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
                                    "--exit-on-error", str(catalog_file)], settings.catalog_url)
            catalog_file.unlink()
        progress(Step("catalog", 1, 1))
        for entry in sorted(stage.iterdir()):
            if entry.is_dir():
                (home / entry.name).mkdir(exist_ok=True)
                for inner in sorted(entry.iterdir()):
                    _remove(home / entry.name / inner.name)
                    os.replace(inner, home / entry.name / inner.name)
            else:
                os.replace(entry, home / entry.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    datasets = _after_restore(settings, home, manifest)
    return {"home": str(home), "catalog": kind, "datasets": datasets, "dataset": manifest.get("dataset"),
            "created_at": manifest.get("created_at"), "bytes": manifest.get("bytes"),
            "seconds": round(time.perf_counter() - started, 3)}


def _stage_files(src: Path, stage: Path, files: dict[str, dict[str, Any]], progress: Progress) -> None:
    """Copy every file the manifest lists into `stage`, hashing as it goes; the first damaged one is refused by name."""
    total = sum(int(f.get("bytes", 0)) for f in files.values())
    done = 0
    for rel, meta in sorted(files.items()):
        source, target = src / rel, _parent(stage / rel)
        digest = hashlib.sha256()
        try:
            with open(source, "rb") as fh, open(target, "wb") as out:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    progress(Step("verifying", done, total, "bytes"))
        except FileNotFoundError:
            raise InvalidArgument(f"src: the backup is damaged: {rel} is missing", field="src") from None
        if digest.hexdigest() != meta.get("sha256"):
            raise InvalidArgument(f"src: the backup is damaged: {rel} does not match its sha256 in {MANIFEST}",
                                  field="src")
        if Path(rel).name in SECRET:
            os.chmod(target, 0o600)
    progress(Step("verifying", total, total, "bytes"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _after_restore(settings: Settings, home: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Open (and migrate) the restored catalog, requeue its unfinished jobs on the restored staged files, and give
    every dataset without a table in the backup (a `--dataset` backup) an empty one."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from mmsearch.catalog import Catalog
    from mmsearch.catalog.models import JobRow
    from mmsearch.store.lance import LanceStore

    catalog = Catalog(settings.catalog_dsn, shared=settings.shares_state)
    jobs = manifest.get("jobs", {})
    staged, finished = jobs.get("staged", {}), jobs.get("finished", {})
    copied = {d["id"] for d in manifest["datasets"]}
    with Session(catalog.engine) as s, s.begin():
        for row in s.scalars(select(JobRow).where(JobRow.status.not_in(TERMINAL))):
            if row.id in finished:
                for key, value in finished[row.id].items():
                    setattr(row, key, datetime.fromisoformat(value) if key == "finished_at" and value else value)
                row.worker = None
            elif row.dataset_id not in copied:
                row.status, row.worker, row.finished_at = "cancelled", None, datetime.now(UTC)
                row.message = "cancelled by restore: its dataset's items were not in the backup (--dataset)"
            else:
                row.status, row.worker, row.heartbeat_at = "queued", None, None
            if row.id in staged:
                row.source = str(home / staged[row.id])
    store = LanceStore(settings.tables_dir)
    out = []
    for info in catalog.datasets():
        if not store.exists(info.id):
            store.create(info)
        out.append({"id": info.id, "version": store.version(info), "items": store.count(info),
                    "restored": info.id in copied})
    catalog.engine.dispose()
    return out

