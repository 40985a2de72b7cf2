"""The whole import-with-images path as users run it: settings pick a (tiny, generated) CLIP model,
images arrive as data URIs, local paths and URLs, the fetcher's SSRF guard and the allowed roots hold,
OCR makes words inside images searchable, and image queries find their items."""

from __future__ import annotations

import base64
import io
import json

import pytest

import tiny_clip
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.search import SearchRequest
from render import render_text

SCHEMA = {"fields": [
    {"name": "item_id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
    {"name": "images", "type": "image"},
]}


def data_uri(img, fmt="PNG") -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


@pytest.fixture
def engine(tmp_path):
    model = tiny_clip.build_immich(tmp_path / "model")
    roots = tmp_path / "images"
    roots.mkdir()
    settings = Settings(home=tmp_path / "home", clip_model=str(model), image_roots=str(roots))
    return MMSearch(settings), roots, tmp_path


def test_model_from_settings_and_images_from_every_source(engine):
    mm, roots, tmp_path = engine
    assert mm.encoder_status() | {"providers": None} == {
        "model": mm.encoder.model_id, "available": True, "dim": tiny_clip.DIM, "providers": None, "message": ""}
    info = mm.create_dataset("p", SCHEMA)
    assert info.vector_dim == tiny_clip.DIM  # the dataset takes the model's dimension

    shoe = render_text(["春夏新款运动鞋"])
    mug = render_text(["Coffee Mug 350ml"], background=(20, 40, 120), color=(255, 255, 255))
    mug.save(roots / "mug.png")
    outside = tmp_path / "secret.png"
    mug.save(outside)
    items = [
        {"item_id": "shoe", "title": "商品 A", "images": [{"image_url": data_uri(shoe)}]},
        {"item_id": "mug", "title": "商品 B", "images": [str(roots / "mug.png")]},
        {"item_id": "leak", "title": "商品 C", "images": [str(outside), "http://127.0.0.1:9/x.png"]},
    ]
    report = mm.import_items("p", items)
    assert (report.imported, report.rejected) == (3, 0)
    problems = {(w.id, w.rule): w.message for w in report.warnings}
    assert set(problems) == {("leak", "image"), ("leak", "no_images")}
    messages = " ".join(w.message for w in report.warnings if w.rule == "image")
    assert "127.0.0.1" in messages and "secret.png" in messages  # refused, not fetched or read
    assert report.images["loaded"] == 2 and report.images["embedded"] == 2
    assert mm.stats("p")["vectors"] == 2

    # words that appear only inside the images find their items (text channel: fields + OCR)
    for query, expected in (("运动鞋", "shoe"), ("coffee mug", "mug")):
        hits = mm.search("p", SearchRequest(text=query, channels=("text",))).hits
        assert [h.id for h in hits] == [expected], query
    # an image query finds the item with that picture, with a vlm recall score of ~1
    hit = mm.search("p", SearchRequest(image=mug, channels=("vlm",))).hits[0]
    assert hit.id == "mug" and hit.recall["vlm"] == pytest.approx(1.0, abs=1e-4)
    # display fields are what was imported; media metadata is kept out of them
    assert hit.fields == items[1]


def test_dataset_can_turn_ocr_off(engine):
    mm, _, _ = engine
    mm.create_dataset("quiet", {**SCHEMA, "ocr": False})
    report = mm.import_items("quiet", [{"item_id": "x", "title": "t", "images": data_uri(render_text(["运动鞋"]))}])
    assert report.images["ocr_chars"] == 0
    assert mm.search("quiet", SearchRequest(text="运动鞋", channels=("text",))).hits == []


def test_missing_model_leaves_text_search_working(tmp_path):
    mm = MMSearch(Settings(home=tmp_path, clip_model=str(tmp_path / "no-such-model")))
    status = mm.encoder_status()
    assert status["available"] is False and "no-such-model" in status["message"]
    mm.create_dataset("t", SCHEMA, vector_dim=16)
    report = mm.import_items("t", [{"item_id": "1", "title": "运动鞋", "images": data_uri(render_text(["帽子"]))}])
    assert report.imported == 1 and report.images["embedded"] == 0
    result = mm.search("t", SearchRequest(text="帽子"))
    assert [h.id for h in result.hits] == ["1"] and result.unavailable == ["vlm"]
    assert json.dumps(report.as_dict())


def test_model_dimension_mismatch_is_a_clear_error(engine):
    mm, _, _ = engine
    mm.create_dataset("wrong", SCHEMA, vector_dim=64)
    with pytest.raises(Exception, match=f"create the dataset with --dim {tiny_clip.DIM}"):
        mm.import_items("wrong", [{"item_id": "1", "title": "x"}])


def test_image_query_without_a_model_is_a_clear_error(tmp_path):
    from mmsearch.errors import Unavailable

    mm = MMSearch(Settings(home=tmp_path))  # MMSEARCH_CLIP_MODEL=none in tests
    mm.create_dataset("t", SCHEMA, vector_dim=16)
    mm.import_items("t", [{"item_id": "1", "title": "运动鞋"}])
    with pytest.raises(Unavailable, match=r"query\.image_url: image search needs the vlm channel"):
        mm.search("t", SearchRequest(image=render_text(["x"])))
    # a text query next to the image still fails loudly rather than silently ignoring the picture
    with pytest.raises(Unavailable):
        mm.search("t", SearchRequest(text="运动鞋", image=render_text(["x"])))
