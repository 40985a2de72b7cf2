"""A short-lived cache of catalog rows read on every search (the application, the dataset).

Reading and parsing them cost about 1 ms a query. Every write this catalog makes to applications or datasets
clears the cache, so a change made in this process (the management API, the library) applies to the next
search at once; a change made by another process on the same catalog (the CLI beside a running server) applies
within `ttl_s`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TTL_S = 1.0


class ReadCache:
    """Values by key for `ttl_s` seconds. Only values are kept (a lookup that raises is not cached), and a value
    read while a write cleared the cache is not kept, so a clear is never undone by a read that raced it."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]  # type: ignore[no-any-return]
        generation = self._generation
        value = load()
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (now, value)
        return value

    def clear(self) -> None:
        """Forget everything (called by every catalog write that could change a cached row)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
