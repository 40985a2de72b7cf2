"""Search latency on a video library with long transcripts: where the `_video_moments` and rerank stages read the
timed lines of every video on the page.

300 films, each with 1,500 subtitle lines (a two-hour film) and 5 segments, written straight to the store (no
decoding), an application with rerank on, 4 queries x 30 rounds through `MMSearch.search_app`. Prints p50/p90.

    python bench/video_transcripts.py

The figures before and after each change are in docs/benchmarks.md (recorded by hand: the before runs need the
code of their commit).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder
from mmsearch.ingest.importer import searchable_text
from mmsearch.search import SearchRequest
from mmsearch.store.base import Record

WORDS = ["海豚", "城市", "火车", "日出", "森林", "市场", "dolphin", "train", "bridge", "park"]
QUERIES = ["电影 海豚", "火车", "电影", "dolphin park"]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mmsearch-bench-transcripts-") as tmp:
        mm = MMSearch(Settings(home=Path(tmp), ocr=False), encoder=HashingEncoder(32))
        schema = {"fields": [{"name": "id", "type": "string", "primary_key": True},
                             {"name": "title", "type": "string", "searchable": True}]}
        info = mm.create_dataset("films", schema, type="video", vector_dim=32)
        rng = np.random.default_rng(0)
        records = []
        for n in range(300):
            cues = [{"start": i * 3.0, "end": i * 3.0 + 3, "source": "subtitle",
                     "text": f"{WORDS[(n + i) % 10]} 今天我们去海边看看风景 line {i}"} for i in range(1500)]
            media = [{"field": "video_url", "ref": f"f{n}.mp4", "kind": "video", "duration": 4500, "segments": 5,
                      "cues": cues, "ocr": ""}]
            segments = rng.standard_normal((5, 32)).astype(np.float32)
            segments /= np.linalg.norm(segments, axis=1, keepdims=True)
            spans = np.stack([np.arange(5) * 10.0, np.arange(5) * 10.0 + 10]).T.astype(np.float32)
            doc = {"id": f"f{n}", "title": f"电影 {WORDS[n % 10]} 第{n}部"}
            records.append(Record(id=f"f{n}", doc=doc, text=searchable_text(info, doc), media=media,
                                  segments=segments, spans=spans))
        mm.store.upsert(info, records)
        mm.catalog.apps.create("a", ["films"], {"rerank": True})
        for q in QUERIES:
            mm.search_app("a", "films", SearchRequest(text=q))
        times = []
        for _ in range(30):
            for q in QUERIES:
                started = time.perf_counter()
                mm.search_app("a", "films", SearchRequest(text=q))
                times.append((time.perf_counter() - started) * 1000)
    label = sys.argv[1] if len(sys.argv) > 1 else "search_app"
    print(f"{label}: p50 {np.percentile(times, 50):.1f} ms, p90 {np.percentile(times, 90):.1f} ms")


if __name__ == "__main__":
    main()
