"""Field types and schema rules; a schema that breaks a rule is refused at dataset creation."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmsearch.errors import InvalidArgument

OCR_FIELD = "_ocr"  # the text read from an item's images, searched as a field of its own
# What a video dataset adds to each item (ingest/videos.py): the spec's two generated fields (returned in display
# fields and searched), the words said or shown in the video (searched as a field of its own), and where a hit
# matched (returned only).
VIDEO_TITLE = "_video_generated_title"
VIDEO_SUMMARY = "_video_generated_summary"
TRANSCRIPT_FIELD = "_transcript"
VIDEO_MOMENTS = "_video_moments"
RESERVED_NAMES = frozenset({OCR_FIELD, VIDEO_TITLE, VIDEO_SUMMARY, TRANSCRIPT_FIELD, VIDEO_MOMENTS})
MEDIA_TYPES = ("image", "video", "subtitle")  # references to media files (subtitle: a sidecar .srt/.vtt/.ass)
MAX_DICTIONARY_WORDS = 10_000
_CJK_WORD = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,32}$")


def check_dictionary(words: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A dataset's user words: 2-32 Chinese characters each (jieba segments Chinese runs only: Latin words and
    digits are already whole), repeats dropped, order kept."""
    out: dict[str, None] = {}
    for n, word in enumerate(words):
        w = unicodedata.normalize("NFKC", word).strip() if isinstance(word, str) else word
        if not isinstance(w, str) or not _CJK_WORD.match(w):
            raise ValueError(f"word {n} ({word!r}) must be 2-32 Chinese characters (a brand or product line "
                             "jieba should keep whole)")
        out[w] = None
    return tuple(out)

SCALAR_TYPES = ("int32", "int64", "float", "bool", "string")
ARRAY_TYPES = tuple(f"array<{t}>" for t in SCALAR_TYPES)
OTHER_TYPES = ("object", "array<object>", "image", "video", "subtitle", "geo_point")
OBJECT_TYPES = ("object", "array<object>", "image")  # values a sort path (`field.sub`) can walk into
ALL_TYPES = SCALAR_TYPES + ARRAY_TYPES + OTHER_TYPES
NUMERIC_TYPES = ("int32", "int64", "float")
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
DATASET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DATASET_TYPES = ("image_text", "video", "web")  # web: images found on web pages (IQS MultimodalSearch)

DEFAULT_MAX_LENGTH = 65_536  # characters of a string value
DEFAULT_MAX_ITEMS = 1_024  # elements of an array value
PRIMARY_KEY_MAX_LENGTH = 128
IMAGE_REF_MAX_LENGTH = 14_000_000  # a data URI of a 10 MB image


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str
    primary_key: bool = False
    required: bool = False
    searchable: bool = False
    filterable: bool = False
    sortable: bool = False
    sortable_paths: tuple[str, ...] = ()
    max_length: int | None = Field(default=None, ge=1)
    max_items: int | None = Field(default=None, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not FIELD_NAME.match(v):
            raise ValueError("must match [A-Za-z_][A-Za-z0-9_]{0,63} (letters, digits, underscore)")
        if v in RESERVED_NAMES:
            raise ValueError(f"{v!r} is reserved: mmsearch writes that field itself (see the README's video section)")
        return v

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        v = v.strip().lower().replace(" ", "")
        if v not in ALL_TYPES:
            raise ValueError(f"unknown type; use one of {', '.join(ALL_TYPES)}")
        return v

    @model_validator(mode="after")
    def _flags(self) -> FieldSpec:
        t = self.type
        if self.primary_key and t not in ("string", "int32", "int64"):
            raise ValueError("primary_key must be a string, int32 or int64 field")
        if self.searchable and t not in ("string", "array<string>"):
            raise ValueError("searchable applies to string and array<string> fields only")
        if self.filterable and t not in SCALAR_TYPES + ARRAY_TYPES:
            raise ValueError("filterable applies to int32, int64, float, bool, string and array<...> fields")
        if self.sortable and t not in SCALAR_TYPES:
            raise ValueError("sortable applies to int32, int64, float, bool and string fields")
        if self.sortable_paths and t not in OBJECT_TYPES:
            raise ValueError("sortable_paths applies to object, array<object> and image fields only")
        for path in self.sortable_paths:
            if not all(FIELD_NAME.match(p) for p in path.split(".")):
                raise ValueError(f"sortable_paths entry {path!r} must be dot-separated field names")
        return self

    @property
    def is_array(self) -> bool:
        return self.type.startswith("array<")

    @property
    def element_type(self) -> str:
        return self.type[6:-1] if self.is_array else self.type

    @property
    def value_max_length(self) -> int:
        if self.primary_key:
            return min(self.max_length or PRIMARY_KEY_MAX_LENGTH, PRIMARY_KEY_MAX_LENGTH)
        if self.type in MEDIA_TYPES:
            return self.max_length or IMAGE_REF_MAX_LENGTH
        return self.max_length or DEFAULT_MAX_LENGTH

    @property
    def value_max_items(self) -> int:
        return self.max_items or DEFAULT_MAX_ITEMS


class DatasetSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: tuple[FieldSpec, ...]
    ocr: bool = True  # read text inside this dataset's images at import (when OCR is on for the server)
    # words jieba keeps whole in this dataset (brand names, product lines): see text.UserWords
    dictionary: tuple[str, ...] = Field(default=(), max_length=MAX_DICTIONARY_WORDS)

    @field_validator("dictionary")
    @classmethod
    def _words(cls, words: tuple[str, ...]) -> tuple[str, ...]:
        return check_dictionary(words)

    @model_validator(mode="after")
    def _rules(self) -> DatasetSchema:
        if not self.fields:
            raise ValueError("a schema needs at least one field")
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"duplicate field name {f.name!r}")
            seen.add(f.name)
        pks = [f.name for f in self.fields if f.primary_key]
        if not pks:
            raise ValueError("primary_key: no field is the primary key; exactly one field must set primary_key")
        if len(pks) > 1:
            raise ValueError(
                f"primary_key: fields {', '.join(map(repr, pks))} are all primary keys; exactly one may be"
            )
        return self

    @property
    def primary_key(self) -> FieldSpec:
        return next(f for f in self.fields if f.primary_key)

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def searchable(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.searchable]

    @property
    def filterable(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.filterable]

    @property
    def columns(self) -> list[FieldSpec]:
        """Fields an engine keeps in typed columns: filterable ones (filters) and sortable ones (sorting
        candidates without reading whole documents)."""
        return [f for f in self.fields if f.filterable or f.sortable]

    @property
    def images(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.type == "image"]

    @property
    def videos(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.type == "video"]

    @property
    def subtitles(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.type == "subtitle"]

    def sortable_keys(self) -> list[str]:
        """The declared sort keys: fields marked sortable (a typed column: fast) and declared object paths. Any
        other scalar field and any path into an object field sorts too (see `sort_problem`)."""
        keys = [f.name for f in self.fields if f.sortable or (f.primary_key and f.type in SCALAR_TYPES)]
        keys += [f"{f.name}.{p}" for f in self.fields for p in f.sortable_paths]
        return keys

    def sort_problem(self, sort_by: str) -> str | None:
        """Why `sort_by` cannot be a sort key, or None. The spec allows any basic-type field and any path into an
        object (`product.price`; in an array<object>, `skus.price`: the smallest value sorts ascending, the
        largest descending)."""
        name, _, path = sort_by.partition(".")
        spec = self.field(name)
        if spec is None:
            return "does not exist in the dataset"
        if not path:
            return None if spec.type in SCALAR_TYPES else f"is a {spec.type} field; sort by a basic-type field"
        if spec.type not in OBJECT_TYPES:
            return f"is a {spec.type} field; only object fields have paths"
        if not all(FIELD_NAME.match(p) for p in path.split(".")):
            return "path must be dot-separated field names"
        return None


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_schema(raw: Any) -> DatasetSchema:
    """Validate a schema given as JSON; the error names the offending field and rule."""
    try:
        return DatasetSchema.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _location(err["loc"]) or "schema"
        if err["loc"] and err["loc"][0] == "fields" and len(err["loc"]) > 1 and isinstance(raw, dict):
            try:
                name = raw["fields"][err["loc"][1]].get("name")
                where = f"{where} ({name})" if name else where
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        msg = err["msg"].removeprefix("Value error, ")
        prefix = "schema" if where == "schema" else f"schema: {where}"
        raise InvalidArgument(f"{prefix}: {msg}", field=where) from None


DatasetType = Literal["image_text", "video", "web"]


@dataclass(frozen=True)
class DatasetInfo:
    """What the store and the pipeline need to know about a dataset."""

    id: str
    type: DatasetType
    schema: DatasetSchema
    vector_dim: int


def check_dataset_id(dataset_id: str) -> str:
    if not isinstance(dataset_id, str) or not DATASET_ID.match(dataset_id):
        raise InvalidArgument(
            f"dataset_id: {dataset_id!r} must match [A-Za-z0-9_-]{{1,64}}", field="dataset_id"
        )
    return dataset_id


def check_dataset_type(dataset_type: str) -> DatasetType:
    if dataset_type not in DATASET_TYPES:
        raise InvalidArgument(
            f"type: {dataset_type!r} is not a dataset type; use image_text, video or web", field="type"
        )
    return dataset_type  # type: ignore[return-value]
