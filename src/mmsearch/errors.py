"""Errors are values with a stable code; each API maps them to its own error shape at the edge."""

from __future__ import annotations

from typing import Any


class MMSearchError(Exception):
    """A failure the caller can act on: `code` is stable, `message` names the field and the rule."""

    code = "InternalError"

    def __init__(self, message: str, field: str | None = None, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or []

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        if self.details:
            out["details"] = self.details
        return out


class InvalidArgument(MMSearchError):
    code = "InvalidArgument"


class NotFound(MMSearchError):
    code = "NotFound"


class AlreadyExists(MMSearchError):
    code = "AlreadyExists"


class Unavailable(MMSearchError):
    """A capability this deployment lacks right now (e.g. no image model for an image query)."""

    code = "ServiceUnavailable"


class Overloaded(Unavailable):
    """Too much of some bounded work is in flight (e.g. image decodes); the same request may succeed after
    `retry_after` seconds, which the HTTP edge sends as `Retry-After`."""

    def __init__(self, message: str, field: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after
