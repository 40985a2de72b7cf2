"""The change journal beside a table: which ids each table version upserted or deleted.

Every writer (a server, the CLI, a job worker; any process) appends one line per commit while it still holds
the table's write lock: `{"from": v0, "to": v1, "upsert": [...], "delete": [...]}`. A serving index at
version v0 catches up by following the chain of entries from v0 to the table's version and re-reading
only the ids they name. A chain with a hole (a writer died between its commit and its line, or the table
was written by an older mmsearch) is detected by the versions not joining up, and the index is rebuilt
from the table, so the table stays the truth and the journal is only ever a shortcut.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    start: int  # table version before the write
    end: int  # table version after it
    upsert: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()


@dataclass
class Journal:
    path: Path
    _offset: int = 0
    _inode: int = -1
    _entries: list[Entry] = field(default_factory=list)

    def append(self, start: int, end: int, upsert: list[str] = (), delete: list[str] = ()) -> None:  # type: ignore[assignment]
        if start == end and not upsert and not delete:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(_line(Entry(start, end, tuple(upsert), tuple(delete))))

    def changed(self) -> bool:
        """Whether the file differs from what was last read (a stat, no read)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._inode != -1
        return st.st_ino != self._inode or st.st_size != self._offset

    def entries(self) -> list[Entry]:
        """Every entry in the file, read incrementally (only the bytes appended since the last call)."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            self._offset, self._inode, self._entries = 0, -1, []
            return []
        with fh:
            st = os.fstat(fh.fileno())
            if st.st_ino != self._inode or st.st_size < self._offset:  # rewritten: read it all again
                self._offset, self._inode, self._entries = 0, st.st_ino, []
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line being written is read next time, whole
        for raw in data[:end].splitlines():
            try:
                d = json.loads(raw)
                self._entries.append(Entry(int(d["from"]), int(d["to"]), tuple(d.get("upsert", ())),
                                           tuple(d.get("delete", ()))))
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a crash: the chain breaks there, and the index rebuilds
        self._offset += end
        return self._entries

    def rewrite(self, keep_after: int) -> None:
        """Drop entries that end at or before `keep_after` (call under the table's write lock)."""
        kept = [e for e in self.entries() if e.end > keep_after]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(_line(e) for e in kept)
        os.replace(tmp, self.path)


def _line(e: Entry) -> str:
    return json.dumps({"from": e.start, "to": e.end, "upsert": list(e.upsert), "delete": list(e.delete)},
                      ensure_ascii=False, separators=(",", ":")) + "\n"


def chain(entries: list[Entry], start: int) -> tuple[int, set[str]] | None:
    """The version reached by following entries from `start`, and the ids they touched; None when an entry
    begins past `start` with nothing joining them (a hole: something was committed without a line)."""
    version, touched = start, set()
    for e in sorted(entries, key=lambda e: e.start):
        if e.end <= version:
            continue
        if e.start > version:
            return None
        # start <= version < end: a read landed inside a write of several versions (a chunked delete);
        # re-reading its ids is harmless, as every catch-up re-reads the current rows
        version = e.end
        touched.update(e.upsert)
        touched.update(e.delete)
    return version, touched
