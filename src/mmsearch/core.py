"""The library entry point: a catalog, a store and an optional encoder behind one object.

    from mmsearch.core import MMSearch
    mm = MMSearch()                       # MMSEARCH_HOME or ./mmsearch-data
    mm.create_dataset("shoes", schema)
    mm.import_items("shoes", [{"item_id": "1", "title": "运动鞋"}])
    mm.search("shoes", SearchRequest(text="鞋"))
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsearch.catalog import Catalog
from mmsearch.catalog.apps import AppConfig, Application
from mmsearch.catalog.querylog import QueryLogEntry
from mmsearch.config import FALLBACK_DIM, Settings, get_settings
from mmsearch.encoders.base import Encoder
from mmsearch.errors import AlreadyExists, InvalidArgument, MMSearchError
from mmsearch.home import make_home
from mmsearch.ingest import ImportReport, import_items, read_items
from mmsearch.ingest.images import ImageIndexer
from mmsearch.media import FetchConfig, Fetcher, load_image_ref
from mmsearch.media.images import set_decode_limit
from mmsearch.media.refs import media_file
from mmsearch.schema.fields import DatasetInfo, check_dataset_id, check_dataset_type, parse_schema
from mmsearch.schema.filters import FilterLimits
from mmsearch.search import SearchOptions, SearchRequest, SearchResult, search
from mmsearch.search.pipeline import check_request
from mmsearch.search.types import RequestLimits
from mmsearch.store.lance import AnnConfig, LanceStore
from mmsearch.unicode import require_valid_unicode

if TYPE_CHECKING:  # PyAV and the summariser load on first use, with the first video dataset
    from mmsearch.ingest.summarize import Summarizer
    from mmsearch.ingest.videos import VideoConfig, VideoIndexer, VideoProgress

_UNSET: Any = object()


def _make_store(settings: Settings) -> Any:
    """MMSEARCH_STORE: the embedded LanceDB store (default), or Milvus at a URI (pymilvus loads only then)."""
    if settings.store == "lance":
        return LanceStore(settings.tables_dir, AnnConfig(min_rows=settings.ann_min_rows))
    from mmsearch.store.milvus import MilvusConfig, MilvusStore, parse_store_setting

    _, uri = parse_store_setting(settings.store)
    return MilvusStore(MilvusConfig(uri, index=settings.milvus_index))


@dataclass
class AppSearchResult:
    result: SearchResult
    spell_mode: str  # the application's spell_correction mode
    corrected_query: str  # "" when nothing needed correcting


class MMSearch:
    """`encoder` given: used as is (None = no vlm channel). Not given: `MMSEARCH_CLIP_MODEL` is loaded on
    first use; if it cannot be, the vlm channel is unavailable and `encoder_status()` says why."""

    def __init__(self, settings: Settings | None = None, encoder: Encoder | None = _UNSET) -> None:
        self.settings = settings or get_settings()
        self._encoder: Encoder | None = None if encoder is _UNSET else encoder
        self._encoder_loaded = encoder is not _UNSET
        self._encoder_ready = self._encoder_loaded
        self._encoder_message = "" if encoder is _UNSET or encoder is not None else "no encoder given"
        self._ocr: Any = None
        self._ocr_cache: Any = None
        self._fetcher: Fetcher | None = None
        self._summarizer: Summarizer | None = None
        self._lock = threading.Lock()
        make_home(self.settings.home)  # 0700 when we create it: the catalog holds secrets
        self.catalog = Catalog(self.settings.catalog_dsn, shared=self.settings.shares_state)
        self.store = _make_store(self.settings)
        self._spell: Any = None
        set_decode_limit(self.settings.max_concurrent_decodes)  # one gate per process, shared by engines

    # -- models ---------------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder | None:
        with self._lock:
            if not self._encoder_loaded:
                self._encoder_loaded = True
                model = self.settings.clip_model
                if model.strip().lower() == "none":
                    self._encoder_message = "disabled (MMSEARCH_CLIP_MODEL=none)"
                else:
                    from mmsearch.encoders.clip import ModelUnavailable, load_clip

                    try:
                        self._encoder = load_clip(
                            model, providers=self.settings.clip_providers, threads=self.settings.threads
                        )
                    except ModelUnavailable as exc:
                        self._encoder_message = exc.message
            self._encoder_ready = True  # set once the model is loaded (or found missing), not while it loads
        return self._encoder

    def answers_from_memory(self, app_id: str, dataset_id: str) -> bool:
        """Whether the application's text search of this dataset is only CPU over what is loaded: the model (or
        none), the spelling vocabulary when the application corrects, and the dataset's serving index with
        nothing to catch up. The application's row comes from a 1 s cache. One read remains for a correcting
        application: the vocabulary asks the table for its version number (~0.4 ms at 100k)."""
        if not self._encoder_ready:
            return False
        try:
            spelling = self.catalog.apps.cached(app_id).config.spell_correction != "off"
        except MMSearchError:
            return False  # the search itself says what is wrong
        if spelling and (self._spell is None or not self._spell.ready(dataset_id)):
            return False
        return self.store.in_memory(dataset_id)

    def encoder_status(self) -> dict[str, Any]:
        enc = self.encoder
        return {
            "model": getattr(enc, "model_id", self.settings.clip_model),
            "available": enc is not None,
            "dim": enc.dim if enc is not None else None,
            "providers": list(getattr(enc, "providers", []) or []),
            "message": "" if enc is not None else self._encoder_message,
        }

    @property
    def ocr(self) -> Any:
        """The OCR engine when `MMSEARCH_OCR` is on (RapidOCR loads on first read)."""
        if self.settings.ocr and self._ocr is None:
            from mmsearch.encoders.ocr import OcrEngine

            self._ocr = OcrEngine(threads=self.settings.threads, workers=self.settings.ocr_workers)
        return self._ocr if self.settings.ocr else None

    @property
    def ocr_cache(self) -> Any:
        """OCR text by picture hash under the home (`ocr-cache.sqlite3`), so a picture is read once per machine."""
        ocr = self.ocr
        if ocr is None:
            return None
        if self._ocr_cache is None:
            from mmsearch.encoders.ocr_cache import OCR_CACHE_FILE, OcrCache

            self._ocr_cache = OcrCache(self.settings.home / OCR_CACHE_FILE, ocr.version)
        return self._ocr_cache

    @property
    def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            self._fetcher = Fetcher(FetchConfig(allow_private=self.settings.allow_private_networks))
        return self._fetcher

    def load_image(self, ref: str, field: str = "image") -> Any:
        """A data URI, an http(s) URL (SSRF-guarded) or a path under `MMSEARCH_IMAGE_ROOTS`."""
        return load_image_ref(ref, self.fetcher, self.settings.image_root_paths, field=field,
                              max_pixels=self.settings.max_image_pixels)

    def _model_for(self, info: DatasetInfo) -> Encoder | None:
        """The image model, when its vectors fit the dataset (a mismatch fails before any item is read)."""
        encoder = self.encoder
        if encoder is not None and encoder.dim != info.vector_dim:
            raise InvalidArgument(
                f"dataset {info.id!r} stores {info.vector_dim}-d vectors but the model {encoder.model_id} gives "
                f"{encoder.dim}-d; create the dataset with --dim {encoder.dim} or set MMSEARCH_CLIP_MODEL",
                field="dataset_id",
            )
        return encoder

    def image_indexer(self, info: DatasetInfo) -> ImageIndexer | None:
        if not info.schema.images:
            return None
        encoder = self._model_for(info)
        ocr = self.ocr if info.schema.ocr else None
        return ImageIndexer(info, self.load_image, encoder=encoder, ocr=ocr, workers=self.settings.fetch_workers,
                            ocr_cache=self.ocr_cache if ocr is not None else None)

    def video_config(self) -> VideoConfig:
        from mmsearch.ingest.videos import VideoConfig
        from mmsearch.media.video import VideoLimits

        st = self.settings
        limits = VideoLimits(max_bytes=st.video_max_bytes, max_seconds=st.video_max_seconds,
                             max_pixels=st.video_max_pixels)
        return VideoConfig(limits=limits, fps=st.video_fps, max_gap=st.video_max_gap_s,
                           band_every=st.video_band_every_s)

    def open_media(self, ref: str, field: str = "video") -> AbstractContextManager[Path]:
        """A video or subtitle file on disk: a path under the media roots, or a URL streamed to a temporary file."""
        return media_file(ref, self.fetcher, self.settings.image_root_paths, field=field,
                          max_bytes=self.settings.video_max_bytes,
                          download_timeout=self.settings.video_download_timeout_s)

    @property
    def summarizer(self) -> Summarizer:
        """Generated titles and summaries: extractive, or by the chat model at MMSEARCH_LLM_URL when set."""
        if self._summarizer is None:
            from mmsearch.ingest.summarize import LlmConfig, Summarizer

            self._summarizer = Summarizer(LlmConfig.from_settings(self.settings))
        return self._summarizer

    def video_indexer(
        self, info: DatasetInfo, on_progress: Callable[[VideoProgress], None] | None = None
    ) -> VideoIndexer | None:
        if info.type != "video":
            return None
        from mmsearch.ingest.videos import VideoIndexer

        encoder = self._model_for(info) if info.schema.videos else None
        ocr = self.ocr if info.schema.ocr and info.schema.videos else None
        return VideoIndexer(info, self.open_media, encoder=encoder, ocr=ocr, summarizer=self.summarizer,
                            config=self.video_config(), ocr_cache=self.ocr_cache if ocr is not None else None,
                            on_progress=on_progress)

    def default_dim(self) -> int:
        if self.settings.vector_dim:
            return self.settings.vector_dim
        if self.encoder is not None:
            return self.encoder.dim
        from mmsearch.encoders.clip import KNOWN_DIMS

        return KNOWN_DIMS.get(self.settings.clip_model, FALLBACK_DIM)

    # -- datasets -------------------------------------------------------------------------------------
    def create_dataset(
        self, dataset_id: str, schema: Any, type: str = "image_text", vector_dim: int | None = None
    ) -> DatasetInfo:
        dim = vector_dim or self.default_dim()
        if isinstance(dim, bool) or not isinstance(dim, int) or not 2 <= dim <= 8192:
            raise InvalidArgument("vector_dim: must be an integer in [2, 8192]", field="vector_dim")
        info = DatasetInfo(
            id=check_dataset_id(dataset_id), type=check_dataset_type(type),
            schema=parse_schema(schema), vector_dim=dim,
        )
        if self.catalog.has_dataset(info.id):
            raise AlreadyExists(f"dataset_id: dataset {info.id!r} already exists", field="dataset_id")
        self.store.drop(info.id)  # a table left behind by an interrupted create or drop
        self.store.create(info)
        try:
            self.catalog.add_dataset(info)
        except Exception:
            self.store.drop(info.id)
            raise
        return info

    def dataset(self, dataset_id: str) -> DatasetInfo:
        return self.catalog.dataset(dataset_id)

    def set_dictionary(self, dataset_id: str, words: list[str]) -> DatasetInfo:
        """The dataset's user words for segmentation. Queries use them at once; items are tokenised when
        imported, so items imported before a word was added keep their tokens until imported again (a query
        for the word still finds them through its characters: store/serving/index.py's back-off)."""
        if not isinstance(words, list | tuple):
            raise InvalidArgument("dictionary: must be a list of words", field="dictionary")
        return self.catalog.set_dictionary(dataset_id, list(words))

    def datasets(self) -> list[DatasetInfo]:
        return self.catalog.datasets()

    def drop_dataset(self, dataset_id: str) -> None:
        apps = self.catalog.apps.using_dataset(dataset_id)
        if apps:
            raise InvalidArgument(
                f"dataset_id: dataset {dataset_id!r} is bound to application(s) {', '.join(apps)}; "
                "unbind or drop them first", field="dataset_id",
            )
        self.catalog.remove_dataset(dataset_id)
        self.store.drop(dataset_id)

    def stats(self, dataset_id: str) -> dict[str, Any]:
        return self.store.stats(self.dataset(dataset_id))

    # -- items ----------------------------------------------------------------------------------------
    def import_items(
        self,
        dataset_id: str,
        items: Iterable[Any],
        batch_size: int = 1_000,
        on_progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """Import plain dicts (or (index, item) pairs from a reader)."""
        info = self.dataset(dataset_id)
        pairs = (x if isinstance(x, tuple) else (i, x) for i, x in enumerate(items))
        return import_items(
            info, pairs, self.store, batch_size=batch_size, on_progress=on_progress, images=self.image_indexer(info),
            videos=self.video_indexer(info),
        )

    def import_file(
        self, dataset_id: str, path: Path, batch_size: int = 1_000, on_progress: Callable[[int], None] | None = None
    ) -> ImportReport:
        info = self.dataset(dataset_id)
        return import_items(
            info, read_items(Path(path), info.schema), self.store, batch_size=batch_size, on_progress=on_progress,
            images=self.image_indexer(info), videos=self.video_indexer(info),
        )

    def delete(self, dataset_id: str, ids: list[str]) -> int:
        require_valid_unicode(ids, "ids")  # an id the engine cannot encode is no id it holds
        return self.store.delete(self.dataset(dataset_id), ids)

    def get(self, dataset_id: str, ids: list[str]) -> list[dict[str, Any]]:
        return self.store.get(self.dataset(dataset_id), ids)

    def export(self, dataset_id: str, path: Path, vectors: bool = False,
               on_progress: Callable[[int], None] | None = None) -> int:
        """The dataset's items as imported, to a .jsonl or .parquet file (`_vector` too with `vectors`)."""
        from mmsearch.ingest.export import export_items

        info = self.dataset(dataset_id)
        return export_items(self.store.iter_items(info, vectors), path, vectors, on_progress)

    def sample(self, dataset_id: str, n: int = 10) -> list[tuple[str, dict[str, Any]]]:
        """The first `n` items in storage order, with their ids: a look at what a dataset holds."""
        info = self.dataset(dataset_id)
        ids = next(iter(self.store.scan(info, ["_id"], batch_rows=max(1, n))), {"_id": []})["_id"][:n]
        found = self.store.get_many(info, ids)
        return [(i, found[i]) for i in ids if i in found]

    # -- search ---------------------------------------------------------------------------------------
    def options(self) -> SearchOptions:
        s = self.settings
        return SearchOptions(
            recall_size=s.recall_size, weights={"text": s.text_weight, "vlm": s.vlm_weight},
            fusion=s.fusion,  # type: ignore[arg-type]
            limits=self.limits(),
        )

    def limits(self) -> RequestLimits:
        s = self.settings
        return RequestLimits(max_query_chars=s.max_query_chars, filter=FilterLimits(
            max_conditions=s.max_filter_conditions, max_values=s.max_filter_values, max_chars=s.max_filter_chars,
        ))

    def search(self, dataset_id: str, request: SearchRequest, options: SearchOptions | None = None) -> SearchResult:
        info = self.catalog.dataset_cached(dataset_id)  # cached briefly, as in search_app
        return search(request, info, self.store, self.encoder, options or self.options())

    # -- applications -------------------------------------------------------------------------------
    @property
    def spell(self) -> Any:
        if self._spell is None:
            from mmsearch.search.vocab import SpellCheckers

            self._spell = SpellCheckers(self.store)
        return self._spell

    def app_options(self, config: AppConfig) -> SearchOptions:
        base = self.options()
        weights = dict(base.weights)
        if config.text_weight is not None:
            weights["text"] = config.text_weight
        if config.vlm_weight is not None:
            weights["vlm"] = config.vlm_weight
        geo = None
        if config.location is not None:
            from mmsearch.search.types import GeoOptions

            loc = config.location
            geo = GeoOptions(field=loc.field, radius_km=loc.radius_km, decay=loc.decay, weight=loc.weight,
                             mode=loc.mode)
        return dataclasses.replace(
            base, recall_size=config.recall_size or base.recall_size, weights=weights,
            fusion=config.fusion or base.fusion, rerank=config.rerank, rerank_depth=config.rerank_depth, geo=geo,
            synonyms=tuple(tuple(group) for group in config.synonyms),
            field_weights=dict(config.field_weights) or None,
        )

    def search_app(
        self, app_id: str, dataset_id: str, request: SearchRequest, user_id: str | None = None,
        request_id: str = "",
    ) -> AppSearchResult:
        """The application search of the AI Search spec: the app's limits, ranking, spelling and query log."""
        started = time.perf_counter()
        check_request(request, self.limits())  # spelling and the query log cost work in proportion to the text
        # both rows cached briefly (catalog/cache.py): writes in this process clear them, another process's apply
        # within a second
        app: Application = self.catalog.apps.cached(app_id)
        if not isinstance(dataset_id, str) or not dataset_id:
            raise InvalidArgument("dataset_id: is required", field="dataset_id")
        info = self.catalog.dataset_cached(dataset_id)
        if dataset_id not in app.datasets:
            raise InvalidArgument(
                f"dataset_id: dataset {dataset_id!r} is not bound to application {app_id!r}", field="dataset_id"
            )
        cfg = app.config
        size = request.page_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= cfg.max_page_size:
            raise InvalidArgument(f"page_size: must be an integer in [1, {cfg.max_page_size}] "
                                  "(the application's max_page_size)", field="page_size")
        if info.type == "video" and (request.image is not None or request.vector is not None):
            raise InvalidArgument("query.image_url: applications over video datasets do not support image search",
                                  field="query.image_url")
        text = (request.text or "").strip()
        corrected = ""  # "" when nothing needed correcting (or the application does not correct)
        if cfg.spell_correction != "off" and text:
            # pypinyin and symspellpy (~0.6 s to import) load with the first application that corrects spelling
            from mmsearch.search.spell import apply_spell_correction

            spelling = apply_spell_correction(text, cfg.spell_correction, self.spell.get(info))
            if spelling.query != text:
                request = dataclasses.replace(request, text=spelling.query)
            corrected = spelling.corrected_query
        result = search(request, info, self.store, self.encoder, self.app_options(cfg))
        self.catalog.query_log.record(QueryLogEntry(
            request_id=request_id, app_id=app_id, dataset_id=dataset_id, user_id=user_id,
            query_text=text or None, has_image=request.image is not None or request.vector is not None,
            corrected_query=corrected or None, latency_ms=(time.perf_counter() - started) * 1000,
            total_items=result.total_items, result_count=len(result.hits),
        ))
        return AppSearchResult(result=result, spell_mode=cfg.spell_correction, corrected_query=corrected)
