"""LanceDB store: one table per dataset under `<home>/tables`, upserts via merge_insert (atomic per batch).

Columns: `_id` (primary key as a string), `_doc` (the item as JSON, returned as display fields),
`_text` (tokenised searchable text and OCR text), `_media` (per-image size, hash and OCR text, JSON),
`_vec` (item embedding, nullable) and one
typed `f_<name>` column per filterable or sortable field, so filters run inside the engine before
ranking and candidates can be sorted without reading their documents. A BTree index on `_id` makes
fetching the documents of a page (and deletes and upserts) index lookups instead of scans.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
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
from lancedb.index import FTS, Bitmap, BTree, HnswPq, HnswSq, IvfFlat, IvfPq, IvfSq, LabelList

from mmsearch.errors import AlreadyExists, NotFound
from mmsearch.schema.fields import DatasetInfo, FieldSpec
from mmsearch.schema.filters import Filter
from mmsearch.store.base import Candidate, Record, RerankFeatures, UpsertResult
from mmsearch.store.lance_filter import to_sql

_ARROW = {"int32": pa.int32(), "int64": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
_ID_CHUNK = 1_000
_INDEX_TTL_S = 1.0  # how long a table's index list is trusted on the query path (see LanceStore._query_indexes)
T = TypeVar("T")


@dataclass(frozen=True)
class AnnConfig:
    """When and how the vector index is built, and how hard a query searches it.

    Below `min_rows` vectors, search is exact (a flat scan is fast and has perfect recall there).
    IVF_SQ (8-bit scalar quantisation, about sqrt(rows) partitions) was chosen by bench/engine.py on
    clustered 512-d vectors: at 100k it builds ~10x faster than IVF_PQ (64 sub-vectors), whose codes
    are too coarse there (recall@10 0.30 before re-ranking, so it needed refine_factor=10 and ~35 ms a
    query); SQ reaches recall@10 ~0.97 unrefined. refine_factor=1 re-ranks the k returned rows with
    exact distances, so fusion sees true cosine scores and the top 10 of the pipeline's k=200 are exact.
    """

    min_rows: int = 50_000
    index_type: str = "IVF_SQ"
    nprobes: int = 16
    refine_factor: int = 1


def arrow_schema(info: DatasetInfo) -> pa.Schema:
    cols = [
        pa.field("_id", pa.string(), nullable=False),
        pa.field("_doc", pa.string()),
        pa.field("_text", pa.string()),
        pa.field("_media", pa.string()),
        pa.field("_vec", pa.list_(pa.float32(), info.vector_dim)),
    ]
    for f in info.schema.columns:
        cols.append(pa.field(f"f_{f.name}", _arrow_type(f)))
    return pa.schema(cols)


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
        self._index_lists: dict[str, tuple[float, dict[str, str]]] = {}  # dataset id -> (read at, indexes)

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
        table = self.db.create_table(info.id, schema=arrow_schema(info))
        # Built on the empty table, so text search and filters work from the first row on, even if an
        # import dies before its closing maintain(); rows added later are searched unindexed until then.
        self._ensure_indexes(table, info)
        self._tables[info.id] = table
        self._index_lists.pop(info.id, None)

    def drop(self, dataset_id: str) -> None:
        with self._lock:
            self._tables.pop(dataset_id, None)
            self._index_lists.pop(dataset_id, None)
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
                self._tables[info.id] = table
        return table

    # -- writes ---------------------------------------------------------------------------------------
    @contextmanager
    def _writing(self, info: DatasetInfo) -> Iterator[Any]:
        """The table at its latest version, under the table's write lock."""
        with table_write_lock(self.root, info.id):
            table = self._table(info)
            table.checkout_latest()
            yield table

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
        arrays = [data_vec if name == "_vec" else pa.array(data[name], type=schema.field(name).type)
                  for name in schema.names]
        return pa.Table.from_arrays(arrays, schema=schema)

    def upsert(self, info: DatasetInfo, records: list[Record]) -> UpsertResult:
        """Insert or replace by primary key; the whole batch lands in one table version, or none of it."""
        if not records:
            return UpsertResult(0, 0)
        unique = list({r.id: r for r in records}.values())
        data = self._to_arrow(info, unique)
        with self._writing(info) as table:
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
        with self._writing(info) as table:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = list(dict.fromkeys(ids[start : start + _ID_CHUNK]))
                predicate = _in_ids(chunk)
                found = table.count_rows(predicate)
                if found:
                    retry_conflicts(lambda p=predicate: table.delete(p))
                    deleted += found
        return deleted

    # -- reads ----------------------------------------------------------------------------------------
    def get_many(self, info: DatasetInfo, ids: list[str]) -> dict[str, dict[str, Any]]:
        table = self._table(info)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = list(dict.fromkeys(ids[start : start + _ID_CHUNK]))
            rows = table.search().where(_in_ids(chunk)).select(["_id", "_doc"]).limit(len(chunk)).to_arrow()
            for i, d in zip(rows["_id"].to_pylist(), rows["_doc"].to_pylist(), strict=True):
                found[i] = json.loads(d)
        return found

    def rerank_features(self, info: DatasetInfo, ids: list[str]) -> dict[str, RerankFeatures]:
        """One `_id IN (...)` lookup per 1,000 ids for the document, the vector and the media of each."""
        table = self._table(info)
        found: dict[str, RerankFeatures] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = list(dict.fromkeys(ids[start : start + _ID_CHUNK]))
            rows = (
                table.search().where(_in_ids(chunk)).select(["_id", "_doc", "_vec", "_media"])
                .limit(len(chunk)).to_arrow()
            )
            vectors = _vectors(rows["_vec"].combine_chunks(), info.vector_dim)
            for n, (i, d, m) in enumerate(zip(
                rows["_id"].to_pylist(), rows["_doc"].to_pylist(), rows["_media"].to_pylist(), strict=True
            )):
                found[i] = RerankFeatures(doc=json.loads(d), vector=vectors[n], media=json.loads(m) if m else [])
        return found

    def get(self, info: DatasetInfo, ids: list[str]) -> list[dict[str, Any]]:
        found = self.get_many(info, ids)
        return [found[i] for i in ids if i in found]

    def count(self, info: DatasetInfo, where: Filter | None = None) -> int:
        return self._table(info).count_rows(to_sql(where) if where else None)

    def count_vectors(self, info: DatasetInfo) -> int:
        return self._table(info).count_rows("_vec IS NOT NULL")

    def version(self, info: DatasetInfo) -> int:
        """Changes with every write (ours or another process's, after the consistency interval)."""
        return int(self._table(info).version)

    def scan(self, info: DatasetInfo, columns: list[str], batch_rows: int = 4_096) -> Iterator[dict[str, list[Any]]]:
        """Every row's `columns`, batch by batch, as plain lists (for vocabularies and exports)."""
        reader = self._table(info).to_lance().to_batches(columns=columns, batch_size=batch_rows)
        for batch in reader:
            yield {name: batch.column(name).to_pylist() for name in columns}

    def text_search(
        self, info: DatasetInfo, tokens: list[str], k: int, where: Filter | None = None, fields: tuple[str, ...] = ()
    ) -> list[Candidate]:
        if not tokens:
            return []
        query = self._table(info).search(" ".join(tokens), query_type="fts", fts_columns="_text")
        if where is not None:
            query = query.where(to_sql(where), prefilter=True)
        rows = query.select(["_id", "_score", *_value_columns(info, fields)]).limit(k).to_arrow()
        return _candidates(info, rows, rows["_score"].to_numpy(), fields)

    def vector_search(
        self, info: DatasetInfo, vector: np.ndarray, k: int, where: Filter | None = None, fields: tuple[str, ...] = ()
    ) -> list[Candidate]:
        table = self._table(info)
        indexed = "_vec" in self._query_indexes(info, table)
        found = self._vector_query(info, table, vector, k, where, exact=not indexed, fields=fields)
        if indexed and where is not None and len(found) < k:
            # A selective filter can leave the probed partitions short; rank the filtered rows exactly.
            found = self._vector_query(info, table, vector, k, where, exact=True, fields=fields)
        return found

    def _vector_query(
        self, info: DatasetInfo, table: Any, vector: np.ndarray, k: int, where: Filter | None, exact: bool,
        fields: tuple[str, ...] = (),
    ) -> list[Candidate]:
        query = table.search(np.asarray(vector, dtype=np.float32), vector_column_name="_vec").distance_type("cosine")
        if exact:
            query = query.bypass_vector_index()
        else:
            query = query.nprobes(self.ann.nprobes)
            if self.ann.refine_factor:
                query = query.refine_factor(self.ann.refine_factor)
        if where is not None:
            query = query.where(to_sql(where), prefilter=True)
        rows = query.select(["_id", "_distance", *_value_columns(info, fields)]).limit(k).to_arrow()
        return _candidates(info, rows, 1.0 - rows["_distance"].to_numpy(), fields)

    # -- maintenance ----------------------------------------------------------------------------------
    @staticmethod
    def _indexes(table: Any) -> dict[str, str]:
        return {ix.columns[0]: ix.index_type for ix in table.list_indices()}

    def _query_indexes(self, info: DatasetInfo, table: Any) -> dict[str, str]:
        """The table's indexes for choosing a query plan, re-read at most once a second (`list_indices` is a Lance
        call, ~0.5 ms; reading the table version to key a cache costs a call too). This process's index builds
        clear it at once; another process's new index is used within a second or two, and until then the query
        scans exactly, so a stale answer costs time, never recall."""
        now = time.monotonic()
        hit = self._index_lists.get(info.id)
        if hit is not None and now - hit[0] < _INDEX_TTL_S:
            return hit[1]
        indexes = self._indexes(table)
        self._index_lists[info.id] = (now, indexes)
        return indexes

    def _ensure_indexes(self, table: Any, info: DatasetInfo) -> dict[str, str]:
        """The `_id` index, the full-text index and one scalar index per filterable field, where missing."""
        indexes = self._indexes(table)
        made: dict[str, str] = {}
        if "_id" not in indexes:
            table.create_index("_id", config=BTree())
            made["_id"] = "BTree"
        if "_text" not in indexes:
            fts = FTS(
                base_tokenizer="whitespace", lower_case=False, stem=False, remove_stop_words=False,
                ascii_folding=False, with_position=False, max_token_length=None,
            )
            table.create_index("_text", config=fts)
            made["_text"] = "FTS"
        for f in info.schema.filterable:
            col = f"f_{f.name}"
            if col not in indexes:
                config = LabelList() if f.is_array else (Bitmap() if f.type == "bool" else BTree())
                table.create_index(col, config=config)
                made[col] = type(config).__name__
        return made

    def maintain(self, info: DatasetInfo) -> dict[str, Any]:
        """Build missing indexes and fold new rows into existing ones; returns what it did. Holds the table's
        write lock: compaction rewrites files, and must not race another process's writes."""
        with self._writing(info) as table:
            try:
                return self._maintain(table, info)
            finally:
                self._index_lists.pop(info.id, None)  # an index built here is used by the next query

    def _maintain(self, table: Any, info: DatasetInfo) -> dict[str, Any]:
        done: dict[str, Any] = {}
        rows = table.count_rows()
        if rows == 0:
            return done
        done.update(self._ensure_indexes(table, info))
        indexes = self._indexes(table)
        vectors = self.count_vectors(info)
        if "_vec" not in indexes and vectors >= self.ann.min_rows:
            # ~sqrt(rows) partitions: with nprobes=16 a query scans ~16*sqrt(rows) codes, and a filter
            # keeping 10% of rows still leaves enough of them for k=200 before the exact fallback.
            partitions = max(1, int(math.sqrt(vectors)))
            options: dict[str, Any] = {"num_partitions": partitions}
            if self.ann.index_type.endswith("PQ"):
                options["num_sub_vectors"] = _sub_vectors(info.vector_dim)
            kind = {"IVF_FLAT": IvfFlat, "IVF_SQ": IvfSq, "IVF_PQ": IvfPq, "IVF_HNSW_SQ": HnswSq,
                    "IVF_HNSW_PQ": HnswPq}[self.ann.index_type]
            table.create_index("_vec", config=kind(distance_type="cosine", **options))
            done["_vec"] = f"{self.ann.index_type}({', '.join(f'{k}={v}' for k, v in options.items())})"
        # Folds rows written since the last build into every index and compacts small fragments. Another
        # writer optimising at the same moment does the same work: after the retries, leave it to them.
        try:
            retry_conflicts(lambda: table.optimize(cleanup_older_than=timedelta(hours=1)), attempts=3)
        except (RuntimeError, OSError, ValueError) as exc:
            if not is_commit_conflict(exc):
                raise
            done["optimize"] = "skipped: a concurrent writer was optimising the table"
        return done

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
        return {
            "rows": table.count_rows(),
            "vectors": self.count_vectors(info),
            "version": table.version,
            "indexes": self._indexes(table),
        }


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


def _sub_vectors(dim: int) -> int:
    """PQ sub-vectors of 8 dimensions (16 when the dimension is not a multiple of 8)."""
    for width in (8, 16, 4, 2, 1):
        if dim % width == 0:
            return dim // width
    return dim


def _vectors(column: pa.FixedSizeListArray, dim: int) -> list[np.ndarray | None]:
    """A nullable fixed-size-list column as one float32 array per row (None where the row has no vector)."""
    if len(column) == 0:
        return []
    flat = column.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    start = column.offset * dim
    matrix = flat[start : start + len(column) * dim].reshape(len(column), dim)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return [matrix[n].copy() if valid[n] else None for n in range(len(column))]


def _value_columns(info: DatasetInfo, fields: tuple[str, ...]) -> list[str]:
    """Typed columns when every asked-for field has one; otherwise the documents."""
    if not fields:
        return []
    column_names = {f.name for f in info.schema.columns}
    if all(name in column_names for name in fields):
        return [f"f_{name}" for name in fields]
    return ["_doc"]


def _candidates(info: DatasetInfo, rows: pa.Table, scores: np.ndarray, fields: tuple[str, ...]) -> list[Candidate]:
    ids = rows["_id"].to_pylist()
    if not fields:
        return [Candidate(i, float(s)) for i, s in zip(ids, scores, strict=True)]
    if "_doc" in rows.column_names:
        docs = [json.loads(d) for d in rows["_doc"].to_pylist()]
        values = [{name: doc[name] for name in fields if name in doc} for doc in docs]
    else:
        columns = {name: rows[f"f_{name}"].to_pylist() for name in fields}
        values = [{name: columns[name][n] for name in fields if columns[name][n] is not None} for n in range(len(ids))]
    return [Candidate(i, float(s), v) for i, s, v in zip(ids, scores, values, strict=True)]
