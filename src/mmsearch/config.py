"""Settings from `MMSEARCH_*` environment variables; one object shared by the CLI and the server."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    vector_dim: int = Field(default=512, ge=2, le=8192, description="default embedding dimension")

    @property
    def catalog_url(self) -> str:
        return f"sqlite:///{(self.home / 'catalog.sqlite3').resolve()}"

    @property
    def tables_dir(self) -> Path:
        return self.home / "tables"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
