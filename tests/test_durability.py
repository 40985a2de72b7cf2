"""A crash mid-import never corrupts a table: every batch lands whole or not at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.search import SearchRequest

BATCH = 200
SCHEMA = {"fields": [
    {"name": "item_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "n", "type": "int64", "filterable": True, "sortable": True},
]}

WRITER = """
import sys
from pathlib import Path
from mmsearch.config import Settings
from mmsearch.core import MMSearch

home, marker, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
mm = MMSearch(Settings(home=home))
items = ({"item_id": f"i{n}", "title": f"商品 {n} 运动鞋", "n": n} for n in range(1_000_000))
mm.import_items("crash", items, batch_size=batch, on_progress=lambda _: marker.touch())
"""


def test_kill_during_import_leaves_whole_batches(tmp_path: Path) -> None:
    home = tmp_path / "home"
    MMSearch(Settings(home=home)).create_dataset("crash", SCHEMA)
    marker = tmp_path / "first-batch-written"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home), str(marker), str(BATCH)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the writer never finished a batch"
            time.sleep(0.05)
        time.sleep(1.5)  # let it get well into later batches, then pull the plug
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)

    mm = MMSearch(Settings(home=home))
    count = mm.store.count(mm.dataset("crash"))
    assert count >= BATCH
    assert count % BATCH == 0, f"{count} rows: a batch landed partly"
    # every id of the landed batches is there exactly once, and the table answers queries
    ids = [f"i{n}" for n in range(count)]
    assert len(mm.get("crash", ids)) == count
    result = mm.search("crash", SearchRequest(text="运动鞋", sort_by="n", sort_order="asc", page_size=3))
    assert [h.id for h in result.hits] == ["i0", "i1", "i2"]

    # re-running the import is idempotent: the landed items are replaced, the rest inserted
    report = mm.import_items("crash", ({"item_id": f"i{n}", "title": "运动鞋", "n": n} for n in range(count + 50)))
    assert (report.replaced, report.inserted) == (count, 50)
    assert mm.store.count(mm.dataset("crash")) == count + 50
    json.dumps(report.as_dict())
