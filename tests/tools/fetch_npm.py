"""Fetch one pinned npm package's files from the registry, checked against its integrity hash (no npm needed).

    python tests/tools/fetch_npm.py axe-core 4.14.1 sha512-… build/axe axe.min.js LICENSE

The tarball's `package/<file>` entries are written to DEST; anything else in it is ignored. A mismatching hash
is an error and writes nothing. NPM_CONFIG_REGISTRY (npm's own setting) points at a mirror.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path


def fetch(package: str, version: str, integrity: str, dest: Path, files: list[str]) -> None:
    registry = os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org").rstrip("/")
    url = f"{registry}/{package}/-/{package.rsplit('/', 1)[-1]}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    algorithm, _, expected = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        raise SystemExit(f"{url}: {algorithm} is {got}, expected {expected}; not installed")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name in files:
            member = tar.extractfile(f"package/{name}")
            if member is None:
                raise SystemExit(f"{url}: no package/{name}")
            (dest / name).write_bytes(member.read())


if __name__ == "__main__":
    if len(sys.argv) < 6:
        raise SystemExit(__doc__)
    fetch(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), sys.argv[5:])
