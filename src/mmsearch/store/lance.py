"""LanceDB store: one table per dataset under `<home>/tables`, upserts via merge_insert (atomic per batch).

The table is the store of record; queries are served from the in-memory serving index beside it
(store/serving: BM25 postings, an IVF over the vectors, typed columns, documents), which follows the table
through the change journal every write here appends under the table's write lock.

Columns: `_id` (primary key as a string), `_doc` (the item as JSON, returned as display fields),
`_text` (tokenised searchable text and OCR text), `_media` (per-image size, hash and OCR text, JSON),
`_vec` (item embedding, nullable) and one
typed `f_<name>` column per filterable or sortable field, so filters run inside the engine before
ranking and candidates can be sorted without reading their documents. A BTree index on `_id` makes
fetching the documents of a page (and deletes and upserts) index lookups instead of scans.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import lancedb

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: in-process threads are still serialised by Lance
    fcntl = None  # type: ignore[assignment]
import numpy as np
import pyarrow as pa
from lancedb.index import Bitmap, BTree, LabelList

from mmsearch.errors import AlreadyExists, NotFound
from mmsearch.schema.fields import DatasetInfo, FieldSpec
from mmsearch.schema.filters import Filter
from mmsearch.store.base import Candidate, Record, RerankFeatures, UpsertResult
from mmsearch.store.lance_filter import to_sql
from mmsearch.store.serving.index import ServingIndex
from mmsearch.store.serving.live import LiveIndexes
from mmsearch.store.serving.vectors import VectorConfig

_ARROW = {"int32": pa.int32(), "int64": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
_ID_CHUNK = 1_000
T = TypeVar("T")


@dataclass(frozen=True)
class AnnConfig:
    """When the serving index trains an IVF over the vectors (below `min_rows`, vector search is an exact
    scan), and how many of its lists a query probes (bench/vector_index.py chose IVF-SQ8, nprobe 32)."""

    min_rows: int = 10_000
    nprobe: int = 32


def segment_fields(info: DatasetInfo) -> list[pa.Field]:
    """A video dataset's segments: their vectors and (start, end) seconds, a list per row (multi-vector)."""
    if info.type != "video":
        return []
    return [pa.field("_seg_vec", pa.list_(pa.list_(pa.float32(), info.vector_dim))),
            pa.field("_seg_time", pa.list_(pa.list_(pa.float32(), 2)))]


def arrow_schema(info: DatasetInfo) -> pa.Schema:
    cols = [
        pa.field("_id", pa.string(), nullable=False),
        pa.field("_doc", pa.string()),
        pa.field("_text", pa.string()),
        pa.field("_media", pa.string()),
        pa.field("_vec", pa.list_(pa.float32(), info.vector_dim)),
        *segment_fields(info),
    ]
    for f in info.schema.columns:
        cols.append(pa.field(f"f_{f.name}", _arrow_type(f)))
    return pa.schema(cols)


def _segments_array(records: list[Record], width: int, spans: bool) -> pa.Array:
    """Each record's segment vectors (or spans) as one list<fixed_size_list> column; a record without is null."""
    parts = [(r.spans if spans else r.segments) for r in records]
    counts = [len(p) if p is not None else 0 for p in parts]
    flat = np.concatenate([np.asarray(p, np.float32).reshape(-1) for p in parts if p is not None and len(p)]
                          or [np.zeros(0, np.float32)])
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), width)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, inner, mask=pa.array([p is None for p in parts]))


def _arrow_type(f: FieldSpec) -> pa.DataType:
    return pa.list_(_ARROW[f.element_type]) if f.is_array else _ARROW[f.type]


def is_commit_conflict(exc: BaseException) -> bool:
    return "commit conflict" in str(exc).lower()


def retry_conflicts(fn: Callable[[], T], attempts: int = 6) -> T:
    """Lance commits optimistically: when two writers (the CLI and a server, two jobs) commit at once, the
    loser gets a retryable conflict. Its data is not written, so running the operation again is safe."""
    for attempt in range(attempts):
        try:
            return fn()
        except (RuntimeError, OSError, ValueError) as exc:
            if not is_commit_conflict(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


@contextmanager
def table_write_lock(root: Path, dataset_id: str) -> Iterator[None]:
    """One writer per table at a time, across processes (the CLI and a server) and threads. Lance commits
    optimistically and resolves most conflicts itself, but a delete racing another process's compaction was
    seen to come back (a stress test found deleted rows present again); serialising writes removes the race.
    Readers never take the lock."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{dataset_id}.write.lock", "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _in_ids(ids: list[str]) -> str:
    return "_id IN (" + ", ".join("'" + i.replace("'", "''") + "'" for i in ids) + ")"


class LanceStore:
    def __init__(
        self,
        root: Path,
        ann: AnnConfig | None = None,
        read_consistency_interval: timedelta | None = timedelta(seconds=1),
    ) -> None:
        self.root = Path(root)
        self.ann = ann or AnnConfig()
        self._interval = read_consistency_interval
        self._db: Any = None
        self._tables: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.serving = LiveIndexes(self, self.root, VectorConfig(min_rows=self.ann.min_rows, nprobe=self.ann.nprobe))

    # -- tables ---------------------------------------------------------------------------------------
    @property
    def db(self) -> Any:
        if self._db is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._db = lancedb.connect(str(self.root), read_consistency_interval=self._interval)
        return self._db

    def exists(self, dataset_id: str) -> bool:
        return dataset_id in self.db.list_tables().tables

    def create(self, info: DatasetInfo) -> None:
        if self.exists(info.id):
            raise AlreadyExists(f"dataset_id: table {info.id!r} already exists in the store", field="dataset_id")
        self.serving.forget(info.id)  # a journal or snapshot left by a table of the same name
        table = self.db.create_table(info.id, schema=arrow_schema(info))
        # Built on the empty table, so lookups by id and filtered counts are index lookups from the first row on
        self._ensure_indexes(table, info)
        self._tables[info.id] = table

    def _add_missing_columns(self, table: Any, info: DatasetInfo) -> None:
        """A video table created before segments were indexed gets their (empty) columns: a metadata change."""
        missing = [f for f in segment_fields(info) if f.name not in table.schema.names]
        if missing:
            with table_write_lock(self.root, info.id):
                table.checkout_latest()
                if any(f.name not in table.schema.names for f in missing):
                    before = int(table.version)
                    table.add_columns(pa.schema(missing))
                    self.serving.journal(info.id).append(before, int(table.version), [], [])

    def drop(self, dataset_id: str) -> None:
        with self._lock:
            self._tables.pop(dataset_id, None)
        self.serving.forget(dataset_id)
        if self.exists(dataset_id):
            self.db.drop_table(dataset_id)

    def _table(self, info: DatasetInfo) -> Any:
        table = self._tables.get(info.id)
        if table is None:
            with self._lock:
                try:
                    table = self.db.open_table(info.id)
                except (FileNotFoundError, ValueError) as exc:
                    raise NotFound(f"dataset_id: no table for dataset {info.id!r}", field="dataset_id") from exc
                self._add_missing_columns(table, info)
                self._tables[info.id] = table
        return table

    # -- writes ---------------------------------------------------------------------------------------
    @contextmanager
    def _writing(self, info: DatasetInfo, upsert: list[str] = (), delete: list[str] = ()) -> Iterator[Any]:  # type: ignore[assignment]
        """The table at its latest version, under the table's write lock. What the block commits is journaled
        (versions and the ids named) before the lock is released, so every process's serving index can follow."""
        table = self._table(info)  # before the lock: opening an old video table takes it to add columns
        with table_write_lock(self.root, info.id):
            table.checkout_latest()
            before = int(table.version)
            try:
                yield table
            finally:
                after = int(table.version)
                if after != before:
                    self.serving.journal(info.id).append(before, after, upsert, delete)

    def _to_arrow(self, info: DatasetInfo, records: list[Record]) -> pa.Table:
        schema = arrow_schema(info)
        data: dict[str, list[Any]] = {
            "_id": [r.id for r in records],
            "_doc": [json.dumps(r.doc, ensure_ascii=False, separators=(",", ":")) for r in records],
            "_text": [r.text for r in records],
            "_media": [json.dumps(r.media, ensure_ascii=False) if r.media else None for r in records],
        }
        dim = info.vector_dim
        flat = np.zeros((len(records), dim), dtype=np.float32)
        mask = np.ones(len(records), dtype=bool)
        for i, r in enumerate(records):
            if r.vector is not None:
                flat[i] = r.vector
                mask[i] = False
        values = pa.array(flat.reshape(-1), type=pa.float32())
        data_vec = pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(mask))
        for f in info.schema.columns:
            data[f"f_{f.name}"] = [r.doc.get(f.name) for r in records]
        if info.type == "video":
            data["_seg_vec"] = _segments_array(records, dim, spans=False)
            data["_seg_time"] = _segments_array(records, 2, spans=True)
        arrays = [data_vec if name == "_vec" else data[name] if name.startswith("_seg_")
                  else pa.array(data[name], type=schema.field(name).type) for name in schema.names]
        return pa.Table.from_arrays(arrays, schema=schema)

    def upsert(self, info: DatasetInfo, records: list[Record]) -> UpsertResult:
        """Insert or replace by primary key; the whole batch lands in one table version, or none of it."""
        if not records:
            return UpsertResult(0, 0)
        unique = list({r.id: r for r in records}.values())
        data = self._to_arrow(info, unique)
        with self._writing(info, upsert=[r.id for r in unique]) as table:
            result = retry_conflicts(lambda: (
                table.merge_insert("_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data, on_bad_vectors="null")
            ))
        replaced = result.num_updated_rows + (len(records) - len(unique))
        return UpsertResult(inserted=result.num_inserted_rows, replaced=replaced)

    def delete(self, info: DatasetInfo, ids: list[str]) -> int:
        deleted = 0
        with self._writing(info, delete=list(dict.fromkeys(ids))) as table:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = list(dict.fromkeys(ids[start : start + _ID_CHUNK]))
                predicate = _in_ids(chunk)
                found = table.count_rows(predicate)
                if found:
                    retry_conflicts(lambda p=predicate: table.delete(p))
                    deleted += found
        return deleted

    # -- reads (served from memory) -------------------------------------------------------------------
    def serving_index(self, info: DatasetInfo) -> ServingIndex:
        """The dataset's in-memory index, caught up with the table (see store/serving/live.py)."""
        return self.serving.get(info)

    def get_many(self, info: DatasetInfo, ids: list[str]) -> dict[str, dict[str, Any]]:
        index = self.serving_index(info)
        live = [(i, row) for i in dict.fromkeys(ids) if (row := index.live_row(i)) is not None]
        docs = index.documents([row for _, row in live])
        return {i: d for (i, _), d in zip(live, docs, strict=True)}

    def in_memory(self, dataset_id: str) -> bool:
        return self.serving.current(dataset_id)

    def rerank_features(self, info: DatasetInfo, ids: list[str], query: np.ndarray | None = None
                        ) -> dict[str, RerankFeatures]:
        """A video's vector holds all its segments here (memory), so `query` is not needed to choose one."""
        index = self.serving_index(info)
        live = [(i, row) for i in dict.fromkeys(ids) if (row := index.live_row(i)) is not None]
        features = index.rerank_features([row for _, row in live])
        return {i: f for (i, _), f in zip(live, features, strict=True)}

    def video_cues(self, info: DatasetInfo, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        index = self.serving_index(info)
        live = [(i, row) for i in dict.fromkeys(ids) if (row := index.live_row(i)) is not None]
        cues = index.cues_of([row for _, row in live])
        return {i: c for (i, _), c in zip(live, cues, strict=True)}

    def get(self, info: DatasetInfo, ids: list[str]) -> list[dict[str, Any]]:
        found = self.get_many(info, ids)
        return [found[i] for i in ids if i in found]

    def count(self, info: DatasetInfo, where: Filter | None = None) -> int:
        """Counted by the table (no serving index needed: `datasets list` counts every dataset)."""
        return self._table(info).count_rows(to_sql(where) if where else None)

    def count_vectors(self, info: DatasetInfo) -> int:
        return self._table(info).count_rows("_vec IS NOT NULL")

    def version(self, info: DatasetInfo) -> int:
        """Changes with every write (ours or another process's, after the consistency interval)."""
        return int(self._table(info).version)

    def iter_items(self, info: DatasetInfo, vectors: bool = False) -> Iterator[tuple[str, dict[str, Any],
                                                                                 list[float] | None]]:
        table = self._table(info)
        table.checkout_latest()
        dataset = table.to_lance()  # this version, whatever is written meanwhile
        columns = ["_id", "_doc", *(["_vec"] if vectors else [])]
        for batch in dataset.to_batches(columns=columns, batch_size=4_096):
            ids, docs = batch.column("_id").to_pylist(), batch.column("_doc").to_pylist()
            vecs = batch.column("_vec").to_pylist() if vectors else [None] * len(ids)
            for item_id, doc, vec in zip(ids, docs, vecs, strict=True):
                yield item_id, json.loads(doc) if doc else {}, vec

    def scan(self, info: DatasetInfo, columns: list[str], batch_rows: int = 4_096) -> Iterator[dict[str, list[Any]]]:
        """Every row's `columns`, batch by batch, as plain lists (for vocabularies and exports)."""
        reader = self._table(info).to_lance().to_batches(columns=columns, batch_size=batch_rows)
        for batch in reader:
            yield {name: batch.column(name).to_pylist() for name in columns}

    def text_search(
        self, info: DatasetInfo, tokens: list[str], k: int, where: Filter | None = None, fields: tuple[str, ...] = (),
        field_weights: dict[str, float] | None = None,
    ) -> list[Candidate]:
        if not tokens:
            return []
        index = self.serving_index(info)
        ids, scores, rows = index.text_search(tokens, k, where, field_weights)
        return _candidates(index, ids, scores, rows, fields)

    def vector_search(
        self, info: DatasetInfo, vector: np.ndarray, k: int, where: Filter | None = None, fields: tuple[str, ...] = ()
    ) -> list[Candidate]:
        index = self.serving_index(info)
        q = np.asarray(vector, dtype=np.float32)
        if index.moments is None:
            ids, scores, rows = index.vector_search(q, k, where)
            return _candidates(index, ids, scores, rows, fields)
        ids, scores, rows, moments = index.video_search(q, k, where)
        found = _candidates(index, ids, scores, rows, fields)
        for cand, best in zip(found, moments, strict=True):
            cand.moments = best
        return found

    # -- the serving index's source (store/serving/live.Source) ----------------------------------------
    def latest_version(self, info: DatasetInfo, refresh: bool = False) -> int:
        table = self._table(info)
        if refresh:
            table.checkout_latest()
        return int(table.version)

    def scan_all(self, info: DatasetInfo) -> tuple[int, Iterator[pa.Table]]:
        """Every row at the table's latest version, with that version."""
        table = self._table(info)
        table.checkout_latest()
        dataset = table.to_lance()
        columns = arrow_schema(info).names

        def batches() -> Iterator[pa.Table]:
            for batch in dataset.to_batches(columns=columns, batch_size=16_384):
                yield pa.Table.from_batches([batch])

        return int(dataset.version), batches()

    def write_lock(self, info: DatasetInfo) -> AbstractContextManager[None]:
        return table_write_lock(self.root, info.id)

    def fetch_rows(self, info: DatasetInfo, ids: list[str], min_version: int) -> pa.Table:
        """The current rows of `ids` (those that exist), read at `min_version` or later."""
        table = self._table(info)
        if int(table.version) < min_version:
            table.checkout_latest()
        columns = arrow_schema(info).names
        parts = []
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            parts.append(table.search().where(_in_ids(chunk)).select(columns).limit(len(chunk)).to_arrow())
        return pa.concat_tables(parts).select(columns) if parts else arrow_schema(info).empty_table()

    # -- maintenance ----------------------------------------------------------------------------------
    @staticmethod
    def _indexes(table: Any) -> dict[str, str]:
        return {ix.columns[0]: ix.index_type for ix in table.list_indices()}

    def _ensure_indexes(self, table: Any, info: DatasetInfo) -> dict[str, str]:
        """The `_id` index (lookups by id, upserts, deletes) and one scalar index per filterable field (counts
        with a filter), where missing. Text and vector search are served by the serving index, not Lance."""
        indexes = self._indexes(table)
        made: dict[str, str] = {}
        if "_id" not in indexes:
            table.create_index("_id", config=BTree())
            made["_id"] = "BTree"
        for f in info.schema.filterable:
            col = f"f_{f.name}"
            if col not in indexes:
                config = LabelList() if f.is_array else (Bitmap() if f.type == "bool" else BTree())
                table.create_index(col, config=config)
                made[col] = type(config).__name__
        return made

    def maintain(self, info: DatasetInfo) -> dict[str, Any]:
        """Build missing indexes, fold new rows into them and compact small fragments; returns what it did.
        Holds the table's write lock: compaction rewrites files, and must not race another process's writes."""
        with self._writing(info) as table:
            return self._maintain(table, info)

    def _maintain(self, table: Any, info: DatasetInfo) -> dict[str, Any]:
        done: dict[str, Any] = {}
        if table.count_rows() == 0:
            return done
        done.update(self._ensure_indexes(table, info))
        # Another writer optimising at the same moment does the same work: after the retries, leave it to them.
        try:
            retry_conflicts(lambda: table.optimize(cleanup_older_than=timedelta(hours=1)), attempts=3)
        except (RuntimeError, OSError, ValueError) as exc:
            if not is_commit_conflict(exc):
                raise
            done["optimize"] = "skipped: a concurrent writer was optimising the table"
        return done

    def clone_latest(self, info: DatasetInfo, tables: Path, hold_lock: bool = False) -> int:
        """Copy the table at its latest version, and that version only, into another tables folder (a backup);
        the version copied. Lance's `deep_clone` copies the data, deletion and index files the version references
        and commits the same version there. Without the write lock, writers go on; a compaction's cleanup may
        remove a file of an hour-old version meanwhile and the clone fails (the caller retries, at last with
        `hold_lock`, which keeps maintenance out until the copy is done)."""
        import lance

        target = Path(tables) / f"{info.id}.lance"
        with table_write_lock(self.root, info.id) if hold_lock else nullcontext():
            dataset = lance.dataset(str(self.root / f"{info.id}.lance"))
            dataset.deep_clone(str(target), dataset.version)
            return int(dataset.version)

    def probe(self, info: DatasetInfo) -> None:
        """Raise when the dataset's table cannot take writes: it cannot be read at its latest version, or a folder
        a commit writes to cannot be written and synced (gone, read-only, out of space). After a failed write it
        tells a broken store (retry later) from a broken item (reject it); it changes no data."""
        table = self._table(info)
        table.checkout_latest()
        table.count_rows()
        path = self.root / f"{info.id}.lance"
        if not path.is_dir():
            raise FileNotFoundError(f"the table folder {path} is missing")
        for folder in (self.root, path, path / "data", path / "_versions", path / "_transactions"):
            if folder.is_dir() or folder in (self.root, path):
                _write_probe(folder)

    def stats(self, info: DatasetInfo) -> dict[str, Any]:
        table = self._table(info)
        out: dict[str, Any] = {
            "rows": table.count_rows(),
            "vectors": self.count_vectors(info),
            "version": table.version,
            "indexes": self._indexes(table),
            "disk_bytes": _folder_bytes(self.root / f"{info.id}.lance"),
        }
        serving = self.serving.loaded(info.id)
        if serving is not None and serving.view is not None:
            out["serving"] = {
                "version": serving.view.version, "rows": serving.live_rows, "dead_rows": serving.dead_rows,
                "ivf": serving.vectors.ivf is not None, "memory_bytes": serving.memory(),
            }
        return out


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (every version Lance keeps until it compacts: what the disk holds)."""
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with suppress(OSError):  # a file removed by a concurrent cleanup
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def _write_probe(folder: Path) -> None:
    """Write, sync and remove a small hidden file in `folder` (Lance ignores files it did not write)."""
    fd, name = tempfile.mkstemp(prefix=".mmsearch-probe-", dir=folder)
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    finally:
        os.close(fd)
        with suppress(FileNotFoundError):  # a concurrent cleanup took it
            os.unlink(name)


def _candidates(
    index: ServingIndex, ids: list[str], scores: np.ndarray, rows: np.ndarray, fields: tuple[str, ...]
) -> list[Candidate]:
    if not fields:
        return [Candidate(i, sc) for i, sc in zip(ids, scores.tolist(), strict=True)]
    values = index.values(rows, fields)
    return [Candidate(i, sc, v) for i, sc, v in zip(ids, scores.tolist(), values, strict=True)]
