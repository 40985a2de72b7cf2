"""Read image files from disk, but only under directories the operator allowed.

Paths are resolved (symlinks followed, `..` collapsed) before the check, so a link inside an allowed
root that points outside it is refused, as is any path when no root is configured.

A relative path (`images/P0003.png`) is looked up against the working directory and then against each root,
so items can keep the reference as their author wrote it: the document stores and returns that reference,
and only the loader ever sees the server's absolute path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mmsearch.errors import InvalidArgument, NotFound
from mmsearch.media.errors import UnsafeURL

MAX_BYTES = 10 * 1024 * 1024


def resolve_allowed(path: str | os.PathLike[str], allowed_roots: Iterable[str | os.PathLike[str]], field: str) -> Path:
    """The real path of `path` if it lies under one of `allowed_roots` (also resolved), else UnsafeURL."""
    roots = [Path(r).expanduser().resolve() for r in allowed_roots]
    if not roots:
        raise UnsafeURL(f"{field}: local files are not allowed (no allowed roots configured)", field=field)
    given = Path(path).expanduser()
    candidates = [given.resolve()]
    if not given.is_absolute():  # relative: the working directory first (as before), then each root
        candidates += [(root / given).resolve() for root in roots]
    inside = [c for c in candidates if any(c == root or c.is_relative_to(root) for root in roots)]
    if not inside:
        raise UnsafeURL(f"{field}: local path {str(path)[:200]} is outside the allowed roots", field=field)
    return next((c for c in inside if c.exists()), inside[0])


def load_local(
    path: str | os.PathLike[str],
    allowed_roots: Iterable[str | os.PathLike[str]],
    field: str = "path",
    max_bytes: int = MAX_BYTES,
) -> bytes:
    """Bytes of a regular file under an allowed root, refusing directories, devices and files over `max_bytes`."""
    real = resolve_allowed(path, allowed_roots, field)
    if not real.exists():
        raise NotFound(f"{field}: local file {str(path)[:200]} does not exist", field=field)
    if not real.is_file():
        raise InvalidArgument(f"{field}: local path {str(path)[:200]} is not a regular file", field=field)
    size = real.stat().st_size
    if size > max_bytes:
        raise InvalidArgument(f"{field}: local file is {size} bytes, over the limit of {max_bytes} bytes", field=field)
    with real.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidArgument(f"{field}: local file is over the limit of {max_bytes} bytes", field=field)
    return data
