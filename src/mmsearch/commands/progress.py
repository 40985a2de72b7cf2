"""Import progress on stderr: a Rich bar on a terminal, plain lines elsewhere.

Rich draws nothing until the end when stderr is not a terminal (CI logs, `make run 2>&1 | tee`, a service
manager), so a long import looked hung. There, a line with items done, rate and ETA is printed every
PLAIN_INTERVAL_S seconds (from a ticker thread too, so a slow batch still shows the import is alive).
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["PLAIN_INTERVAL_S", "ImportProgress"]

PLAIN_INTERVAL_S = 5.0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ImportProgress:
    """`with ImportProgress(label, total, console) as p: ... p.update(done)`; `disable` prints nothing."""

    def __init__(self, label: str, total: int, console: Console, *, disable: bool = False,
                 interval: float | None = None) -> None:
        self.label = label
        self.total = total
        self.console = console
        self.disable = disable
        self.interval = PLAIN_INTERVAL_S if interval is None else interval
        self.done = 0
        self.plain = not disable and not console.is_terminal
        self._start = time.monotonic()
        self._last_line = self._start
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._bar: Progress | None = None
        self._task = None
        self._note = ""  # what the current item is doing (a video: position, frames, segments)

    def __enter__(self) -> ImportProgress:
        self._start = self._last_line = time.monotonic()
        if self.plain:
            self.console.print(f"{self.label}: {self.total} items", markup=False, highlight=False, soft_wrap=True)
            if self.interval > 0:
                self._ticker = threading.Thread(target=self._tick, name="mmsearch-progress", daemon=True)
                self._ticker.start()
        elif not self.disable:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = [TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("{task.fields[note]}")]
            self._bar = Progress(*columns, console=self.console)
            self._bar.__enter__()
            self._task = self._bar.add_task("import", total=self.total, rate="", note="")
        return self

    def update(self, done: int) -> None:
        """Items processed so far (absolute)."""
        with self._lock:
            self.done = done
        if self._bar is not None and self._task is not None:
            elapsed = time.monotonic() - self._start
            rate = f"{done / elapsed:,.1f} items/s" if elapsed > 0 and done else ""
            self._bar.update(self._task, completed=done, rate=rate)
        elif self.plain and time.monotonic() - self._last_line >= self.interval:
            self._line()

    def note(self, text: str) -> None:
        """What the item being imported is doing now, shown beside the bar (and in plain lines)."""
        with self._lock:
            self._note = text
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, note=text)

    def line(self) -> str:
        """The plain progress line: done/total, percentage, rate, ETA, elapsed."""
        elapsed = time.monotonic() - self._start
        with self._lock:
            done = self.done
        parts = [f"{self.label}: {done}/{self.total} items"]
        if self.total:
            parts[0] += f" ({100 * done / self.total:.0f}%)"
        if done and elapsed > 0:
            rate = done / elapsed
            parts.append(f"{rate:,.1f} items/s")
            if done < self.total:
                parts.append(f"ETA {_duration((self.total - done) / rate)}")
        parts.append(f"{_duration(elapsed)} elapsed")
        if self._note:
            parts.append(self._note)
        return ", ".join(parts)

    def _line(self) -> None:
        self._last_line = time.monotonic()
        self.console.print(self.line(), markup=False, highlight=False, soft_wrap=True)

    def _tick(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            if time.monotonic() - self._last_line >= self.interval:
                self._line()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
        elif self.plain and exc_type is None:
            self._line()
