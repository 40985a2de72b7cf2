"""decode_image on real Pillow-written files: formats, modes, orientation, frames and every size rule."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
from PIL import Image, features

from mmsearch.errors import InvalidArgument
from mmsearch.media import decode_image, mime_for_format, sniff_image_format, supported_formats


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def rgb(w: int = 64, h: int = 48, color=(200, 30, 40)) -> Image.Image:
    return Image.new("RGB", (w, h), color)


WRITABLE = [
    ("JPEG", "jpeg", "image/jpeg"),
    ("PNG", "png", "image/png"),
    ("WEBP", "webp", "image/webp"),
    ("GIF", "gif", "image/gif"),
    ("BMP", "bmp", "image/bmp"),
    ("DIB", "dib", "image/bmp"),
    ("TIFF", "tiff", "image/tiff"),
    ("ICO", "ico", "image/x-icon"),
    ("ICNS", "icns", "image/icns"),
    ("SGI", "sgi", "image/sgi"),
    ("JPEG2000", "jpeg2000", "image/jp2"),
]


@pytest.mark.parametrize(("pil_fmt", "name", "mime"), WRITABLE)
def test_every_writable_format_decodes(pil_fmt, name, mime):
    if pil_fmt == "JPEG2000" and not features.check("jpg_2000"):
        pytest.skip("Pillow built without OpenJPEG")
    size = (64, 64) if pil_fmt in ("ICO", "ICNS") else (64, 48)
    data = encode(rgb(*size), pil_fmt)
    out = decode_image(data, declared_mime=mime)
    assert (out.format, out.mime) == (name, mime)
    assert out.image.mode == "RGB"
    assert (out.width, out.height) == out.image.size
    assert out.image.size[0] >= 10
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    r, g, b = out.image.getpixel((out.width // 2, out.height // 2))
    assert r > 150 and g < 90 and b < 90, (r, g, b)
    if name != "dib":  # a DIB has no file header, so nothing to sniff
        assert sniff_image_format(data[:16]) == name


def test_supported_formats_lists_core_formats():
    fmts = supported_formats()
    for name in ("jpeg", "png", "webp", "gif", "bmp", "tiff", "ico", "icns", "sgi"):
        assert name in fmts
    assert mime_for_format("jpeg") == "image/jpeg"


def test_jpg_alias_and_mime_parameters_accepted():
    data = encode(rgb(), "JPEG")
    assert decode_image(data, "image/jpg").format == "jpeg"
    assert decode_image(data, "IMAGE/JPEG; q=1").format == "jpeg"


def test_declared_mime_must_match_bytes():
    with pytest.raises(InvalidArgument) as err:
        decode_image(encode(rgb(), "PNG"), declared_mime="image/jpeg", field="query.image_url")
    assert "MIME type image/jpeg does not match the image (png)" in err.value.message
    assert err.value.field == "query.image_url"


def test_cmyk_jpeg_becomes_rgb():
    data = encode(Image.new("CMYK", (30, 30), (0, 255, 255, 0)), "JPEG")
    out = decode_image(data)
    r, g, b = out.image.getpixel((15, 15))
    assert r > 200 and g < 60 and b < 60


def test_palette_png_with_transparency_composited_on_white():
    im = Image.new("P", (20, 20), 0)
    im.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (0, 0, 10, 20))
    data = encode(im, "PNG", transparency=0)
    out = decode_image(data, "image/png")
    assert out.image.getpixel((5, 5)) == (0, 0, 255)
    assert out.image.getpixel((15, 5)) == (255, 255, 255)  # transparent black -> white


def test_rgba_png_alpha_composited_on_white():
    im = Image.new("RGBA", (20, 20), (255, 0, 0, 128))
    out = decode_image(encode(im, "PNG"))
    r, g, b = out.image.getpixel((10, 10))
    assert r == 255 and 120 <= g <= 135 and g == b


def test_la_and_16_bit_grey_become_rgb():
    la = decode_image(encode(Image.new("LA", (20, 20), (0, 0)), "PNG"))
    assert la.image.getpixel((1, 1)) == (255, 255, 255)
    im16 = Image.new("I;16", (20, 20), 65535)
    out = decode_image(encode(im16, "PNG"))
    assert out.image.mode == "RGB"
    assert out.image.getpixel((1, 1)) == (255, 255, 255)
    half = decode_image(encode(Image.new("I;16", (20, 20), 32768), "TIFF"))
    assert half.image.getpixel((1, 1)) == (255, 255, 255)  # scaled by the image's own maximum


def test_exif_orientation_applied():
    im = rgb(40, 20)
    im.paste((0, 0, 255), (0, 0, 10, 20))  # left stripe blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    data = encode(im, "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data)
    assert (out.width, out.height) == (20, 40)
    r, _g, b = out.image.getpixel((10, 3))  # the blue stripe is now at the top
    assert b > 150 and r < 100
    plain = decode_image(encode(im, "JPEG"))
    assert (plain.width, plain.height) == (40, 20)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_first_frame(fmt):
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **kw)
    out = decode_image(data)
    assert out.frames == 3
    r, g, b = out.image.getpixel((16, 16))
    assert r > 200 and g < 50 and b < 50


@pytest.mark.parametrize(
    ("size", "rule"),
    [
        ((5, 2000), "aspect ratio 5x2000 is outside [1/100, 100]"),
        ((2000, 5), "aspect ratio 2000x5 is outside [1/100, 100]"),
        ((9, 50), "short side of 9x50 is under the minimum of 10 px"),
        ((50, 9), "short side of 50x9 is under the minimum of 10 px"),
        ((6001, 100), "long side of 6001x100 is over the maximum of 6000 px"),
    ],
)
def test_size_rules(size, rule):
    data = encode(Image.new("L", size, 128), "PNG")
    with pytest.raises(InvalidArgument) as err:
        decode_image(data, field="img")
    assert rule in err.value.message
    assert err.value.field == "img"


def test_boundaries_accepted():
    assert decode_image(encode(Image.new("L", (10, 1000)), "PNG")).height == 1000
    assert decode_image(encode(Image.new("L", (6000, 60)), "PNG")).width == 6000


def test_byte_cap():
    data = encode(rgb(), "BMP")
    with pytest.raises(InvalidArgument, match=rf"{len(data)} bytes, over the limit of 1000 bytes"):
        decode_image(data, max_bytes=1000)
    assert decode_image(data, max_bytes=len(data)).format == "bmp"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` but carries almost no data: the decompression-bomb shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_header_refused_by_pillow_guard():
    with pytest.raises(InvalidArgument, match="decompression bomb"):
        decode_image(_png_header_only(100_000, 100_000))


def test_pixel_limit_checked_from_header_before_decoding():
    data = _png_header_only(5000, 5000)  # would be 75 MB of pixels; the file is tiny and truncated
    with pytest.raises(InvalidArgument, match=r"5000x5000 = 25000000 pixels, over the limit of 1000000"):
        decode_image(data, max_pixels=1_000_000)


def test_truncated_and_non_image_bytes():
    data = encode(Image.effect_noise((200, 200), 64).convert("RGB"), "PNG")
    with pytest.raises(InvalidArgument, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])
    with pytest.raises(InvalidArgument, match="not an image in a supported format"):
        decode_image(b"GIF-ish but not really an image at all")
    with pytest.raises(InvalidArgument, match="not an image in a supported format"):
        decode_image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n")  # EPS never reaches Ghostscript
    with pytest.raises(InvalidArgument, match="empty"):
        decode_image(b"")


def test_bomb_warning_range_refused_even_when_warnings_are_errors():
    import warnings

    data = _png_header_only(10_000, 10_000)  # 100 M pixels: Pillow warns rather than raising
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(InvalidArgument, match="decompression bomb"):
            decode_image(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(InvalidArgument, match="over the limit of 36000000"):
            decode_image(data)
