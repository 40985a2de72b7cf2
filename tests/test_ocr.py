"""OCR with the real RapidOCR models on images rendered with a CJK font: planted phrases must come back as text
and as the same tokens the query side produces, so OCR'd images are findable through the `text` channel."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageDraw

from mmsearch.encoders.ocr import OcrEngine, OcrResult, ocr_available
from mmsearch.errors import InvalidArgument
from mmsearch.text import normalize, tokenize, tokenize_query
from render import WQY_FONT, font, render_text

pytestmark = pytest.mark.skipif(not WQY_FONT.exists(), reason="fonts-wqy-microhei is not installed")


def squash(text: str) -> str:
    """OCR may drop or insert spaces and uses full-width forms at times: compare normalised, without whitespace."""
    return re.sub(r"\s+", "", normalize(text))


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    ocr = OcrEngine()
    ocr.load()  # once per module: building the ONNX sessions takes a second or two
    return ocr


def two_line_banner() -> Image.Image:
    """Chinese over English, white on dark blue: a typical product banner."""
    lines = ["限时特价 保温杯", "Coffee Mug 350ml"]
    return render_text(lines, (440, 130), px=40, background=(30, 60, 140), color="white")


SINGLE_LINE = [
    pytest.param("春夏新款运动鞋", (400, 100), id="zh-product"),
    pytest.param("三体 刘慈欣", (400, 100), id="zh-book-author"),
    pytest.param("Wireless Headphones 2024", (520, 100), id="en-product"),
]


@pytest.mark.parametrize(("phrase", "size"), SINGLE_LINE)
def test_reads_planted_phrase(engine: OcrEngine, phrase: str, size: tuple[int, int]) -> None:
    result = engine.read(render_text(phrase, size, px=36))
    assert squash(phrase) in squash(result.text)
    assert all(0.5 <= line.score <= 1.0 for line in result.lines)
    # found through tokenisation: every query token of the phrase is an index token of the OCR text
    assert set(tokenize_query(phrase)) <= set(tokenize(result.text))


def test_two_lines_on_coloured_background_in_reading_order(engine: OcrEngine) -> None:
    image = two_line_banner()
    result = engine.read(image)
    text = squash(result.text)
    assert squash("限时特价保温杯") in text
    assert squash("Coffee Mug 350ml") in text
    assert text.index("保温杯") < text.index("coffee")
    assert {"保温杯", "coffee", "mug", "350", "ml"} <= set(tokenize(result.text))
    # boxes are in image pixels, the first line above the second
    first = next(line for line in result.lines if "保温" in line.text)
    second = next(line for line in result.lines if "Mug" in line.text)
    assert max(y for _, y in first.box) <= min(y for _, y in second.box) + 5
    assert all(0 <= x <= 440 and 0 <= y <= 130 for line in result.lines for x, y in line.box)


def test_slightly_rotated_text_still_reads(engine: OcrEngine) -> None:
    result = engine.read(render_text("春夏新款运动鞋", angle=3))
    assert squash("春夏新款运动鞋") in squash(result.text)


def test_transparent_png_reads_as_on_white(engine: OcrEngine) -> None:
    image = Image.new("RGBA", (400, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((12, 12), "三体 刘慈欣", font=font(36), fill=(0, 0, 0, 255))
    assert squash("三体刘慈欣") in squash(engine.read(image).text)


def test_large_image_is_downscaled_and_boxes_map_back(engine: OcrEngine) -> None:
    image = render_text("春夏新款运动鞋", (3000, 800), px=120, margin=40)
    result = engine.read(image)
    assert squash("春夏新款运动鞋") in squash(result.text)
    right_edge = max(x for line in result.lines for x, _ in line.box)
    assert 700 < right_edge < 1000  # ~40 + 7 x 120 px in the original, not the 2000-px working copy


def test_blank_image_gives_empty_result(engine: OcrEngine) -> None:
    result = engine.read(Image.new("RGB", (400, 100), "white"))
    assert result == OcrResult()
    assert result.text == ""
    assert not result


@pytest.mark.parametrize("size", [(10, 10), (300, 8), (1, 1)])
def test_tiny_image_gives_empty_result(engine: OcrEngine, size: tuple[int, int]) -> None:
    assert engine.read(Image.new("RGB", size, "black")).text == ""


def test_threshold_drops_low_score_lines(engine: OcrEngine) -> None:
    image = two_line_banner()
    everything = OcrEngine(min_score=0.0).read(image)
    assert len(everything.lines) >= 2
    weakest = min(line.score for line in everything.lines)
    strict = OcrEngine(min_score=min(1.0, weakest + 1e-6)).read(image)
    assert len(strict.lines) < len(everything.lines)
    assert all(line.score > weakest for line in strict.lines)
    assert OcrEngine(min_score=1.0 - 1e-9).read(render_text("")) == OcrResult()


def test_read_many_keeps_order_and_is_thread_safe(engine: OcrEngine) -> None:
    phrases = ["春夏新款运动鞋", "三体 刘慈欣", "春夏新款运动鞋", "三体 刘慈欣"]
    images = [render_text(p) for p in phrases]
    sequential = engine.read_many(images)
    assert [squash(p) in squash(r.text) for p, r in zip(phrases, sequential, strict=True)] == [True] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(engine.read, images))
    assert [r.text for r in concurrent] == [r.text for r in sequential]


def test_bad_arguments_are_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as err:
        OcrEngine(min_score=1.5)
    assert err.value.field == "min_score"
    with pytest.raises(InvalidArgument):
        OcrEngine(threads=0)
    with pytest.raises(InvalidArgument) as err:
        OcrEngine().read("photo.jpg")  # type: ignore[arg-type]
    assert err.value.field == "image"


def test_ocr_available_reports_loaded_engine() -> None:
    ok, detail = ocr_available()
    assert ok, detail
    assert "rapidocr_onnxruntime" in detail
