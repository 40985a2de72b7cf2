"""One entry point for an image reference, whatever form the user gave it in."""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from mmsearch.errors import InvalidArgument
from mmsearch.media.datauri import is_data_uri, parse_data_uri
from mmsearch.media.errors import UnsafeURL
from mmsearch.media.fetch import Fetcher
from mmsearch.media.images import MAX_BYTES, MAX_PIXELS, DecodedImage, decode_image
from mmsearch.media.local import load_local


def load_image_ref(
    ref: str,
    fetcher: Fetcher | None,
    allowed_roots: Iterable[str | os.PathLike[str]] = (),
    field: str = "image",
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    wait: float | None = None,
) -> DecodedImage:
    """Decode a data URI, an http(s) URL (via `fetcher`) or a local path / file:// URL (under `allowed_roots`).
    A relative path is looked up under the roots (see `load_local`). `max_pixels` and `wait` go to `decode_image`."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidArgument(f"{field} must be a non-empty string (data URI, http(s) URL or local path)", field=field)
    if is_data_uri(ref):
        mime, data = parse_data_uri(ref, field)
        return decode_image(data, mime, field=field, max_bytes=max_bytes, max_pixels=max_pixels, wait=wait)
    scheme = urlsplit(ref).scheme.lower() if "://" in ref else ""
    if scheme in ("http", "https"):
        if fetcher is None:
            raise UnsafeURL(f"{field}: remote URLs are not enabled here (no fetcher configured)", field=field)
        result = fetcher.fetch(ref, field=field)
        return decode_image(result.data, None, field=field, max_bytes=max_bytes, max_pixels=max_pixels, wait=wait)
    if scheme == "file":
        path = unquote(urlsplit(ref).path)
    elif scheme:
        raise UnsafeURL(
            f"{field}: scheme {scheme!r} is not supported; use data:, http(s):// or a local path", field=field
        )
    else:
        path = ref
    data = load_local(path, allowed_roots, field=field, max_bytes=max_bytes)
    return decode_image(data, None, field=field, max_bytes=max_bytes, max_pixels=max_pixels, wait=wait)
