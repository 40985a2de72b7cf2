"""Applications: a named search endpoint over one or more datasets, with its own ranking settings."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mmsearch.catalog.cache import ReadCache
from mmsearch.catalog.models import AppDatasetRow, ApplicationRow, DatasetRow, KeyAppRow, aware, require, utcnow
from mmsearch.errors import AlreadyExists, InvalidArgument
from mmsearch.schema.fields import OCR_FIELD, TRANSCRIPT_FIELD, VIDEO_SUMMARY, VIDEO_TITLE, parse_schema

_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class LocationConfig(BaseModel):
    """Boost (or demote) items near the user: weight * decay(distance / radius_km) is added to the score."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="the dataset's geo_point field")
    radius_km: float = Field(default=10.0, gt=0, le=20_000)
    decay: Literal["linear", "exp", "gauss"] = "gauss"
    weight: float = Field(default=0.3, ge=0, le=10)
    mode: Literal["boost", "demote"] = "boost"


Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AppConfig(BaseModel):
    """What the spec calls the console settings of an application. None = the server's default."""

    model_config = ConfigDict(extra="forbid")

    max_page_size: int = Field(default=10, ge=1, le=100, description="the largest page_size a request may ask for")
    recall_size: int | None = Field(default=None, ge=1, le=10_000, description="candidates per recall channel")
    text_weight: float | None = Field(default=None, ge=0)
    vlm_weight: float | None = Field(default=None, ge=0)
    fusion: Literal["weighted", "rrf"] | None = None
    spell_correction: Literal["off", "suggestion_only", "auto"] = "off"
    rerank: bool = True
    rerank_depth: int = Field(default=50, ge=1, le=1_000)
    location: LocationConfig | None = None
    synonyms: list[Annotated[list[Phrase], Field(min_length=2, max_length=50)]] = Field(
        default_factory=list, max_length=1_000,
        description="groups of equivalent phrases searched together, e.g. [[\"耐克\", \"nike\"]]",
    )
    field_weights: dict[FieldName, Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]] = Field(
        default_factory=dict, max_length=64,
        description="the text channel's weight per searchable field (`_ocr`: text read from images), e.g. "
        "{\"title\": 3, \"description\": 1}; a field left out keeps its default (the title-like field 2, "
        "others 1, `_ocr` 0.5); 0 leaves a field out",
    )


def parse_app_config(raw: object) -> AppConfig:
    if raw is None:
        return AppConfig()
    if isinstance(raw, AppConfig):
        return raw
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise InvalidArgument(f"config.{where}: {first['msg']}", field=f"config.{where}") from None


@dataclass(frozen=True)
class Application:
    id: str
    datasets: list[str]
    config: AppConfig
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "datasets": self.datasets, "config": self.config.model_dump(),
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }


def check_app_id(app_id: str) -> str:
    if not isinstance(app_id, str) or not _APP_ID.match(app_id):
        raise InvalidArgument(
            f"application_id: {app_id!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or "
            "digit", field="application_id",
        )
    return app_id


class Apps:
    def __init__(self, engine: Engine, cache: ReadCache | None = None) -> None:
        self.engine = engine
        self.cache = cache or ReadCache()  # shared with the catalog's datasets: cleared by every write

    def _check_datasets(self, s: Session, datasets: list[str]) -> list[str]:
        if not datasets:
            raise InvalidArgument("datasets: an application needs at least one dataset", field="datasets")
        out: list[str] = []
        for ds in datasets:
            require(s, DatasetRow, ds, "datasets", "dataset")
            if ds not in out:
                out.append(ds)
        return out

    @staticmethod
    def _check_field_weights(s: Session, config: AppConfig, datasets: list[str]) -> None:
        """Each weighted name is a searchable field of one of the datasets (or `_ocr`; for a video
        dataset also its generated fields and `_transcript`): a typo is an error, not
        a setting that silently does nothing."""
        if not config.field_weights:
            return
        known = {OCR_FIELD}
        for ds in datasets:
            row = s.get(DatasetRow, ds)
            if row is not None:
                known |= {f.name for f in parse_schema(json.loads(row.schema_json)).searchable}
                if row.type == "video":
                    known |= {VIDEO_TITLE, VIDEO_SUMMARY, TRANSCRIPT_FIELD}
        for name in config.field_weights:
            if name not in known:
                raise InvalidArgument(
                    f"config.field_weights.{name}: {name!r} is not a searchable field of the application's datasets "
                    f"(known: {', '.join(sorted(known))})", field=f"config.field_weights.{name}")

    def create(self, app_id: str, datasets: list[str], config: object = None) -> Application:
        check_app_id(app_id)
        cfg = parse_app_config(config)
        try:
            with Session(self.engine) as s, s.begin():
                if s.get(ApplicationRow, app_id) is not None:
                    raise AlreadyExists(f"application_id: application {app_id!r} already exists",
                                        field="application_id")
                bound = self._check_datasets(s, datasets)
                self._check_field_weights(s, cfg, bound)
                s.add(ApplicationRow(id=app_id, config_json=cfg.model_dump_json()))
                s.flush()
                s.add_all(AppDatasetRow(app_id=app_id, dataset_id=ds) for ds in bound)
        except IntegrityError:
            raise AlreadyExists(f"application_id: application {app_id!r} already exists",
                                field="application_id") from None
        self.cache.clear()
        return self.get(app_id)

    def update(self, app_id: str, datasets: list[str] | None = None, config: object = None) -> Application:
        with Session(self.engine) as s, s.begin():
            row = require(s, ApplicationRow, app_id, "application_id", "application")
            cfg = parse_app_config(config if config is not None else json.loads(row.config_json))
            if config is not None:
                row.config_json = cfg.model_dump_json()
            if datasets is not None:
                bound = self._check_datasets(s, datasets)
                s.execute(delete(AppDatasetRow).where(AppDatasetRow.app_id == app_id))
                s.add_all(AppDatasetRow(app_id=app_id, dataset_id=ds) for ds in bound)
            else:
                q = select(AppDatasetRow.dataset_id).where(AppDatasetRow.app_id == app_id)
                bound = list(s.scalars(q))
            self._check_field_weights(s, cfg, bound)
            row.updated_at = utcnow()
        self.cache.clear()
        return self.get(app_id)

    def get(self, app_id: str) -> Application:
        with Session(self.engine) as s:
            row = require(s, ApplicationRow, app_id, "application_id", "application")
            return self._app(s, row)

    def cached(self, app_id: str) -> Application:
        """`get` for the search path: kept for the cache's ttl, cleared by every write through this catalog."""
        return self.cache.get(("app", app_id), lambda: self.get(app_id))

    def list(self) -> list[Application]:
        with Session(self.engine) as s:
            return [self._app(s, row) for row in s.scalars(select(ApplicationRow).order_by(ApplicationRow.id))]

    def remove(self, app_id: str) -> None:
        with Session(self.engine) as s, s.begin():
            row = require(s, ApplicationRow, app_id, "application_id", "application")
            s.execute(delete(AppDatasetRow).where(AppDatasetRow.app_id == app_id))
            s.execute(delete(KeyAppRow).where(KeyAppRow.app_id == app_id))  # a re-created app starts unkeyed
            s.delete(row)
        self.cache.clear()

    def using_dataset(self, dataset_id: str) -> list[str]:
        with Session(self.engine) as s:
            q = select(AppDatasetRow.app_id).where(AppDatasetRow.dataset_id == dataset_id)
            return list(s.scalars(q.order_by(AppDatasetRow.app_id)))

    @staticmethod
    def _app(s: Session, row: ApplicationRow) -> Application:
        q = select(AppDatasetRow.dataset_id).where(AppDatasetRow.app_id == row.id).order_by(AppDatasetRow.dataset_id)
        return Application(
            id=row.id, datasets=list(s.scalars(q)), config=AppConfig.model_validate(json.loads(row.config_json)),
            created_at=aware(row.created_at) or utcnow(), updated_at=aware(row.updated_at) or utcnow(),
        )
