"""A serving index saved beside its table (`<tables>/<dataset>.serving/v<version>/`), so a restart loads it
and catches up from the journal instead of rebuilding (re-reading every row and re-training the IVF).

A snapshot is written to a temporary folder and renamed into place, so a reader sees a whole one or none;
it records the table version it matches and the schema it was built for, and is ignored (the index is
rebuilt) when either no longer fits.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.schema.fields import DatasetInfo
from mmsearch.store.serving.arrays import Blobs, Growable
from mmsearch.store.serving.index import ServingIndex
from mmsearch.store.serving.postings import Segment, merge
from mmsearch.store.serving.vectors import VectorConfig

# 3: postings keyed by search terms (stemmed, no stop words); 4: per field ("slot:term", lengths rows x fields);
# 5: CJK words also filed under their head character (text.head_term); 6: not the pieces cut from a word's front
FORMAT = 6
KEEP = 2  # snapshots kept per dataset (the newest; an older one for a reader still loading it)


def fingerprint(info: DatasetInfo) -> str:
    # the user words change how items are tokenised at import, not what the index reads from the table
    schema = info.schema.model_dump(mode="json", exclude={"dictionary"})
    raw = json.dumps({"schema": schema, "dim": info.vector_dim}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def folder(tables: Path, dataset_id: str) -> Path:
    return Path(tables) / f"{dataset_id}.serving"


def latest(tables: Path, dataset_id: str) -> Path | None:
    root = folder(tables, dataset_id)
    if not root.is_dir():
        return None
    found = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("v") and (p / "meta.json").exists())
    return found[-1] if found else None


def save(index: ServingIndex, tables: Path) -> Path:
    view = index.view
    if view is None:
        raise RuntimeError("nothing published to save")
    root = folder(tables, index.info.id)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"v{view.version:012d}"
    if final.exists():
        if _usable(final, index.info):
            return final
        shutil.rmtree(final, ignore_errors=True)  # written by another mmsearch version or for another schema
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        rows = view.rows
        arrays: dict[str, np.ndarray] = {
            "alive": view.alive, "lengths": view.lengths[:rows],
            "matrix": index.vectors.matrix.view()[:rows], "has": index.vectors.has.view()[:rows],
        }
        ids = Blobs()
        ids.extend([i.encode() for i in index.ids[:rows]])
        for prefix, blobs in (("ids", ids), ("docs", index.docs), ("media", index.media), ("texts", index.texts)):
            for name, a in blobs.arrays(rows).items():  # rows appended after the view are not saved
                arrays[f"{prefix}.{name}"] = a
        segment = merge(list(view.segments)) if len(view.segments) != 1 else view.segments[0]
        terms = sorted(segment.terms, key=segment.terms.__getitem__)
        arrays.update({"text.indptr": segment.indptr, "text.rows": segment.rows, "text.tfs": segment.tfs})
        strings: dict[str, list[str]] = {}
        for name, col in index.columns.items():
            parts = col.arrays()
            if col.is_array:
                inside = parts["owners"] < rows
                parts = {"elements": parts["elements"][inside], "owners": parts["owners"][inside]}
            else:
                parts = {p: a[:rows] for p, a in parts.items()}
            for part, a in parts.items():
                arrays[f"col.{name}.{part}"] = a
            if col.strings is not None:
                strings[name] = list(col.strings.values)
        moments = index.moments
        if moments is not None:  # a video dataset's transcripts and segments: those of the saved rows
            for name, a in index.cues.arrays(rows).items():
                arrays[f"cues.{name}"] = a
            n = view.moments
            arrays.update({"mom.owner": moments.owner.view()[:n], "mom.times": moments.times.view()[:n],
                           "mom.matrix": moments.vectors.matrix.view()[:n], "mom.has": moments.vectors.has.view()[:n],
                           "mom.first": moments.first.view()[:rows], "mom.count": moments.count.view()[:rows]})
        for name, a in arrays.items():
            np.save(tmp / f"{name}.npy", a, allow_pickle=False)
        (tmp / "terms.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        indexed = 0
        if index.vectors.ivf is not None:
            import faiss

            with index.vectors._lock:
                indexed = min(index.vectors.indexed, rows)
                faiss.write_index(index.vectors.ivf, str(tmp / "ivf.faiss"))
        moments_indexed = 0
        if moments is not None and moments.vectors.ivf is not None:
            import faiss

            with moments.vectors._lock:
                moments_indexed = min(moments.vectors.indexed, view.moments)
                faiss.write_index(moments.vectors.ivf, str(tmp / "mom.ivf.faiss"))
        meta = {
            "format": FORMAT, "dataset": index.info.id, "fingerprint": fingerprint(index.info),
            "version": view.version, "rows": rows, "indexed": indexed, "strings": strings,
            "moments": view.moments if moments is not None else None, "moments_indexed": moments_indexed,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(p for p in root.iterdir() if p.name.startswith("v") and p != final)[:-(KEEP - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _usable(path: Path, info: DatasetInfo) -> bool:
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("format") == FORMAT and meta.get("fingerprint") == fingerprint(info)


def load(path: Path, info: DatasetInfo, config: VectorConfig | None = None) -> ServingIndex | None:
    """The saved index, published at its version; None when it was saved for another schema or format."""
    if not _usable(path, info):
        return None
    meta: dict[str, Any] = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    if (info.type == "video") != (meta.get("moments") is not None) or (
            info.type == "video" and not (path / "cues.data.npy").exists()):
        return None  # saved before video segments (and transcripts) were kept apart, or for another dataset type

    def arr(name: str) -> np.ndarray:
        return np.load(path / f"{name}.npy", allow_pickle=False)

    index = ServingIndex(info, config)
    rows = int(meta["rows"])
    ids = Blobs.from_arrays(arr("ids.data"), arr("ids.offsets"))
    index.ids = [ids.get(r).decode() for r in range(rows)]
    alive = arr("alive")
    index.alive = Growable.of(alive)
    index.row_of = {index.ids[r]: r for r in np.flatnonzero(alive).tolist()}
    index.docs = Blobs.from_arrays(arr("docs.data"), arr("docs.offsets"))
    index.media = Blobs.from_arrays(arr("media.data"), arr("media.offsets"))
    index.texts = Blobs.from_arrays(arr("texts.data"), arr("texts.offsets"))
    index.lengths = Growable.of(arr("lengths"))
    terms = json.loads((path / "terms.json").read_text(encoding="utf-8"))
    index.segments = [Segment({t: n for n, t in enumerate(terms)}, arr("text.indptr"), arr("text.rows"),
                              arr("text.tfs"))]
    for name, col in index.columns.items():
        parts = ("elements", "owners") if col.is_array else ("values", "valid")
        col.load({p: arr(f"col.{name}.{p}") for p in parts}, meta["strings"].get(name))
    index.vectors.matrix = Growable.of(arr("matrix"))
    index.vectors.has = Growable.of(arr("has"))
    if (path / "ivf.faiss").exists():
        import faiss

        index.vectors.set_ivf(faiss.read_index(str(path / "ivf.faiss")), int(meta["indexed"]))
    if index.moments is not None:
        index.cues = Blobs.from_arrays(arr("cues.data"), arr("cues.offsets"))
        m = index.moments
        m.owner, m.times = Growable.of(arr("mom.owner")), Growable.of(arr("mom.times"))
        m.first, m.count = Growable.of(arr("mom.first")), Growable.of(arr("mom.count"))
        m.vectors.matrix, m.vectors.has = Growable.of(arr("mom.matrix")), Growable.of(arr("mom.has"))
        if (path / "mom.ivf.faiss").exists():
            import faiss

            m.vectors.set_ivf(faiss.read_index(str(path / "mom.ivf.faiss")), int(meta["moments_indexed"]))
    live = index.lengths.view()[alive]  # the statistics, exactly as appends and removals kept them
    index.live_rows = len(live)
    index.live_length = live.sum(axis=0, dtype=np.float64)
    index.live_docs = (live > 0).sum(axis=0)
    index.publish(int(meta["version"]))
    return index


def remove(tables: Path, dataset_id: str) -> None:
    shutil.rmtree(folder(tables, dataset_id), ignore_errors=True)
