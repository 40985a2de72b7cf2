"""Settings from `MMSEARCH_*` environment variables; one object shared by the CLI and the server."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CLIP_MODEL = "immich-app/XLM-Roberta-Large-Vit-B-16Plus"  # see docs/models.md
FALLBACK_DIM = 512


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MMSEARCH_", extra="ignore")

    home: Path = Field(default=Path("./mmsearch-data"), description="data directory (tables, catalog)")
    recall_size: int = Field(default=200, ge=1, le=10_000, description="candidates per recall channel")
    text_weight: float = Field(default=0.5, ge=0.0, description="fusion weight of the text channel")
    vlm_weight: float = Field(default=0.5, ge=0.0, description="fusion weight of the vlm channel")
    fusion: str = Field(default="weighted", pattern="^(weighted|rrf)$")
    ann_min_rows: int = Field(
        default=50_000, ge=256, description="rows with a vector before an ANN index replaces exact search"
    )
    vector_dim: int | None = Field(
        default=None, ge=2, le=8192, description="embedding dimension of new datasets (default: the model's)"
    )
    clip_model: str = Field(
        default=DEFAULT_CLIP_MODEL, description="Hugging Face repo id, local directory, or 'none'"
    )
    clip_providers: str = Field(default="cpu", pattern="^(cpu|auto)$", description="'auto' uses CUDA when present")
    threads: int | None = Field(default=None, ge=1, le=256, description="ONNX Runtime intra-op threads")
    ocr: bool = Field(default=True, description="read text inside images at import (datasets may turn it off)")
    image_roots: str = Field(default="", description="os.pathsep-separated folders local image paths may come from")
    allow_private_networks: bool = Field(default=False, description="let the fetcher reach private addresses")
    fetch_workers: int = Field(default=8, ge=1, le=128, description="concurrent image downloads per import")
    admin_token: str | None = Field(
        default=None, description="credential for management endpoints (default: generated, kept in HOME/admin_token)"
    )
    volc_service: str = Field(default="aisearch", description="service name expected in V4 request signatures")
    volc_region: str = Field(default="cn-beijing", description="region expected in V4 request signatures")
    signature_max_skew_s: int = Field(default=900, ge=1, le=86_400, description="accepted clock skew of X-Date")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="request body limit (the spec: 10 MB)")
    max_import_body_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="body limit of item upserts on the management API"
    )
    web_dataset: str = Field(default="web", description="the dataset /search/multimodal answers from")
    iqs_results: int = Field(default=20, ge=1, le=100, description="images per /search/multimodal answer")
    iqs_timeout_s: float = Field(default=5.0, gt=0, le=120, description="server-side timeout of /search/multimodal")

    @property
    def image_root_paths(self) -> list[Path]:
        return [Path(p) for p in self.image_roots.split(os.pathsep) if p.strip()]

    @property
    def catalog_url(self) -> str:
        return f"sqlite:///{(self.home / 'catalog.sqlite3').resolve()}"

    @property
    def tables_dir(self) -> Path:
        return self.home / "tables"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
