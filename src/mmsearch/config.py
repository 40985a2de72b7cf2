"""Settings from `MMSEARCH_*` environment variables and an optional TOML file; one object shared by the CLI and
the server.

Precedence, highest first: keyword arguments (`Settings(home=...)`, the CLI's `--home`), `MMSEARCH_*` environment
variables, the config file, the defaults. The file is `MMSEARCH_CONFIG` when set (it must exist), else
`./mmsearch.toml` when present; its keys are the settings' names at the top level (`recall_size = 300`). The file is
strict, unlike the environment (which holds much else): an unknown key, a value breaking a rule or bad TOML is a
`ConfigError` naming the file and the key. `config_sources.py` reports where each value came from."""

from __future__ import annotations

import difflib
import os
import tomllib
from functools import lru_cache
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mmsearch.errors import MMSearchError

DEFAULT_CLIP_MODEL = "immich-app/XLM-Roberta-Large-Vit-B-16Plus"  # see docs/models.md
FALLBACK_DIM = 512
ENV_PREFIX = "MMSEARCH_"
CONFIG_ENV = "MMSEARCH_CONFIG"  # names the config file; `serve --workers` passes it on to its processes
CONFIG_FILE = "mmsearch.toml"  # read from the current directory when MMSEARCH_CONFIG is not set


class ConfigError(MMSearchError):
    """A config file that cannot be used. The message names the file and the key (`FILE: KEY: rule`), so the CLI
    prints it as its one-line error and the server refuses to start with it, instead of a traceback."""

    code = "InvalidConfig"


def config_path() -> Path | None:
    """The config file this process reads: MMSEARCH_CONFIG (an error when it does not exist: a typo there must
    not silently fall back to defaults), else ./mmsearch.toml when present. Absolute, so messages name it fully
    and `serve --workers` hands its processes the same file whatever their directory."""
    named = os.environ.get(CONFIG_ENV, "").strip()
    if named:
        path = Path(named).expanduser().absolute()
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}: {path}: " + ("not a file" if path.exists() else "no such file"),
                              field=CONFIG_ENV)
        return path
    local = Path(CONFIG_FILE).absolute()
    return local if local.is_file() else None


class ConfigFileSource(TomlConfigSettingsSource):
    """pydantic-settings' TOML source, made strict: pydantic would ignore an unknown key (`extra="ignore"` is
    there for the environment) and report a bad value without saying it came from the file. Each key is checked
    here, alone, so every error reads `FILE: KEY: rule`."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        self._settings_cls = settings_cls  # before super().__init__, which reads the file
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        try:
            data = super()._read_file(file_path)
        except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
            raise ConfigError(f"{file_path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{file_path}: cannot read it: {exc.strerror or exc}") from None
        check_file_settings(self._settings_cls, str(file_path), data)
        return data


def check_file_settings(settings_cls: type[BaseSettings], file: str, data: dict[str, Any]) -> None:
    """Raise one ConfigError listing every unknown key (with the closest setting name) and every value that
    breaks its setting's rule; each value is validated on its own, as the setting it names."""
    fields = settings_cls.model_fields
    probe = settings_cls.model_construct()  # defaults only: no sources, no validation
    problems: list[tuple[str, str]] = []
    for key, value in data.items():
        if key not in fields:
            problems.append((key, _unknown_key(key, value, list(fields))))
            continue
        try:
            settings_cls.__pydantic_validator__.validate_assignment(probe, key, value)
        except ValidationError as exc:
            problems.append((key, "; ".join(_rule(key, e["msg"]) for e in exc.errors())))
    if problems:
        raise ConfigError("; ".join(f"{file}: {key}: {rule}" for key, rule in problems), field=problems[0][0],
                          details=[{"field": key, "message": rule} for key, rule in problems])


def _unknown_key(key: str, value: Any, names: list[str]) -> str:
    if isinstance(value, dict):
        return "unknown table: settings are plain keys at the top of the file (`recall_size = 300`), no [tables]"
    wanted = key.lower().removeprefix(ENV_PREFIX.lower())  # RECALL_SIZE or MMSEARCH_RECALL_SIZE: recall_size
    close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.6)
    return "unknown setting" + (f" (did you mean {close[0]!r}?)" if close else "; `mmsearch config show` lists them")


def _rule(key: str, msg: str) -> str:
    """pydantic's message without its prefixes: validators here start theirs with the variable's name."""
    return msg.removeprefix("Value error, ").removeprefix(f"{ENV_PREFIX}{key.upper()}: ")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments > MMSEARCH_* variables > the config file > defaults. The file is looked up anew for
        every Settings() (the directory and MMSEARCH_CONFIG may change, as they do in tests). The project reads
        no .env file and no secrets directory, so those sources are left out and `config show` accounts for all."""
        return init_settings, env_settings, ConfigFileSource(settings_cls, config_path())

    home: Path = Field(default=Path("./mmsearch-data"), description="data directory (tables, catalog)")
    catalog_url: str = Field(
        default="", description="the catalog database: empty = SQLite in HOME; postgresql+psycopg://user:pw@host/db "
        "for one catalog shared by several server and worker processes"
    )
    shared_state: str = Field(
        default="auto", pattern="^(auto|memory|catalog)$", description="where throttling and replay checks count: "
        "'memory' (one process), 'catalog' (every process on the catalog together), 'auto' = catalog on PostgreSQL"
    )
    recall_size: int = Field(default=200, ge=1, le=10_000, description="candidates per recall channel")
    text_weight: float = Field(default=0.5, ge=0.0, description="fusion weight of the text channel")
    vlm_weight: float = Field(default=0.5, ge=0.0, description="fusion weight of the vlm channel")
    fusion: str = Field(default="weighted", pattern="^(weighted|rrf)$")
    store: str = Field(
        default="lance", description="the storage engine: 'lance' (embedded, under HOME/tables) or 'milvus:<uri>' "
        "(milvus:http://host:19530 for a server, milvus:/path/file.db for Milvus Lite)",
    )
    milvus_index: str = Field(default="HNSW", pattern="^(HNSW|IVF_FLAT)$", description="Milvus vector index")
    ann_min_rows: int = Field(
        default=10_000, ge=256, description="rows with a vector before an IVF index replaces exact vector search"
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
    ocr_workers: int = Field(
        default=0, ge=0, le=64, description="OCR processes per import (0 = one per core, 1 = in the importing process)"
    )
    image_roots: str = Field(default="", description="os.pathsep-separated folders local image paths may come from")
    allow_private_networks: bool = Field(default=False, description="let the fetcher reach private addresses")
    fetch_workers: int = Field(default=8, ge=1, le=128, description="concurrent image downloads per import")
    job_max_attempts: int = Field(
        default=5, ge=1, le=100, description="attempts of an import job whose store fails before it ends `failed`"
    )
    staging_url: str = Field(
        default="", description="where posted and uploaded items wait for their import job: empty = HOME/jobs "
        "(shared by every process on this home); s3://bucket/prefix (or another fsspec URL) for hosts without one"
    )
    job_lease_s: float = Field(
        default=60.0, ge=1.0, le=3_600.0, description="a running import job whose worker has not beaten its heart "
        "for this long is taken over by another (a worker beats every 5 s, or every lease/4 when shorter)"
    )
    shutdown_grace_s: float = Field(
        default=10.0, ge=0.0, le=600.0, description="on SIGTERM: how long requests in flight may finish, then how "
        "long the import batch in hand may finish before its job is handed back at its last checkpoint (a process "
        "manager should wait 2 x this + 5 s before SIGKILL)"
    )
    job_retry_s: float = Field(
        default=5.0, ge=0.0, le=3_600.0, description="wait before an import job's first retry; doubles each time"
    )
    max_image_pixels: int = Field(
        default=36_000_000, ge=100, le=36_000_000,  # the spec's 6000 x 6000, under Pillow's own bomb guard
        description="width x height of a query or imported image, checked from its header before decoding",
    )
    max_concurrent_decodes: int = Field(
        default_factory=lambda: min(8, max(2, os.cpu_count() or 2)), ge=1, le=256,
        description="image decodes at once in this process (default: the cores, 2 to 8; a 6000 x 6000 PNG holds "
        "~210 MB while it decodes); a query waits 2 s for a slot, then 503",
    )
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
    max_query_chars: int = Field(
        default=1_000, ge=1, le=1_000_000, description="characters of an AI Search query.text (CPU grows with it)"
    )
    max_filter_conditions: int = Field(
        default=1_024, ge=1, le=20_000,
        description="filter objects (must, must_not, range, and, or) in one filter; an engine crashes near 40,000",
    )
    max_filter_values: int = Field(default=10_000, ge=1, description="values across all must/must_not conds")
    max_filter_chars: int = Field(default=1_000_000, ge=1, description="characters across a filter's string values")
    web_dataset: str = Field(default="web", description="the dataset /search/multimodal answers from")
    iqs_results: int = Field(default=20, ge=1, le=100, description="images per /search/multimodal answer")
    iqs_timeout_s: float = Field(default=5.0, gt=0, le=120, description="server-side timeout of /search/multimodal")
    iqs_max_exclude_sites: int = Field(
        default=1_024, ge=1, le=1_024,  # le: one must_not holds at most 1,024 values (schema/filters.py)
        description="hosts in one IQS advancedParams.excludeSites; the string may hold 256 characters per host",
    )

    media_roots: str = Field(
        default="", description="os.pathsep-separated folders local image, video and subtitle paths may come from"
    )
    video_max_bytes: int = Field(default=2 * 1024**3, ge=1024, description="size of one video file")
    video_max_seconds: float = Field(default=4 * 3600.0, gt=0, description="duration of one video")
    video_max_pixels: int = Field(default=3840 * 2160, ge=100, description="width x height of a video stream")
    video_fps: float = Field(default=2.0, gt=0, le=30, description="frames sampled per second to find shots")
    video_max_gap_s: float = Field(default=10.0, gt=0, le=600, description="longest segment: long shots are split")
    video_band_every_s: float = Field(
        default=1.0, ge=0, le=60, description="seconds between OCR reads of the frame's lower band (0 = none)"
    )
    video_download_timeout_s: float = Field(default=600.0, gt=0, description="whole download of one video URL")
    console: bool = Field(default=True, description="serve the web console at /console (admin token sign-in)")
    console_session_hours: float = Field(default=8.0, gt=0, le=24 * 30, description="how long a console sign-in lasts")
    metrics_public: bool = Field(
        default=False, description="serve GET /metrics without the admin token (for a scraper on a private network)"
    )
    log_format: str = Field(
        default="text", pattern="^(json|text)$", description="`mmsearch serve`'s log lines: 'json' (one object per "
        "line; one per request on logger mmsearch.access) or 'text'",
    )
    llm_url: str = Field(
        default="", description="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1) that writes videos' "
        "generated titles and summaries; empty: extractive only (ingest/summarize.py)",
    )
    llm_model: str = Field(default="", description="the model llm_url is asked for")
    llm_api_key: str = Field(default="", repr=False, description="bearer key of llm_url; never logged or printed")
    llm_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="seconds per LLM request; one retry after a 429, 5xx or timeout"
    )
    llm_max_input_chars: int = Field(
        default=12_000, ge=1_000, le=1_000_000,
        description="characters of a video's text sent to the LLM; a longer transcript is sampled evenly",
    )

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        kind, _, uri = v.strip().partition(":")
        if (kind == "lance" and not uri) or (kind == "milvus" and uri.strip()):
            return v.strip()
        raise ValueError(f"MMSEARCH_STORE: {v!r} is not a store; use 'lance' or 'milvus:<uri>' "
                         "(milvus:http://host:19530 for a server, milvus:/path/to/file.db for Milvus Lite)")

    @property
    def image_root_paths(self) -> list[Path]:
        """Where local media may come from: MMSEARCH_IMAGE_ROOTS and MMSEARCH_MEDIA_ROOTS together."""
        both = f"{self.image_roots}{os.pathsep}{self.media_roots}"
        return [Path(p) for p in both.split(os.pathsep) if p.strip()]

    @field_validator("catalog_url")
    @classmethod
    def _catalog_url(cls, v: str) -> str:
        v = v.strip()
        if v and not v.startswith(("sqlite:///", "postgresql+psycopg://", "postgresql://")):
            raise ValueError("MMSEARCH_CATALOG_URL: use postgresql+psycopg://user:password@host:5432/database "
                             "(or sqlite:///path); empty means SQLite in MMSEARCH_HOME")
        return v.replace("postgresql://", "postgresql+psycopg://", 1) if v.startswith("postgresql://") else v

    @property
    def shares_state(self) -> bool:
        """Whether processes share this catalog, so throttling and replay checks must count in it."""
        on_postgres = self.catalog_url.startswith("postgres")
        return self.shared_state == "catalog" or (self.shared_state == "auto" and on_postgres)

    @property
    def catalog_dsn(self) -> str:
        """The catalog's SQLAlchemy URL: MMSEARCH_CATALOG_URL, or SQLite in HOME."""
        return self.catalog_url or f"sqlite:///{(self.home / 'catalog.sqlite3').resolve()}"

    @property
    def tables_dir(self) -> Path:
        return self.home / "tables"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """This process's settings, read once (environment and file are not watched); tests that change either call
    `get_settings.cache_clear()`."""
    return Settings()
