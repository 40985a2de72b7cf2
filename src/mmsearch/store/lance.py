"""LanceDB store: one table per dataset under `<home>/tables`, upserts via merge_insert (atomic per batch).

Columns: `_id` (primary key as a string), `_doc` (the item as JSON, returned as display fields),
`_text` (tokenised searchable text and, later, OCR text), `_vec` (item embedding, nullable) and one
typed `f_<name>` column per filterable field, so filters run inside the engine before ranking.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, Bitmap, BTree, LabelList

from mmsearch.errors import AlreadyExists, NotFound
from mmsearch.schema.fields import DatasetInfo, FieldSpec
from mmsearch.schema.filters import Filter
from mmsearch.store.base import Candidate, Record, UpsertResult
from mmsearch.store.lance_filter import to_sql

_ARROW = {"int32": pa.int32(), "int64": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
_ID_CHUNK = 1_000


@dataclass(frozen=True)
class AnnConfig:
    """When and how the vector index is built, and how hard a query searches it.

    Below `min_rows` vectors, search is exact (a flat scan is fast and has perfect recall there).
    """

    min_rows: int = 50_000
    index_type: str = "IVF_PQ"
    nprobes: int = 32
    refine_factor: int = 10


def arrow_schema(info: DatasetInfo) -> pa.Schema:
    cols = [
        pa.field("_id", pa.string(), nullable=False),
        pa.field("_doc", pa.string()),
        pa.field("_text", pa.string()),
        pa.field("_vec", pa.list_(pa.float32(), info.vector_dim)),
    ]
    for f in info.schema.filterable:
        cols.append(pa.field(f"f_{f.name}", _arrow_type(f)))
    return pa.schema(cols)


def _arrow_type(f: FieldSpec) -> pa.DataType:
    return pa.list_(_ARROW[f.element_type]) if f.is_array else _ARROW[f.type]


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

    def drop(self, dataset_id: str) -> None:
        with self._lock:
            self._tables.pop(dataset_id, None)
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
    def _to_arrow(self, info: DatasetInfo, records: list[Record]) -> pa.Table:
        schema = arrow_schema(info)
        data: dict[str, list[Any]] = {
            "_id": [r.id for r in records],
            "_doc": [json.dumps(r.doc, ensure_ascii=False, separators=(",", ":")) for r in records],
            "_text": [r.text for r in records],
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
        for f in info.schema.filterable:
            data[f"f_{f.name}"] = [r.doc.get(f.name) for r in records]
        arrays = [data_vec if name == "_vec" else pa.array(data[name], type=schema.field(name).type)
                  for name in schema.names]
        return pa.Table.from_arrays(arrays, schema=schema)

    def upsert(self, info: DatasetInfo, records: list[Record]) -> UpsertResult:
        """Insert or replace by primary key; the whole batch lands in one table version, or none of it."""
        if not records:
            return UpsertResult(0, 0)
        unique = list({r.id: r for r in records}.values())
        table = self._table(info)
        result = (
            table.merge_insert("_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(self._to_arrow(info, unique), on_bad_vectors="null")
        )
        replaced = result.num_updated_rows + (len(records) - len(unique))
        return UpsertResult(inserted=result.num_inserted_rows, replaced=replaced)

    def delete(self, info: DatasetInfo, ids: list[str]) -> int:
        table = self._table(info)
        deleted = 0
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = list(dict.fromkeys(ids[start : start + _ID_CHUNK]))
            predicate = _in_ids(chunk)
            found = table.count_rows(predicate)
            if found:
                table.delete(predicate)
                deleted += found
        return deleted

    # -- reads ----------------------------------------------------------------------------------------
    def get(self, info: DatasetInfo, ids: list[str]) -> list[dict[str, Any]]:
        table = self._table(info)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            rows = table.search().where(_in_ids(chunk)).select(["_id", "_doc"]).limit(len(chunk)).to_arrow()
            for i, d in zip(rows["_id"].to_pylist(), rows["_doc"].to_pylist(), strict=True):
                found[i] = json.loads(d)
        return [found[i] for i in ids if i in found]

    def count(self, info: DatasetInfo, where: Filter | None = None) -> int:
        return self._table(info).count_rows(to_sql(where) if where else None)

    def count_vectors(self, info: DatasetInfo) -> int:
        return self._table(info).count_rows("_vec IS NOT NULL")

    def text_search(
        self, info: DatasetInfo, tokens: list[str], k: int, where: Filter | None = None
    ) -> list[Candidate]:
        table = self._table(info)
        if not tokens:
            return []
        query = table.search(" ".join(tokens), query_type="fts", fts_columns="_text")
        if where is not None:
            query = query.where(to_sql(where), prefilter=True)
        rows = query.select(["_id", "_doc", "_score"]).limit(k).to_arrow()
        return _candidates(rows, rows["_score"].to_numpy())

    def vector_search(
        self, info: DatasetInfo, vector: np.ndarray, k: int, where: Filter | None = None
    ) -> list[Candidate]:
        table = self._table(info)
        indexed = self._has_index(table, "_vec")
        found = self._vector_query(table, vector, k, where, exact=not indexed)
        if indexed and where is not None and len(found) < k:
            # A selective filter can leave the probed partitions short; rank the filtered rows exactly.
            found = self._vector_query(table, vector, k, where, exact=True)
        return found

    def _vector_query(
        self, table: Any, vector: np.ndarray, k: int, where: Filter | None, exact: bool
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
        rows = query.select(["_id", "_doc", "_distance"]).limit(k).to_arrow()
        return _candidates(rows, 1.0 - rows["_distance"].to_numpy())

    # -- maintenance ----------------------------------------------------------------------------------
    @staticmethod
    def _indexes(table: Any) -> dict[str, str]:
        return {ix.columns[0]: ix.index_type for ix in table.list_indices()}

    def _has_index(self, table: Any, column: str) -> bool:
        return column in self._indexes(table)

    def _ensure_indexes(self, table: Any, info: DatasetInfo) -> dict[str, str]:
        """The full-text index and one scalar index per filterable field, where missing."""
        indexes = self._indexes(table)
        made: dict[str, str] = {}
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
        """Build missing indexes and fold new rows into existing ones; returns what it did."""
        table = self._table(info)
        done: dict[str, Any] = {}
        rows = table.count_rows()
        if rows == 0:
            return done
        done.update(self._ensure_indexes(table, info))
        indexes = self._indexes(table)
        vectors = self.count_vectors(info)
        if "_vec" not in indexes and vectors >= self.ann.min_rows:
            partitions = max(1, int(math.sqrt(vectors)))
            sub_vectors = _sub_vectors(info.vector_dim)
            table.create_index(
                metric="cosine", vector_column_name="_vec", index_type=self.ann.index_type,
                num_partitions=partitions, num_sub_vectors=sub_vectors,
            )
            done["_vec"] = f"{self.ann.index_type}(partitions={partitions}, sub_vectors={sub_vectors})"
        # Folds rows written since the last build into every index and compacts small fragments.
        table.optimize(cleanup_older_than=timedelta(hours=1))
        return done

    def stats(self, info: DatasetInfo) -> dict[str, Any]:
        table = self._table(info)
        return {
            "rows": table.count_rows(),
            "vectors": self.count_vectors(info),
            "version": table.version,
            "indexes": self._indexes(table),
        }


def _sub_vectors(dim: int) -> int:
    """PQ sub-vectors of 8 dimensions (16 when the dimension is not a multiple of 8)."""
    for width in (8, 16, 4, 2, 1):
        if dim % width == 0:
            return dim // width
    return dim


def _candidates(rows: pa.Table, scores: np.ndarray) -> list[Candidate]:
    ids = rows["_id"].to_pylist()
    docs = rows["_doc"].to_pylist()
    return [Candidate(i, float(s), json.loads(d)) for i, d, s in zip(ids, docs, scores, strict=True)]
