"""Validate, index and upsert items in batches; good items land, bad ones are reported, never lost silently."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsearch.encoders.base import l2_normalise
from mmsearch.ingest.images import ImageIndexer, ItemImages
from mmsearch.schema.fields import OCR_FIELD, TRANSCRIPT_FIELD, VIDEO_SUMMARY, VIDEO_TITLE, DatasetInfo
from mmsearch.schema.validate import ItemError, ValidItem, validate_item
from mmsearch.store.base import Record, Store
from mmsearch.text import field_text, join_fields, strings, user_words

if TYPE_CHECKING:  # PyAV loads only where videos are read
    from mmsearch.ingest.videos import ItemVideo, VideoIndexer

MAX_REPORTED_ERRORS = 1_000


@dataclass
class ImportReport:
    total: int = 0
    inserted: int = 0
    replaced: int = 0
    rejected: int = 0
    errors: list[ItemError] = field(default_factory=list)
    errors_truncated: bool = False
    warnings: list[ItemError] = field(default_factory=list)  # imported items with a problem (e.g. an image)
    images: dict[str, int] = field(default_factory=dict)
    videos: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    maintenance: dict[str, Any] = field(default_factory=dict)

    @property
    def imported(self) -> int:
        return self.inserted + self.replaced

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "imported": self.imported,
            "inserted": self.inserted,
            "replaced": self.replaced,
            "rejected": self.rejected,
            "errors": [e.as_dict() for e in self.errors],
            "errors_truncated": self.errors_truncated,
            "warnings": [w.as_dict() for w in self.warnings],
            "images": self.images,
            **({"videos": self.videos} if self.videos else {}),
            "seconds": round(self.seconds, 3),
            "items_per_second": round(self.imported / self.seconds, 1) if self.seconds else None,
        }


def searchable_text(info: DatasetInfo, doc: dict[str, Any]) -> str:
    """Each searchable field's tokens behind its marker (text.field_text), so each field is scored on its own."""
    fields: list[str] = []
    words = user_words(info.schema.dictionary)
    for spec in info.schema.searchable:
        value = doc.get(spec.name)
        if isinstance(value, str | list):
            fields.append(field_text(spec.name, strings(value), words))
    return join_fields(fields)


def video_fields(doc: dict[str, Any], video: ItemVideo) -> dict[str, Any]:
    """The item's own fields plus what the platform generates for a video (the spec's display fields): an item
    that supplies one of them keeps its own."""
    out = dict(doc)
    if video.generated is not None:
        out.setdefault(VIDEO_TITLE, video.generated.title)
        out.setdefault(VIDEO_SUMMARY, video.generated.summary)
    out.setdefault("content_type", "video")
    return out


def video_text(info: DatasetInfo, doc: dict[str, Any], video: ItemVideo) -> str:
    """The generated fields and the words said or shown in the video, each as a field of its own."""
    words = user_words(info.schema.dictionary)
    lines = list(dict.fromkeys(cue.text for cue in video.transcript))
    return join_fields([
        field_text(VIDEO_TITLE, [v for v in [doc.get(VIDEO_TITLE)] if isinstance(v, str)], words),
        field_text(VIDEO_SUMMARY, [v for v in [doc.get(VIDEO_SUMMARY)] if isinstance(v, str)], words),
        field_text(TRANSCRIPT_FIELD, lines, words),
    ])


def to_record(info: DatasetInfo, item: ValidItem, images: ItemImages | None = None,
              video: ItemVideo | None = None) -> Record:
    """A supplied `_vector` wins over image embeddings; OCR text joins the searchable text. A video adds its
    segments, its transcript and its generated fields."""
    if video is not None:
        item = dataclasses.replace(item, doc=video_fields(item.doc, video))
    text = searchable_text(info, item.doc)
    vector = l2_normalise(np.asarray(item.vector, dtype=np.float32)) if item.vector is not None else None
    media: list[dict[str, Any]] = []
    if images is not None:
        if vector is None:
            vector = images.vector
        if images.ocr_text:
            text = join_fields([text, field_text(OCR_FIELD, [images.ocr_text], user_words(info.schema.dictionary))])
        media = images.media
    if video is not None:
        text = join_fields([text, video_text(info, item.doc, video)])
        return Record(id=item.id, doc=item.doc, text=text, vector=vector, media=media + video.media,
                      segments=video.segments, spans=video.spans)
    return Record(id=item.id, doc=item.doc, text=text, vector=vector, media=media)


def import_items(
    info: DatasetInfo,
    items: Iterable[tuple[int, Any]],
    store: Store,
    batch_size: int = 1_000,
    on_progress: Callable[[int], None] | None = None,
    maintain: bool = True,
    images: ImageIndexer | None = None,
    videos: VideoIndexer | None = None,
) -> ImportReport:
    """`items` yields (index, raw item or ItemError); `on_progress` gets the number processed per batch.
    With an `images` indexer, image fields are fetched, embedded and read (OCR) batch by batch; with a `videos`
    indexer (video datasets), videos are decoded, segmented, embedded and read, and their fields generated."""
    report = ImportReport()
    started = time.perf_counter()
    batch: list[ValidItem] = []
    indexer = images if images is not None and images.active else None
    video_indexer = videos if videos is not None and videos.active else None

    def reject(errors: list[ItemError]) -> None:
        report.rejected += 1
        room = MAX_REPORTED_ERRORS - len(report.errors)
        report.errors.extend(errors[: max(room, 0)])
        report.errors_truncated |= len(errors) > room

    def flush(processed: int) -> None:
        if batch:
            found = indexer.process(batch) if indexer else {}
            seen = video_indexer.process(batch) if video_indexer else {}
            for entry in [*found.values(), *seen.values()]:
                room = MAX_REPORTED_ERRORS - len(report.warnings)
                report.warnings.extend(entry.warnings[: max(room, 0)])
            records = [to_record(info, item, found.get(item.id), seen.get(item.id)) for item in batch]
            result = store.upsert(info, records)
            report.inserted += result.inserted
            report.replaced += result.replaced
            batch.clear()
        if on_progress and processed:
            on_progress(processed)

    processed = 0
    for index, raw in items:
        report.total += 1
        processed += 1
        if isinstance(raw, ItemError):
            reject([raw])
        else:
            valid, errors = validate_item(info.schema, raw, index, info.vector_dim)
            if valid is None:
                reject(errors)
            else:
                batch.append(valid)
        if processed >= batch_size:
            flush(processed)
            processed = 0
    flush(processed)
    if indexer:
        report.images = indexer.stats.as_dict()
    if video_indexer:
        report.videos = video_indexer.stats.as_dict()
    if maintain and report.imported:
        report.maintenance = store.maintain(info)
    report.seconds = time.perf_counter() - started
    return report
