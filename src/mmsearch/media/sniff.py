"""Recognise image bytes by their magic numbers, so a server's Content-Type header is never trusted."""

from __future__ import annotations

SNIFF_BYTES = 16  # enough for every signature below

_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"BM", "bmp"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"II+\x00", "tiff"),  # BigTIFF
    (0, b"MM\x00+", "tiff"),
    (0, b"\x00\x00\x01\x00", "ico"),
    (0, b"icns", "icns"),
    (0, b"\x01\xda", "sgi"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (0, b"\xffO\xffQ", "jpeg2000"),  # raw J2K codestream
)


def sniff_image_format(head: bytes) -> str | None:
    """Our format name for the first bytes of a file, or None when they do not start a supported image."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for offset, magic, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None
