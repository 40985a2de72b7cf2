"""The control plane's tables. Portable types only (no SQLite-only SQL), so PostgreSQL can take SQLite's place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from mmsearch.errors import NotFound


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(ts: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


class Base(DeclarativeBase):
    pass


R = TypeVar("R", bound=Base)


def require(s: Session, row_type: type[R], key: str, field: str, what: str) -> R:
    """The row, or NotFound naming the field: `application_id: application 'x' does not exist`."""
    row = s.get(row_type, key)
    if row is None:
        raise NotFound(f"{field}: {what} {key!r} does not exist", field=field)
    return row


class DatasetRow(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    schema_json: Mapped[str] = mapped_column(Text)
    vector_dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApplicationRow(Base):
    __tablename__ = "applications"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AppDatasetRow(Base):
    """Which datasets an application may search (a dataset can serve several applications)."""

    __tablename__ = "application_datasets"

    app_id: Mapped[str] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class KeyRow(Base):
    """One credential, two ways to present it: a bearer API key (stored as a hash) and an AK/SK pair
    for request signing (the secret is kept, since HMAC verification needs it)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public handle, also the key's prefix
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    access_key_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_access_key: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class KeyAppRow(Base):
    __tablename__ = "api_key_applications"

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class JobRow(Base):
    """An import job. The items it was given are staged to a file before this row exists, so an
    accepted job can always be run again; `done` is the number of staged items already applied."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="upsert")
    dataset_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|succeeded|failed|cancelled
    source: Mapped[str] = mapped_column(Text)  # path of the staged NDJSON file
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    warned: Mapped[int] = mapped_column(Integer, default=0)
    errors_json: Mapped[str] = mapped_column(Text, default="[]")
    warnings_json: Mapped[str] = mapped_column(Text, default="[]")
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # running: the worker's last heartbeat; queued: the time a retry may start (None = at once)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    run_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class QueryLogRow(Base):
    __tablename__ = "query_log"
    __table_args__ = (Index("ix_query_log_app_ts", "app_id", "ts"), Index("ix_query_log_ts", "ts"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    request_id: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    query_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    has_image: Mapped[bool] = mapped_column(Boolean, default=False)
    corrected_query: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    total_items: Mapped[int] = mapped_column(Integer)
    result_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[int] = mapped_column(Integer, default=200)


class ThrottleRow(Base):
    """Queries a key made in one second, for processes sharing a catalog (catalog/shared.py)."""

    __tablename__ = "throttle_windows"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch second
    count: Mapped[int] = mapped_column(Integer, default=0)


class ReplayRow(Base):
    """A signed request (or nonce) already accepted, until it leaves the clock-skew window (catalog/shared.py)."""

    __tablename__ = "replay_guard"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of access key + signature or nonce
    expires_at: Mapped[float] = mapped_column(Float, index=True)  # epoch seconds


BANDS = 8  # a web image's perceptual hash in 8 bands of 8 bits: exact band matches find every hash within 7 bits


class WebImageHashRow(Base):
    """One distinct image content seen in a web dataset, and the item it belongs to (ingest/web/corpus.py)."""

    __tablename__ = "web_image_hashes"

    dataset_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(64), index=True)
    phash: Mapped[str] = mapped_column(String(16))
    b0: Mapped[int] = mapped_column(Integer)
    b1: Mapped[int] = mapped_column(Integer)
    b2: Mapped[int] = mapped_column(Integer)
    b3: Mapped[int] = mapped_column(Integer)
    b4: Mapped[int] = mapped_column(Integer)
    b5: Mapped[int] = mapped_column(Integer)
    b6: Mapped[int] = mapped_column(Integer)
    b7: Mapped[int] = mapped_column(Integer)

    __table_args__ = tuple(Index(f"ix_web_image_hashes_b{i}", "dataset_id", f"b{i}") for i in range(BANDS))


class WebImageLookRow(Base):
    """The shape and mean colour of one distinct image content (beside its hash row): what a near-duplicate
    must share besides a close perceptual hash. Rows imported before it existed have none, and are compared by
    hash alone."""

    __tablename__ = "web_image_looks"

    dataset_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    aspect: Mapped[float] = mapped_column(Float)
    red: Mapped[float] = mapped_column(Float)
    green: Mapped[float] = mapped_column(Float)
    blue: Mapped[float] = mapped_column(Float)
