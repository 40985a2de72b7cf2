"""Render text onto PIL images with the WQY Micro Hei font (CJK + Latin), for OCR and image-ingest tests."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WQY_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")

Color = str | tuple[int, int, int]


@lru_cache(maxsize=16)
def font(px: int) -> ImageFont.FreeTypeFont:
    """The WQY font at `px` pixels, cached: loading a .ttc is not free."""
    return ImageFont.truetype(str(WQY_FONT), px)


def render_text(
    lines: str | list[str],
    size: tuple[int, int] = (400, 100),
    *,
    px: int = 36,
    background: Color = "white",
    color: Color = "black",
    angle: float = 0.0,
    margin: int = 12,
    spacing: int = 12,
) -> Image.Image:
    """An RGB image with `lines` drawn top-left, one per row; `angle` rotates it (degrees, counter-clockwise)."""
    if isinstance(lines, str):
        lines = [lines]
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    y = margin
    for line in lines:
        draw.text((margin, y), line, font=font(px), fill=color)
        y += px + spacing
    if angle:
        image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=background)
    return image
