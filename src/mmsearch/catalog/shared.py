"""State several server processes must share, kept in the catalog database: request throttling per key and the
replay guard of signed requests. One process keeps both in memory (`accounts.RateLimiter`,
`api.signing.ReplayGuard`); processes sharing a catalog (PostgreSQL, or `serve --workers N`) use these, so a key
with qps=2 gets 2 queries a second in total however many processes answer it, and a signature accepted by one
process is refused by every other.

Both are single statements against a primary key: a conditional increment of the key's one-second window (an
insert when the window is new), and an insert of the signature's hash (a conflict is a replay). Old windows and
expired signatures are deleted now and then by whichever process happens to pass.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable

from sqlalchemy import Engine, delete, insert, update
from sqlalchemy.exc import IntegrityError

from mmsearch.catalog.models import ReplayRow, ThrottleRow

PURGE_EVERY = 200  # about one call in this many deletes what has expired
KEEP_WINDOWS_S = 10


class SharedRateLimiter:
    """`allow(key, qps)` as `RateLimiter`, counted per one-second window (`int(now)`) in the catalog."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def allow(self, key: str, qps: int) -> bool:
        window = int(self.clock())
        bump = (update(ThrottleRow).where(ThrottleRow.key == key, ThrottleRow.window == window,
                                          ThrottleRow.count < qps).values(count=ThrottleRow.count + 1))
        with self.engine.begin() as conn:
            if random.randrange(PURGE_EVERY) == 0:
                conn.execute(delete(ThrottleRow).where(ThrottleRow.window < window - KEEP_WINDOWS_S))
            if conn.execute(bump).rowcount == 1:
                return True
        try:  # the window's first query (in its own transaction: a concurrent first insert is a conflict)
            with self.engine.begin() as conn:
                conn.execute(insert(ThrottleRow).values(key=key, window=window, count=1))
            return qps >= 1
        except IntegrityError:  # another process opened the window meanwhile: count against it
            with self.engine.begin() as conn:
                return conn.execute(bump).rowcount == 1


class SharedReplayGuard:
    """`remember(key, expires_at, now)` as `api.signing.ReplayGuard`: False when `key` is live already."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def remember(self, key: str, *, expires_at: float, now: float) -> bool:
        token = hashlib.sha256(key.encode()).hexdigest()
        try:
            with self.engine.begin() as conn:
                if random.randrange(PURGE_EVERY) == 0:
                    conn.execute(delete(ReplayRow).where(ReplayRow.expires_at <= now))
                conn.execute(insert(ReplayRow).values(token=token, expires_at=expires_at))
            return True
        except IntegrityError:  # seen: a replay, unless that record has expired (then it is taken over)
            with self.engine.begin() as conn:
                taken = conn.execute(update(ReplayRow).where(ReplayRow.token == token, ReplayRow.expires_at <= now)
                                     .values(expires_at=expires_at))
                return taken.rowcount == 1
