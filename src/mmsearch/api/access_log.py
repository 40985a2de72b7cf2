"""One log line per request on the logger `mmsearch.access`, as JSON or as plain text (MMSEARCH_LOG_FORMAT).

A line holds what an operator needs to follow a request and nothing a caller sent: the time (ISO-8601, UTC),
the request id (the X-Request-Id header's), method, the route *template* (never the raw path or its query
string, where V4 and ACS3 signatures may travel), the application, status, latency, the result count of a
search, the client address and the serving process. Headers (Authorization, X-Api-Key), bodies and images are
never read here, so they cannot be logged.

Logging is configured where the server starts (`uvicorn_log_config`, used by `mmsearch serve`), never at
import: a library user or a test decides for itself. Unconfigured, the logger is below INFO and a request
costs one `isEnabledFor` check.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import orjson

LOGGER = "mmsearch.access"
log = logging.getLogger(LOGGER)
PID = os.getpid()


_second: tuple[int, str] = (-1, "")


def iso_time(created: float) -> str:
    """`2024-05-01T12:00:00.123Z`: UTC, milliseconds (the date and time part formatted once a second)."""
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((created - whole) * 1000):03d}Z"


def enabled() -> bool:
    return log.isEnabledFor(logging.INFO)


def write(request_id: str, method: str, route: str, app: str, status: int, latency_s: float,
          results: int | None, client: str | None) -> None:
    """Emit the request's line (callers check `enabled()` first, so a silent logger costs nothing more). The
    record is made here rather than by `log.info`, which would walk the stack for a caller nobody reads."""
    record = log.makeRecord(LOGGER, logging.INFO, __file__, 0, "%s %s %s", (method, route, status), None,
                            extra={"access": {
                                "request_id": request_id, "method": method, "route": route, "app": app or None,
                                "status": status, "latency_ms": round(latency_s * 1000, 3), "results": results,
                                "client": client, "pid": PID}})
    log.handle(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Access records carry their fields (`record.access`); any other record (uvicorn's,
    mmsearch's errors) becomes {time, level, logger, message, exception}."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": iso_time(record.created), "level": record.levelname.lower(),
                               "logger": record.name}
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update(access)
        else:
            out["message"] = record.getMessage()
            if record.exc_info:
                out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """The plain line: `<time> <request id> GET /route 200 3.1ms app=shop results=10 client=127.0.0.1`; other
    records as `<time> LEVEL logger: message`."""

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if not isinstance(access, dict):
            line = f"{iso_time(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
            return line + ("\n" + self.formatException(record.exc_info) if record.exc_info else "")
        a = access
        extra = "".join(f" {k}={a[k]}" for k in ("app", "results", "client") if a.get(k) is not None)
        return (f"{iso_time(record.created)} {a['request_id']} {a['method']} {a['route']} {a['status']} "
                f"{a['latency_ms']}ms{extra}")


def uvicorn_log_config(log_format: str, log_level: str = "info") -> dict[str, Any]:
    """uvicorn's `log_config` for `mmsearch serve`: uvicorn's and mmsearch's loggers through one formatter,
    access lines on stdout, everything else on stderr. uvicorn's own access log is turned off by the caller
    (`access_log=False`): it prints the raw path with its query string, and this line replaces it."""
    formatter = f"{__name__}.{'JsonFormatter' if log_format == 'json' else 'TextFormatter'}"
    level = log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"mmsearch": {"()": formatter}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "mmsearch", "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "mmsearch", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "mmsearch": {"handlers": ["default"], "level": level, "propagate": False},
            LOGGER: {"handlers": ["access"], "level": level, "propagate": False},
        },
    }
