"""Import with images: embeddings from image fields, per-image failures as warnings, a content-hash cache."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image, ImageDraw

from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders import HashingEncoder
from mmsearch.errors import InvalidArgument
from mmsearch.ingest.images import ImageIndexer, LoadedImage
from mmsearch.search import SearchRequest

SCHEMA = {"fields": [
    {"name": "item_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "images", "type": "image"},
]}


def picture(seed: int) -> Image.Image:
    img = Image.new("RGB", (64, 64), "white")
    draw = ImageDraw.Draw(img)
    x, y = seed * 7 % 40, seed * 13 % 40
    draw.rectangle((x, y, x + 20, y + 20), fill=(seed * 40 % 255, 0, 0))
    draw.ellipse((seed * 3 % 30, 30, seed * 3 % 30 + 30, 60), fill=(0, 0, seed * 60 % 255))
    return img


class Gallery:
    """A loader over generated pictures: `pic:N` exists, anything else fails like an unreachable URL."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, ref: str) -> LoadedImage:
        self.calls.append(ref)
        if not ref.startswith("pic:"):
            raise InvalidArgument(f"cannot fetch {ref}: connection refused", field="images")
        img = picture(int(ref[4:]))
        return LoadedImage(img, img.width, img.height, hashlib.sha256(img.tobytes()).hexdigest())


@pytest.fixture
def setup(tmp_path):
    encoder = HashingEncoder(32)
    mm = MMSearch(Settings(home=tmp_path), encoder=encoder)
    info = mm.create_dataset("g", SCHEMA)
    return mm, info, encoder


def run_import(mm, info, encoder, items, gallery):
    from mmsearch.ingest import import_items

    indexer = ImageIndexer(info, gallery, encoder=encoder)
    return import_items(info, enumerate(items), mm.store, images=indexer), indexer


def test_images_become_searchable_vectors(setup):
    mm, info, encoder = setup
    gallery = Gallery()
    items = [
        {"item_id": "a", "title": "红色 方块", "images": "pic:1"},
        {"item_id": "b", "title": "蓝色 圆形", "images": ["pic:2"]},
        {"item_id": "c", "title": "混合", "images": [{"image_url": "pic:3"}, {"image_url": "pic:4"}]},
    ]
    report, _ = run_import(mm, info, encoder, items, gallery)
    assert (report.imported, report.rejected, report.warnings) == (3, 0, [])
    assert report.images["embedded"] == 4 and report.images["failed"] == 0
    assert mm.stats("g")["vectors"] == 3

    for n, expected in ((1, "a"), (2, "b")):
        result = mm.search("g", SearchRequest(image=picture(n), channels=("vlm",)))
        assert result.hits[0].id == expected
        assert result.hits[0].recall["vlm"] == pytest.approx(1.0, abs=1e-5)
    # c's vector is the mean of its two pictures: close to both, identical to neither
    c = mm.search("g", SearchRequest(image=picture(3), channels=("vlm",))).hits
    assert c[0].id == "c" and c[0].recall["vlm"] < 0.9999


def test_failed_images_are_warnings_not_rejections(setup):
    mm, info, encoder = setup
    items = [
        {"item_id": "ok", "title": "正常", "images": ["pic:1", "http://unreachable.invalid/x.jpg"]},
        {"item_id": "none", "title": "只有文字 运动鞋", "images": ["http://unreachable.invalid/y.jpg"]},
    ]
    report, _ = run_import(mm, info, encoder, items, Gallery())
    assert (report.imported, report.rejected) == (2, 0)
    rules = sorted((w.id, w.field or "", w.rule) for w in report.warnings)
    assert rules == [("none", "", "no_images"), ("none", "images", "image"), ("ok", "images", "image")]
    assert "connection refused" in report.warnings[0].message
    assert report.as_dict()["warnings"][0]["rule"] in {"image", "no_images"}
    # the item without any image is still found by its text, and has no vector
    hits = mm.search("g", SearchRequest(text="运动鞋", channels=("text",))).hits
    assert [h.id for h in hits] == ["none"]
    assert mm.stats("g")["vectors"] == 1


def test_same_image_is_fetched_for_each_ref_but_embedded_once(setup):
    mm, info, encoder = setup
    gallery = Gallery()
    items = [{"item_id": str(i), "title": "同款", "images": "pic:7"} for i in range(5)]
    report, _ = run_import(mm, info, encoder, items, gallery)
    assert report.images["embedded"] == 1 and report.images["reused"] == 4
    report, _ = run_import(mm, info, encoder, items, gallery)  # a fresh indexer: embedded again once
    assert report.images["embedded"] == 1 and report.replaced == 5


def test_supplied_vector_wins_over_images(setup):
    mm, info, encoder = setup
    own = [1.0] + [0.0] * 31
    report, _ = run_import(mm, info, encoder, [{"item_id": "v", "title": "x", "images": "pic:1", "_vector": own}],
                           Gallery())
    assert report.imported == 1
    hit = mm.search("g", SearchRequest(vector=own, channels=("vlm",))).hits[0]
    assert hit.id == "v" and hit.recall["vlm"] == pytest.approx(1.0, abs=1e-6)


def test_encoder_dimension_must_match(setup):
    _, info, _ = setup
    with pytest.raises(Exception, match="create the dataset with --dim 16"):
        ImageIndexer(info, Gallery(), encoder=HashingEncoder(16))


def test_words_only_inside_an_image_find_the_item(setup):
    from mmsearch.encoders.ocr import OcrEngine
    from mmsearch.ingest import import_items
    from render import render_text

    mm, info, encoder = setup
    banners = {
        "ban:1": render_text(["春夏新款运动鞋"]),
        "ban:2": render_text(["Wireless Headphones 2024"], size=(520, 100)),
    }

    def load(ref: str) -> LoadedImage:
        img = banners[ref]
        return LoadedImage(img, img.width, img.height, hashlib.sha256(img.tobytes()).hexdigest())

    indexer = ImageIndexer(info, load, encoder=encoder, ocr=OcrEngine())
    items = [{"item_id": "shoe", "title": "商品一", "images": "ban:1"},
             {"item_id": "phones", "title": "商品二", "images": "ban:2"}]
    report = import_items(info, enumerate(items), mm.store, images=indexer)
    assert report.imported == 2 and report.images["ocr_chars"] > 10
    for query, expected in (("运动鞋", "shoe"), ("headphones", "phones"), ("2024", "phones")):
        hits = mm.search("g", SearchRequest(text=query, channels=("text",))).hits
        assert [h.id for h in hits] == [expected], query
