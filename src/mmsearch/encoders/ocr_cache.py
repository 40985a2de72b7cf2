"""OCR text by picture hash, persisted under MMSEARCH_HOME, so the same picture is read once per machine.

Re-running the demo import, re-importing a catalogue, or another dataset using the same pictures then skips OCR
(the slowest step of an import without a GPU). Entries are keyed by the picture's sha256 and the engine's
`version` (RapidOCR version and our options), so a change of either reads pictures afresh. A cache that cannot
be read or written is a warning, never a failed import: the picture is simply read again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["OCR_CACHE_FILE", "OcrCache"]

OCR_CACHE_FILE = "ocr-cache.sqlite3"
_CHUNK = 500  # hashes per SELECT (SQLite's bound-parameter limit is 999 on old builds)
log = logging.getLogger("mmsearch.ocr")


class OcrCache:
    """`get_many` / `put_many` over an SQLite file (WAL: a server and a CLI import may share it).

    `hits` and `misses` count pictures looked up in this process, for reports and tests.
    """

    def __init__(self, path: Path, version: str) -> None:
        self.path = Path(path)
        self.version = version
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        if not self._ready:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS ocr (sha256 TEXT NOT NULL, version TEXT NOT NULL, text TEXT NOT NULL,"
                " PRIMARY KEY (sha256, version)) WITHOUT ROWID"
            )
            conn.commit()
            self._ready = True
        return conn

    def get_many(self, hashes: Iterable[str]) -> dict[str, str]:
        """Cached text of the pictures that have it; the rest are absent from the result."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, str] = {}
        try:
            with self._lock:
                conn = self._connect()
                try:
                    for start in range(0, len(wanted), _CHUNK):
                        chunk = wanted[start:start + _CHUNK]
                        marks = ",".join("?" * len(chunk))
                        rows = conn.execute(
                            f"SELECT sha256, text FROM ocr WHERE version = ? AND sha256 IN ({marks})",
                            [self.version, *chunk],
                        )
                        found.update(rows)
                finally:
                    conn.close()
        except sqlite3.Error as exc:
            log.warning("OCR cache %s could not be read (%s); reading the pictures", self.path, exc)
            found = {}
        self.hits += len(found)
        self.misses += len(wanted) - len(found)
        return found

    def put_many(self, texts: dict[str, str]) -> None:
        """Remember the text read from these pictures (an empty text is remembered too: no text is an answer)."""
        if not texts:
            return
        try:
            with self._lock:
                conn = self._connect()
                try:
                    with conn:
                        conn.executemany(
                            "INSERT OR REPLACE INTO ocr (sha256, version, text) VALUES (?, ?, ?)",
                            [(sha, self.version, text) for sha, text in texts.items()],
                        )
                finally:
                    conn.close()
        except sqlite3.Error as exc:
            log.warning("OCR cache %s could not be written (%s)", self.path, exc)
