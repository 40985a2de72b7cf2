"""Several processes writing one dataset at once (a CLI import while a server's job runs): every batch lands,
every delete stays deleted, nobody sees an error, and readers keep reading. Writes to a table are serialised
across processes by a file lock (store/lance.py): without it, Lance's optimistic commits raised conflicts, and
once a delete racing another process's compaction came back."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.search import SearchRequest

SCHEMA = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                     {"name": "title", "type": "string", "searchable": True}]}

WRITER = """
import sys
from mmsearch.config import Settings
from mmsearch.core import MMSearch
home, tag = sys.argv[1], sys.argv[2]
mm = MMSearch(Settings(home=home, ocr=False), encoder=None)
for b in range(12):
    report = mm.import_items("t", [{"id": f"{tag}-{b}-{i}", "title": f"common {tag} {b}"} for i in range(40)])
    assert report.imported == 40, report.as_dict()
    assert mm.delete("t", [f"{tag}-{b}-{i}" for i in range(5)]) == 5  # deletes racing the others' compactions
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path):
    mm = MMSearch(Settings(home=tmp_path, ocr=False), encoder=None)
    mm.create_dataset("t", SCHEMA, vector_dim=8)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), tag], stderr=subprocess.PIPE, text=True)
             for tag in ("p1", "p2")]
    errors: list[str] = []

    def local_writer() -> None:
        other = MMSearch(Settings(home=tmp_path, ocr=False), encoder=None)  # its own connection, like a server
        try:
            for b in range(12):
                assert other.import_items("t", [{"id": f"t-{b}-{i}", "title": f"common t {b}"}
                                                for i in range(40)]).imported == 40
        except Exception as exc:
            errors.append(repr(exc))

    thread = threading.Thread(target=local_writer)
    thread.start()
    searches = 0
    while thread.is_alive() or any(p.poll() is None for p in procs):  # reading while they write never fails
        mm.search("t", SearchRequest(text="common", page_size=1))
        searches += 1
    thread.join()
    for p in procs:
        assert p.wait() == 0, p.stderr.read() if p.stderr else ""
    assert errors == []
    # `mm` sees other processes' commits within its consistency interval (1 s), so its handle may still be on the
    # version before their last delete: the table's truth is read through a connection opened now.
    latest = MMSearch(Settings(home=tmp_path, ocr=False), encoder=None)
    assert latest.store.count(latest.dataset("t")) == 3 * 12 * 40 - 2 * 12 * 5
    deleted = [f"{tag}-{b}-{i}" for tag in ("p1", "p2") for b in range(12) for i in range(5)]
    assert latest.get("t", deleted) == []  # a delete never comes back
    assert [d["id"] for d in latest.get("t", ["p1-0-5", "t-11-39"])] == ["p1-0-5", "t-11-39"]
    assert searches > 0
