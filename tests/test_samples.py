"""The demo catalogue shipped in the package: valid items, a readable picture per item, reproducible from its generator,
and words only the pictures carry (slogans, model numbers) found by OCR through the `text` channel."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from mmsearch import samples
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.media.images import decode_image
from mmsearch.samples import make_products
from mmsearch.schema import parse_schema, validate_item
from mmsearch.search import SearchRequest
from mmsearch.text import normalize, tokenize, tokenize_query

needs_font = pytest.mark.skipif(not make_products.WQY_FONT.exists(), reason="fonts-wqy-microhei is not installed")


@pytest.fixture(scope="module")
def raw_items() -> list[dict]:
    return samples.load_products(absolute_images=False)


def test_every_item_is_valid_with_a_unique_id(raw_items):
    schema = parse_schema(samples.load_schema())
    assert len(raw_items) == 240
    for n, item in enumerate(raw_items):
        valid, errors = validate_item(schema, item, n, 512)
        assert valid is not None and not errors, errors
    ids = [item["item_id"] for item in raw_items]
    assert len(set(ids)) == len(ids)
    assert ids == [f"P{n:04d}" for n in range(240)]


def test_every_item_has_one_shipped_picture_that_decodes(raw_items):
    seen = set()
    for item in raw_items:
        assert item["images"] == [{"image_url": f"images/{item['item_id']}.png"}]
        path = samples.SAMPLES_DIR / item["images"][0]["image_url"]
        decoded = decode_image(path.read_bytes())
        assert (decoded.width, decoded.height) == make_products.IMAGE_SIZE
        seen.add(decoded.sha256)
    assert len(seen) == len(raw_items)  # no two cards alike
    assert sorted(p.name for p in samples.IMAGES_DIR.iterdir()) == [f"{i['item_id']}.png" for i in raw_items]
    assert sum(p.stat().st_size for p in samples.IMAGES_DIR.iterdir()) <= 2_000_000  # ~1.2 MB: cheap to ship


def test_load_products_makes_picture_paths_absolute(raw_items):
    items = samples.load_products()
    assert [dict(i, images=None) for i in items] == [dict(i, images=None) for i in raw_items]
    first = items[0]["images"][0]["image_url"]
    assert first == str(samples.IMAGES_DIR / "P0000.png")
    untouched = {"images": ["https://example.com/a.png", {"image_url": "/abs/b.png"}, "data:image/png;base64,AA"]}
    assert samples.absolute_image_refs(untouched) == untouched


def test_the_generator_reproduces_the_shipped_file():
    done = subprocess.run([sys.executable, "-m", "mmsearch.samples.make_products"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == samples.PRODUCTS.read_bytes()


@needs_font
def test_the_generator_reproduces_the_shipped_pictures(tmp_path, raw_items):
    make_products.main(["--images", str(tmp_path)])
    for n in (0, 7, 128, 239):
        name = make_products.image_name(n)
        assert (tmp_path / name).read_bytes() == (samples.IMAGES_DIR / name).read_bytes(), name


def test_picture_only_words_are_in_no_text_field(raw_items):
    """Slogans and model numbers are printed on the cards only: a query for them can match nothing but OCR text."""
    text_tokens = set()
    for item in raw_items:
        text_tokens |= set(tokenize(" ".join([item["title"], item["description"], item["brand"]])))
    for phrase in [*make_products.SLOGANS, *(make_products.model_number(n) for n in range(240))]:
        assert not set(tokenize_query(phrase)) & text_tokens, phrase


def squash(text: str) -> str:
    return re.sub(r"\s+", "", normalize(text))


@needs_font
def test_ocr_reads_a_card(raw_items):
    from PIL import Image

    from mmsearch.encoders.ocr import OcrEngine

    n = 8  # 李宁 / 粉色 耳机 / 型号 HD-1008 / pink wireless headphones / 限时特惠
    with Image.open(samples.IMAGES_DIR / make_products.image_name(n)) as image:
        result = OcrEngine().read(image.convert("RGB"))
    lines = make_products.card_lines(n, raw_items[n])
    assert lines["slogan"] == "限时特惠" and lines["model"] == "型号 HD-1008"
    for line in lines.values():
        assert squash(line) in squash(result.text), (line, result.text)
        assert set(tokenize_query(line)) <= set(tokenize(result.text)), (line, result.text)


@needs_font
def test_ocr_only_words_find_products_without_an_image_model(tmp_path):
    """The quickstart's offline path: no CLIP model, the pictures read by OCR at import, absolute refs under the
    samples folder as the only image root; a slogan and a model number find their products through the text channel."""
    mm = MMSearch(Settings(home=tmp_path, clip_model="none", ocr=True, image_roots=str(samples.SAMPLES_DIR)))
    mm.create_dataset("demo", samples.load_schema())
    items = samples.load_products()[:20]  # P0000-P0009 say 限时特惠, P0010-P0019 新品上市
    report = mm.import_items("demo", items)
    assert report.imported == 20 and not report.warnings, report.as_dict()
    assert report.images["loaded"] == 20 and report.images["ocr_chars"] > 0

    def found(text: str) -> list[str]:
        return [h.id for h in mm.search("demo", SearchRequest(text=text, page_size=50, channels=("text",))).hits]

    assert sorted(found("限时特惠")) == [f"P{n:04d}" for n in range(10)]
    assert sorted(found("新品上市")) == [f"P{n:04d}" for n in range(10, 20)]
    assert found("HD-1008")[0] == "P0008"


def test_schema_file_is_json():
    assert json.loads(samples.SCHEMA.read_text(encoding="utf-8"))["fields"][0]["primary_key"] is True
