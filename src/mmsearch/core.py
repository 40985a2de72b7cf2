"""The library entry point: a catalog, a store and an optional encoder behind one object.

    from mmsearch.core import MMSearch
    mm = MMSearch()                       # MMSEARCH_HOME or ./mmsearch-data
    mm.create_dataset("shoes", schema)
    mm.import_items("shoes", [{"item_id": "1", "title": "运动鞋"}])
    mm.search("shoes", SearchRequest(text="鞋"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mmsearch.catalog import Catalog
from mmsearch.config import Settings, get_settings
from mmsearch.encoders.base import Encoder
from mmsearch.errors import AlreadyExists, InvalidArgument
from mmsearch.ingest import ImportReport, import_items, read_items
from mmsearch.schema.fields import DatasetInfo, check_dataset_id, check_dataset_type, parse_schema
from mmsearch.search import SearchOptions, SearchRequest, SearchResult, search
from mmsearch.store.lance import AnnConfig, LanceStore


class MMSearch:
    def __init__(self, settings: Settings | None = None, encoder: Encoder | None = None) -> None:
        self.settings = settings or get_settings()
        self.encoder = encoder
        self.catalog = Catalog(self.settings.catalog_url)
        self.store = LanceStore(self.settings.tables_dir, AnnConfig(min_rows=self.settings.ann_min_rows))

    # -- datasets -------------------------------------------------------------------------------------
    def create_dataset(
        self, dataset_id: str, schema: Any, type: str = "image_text", vector_dim: int | None = None
    ) -> DatasetInfo:
        dim = vector_dim or (self.encoder.dim if self.encoder else self.settings.vector_dim)
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

    def datasets(self) -> list[DatasetInfo]:
        return self.catalog.datasets()

    def drop_dataset(self, dataset_id: str) -> None:
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
        return import_items(info, pairs, self.store, batch_size=batch_size, on_progress=on_progress)

    def import_file(
        self, dataset_id: str, path: Path, batch_size: int = 1_000, on_progress: Callable[[int], None] | None = None
    ) -> ImportReport:
        info = self.dataset(dataset_id)
        return import_items(
            info, read_items(Path(path), info.schema), self.store, batch_size=batch_size, on_progress=on_progress
        )

    def delete(self, dataset_id: str, ids: list[str]) -> int:
        return self.store.delete(self.dataset(dataset_id), ids)

    def get(self, dataset_id: str, ids: list[str]) -> list[dict[str, Any]]:
        return self.store.get(self.dataset(dataset_id), ids)

    # -- search ---------------------------------------------------------------------------------------
    def options(self) -> SearchOptions:
        s = self.settings
        return SearchOptions(
            recall_size=s.recall_size, weights={"text": s.text_weight, "vlm": s.vlm_weight},
            fusion=s.fusion,  # type: ignore[arg-type]
        )

    def search(self, dataset_id: str, request: SearchRequest, options: SearchOptions | None = None) -> SearchResult:
        return search(request, self.dataset(dataset_id), self.store, self.encoder, options or self.options())
