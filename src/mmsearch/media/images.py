"""Decode untrusted image bytes into one RGB picture, checking the limits the AI Search spec sets.

Formats: JPEG (and camera MPO), PNG (incl. APNG, first frame), WebP, GIF, BMP, DIB, TIFF, ICO, ICNS,
SGI and JPEG 2000. Pillow reads BMP/DIB, GIF, ICO, ICNS (PNG-coded icons), SGI and TIFF (uncompressed,
LZW, packbits) on its own; JPEG needs libjpeg, PNG zlib, WebP libwebp, compressed TIFF libtiff, and
JPEG 2000 (also JPEG 2000 coded ICNS icons) OpenJPEG, all built into the Pillow wheels
(`PIL.features.check("jpg"/"zlib"/"webp"/"libtiff"/"jpg_2000")` tells). `supported_formats()` lists what
this interpreter can decode. Only these formats are tried, so bytes are never handed to Pillow plugins
that shell out (EPS uses Ghostscript) or that we have no use for.

Limits: byte size (10 MB by default), pixel count read from the header before any pixel is decoded
(the decompression-bomb guard; callers pass `MMSEARCH_MAX_IMAGE_PIXELS`, at most the spec's 6000 x 6000,
which stays under Pillow's own global guard: that guard is left untouched and its error is turned
into ours), aspect ratio w/h in [1/100, 100], short side >= 10 px, long side <= 6000 px.

Cost: a decode holds width x height x 3 bytes (a 6000 x 6000 PNG is 108 MB from a 136 KB file), so
decodes pass through one process-wide `DecodeGate` (`MMSEARCH_MAX_CONCURRENT_DECODES`): a query waits a
moment for a slot and is then refused with `Overloaded` (503 + Retry-After), an import waits its turn.
A large JPEG is decoded reduced (libjpeg's DCT scaling, `draft`) to no less than `DRAFT_SIDE` px on its
long side, and any picture still larger is scaled down to `DRAFT_SIDE` inside the slot, which is all the
encoders (224-336 px) and OCR use; the reported size stays the original's. So memory is bounded by the
slots while decoding, and by a 12 MB picture per request after it.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError, features

from mmsearch.errors import InvalidArgument, Overloaded

DEFAULT_FIELD = "image"
MAX_BYTES = 10 * 1024 * 1024
MIN_SIDE = 10
MAX_SIDE = 6000
MAX_ASPECT = 100.0
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # the spec's ceiling; MMSEARCH_MAX_IMAGE_PIXELS (default below) is what callers pass
DEFAULT_MAX_PIXELS = MAX_PIXELS  # every picture the spec allows; the decode gate bounds what they cost at once
DEFAULT_CONCURRENT_DECODES = 2
QUERY_DECODE_WAIT_S = 2.0  # how long a query waits for a decode slot before it is refused (503)
DRAFT_SIDE = 2048  # a JPEG is decoded at 1/2, 1/4 or 1/8 scale while its long side stays >= this
_ORIENTATION = 0x0112

# Pillow format name -> (our format name, canonical MIME, accepted declared MIME types)
_FORMATS: dict[str, tuple[str, str, frozenset[str]]] = {
    "JPEG": ("jpeg", "image/jpeg", frozenset({"image/jpeg", "image/jpg", "image/pjpeg"})),
    "MPO": ("jpeg", "image/jpeg", frozenset({"image/jpeg", "image/jpg", "image/pjpeg", "image/mpo"})),
    "PNG": ("png", "image/png", frozenset({"image/png", "image/apng", "image/x-png"})),
    "WEBP": ("webp", "image/webp", frozenset({"image/webp"})),
    "GIF": ("gif", "image/gif", frozenset({"image/gif"})),
    "BMP": ("bmp", "image/bmp", frozenset({"image/bmp", "image/x-bmp", "image/x-ms-bmp", "image/dib"})),
    "DIB": ("dib", "image/bmp", frozenset({"image/bmp", "image/x-bmp", "image/x-ms-bmp", "image/dib"})),
    "TIFF": ("tiff", "image/tiff", frozenset({"image/tiff", "image/tif", "image/x-tiff"})),
    "ICO": ("ico", "image/x-icon", frozenset({"image/x-icon", "image/vnd.microsoft.icon", "image/ico"})),
    "ICNS": ("icns", "image/icns", frozenset({"image/icns", "image/x-icns"})),
    "SGI": ("sgi", "image/sgi", frozenset({"image/sgi", "image/x-sgi", "image/x-rgb", "image/rgb"})),
    "JPEG2000": ("jpeg2000", "image/jp2", frozenset({"image/jp2", "image/jpx", "image/j2k", "image/jpeg2000"})),
}


def _open_formats() -> tuple[str, ...]:
    """Pillow plugin names to try (MPO is not one: the JPEG plugin returns MPO files itself)."""
    Image.init()
    return tuple(f for f in _FORMATS if f in Image.OPEN)


@dataclass(frozen=True)
class DecodedImage:
    """An RGB picture ready for the encoders, plus what the caller reports about it."""

    image: Image.Image  # mode RGB, EXIF orientation applied, alpha composited on white, first frame
    format: str  # our name: jpeg, png, webp, gif, bmp, dib, tiff, ico, icns, sgi, jpeg2000
    mime: str
    width: int  # as displayed (after EXIF orientation), before any resizing
    height: int
    sha256: str  # of the original bytes: the dedup key for fetch/encode caches
    frames: int = 1


class DecodeGate:
    """A process-wide bound on concurrent pixel decodes, so N big images cost N slots' memory, not N decodes'.

    `active` and `peak` count what is inside right now and the most ever at once (for tests and status)."""

    def __init__(self, limit: int = DEFAULT_CONCURRENT_DECODES) -> None:
        self._cond = threading.Condition()
        self.limit = max(1, int(limit))
        self.active = 0
        self.peak = 0

    def set_limit(self, limit: int) -> None:
        """Change the bound (the engine applies `MMSEARCH_MAX_CONCURRENT_DECODES`); waiters re-check at once."""
        with self._cond:
            self.limit = max(1, int(limit))
            self._cond.notify_all()

    def reset_peak(self) -> None:
        with self._cond:
            self.peak = self.active

    @contextmanager
    def slot(self, field: str = DEFAULT_FIELD, wait: float | None = None) -> Iterator[None]:
        """Hold one slot while decoding. `wait=None` waits as long as it takes (imports: every image gets its
        turn); a number is the most seconds to wait before `Overloaded` (queries: answer 503, not pile up)."""
        deadline = None if wait is None else time.monotonic() + wait
        with self._cond:
            while self.active >= self.limit:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise Overloaded(
                        f"{field}: the server is decoding {self.active} images already "
                        f"(MMSEARCH_MAX_CONCURRENT_DECODES={self.limit}); retry shortly",
                        field=field, retry_after=1,
                    )
                self._cond.wait(remaining)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._cond.notify()


DECODES = DecodeGate()  # the one gate of this process; MMSearch sets its limit from the settings

# Pillow keeps pixels in blocks of 16 MB by default; glibc serves blocks under its (dynamic, up to 32 MB) mmap
# threshold from per-thread arenas and keeps them after the free, so N server threads that each once decoded a
# big picture held N pictures' memory for good (8 decodes of 6000 x 6000 through a 2-slot gate: +1,263 MB,
# never returned). Blocks over 32 MB are always mmapped and given back on free: +514 MB peak, +0 after.
PIXEL_BLOCK_BYTES = 64 * 1024 * 1024
Image.core.set_block_size(PIXEL_BLOCK_BYTES)


def set_decode_limit(limit: int) -> None:
    """Bound the concurrent decodes of this process (all engines in it share the gate)."""
    DECODES.set_limit(limit)


def supported_formats() -> list[str]:
    """Our format names that this Pillow build can decode (JPEG 2000 needs OpenJPEG)."""
    Image.init()
    names = []
    for pil_name, (name, _, _) in _FORMATS.items():
        usable = pil_name in Image.OPEN and (pil_name != "JPEG2000" or features.check("jpg_2000"))
        if usable and name not in names:
            names.append(name)
    return names


def mime_for_format(fmt: str) -> str:
    """Canonical MIME type for our format name (e.g. 'png' -> 'image/png')."""
    for name, mime, _ in _FORMATS.values():
        if name == fmt:
            return mime
    raise KeyError(fmt)


def _check_mime(declared: str, pil_format: str, field: str) -> None:
    name, _, accepted = _FORMATS[pil_format]
    mime = declared.split(";", 1)[0].strip().lower()
    if mime not in accepted:
        raise InvalidArgument(f"{field}: MIME type {declared} does not match the image ({name})", field=field)


def check_dimensions(width: int, height: int, field: str = DEFAULT_FIELD, max_pixels: int = MAX_PIXELS) -> None:
    """Apply the size rules to header dimensions; each rule has its own error."""
    if width <= 0 or height <= 0:
        raise InvalidArgument(f"{field}: image has no pixels ({width}x{height})", field=field)
    if width * height > max_pixels:
        raise InvalidArgument(
            f"{field}: image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
            "pixels (MMSEARCH_MAX_IMAGE_PIXELS; refused from the header, before decoding)",
            field=field,
        )
    ratio = width / height
    if ratio > MAX_ASPECT or ratio < 1 / MAX_ASPECT:
        raise InvalidArgument(
            f"{field}: aspect ratio {width}x{height} is outside [1/{MAX_ASPECT:g}, {MAX_ASPECT:g}]", field=field
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidArgument(
            f"{field}: short side of {width}x{height} is under the minimum of {MIN_SIDE} px", field=field
        )
    if max(width, height) > MAX_SIDE:
        raise InvalidArgument(
            f"{field}: long side of {width}x{height} is over the maximum of {MAX_SIDE} px", field=field
        )


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparency is composited on white, high bit depths are scaled down."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        src = im.convert("F") if im.mode == "F" else im.convert("I")
        _lo, hi = src.getextrema()
        scale = 255.0 / hi if hi and hi > 255 else 1.0
        return src.point(lambda v: v * scale).convert("L").convert("RGB")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode in ("P", "L", "RGB", "1") and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _draft_size(width: int, height: int) -> tuple[int, int] | None:
    """The size to ask libjpeg for (aspect kept, long side DRAFT_SIDE), or None when no reduction would apply."""
    long_side = max(width, height)
    if long_side < 2 * DRAFT_SIDE:
        return None
    return max(1, math.ceil(width * DRAFT_SIDE / long_side)), max(1, math.ceil(height * DRAFT_SIDE / long_side))


def decode_image(
    data: bytes,
    declared_mime: str | None = None,
    field: str = DEFAULT_FIELD,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    wait: float | None = None,
    gate: DecodeGate | None = None,
) -> DecodedImage:
    """Decode and check untrusted bytes; every refusal is an InvalidArgument naming `field` and the rule.
    The header is checked first; the pixels are decoded inside a slot of `gate` (the process's by default),
    waiting at most `wait` seconds for it (None: as long as it takes) before `Overloaded`."""
    if not data:
        raise InvalidArgument(f"{field}: image is empty (0 bytes)", field=field)
    if len(data) > max_bytes:
        raise InvalidArgument(f"{field}: image is {len(data)} bytes, over the limit of {max_bytes} bytes", field=field)
    try:
        im: Any = Image.open(io.BytesIO(data), formats=_open_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # warning: when raised as error
        raise InvalidArgument(
            f"{field}: image declares too many pixels (refused before decoding, possible decompression bomb): {exc}",
            field=field,
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidArgument(
            f"{field}: bytes are not an image in a supported format ({', '.join(supported_formats())})", field=field
        ) from exc
    except Exception as exc:  # OSError, ValueError, SyntaxError, and struct.error & co. from hostile headers
        raise InvalidArgument(f"{field}: image header is corrupt: {type(exc).__name__}: {exc}", field=field) from exc
    # Not closed: the source is an in-memory buffer (no descriptor), and closing would free the pixels we return,
    # forcing a full-size copy.
    pil_format = im.format or ""
    if pil_format not in _FORMATS:  # pragma: no cover - formats= restricts this
        raise InvalidArgument(f"{field}: unsupported image format {pil_format}", field=field)
    name, mime, _ = _FORMATS[pil_format]
    if declared_mime:
        _check_mime(declared_mime, pil_format, field)
    w, h = im.size
    check_dimensions(w, h, field, max_pixels)  # header only: nothing decoded yet
    frames = int(getattr(im, "n_frames", 1) or 1)
    with (gate or DECODES).slot(field, wait):
        try:
            if frames > 1:
                im.seek(0)
            swapped = im.getexif().get(_ORIENTATION) in (5, 6, 7, 8)
            shown = (h, w) if swapped else (w, h)  # as displayed, before any reduction
            draft = _draft_size(w, h) if pil_format in ("JPEG", "MPO") else None
            if draft is not None:
                im.draft(None, draft)
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            rgb = _to_rgb(im)
            rgb.load()
            if max(rgb.size) > DRAFT_SIDE:  # what leaves the gate is small: a request keeps its picture until
                rgb.thumbnail((DRAFT_SIDE, DRAFT_SIDE), reducing_gap=2.0)  # it answers, N requests N pictures
                if rgb is not im:
                    im.close()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidArgument(f"{field}: image decodes to too many pixels: {exc}", field=field) from exc
        except Exception as exc:  # any decoder failure on untrusted bytes is the image's fault, never a 500
            raise InvalidArgument(f"{field}: image data is corrupt or truncated ({name}): {exc}", field=field) from exc
    return DecodedImage(
        image=rgb,
        format=name,
        mime=mime,
        width=shown[0],
        height=shown[1],
        sha256=hashlib.sha256(data).hexdigest(),
        frames=frames,
    )
