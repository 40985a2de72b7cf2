"""Decode untrusted image bytes into one RGB picture, checking the limits the AI Search spec sets.

Formats: JPEG (and camera MPO), PNG (incl. APNG, first frame), WebP, GIF, BMP, DIB, TIFF, ICO, ICNS,
SGI and JPEG 2000. Pillow reads BMP/DIB, GIF, ICO, ICNS (PNG-coded icons), SGI and TIFF (uncompressed,
LZW, packbits) on its own; JPEG needs libjpeg, PNG zlib, WebP libwebp, compressed TIFF libtiff, and
JPEG 2000 (also JPEG 2000 coded ICNS icons) OpenJPEG, all built into the Pillow wheels
(`PIL.features.check("jpg"/"zlib"/"webp"/"libtiff"/"jpg_2000")` tells). `supported_formats()` lists what
this interpreter can decode. Only these formats are tried, so bytes are never handed to Pillow plugins
that shell out (EPS uses Ghostscript) or that we have no use for.

Limits: byte size (10 MB by default), pixel count read from the header before any pixel is decoded
(the decompression-bomb guard; Pillow's own global guard is left untouched and its error is turned
into ours), aspect ratio w/h in [1/100, 100], short side >= 10 px, long side <= 6000 px.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError, features

from mmsearch.errors import InvalidArgument

DEFAULT_FIELD = "image"
MAX_BYTES = 10 * 1024 * 1024
MIN_SIDE = 10
MAX_SIDE = 6000
MAX_ASPECT = 100.0
MAX_PIXELS = MAX_SIDE * MAX_SIDE

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
            f"{field}: image declares {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
            "(refused before decoding, possible decompression bomb)",
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


def decode_image(
    data: bytes,
    declared_mime: str | None = None,
    field: str = DEFAULT_FIELD,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> DecodedImage:
    """Decode and check untrusted bytes; every refusal is an InvalidArgument naming `field` and the rule."""
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
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidArgument(f"{field}: image header is corrupt: {exc}", field=field) from exc
    with im:
        pil_format = im.format or ""
        if pil_format not in _FORMATS:  # pragma: no cover - formats= restricts this
            raise InvalidArgument(f"{field}: unsupported image format {pil_format}", field=field)
        name, mime, _ = _FORMATS[pil_format]
        if declared_mime:
            _check_mime(declared_mime, pil_format, field)
        w, h = im.size
        check_dimensions(w, h, field, max_pixels)  # header only: nothing decoded yet
        frames = int(getattr(im, "n_frames", 1) or 1)
        try:
            if frames > 1:
                im.seek(0)
            im.load()
            oriented = ImageOps.exif_transpose(im)
            rgb = _to_rgb(oriented)
            rgb.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidArgument(f"{field}: image decodes to too many pixels: {exc}", field=field) from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise InvalidArgument(f"{field}: image data is corrupt or truncated ({name}): {exc}", field=field) from exc
    if rgb is im:  # keep the result independent of the closed file object
        rgb = rgb.copy()
    return DecodedImage(
        image=rgb,
        format=name,
        mime=mime,
        width=rgb.width,
        height=rgb.height,
        sha256=hashlib.sha256(data).hexdigest(),
        frames=frames,
    )
