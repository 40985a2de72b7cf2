"""One entry point for an image reference, whatever form the user gave it in."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mmsearch.errors import InvalidArgument, NotFound
from mmsearch.media.datauri import is_data_uri, parse_data_uri
from mmsearch.media.errors import UnsafeURL
from mmsearch.media.fetch import Fetcher
from mmsearch.media.images import MAX_BYTES, MAX_PIXELS, DecodedImage, decode_image
from mmsearch.media.local import load_local, resolve_allowed


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


@contextmanager
def media_file(
    ref: str,
    fetcher: Fetcher | None,
    allowed_roots: Iterable[str | os.PathLike[str]] = (),
    field: str = "video",
    max_bytes: int = 2 * 1024**3,
    download_timeout: float | None = None,
) -> Iterator[Path]:
    """A media file (a video, a subtitle file) on disk for a decoder that reads files: a local path under
    `allowed_roots` as it is, an http(s) URL streamed through the SSRF-guarded `fetcher` into a temporary
    file (removed afterwards) under the `max_bytes` cap, a data URI written to one. Never the whole file in
    memory, except a data URI, which already is."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidArgument(f"{field} must be a non-empty string (http(s) URL, local path or data URI)", field=field)
    scheme = urlsplit(ref).scheme.lower() if "://" in ref else ""
    if is_data_uri(ref) or scheme in ("http", "https"):
        with tempfile.NamedTemporaryFile(prefix="mmsearch-media-", suffix=_suffix(ref)) as fh:
            if is_data_uri(ref):
                _, data = parse_data_uri(ref, field)
                if len(data) > max_bytes:
                    raise InvalidArgument(f"{field}: {len(data)} bytes, over the limit of {max_bytes} bytes",
                                          field=field)
                fh.write(data)
            else:
                if fetcher is None:
                    raise UnsafeURL(f"{field}: remote URLs are not enabled here (no fetcher configured)", field=field)
                fetcher.download_to(ref, fh, field=field, max_bytes=max_bytes, total_timeout=download_timeout)
            fh.flush()
            yield Path(fh.name)
        return
    if scheme == "file":
        path = unquote(urlsplit(ref).path)
    elif scheme:
        raise UnsafeURL(f"{field}: scheme {scheme!r} is not supported; use http(s)://, a local path or a data URI",
                        field=field)
    else:
        path = ref
    real = resolve_allowed(path, allowed_roots, field)
    if not real.is_file():
        raise NotFound(f"{field}: local file {str(path)[:200]} does not exist or is not a regular file", field=field)
    size = real.stat().st_size
    if size > max_bytes:
        raise InvalidArgument(f"{field}: local file is {size} bytes, over the limit of {max_bytes} bytes "
                              "(MMSEARCH_VIDEO_MAX_BYTES)", field=field)
    yield real


def _suffix(ref: str) -> str:
    """The URL path's extension (.srt, .mp4), which helps FFmpeg pick a demuxer for text formats."""
    if is_data_uri(ref):
        return ""
    name = urlsplit(ref).path.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return f".{ext}" if ext.isalnum() and len(ext) <= 5 else ""
