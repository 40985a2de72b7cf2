"""Strings must be valid Unicode before they reach an engine, a log or a catalog.

JSON may spell a lone UTF-16 surrogate (`"\\ud800"`): Python decodes it into a `str` that cannot be encoded
as UTF-8, so LanceDB, SQLite and every writer downstream fail on it. The edge finds such strings and
refuses them, naming where they are.
"""

from __future__ import annotations

import re
from typing import Any

from mmsearch.errors import InvalidArgument

_SURROGATE = re.compile("[\ud800-\udfff]")


def is_valid_unicode(s: str) -> bool:
    return _SURROGATE.search(s) is None


def find_invalid_unicode(value: Any, where: str) -> str | None:
    """The path (`where`, `where.key`, `where[3]`) of the first string, or object key, holding a lone
    surrogate; None when every string in `value` is valid."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        v, path = stack.pop()
        if isinstance(v, str):
            if not is_valid_unicode(v):
                return path
        elif isinstance(v, dict):
            for k, sub in reversed(list(v.items())):
                key = str(k)
                if not is_valid_unicode(key):
                    return f"{path}.<key>" if path else "<key>"
                stack.append((sub, f"{path}.{key}" if path else key))
        elif isinstance(v, list | tuple):
            stack.extend((sub, f"{path}[{i}]") for i, sub in reversed(list(enumerate(v))))
    return None


def require_valid_unicode(value: Any, where: str) -> None:
    """Raise InvalidArgument naming the first string that is not valid Unicode."""
    bad = find_invalid_unicode(value, where)
    if bad is not None:
        raise InvalidArgument(
            f"{bad}: not valid Unicode (a lone UTF-16 surrogate such as \\ud800); send UTF-8 text", field=bad
        )


def scrub(s: str) -> str:
    """A lone surrogate replaced by U+FFFD, for places that must store what they got (logs)."""
    return _SURROGATE.sub("\ufffd", s)


def scrub_all(value: Any) -> Any:
    """`value` with every string (and object key) scrubbed, for answers that echo what a caller sent."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_all(k): scrub_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_all(v) for v in value]
    return value
