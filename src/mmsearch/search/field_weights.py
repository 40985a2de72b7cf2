"""How much a match in each field counts in the text channel: BM25 is scored per field and weighted.

A title names the item; a description mentions many things in passing, and text read from a picture (OCR)
is often packaging, a watermark or a shop sign. So by default a term in the title-like field (rerank's
`title_field`: the first searchable field named like *title* or *name*) counts once, in another searchable
field FIELD_WEIGHT times, in OCR text OCR_WEIGHT times (BM25F: the weight scales the term frequency before
saturation, store/serving/postings.py). The title keeps 1, so a dataset with one searchable field scores as
plain BM25. An application sets its own with `field_weights` (field name -> weight, `_ocr` for text read
from images; 0 leaves a field out of the text channel). In a video dataset `_video_generated_title`,
`_video_generated_summary` and `_transcript` (the words said or shown in the video) weigh FIELD_WEIGHT. The
defaults were chosen on the demo's judged queries (docs/relevance.md).
"""

from __future__ import annotations

from mmsearch.schema.fields import OCR_FIELD, TRANSCRIPT_FIELD, VIDEO_SUMMARY, VIDEO_TITLE, DatasetSchema
from mmsearch.search.rerank import title_field

FIELD_WEIGHT = 0.5
OCR_WEIGHT = 0.5


def field_weights(schema: DatasetSchema, configured: dict[str, float] | None = None,
                  video: bool = False) -> dict[str, float]:
    """Each searchable field's weight and OCR's, the application's own over the defaults."""
    out = {spec.name: FIELD_WEIGHT for spec in schema.searchable}
    title = title_field(schema)
    if title is not None:
        out[title.name] = 1.0
    out[OCR_FIELD] = OCR_WEIGHT
    if video:
        out.update(dict.fromkeys((VIDEO_TITLE, VIDEO_SUMMARY, TRANSCRIPT_FIELD), FIELD_WEIGHT))
    out.update(configured or {})
    return out
