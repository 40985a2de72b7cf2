"""Turn an item's image fields into an embedding, OCR text and media metadata.

Each image is fetched and decoded once per content hash: the same picture used by many items (or
re-imported) is embedded and read once per import. An item's vector is the normalised mean of its
images' embeddings; the rerank stage can use the per-image metadata kept in `media`. A failed image
is a warning on its item, never a rejection: the item stays searchable by its text fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mmsearch.encoders.base import Encoder, l2_normalise
from mmsearch.errors import InvalidArgument, MMSearchError
from mmsearch.schema.fields import DatasetInfo
from mmsearch.schema.validate import ItemError, ValidItem

REF_SHOWN = 200  # characters of a reference kept in reports and metadata (data URIs are long)
CACHE_ENTRIES = 50_000  # content hashes remembered per import (~100 MB of 512-d vectors)


@dataclass
class LoadedImage:
    """What a loader returns (media.DecodedImage has these fields too)."""

    image: Any  # PIL.Image in RGB
    width: int
    height: int
    sha256: str


class OcrReader(Protocol):
    def read(self, image: Any) -> Any:
        """An object with a `text` attribute."""
        ...


class OcrTextCache(Protocol):
    """OCR text by picture sha256 (encoders.ocr_cache.OcrCache)."""

    def get_many(self, hashes: Iterable[str]) -> dict[str, str]: ...

    def put_many(self, texts: dict[str, str]) -> None: ...


@dataclass
class ImageStats:
    refs: int = 0
    loaded: int = 0
    failed: int = 0
    embedded: int = 0
    reused: int = 0
    ocr_chars: int = 0
    ocr_read: int = 0  # pictures read by OCR in this import
    ocr_cached: int = 0  # pictures whose OCR text came from the cache (read by an earlier import)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ItemImages:
    vector: np.ndarray | None = None
    ocr_text: str = ""
    media: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[ItemError] = field(default_factory=list)


def check_dim(info: DatasetInfo, encoder: Encoder | None) -> None:
    """The model's vectors must have the dataset's dimension, or nothing it embeds could be stored."""
    if encoder is not None and encoder.dim != info.vector_dim:
        raise InvalidArgument(
            f"encoder {encoder.model_id} gives {encoder.dim}-d vectors but dataset {info.id!r} stores "
            f"{info.vector_dim}-d; create the dataset with --dim {encoder.dim}", field="dataset_id",
        )


def image_refs(value: Any, kind: str = "image") -> list[str]:
    """A string, a list of strings, or a list of {"image_url": ...} objects (the spec's example)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        key = f"{kind}_url"
        return [v.get(key) if isinstance(v, dict) else v for v in value if isinstance(v, str | dict)]
    return []


def short(ref: str) -> str:
    return ref if len(ref) <= REF_SHOWN else ref[: REF_SHOWN - 1] + "…"


class ImageIndexer:
    def __init__(
        self,
        info: DatasetInfo,
        load: Callable[[str], Any],  # ref -> LoadedImage-like; raises on failure
        encoder: Encoder | None = None,
        ocr: OcrReader | None = None,
        workers: int = 8,
        ocr_cache: OcrTextCache | None = None,
    ) -> None:
        check_dim(info, encoder)
        self.info = info
        self.load = load
        self.encoder = encoder
        self.ocr = ocr
        self.ocr_cache = ocr_cache if ocr is not None else None
        self.workers = workers
        self.stats = ImageStats()
        self._vectors: dict[str, np.ndarray] = {}
        self._ocr: dict[str, str] = {}

    @property
    def active(self) -> bool:
        return bool(self.info.schema.images) and (self.encoder is not None or self.ocr is not None)

    def process(self, items: Iterable[ValidItem]) -> dict[str, ItemImages]:
        jobs: list[tuple[ValidItem, str, str]] = [
            (item, spec.name, ref)
            for item in items
            for spec in self.info.schema.images
            for ref in image_refs(item.doc.get(spec.name))
            if ref
        ]
        self.stats.refs += len(jobs)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mmsearch-fetch") as pool:
            loaded = list(pool.map(self._try_load, [ref for _, _, ref in jobs]))
        self._embed_and_read([img for img in loaded if not isinstance(img, str)])

        out: dict[str, ItemImages] = {}
        for (item, field_name, ref), img in zip(jobs, loaded, strict=True):
            entry = out.setdefault(item.id, ItemImages())
            if not isinstance(img, str):
                entry.media.append({
                    "field": field_name, "ref": short(ref), "width": img.width, "height": img.height,
                    "sha256": img.sha256, "ocr": self._ocr.get(img.sha256, ""),
                })
            else:
                entry.warnings.append(ItemError(item.index, item.id, field_name, "image", f"{short(ref)}: {img}"))
        for item_id, entry in out.items():
            vectors = [self._vectors[m["sha256"]] for m in entry.media if m["sha256"] in self._vectors]
            if vectors:
                entry.vector = l2_normalise(np.mean(vectors, axis=0))
            entry.ocr_text = "\n".join(m["ocr"] for m in entry.media if m["ocr"])
            if entry.warnings and not entry.media:
                first = entry.warnings[0]
                entry.warnings.append(ItemError(
                    first.index, item_id, None, "no_images",
                    "no image of this item could be indexed; it is searchable by its text fields only",
                ))
        return out

    def _try_load(self, ref: str) -> Any:
        try:
            img = self.load(ref)
        except MMSearchError as exc:
            self.stats.failed += 1
            return exc.message
        except Exception as exc:  # a broken file must not stop the import; the report names it
            self.stats.failed += 1
            return f"{type(exc).__name__}: {exc}"
        self.stats.loaded += 1
        return img

    def _embed_and_read(self, images: list[LoadedImage]) -> None:
        if len(self._ocr) > CACHE_ENTRIES:
            self._vectors.clear()
            self._ocr.clear()
        fresh = list({img.sha256: img for img in images if img.sha256 not in self._ocr}.values())
        self.stats.reused += len(images) - len(fresh)
        if not fresh:
            return
        if self.encoder is not None:
            vectors = self.encoder.encode_image([img.image for img in fresh])
            for img, vec in zip(fresh, vectors, strict=True):
                self._vectors[img.sha256] = vec
            self.stats.embedded += len(fresh)
        texts = self._read_text(fresh) if self.ocr is not None else {}
        for img in fresh:
            text = texts.get(img.sha256, "")
            self._ocr[img.sha256] = text
            self.stats.ocr_chars += len(text)

    def _read_text(self, images: list[LoadedImage]) -> dict[str, str]:
        assert self.ocr is not None
        texts, read = read_texts(self.ocr, self.ocr_cache, {img.sha256: img.image for img in images})
        self.stats.ocr_cached += len(texts) - read
        self.stats.ocr_read += read
        return texts


def read_texts(ocr: OcrReader, cache: OcrTextCache | None, pictures: dict[str, Any],
               upright: bool = False) -> tuple[dict[str, str], int]:
    """OCR text by picture hash, and how many pictures were read now: from the cache where an earlier import read
    the picture, the rest read (in the reader's process pool when it has `read_many`; `upright` skips the text
    direction classifier) and remembered."""
    texts = cache.get_many(list(pictures)) if cache is not None else {}
    pending = [h for h in pictures if h not in texts]
    if not pending:
        return texts, 0
    read_many = getattr(ocr, "read_many", None)
    if read_many is not None:
        results = read_many([pictures[h] for h in pending], **({"upright": True} if upright else {}))
    else:
        results = [ocr.read(pictures[h]) for h in pending]
    fresh = {h: result.text.strip() for h, result in zip(pending, results, strict=True)}
    if cache is not None:
        cache.put_many(fresh)
    return {**texts, **fresh}, len(fresh)
