"""The data directory holds secrets (IQS AK/SK and V4 secrets in the catalog, the admin token): mmsearch creates
it 0700 and those files 0600. A directory or file that already exists keeps its mode (it may be shared on
purpose); `exposure` says when group or others can read it, and `mmsearch serve` prints that as a warning."""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path

SECRET_FILES = ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm", "admin_token")


def make_home(path: Path) -> None:
    """Create the data directory owner-only (0700); its parents get the usual mode, an existing one is kept."""
    path = Path(path)
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.mkdir(path, 0o700)


def create_private_file(path: Path) -> None:
    """Create an empty file owner-only (0600) unless it exists: SQLite then opens it as an empty database, and
    gives its -wal and -shm files the same mode."""
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def exposure(home: Path) -> str | None:
    """A warning when the data directory, or a secret file in it, can be read by group or others; None if not."""
    home = Path(home)
    open_to: list[str] = []
    for path in (home, *(home / name for name in SECRET_FILES)):
        with suppress(OSError):
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                open_to.append(f"{path} ({mode:04o})")
    if not open_to:
        return None
    return (f"readable by group or others, though they hold secrets: {', '.join(open_to)}; "
            f"run: chmod 700 {home} && chmod 600 {home}/catalog.sqlite3* {home}/admin_token")
