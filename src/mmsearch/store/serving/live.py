"""Keeping each dataset's serving index in step with its table, across processes.

On first use a dataset's index is loaded from its newest snapshot (or built from a full scan of the table),
then caught up: the journal names the ids each later table version touched, and only those rows are re-read.
Every query first checks the journal's size (a `stat`, microseconds) and, once a second, the table's version,
so a write by any process is searchable here within about a second, and a write by this process at once.
When the journal cannot explain the table (a hole in the chain, or the table ahead of the journal for longer
than GRACE_S), the index is rebuilt from the table: the table is the truth, the journal a shortcut.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from mmsearch.schema.fields import DatasetInfo
from mmsearch.store.serving import snapshot
from mmsearch.store.serving.index import ServingIndex
from mmsearch.store.serving.journal import Journal, chain
from mmsearch.store.serving.vectors import VectorConfig

log = logging.getLogger("mmsearch.serving")

VERSION_CHECK_S = 1.0  # how often the table's version is compared with the index's
GRACE_S = 3.0  # a table ahead of its journal this long had a write that was never journaled: rebuild
REBUILD_SHARE = 0.5  # catching up more ids than this share of the rows costs more than a rebuild
SNAPSHOT_MIN_ROWS = 1_000  # smaller indexes rebuild faster than they load
SNAPSHOT_EVERY_SHARE = 0.2  # save again once this share of the rows arrived since the last snapshot
JOURNAL_TRIM_BYTES = 64 << 20  # past this, a snapshot drops the journal lines it makes unnecessary


class Source(Protocol):
    """What the serving index reads from the store of record."""

    def latest_version(self, info: DatasetInfo, refresh: bool = False) -> int: ...

    def scan_all(self, info: DatasetInfo) -> tuple[int, Iterator[pa.Table]]: ...

    def count(self, info: DatasetInfo) -> int: ...

    def fetch_rows(self, info: DatasetInfo, ids: list[str], min_version: int) -> pa.Table: ...

    def write_lock(self, info: DatasetInfo) -> AbstractContextManager[None]:
        """The table's writer lock (writers append to the journal while holding it)."""
        ...


@dataclass
class _State:
    index: ServingIndex
    journal: Journal
    checked: float = 0.0  # when the table version was last compared
    behind_since: float | None = None
    saved_rows: int = 0  # rows at the last snapshot
    building: bool = False  # an IVF build is running
    saving: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def journal_path(tables: Path, dataset_id: str) -> Path:
    return snapshot.folder(tables, dataset_id) / "journal.jsonl"


class LiveIndexes:
    def __init__(self, source: Source, tables: Path, config: VectorConfig | None = None,
                 background: bool = True) -> None:
        self.source = source
        self.tables = Path(tables)
        self.config = config or VectorConfig()
        self.background = background  # IVF builds and snapshots on threads (False: inline, for tests)
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    # -- writers' side -----------------------------------------------------------------------------------
    def journal(self, dataset_id: str) -> Journal:
        state = self._states.get(dataset_id)
        if state is not None:
            return state.journal
        path = journal_path(self.tables, dataset_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        return Journal(path)

    def forget(self, dataset_id: str) -> None:
        """Drop the dataset's index, snapshots and journal (the table is being dropped or re-created)."""
        with self._lock:
            self._states.pop(dataset_id, None)
        snapshot.remove(self.tables, dataset_id)

    def loaded(self, dataset_id: str) -> ServingIndex | None:
        state = self._states.get(dataset_id)
        return state.index if state is not None else None

    def current(self, dataset_id: str) -> bool:
        """Loaded, and the next search needs no catch-up: the journal is as last read and no table version
        check is due, so a search reads memory only (no Lance read, no build)."""
        state = self._states.get(dataset_id)
        return (state is not None and time.monotonic() - state.checked < VERSION_CHECK_S
                and not state.journal.changed())

    # -- readers' side -----------------------------------------------------------------------------------
    def get(self, info: DatasetInfo) -> ServingIndex:
        """The dataset's index, caught up with every write this process made and any other's journaled
        write; built or loaded on first use."""
        state = self._states.get(info.id)
        if state is None:
            with self._lock:
                state = self._states.get(info.id)
                if state is None:
                    state = self._states[info.id] = self._open(info)
                    self._after_change(info, state)  # registered first: its IVF thread saves only a live state
        self._refresh(info, state)
        return state.index

    def _open(self, info: DatasetInfo) -> _State:
        journal = self.journal(info.id)
        path = snapshot.latest(self.tables, info.id)
        index = snapshot.load(path, info, self.config) if path is not None else None
        if index is not None and index.version > self.source.latest_version(info, refresh=True):
            index = None  # saved for a table that has since been replaced
        state = _State(index=index or self._build(info), journal=journal)
        state.saved_rows = len(state.index.ids) if index is not None else 0
        state.checked = time.monotonic()
        return state

    def _build(self, info: DatasetInfo) -> ServingIndex:
        started = time.perf_counter()
        rows = self.source.count(info)
        index = ServingIndex(info, self.config, expected_rows=rows)
        index.vectors.matrix.reserve(rows)  # the largest part, allocated once
        version, batches = self.source.scan_all(info)
        for batch in batches:
            index.append(batch)
        index.publish(version)
        release_free_memory()
        log.info("serving index for %s built from the table: %d rows at version %d in %.2f s", info.id,
                 len(index.ids), version, time.perf_counter() - started)
        return index

    def _refresh(self, info: DatasetInfo, state: _State) -> None:
        now = time.monotonic()
        due = now - state.checked >= VERSION_CHECK_S
        if not due and not state.journal.changed():
            return
        with state.index.write_lock:
            index = state.index
            found = chain(state.journal.entries(), index.version)
            if found is None:
                self._rebuild(info, state, f"the journal has a hole after version {index.version}")
                return
            version, touched = found
            if version > index.version:
                if len(touched) > max(10_000, REBUILD_SHARE * max(1, index.live_rows)):
                    self._rebuild(info, state, f"{len(touched)} ids changed")
                    return
                self._apply(info, index, sorted(touched), version)
                self._after_change(info, state)
            if due:
                state.checked = time.monotonic()
                table = self.source.latest_version(info)
                if table < index.version:  # dropped and created again by another process: another table
                    self._rebuild(info, state, f"the table went back from version {index.version} to {table}")
                elif table > index.version:
                    state.behind_since = state.behind_since or now
                    if now - state.behind_since > GRACE_S:
                        self._rebuild(info, state, f"the table is at version {table} and the journal at "
                                                   f"{index.version}")
                else:
                    state.behind_since = None

    def _apply(self, info: DatasetInfo, index: ServingIndex, ids: list[str], version: int) -> None:
        found = self.source.fetch_rows(info, ids, version) if ids else None
        present = set(found["_id"].to_pylist()) if found is not None else set()
        index.remove([i for i in ids if i not in present])
        if found is not None:
            index.append(found)
        index.publish(version)

    def _rebuild(self, info: DatasetInfo, state: _State, why: str) -> None:
        log.warning("rebuilding the serving index of %s: %s", info.id, why)
        fresh = self._build(info)
        fresh.write_lock = state.index.write_lock  # held by the caller
        state.index = fresh
        state.behind_since = None
        state.saved_rows = 0
        state.checked = time.monotonic()
        self._after_change(info, state)

    # -- background work ------------------------------------------------------------------------------
    def _after_change(self, info: DatasetInfo, state: _State) -> None:
        """Train the IVF when the index has grown enough to want one; save a snapshot when enough changed."""
        index = state.index
        if (index.vectors.needs_ivf() or (index.moments is not None and index.moments.vectors.needs_ivf())) \
                and not state.building:
            state.building = True
            self._spawn(self._build_ivf, info, state, index)
        elif (len(index.ids) >= SNAPSHOT_MIN_ROWS and not state.saving and not state.building
              and len(index.ids) - state.saved_rows >= SNAPSHOT_EVERY_SHARE * len(index.ids)):
            state.saving = True
            self._spawn(self._save, state, index)

    def _spawn(self, fn: object, *args: object) -> None:
        if self.background:
            threading.Thread(target=fn, args=args, daemon=True, name="mmsearch-serving").start()  # type: ignore[arg-type]
        else:
            fn(*args)  # type: ignore[operator]

    def _trim(self, index: ServingIndex, state: _State) -> None:
        """Keep the journal bounded: once it is large, drop the lines a restart from the snapshot just saved no
        longer needs. Another process whose index is older than the snapshot then finds a hole and rebuilds,
        which is correct, only slower; at 64 MB of ids that is rare."""
        path = state.journal.path
        if not path.exists() or path.stat().st_size < JOURNAL_TRIM_BYTES or index.view is None:
            return
        with self.source.write_lock(index.info):
            state.journal.rewrite(keep_after=index.view.version)

    def _build_ivf(self, info: DatasetInfo, state: _State, index: ServingIndex) -> None:
        try:
            started = time.perf_counter()
            parts = [(index.vectors, lambda: len(index.ids), "rows")]
            if index.moments is not None:  # a video dataset's segments
                parts.append((index.moments.vectors, lambda: index.moments.n, "segments"))  # type: ignore[union-attr]
            for vectors, count, what in parts:
                if not vectors.needs_ivf():
                    continue
                rows = count()
                ivf = vectors.build_ivf(rows)
                with index.write_lock:
                    vectors.set_ivf(ivf, rows)
                    vectors.fold(count())
                log.info("IVF for %s: %d %s in %.1f s", info.id, rows, what, time.perf_counter() - started)
            release_free_memory()
        except Exception:  # pragma: no cover - the exact scan keeps answering
            log.exception("building the IVF of %s failed; vector search stays exact", info.id)
            return
        finally:
            state.building = False
        if state.index is index and self._states.get(info.id) is state:  # not rebuilt or dropped meanwhile
            state.saving = True
            self._save(state, index)

    def _save(self, state: _State, index: ServingIndex) -> None:
        try:
            with index.write_lock:
                if len(index.ids) >= SNAPSHOT_MIN_ROWS and index.view is not None:
                    snapshot.save(index, self.tables)
                    state.saved_rows = len(index.ids)
                    self._trim(index, state)
            release_free_memory()  # the save's merged postings and id strings
        except OSError:  # pragma: no cover - a snapshot is an optimisation; the next change tries again
            log.exception("saving the serving index of %s failed", index.info.id)
        finally:
            state.saving = False


def release_free_memory() -> None:
    """Hand memory freed by a build back to the system (glibc's malloc_trim). A build frees hundreds of MB of
    scan batches and merge temporaries that glibc keeps for reuse otherwise: at 1M items the RSS after the
    build stood ~250 MB above what the index holds, and the IVF training that follows peaked on top of it."""
    name = ctypes.util.find_library("c")
    if name is None:  # pragma: no cover - not a libc platform
        return
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is not None:  # glibc only (musl and macOS have none)
        trim(0)
