"""Per-dataset spelling vocabularies, built from the stored items and kept in step with the table.

The words come from what users can find: searchable fields, the OCR text of images and, for videos, the
generated fields and the words said or shown. A vocabulary
is rebuilt when the table's version changes, in the background, while the previous one keeps serving."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mmsearch.schema.fields import VIDEO_SUMMARY, VIDEO_TITLE, DatasetInfo
from mmsearch.search.spell import SpellCorrector, build_vocabulary
from mmsearch.text import strings

log = logging.getLogger("mmsearch.vocab")


def item_texts(info: DatasetInfo, store: Any) -> Iterator[str]:
    """Searchable fields, OCR text and, in a video dataset, the generated fields and the transcript lines."""
    names = [f.name for f in info.schema.searchable]
    if info.type == "video":
        names += [VIDEO_TITLE, VIDEO_SUMMARY]
    for batch in store.scan(info, ["_doc", "_media"]):
        for doc_json, media_json in zip(batch["_doc"], batch["_media"], strict=True):
            doc = json.loads(doc_json) if doc_json else {}
            for name in names:
                yield from strings(doc.get(name))
            for m in json.loads(media_json) if media_json else []:
                if not isinstance(m, dict):
                    continue
                if m.get("ocr"):
                    yield m["ocr"]
                for cue in m.get("cues") or ():  # a video's (or a subtitle file's) timed lines
                    if isinstance(cue, dict) and isinstance(cue.get("text"), str):
                        yield cue["text"]


@dataclass
class _Entry:
    version: int
    corrector: SpellCorrector


class SpellCheckers:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._entries: dict[str, _Entry] = {}
        self._building: set[str] = set()
        self._lock = threading.Lock()

    def get(self, info: DatasetInfo) -> SpellCorrector:
        """Current when this dataset was never built or is unchanged; otherwise the previous vocabulary,
        while a rebuild runs in the background."""
        version = self.store.version(info)
        entry = self._entries.get(info.id)
        if entry is None:
            return self._build(info, version).corrector
        if entry.version != version:
            self.refresh(info)
        return entry.corrector

    def ready(self, dataset_id: str) -> bool:
        """Built once: `get` answers without reading the dataset."""
        return dataset_id in self._entries

    def refresh(self, info: DatasetInfo) -> None:
        with self._lock:
            if info.id in self._building:
                return
            self._building.add(info.id)
        threading.Thread(target=self._build_quietly, args=(info,), daemon=True, name="mmsearch-vocab").start()

    def _build_quietly(self, info: DatasetInfo) -> None:
        try:
            self._build(info, self.store.version(info))
        except Exception:
            log.exception("could not rebuild the vocabulary of %s", info.id)
        finally:
            with self._lock:
                self._building.discard(info.id)

    def _build(self, info: DatasetInfo, version: int) -> _Entry:
        entry = _Entry(version=version, corrector=SpellCorrector(build_vocabulary(item_texts(info, self.store))))
        self._entries[info.id] = entry
        return entry

    def forget(self, dataset_id: str) -> None:
        self._entries.pop(dataset_id, None)
