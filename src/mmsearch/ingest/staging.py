"""Where accepted items wait for their import job: files under MMSEARCH_HOME/jobs (a folder every server and
worker shares), or object storage at MMSEARCH_STAGING_URL (`s3://bucket/prefix`, or any fsspec URL) when they run
on hosts without a shared filesystem.

Items are always written to a local file first (fsynced: an accepted item is never lost, and an uploaded file
is counted before its job exists), then, with a URL, copied there and the local file removed; the job's
`source` is the local path or the object's URL. A worker reads an object through a local copy it removes
afterwards. Credentials and the endpoint come from the usual environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for an S3-compatible store) through s3fs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def is_url(source: str) -> bool:
    return "://" in source


def _fs(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    return url_to_fs(url)


class Staging:
    def __init__(self, home: Path, url: str = "") -> None:
        self.folder = Path(home) / "jobs"
        self.url = url.rstrip("/")

    def publish(self, local: Path) -> str:
        """The source a job reads `local` from: the file itself, or its copy at the staging URL."""
        if not self.url:
            return str(local)
        target = f"{self.url}/{local.name}"
        fs, path = _fs(target)
        fs.put_file(str(local), path)
        local.unlink(missing_ok=True)
        return target

    def exists(self, source: str) -> bool:
        if is_url(source):
            fs, path = _fs(source)
            return bool(fs.exists(path))
        return Path(source).is_file()

    @contextmanager
    def local(self, source: str) -> Iterator[Path]:
        """A local file holding the source's items (an object is downloaded, and its copy removed after)."""
        if not is_url(source):
            yield Path(source)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".fetched-", suffix=Path(source).suffix, dir=self.folder)
        os.close(fd)
        try:
            fs, path = _fs(source)
            fs.get_file(path, name)
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def remove(self, source: str) -> None:
        if is_url(source):
            fs, path = _fs(source)
            if fs.exists(path):
                fs.rm_file(path)
        else:
            Path(source).unlink(missing_ok=True)


def staging_of(settings: Any) -> Staging:
    return Staging(settings.home, getattr(settings, "staging_url", ""))
