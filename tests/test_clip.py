"""ClipEncoder on real ONNX Runtime sessions over tiny generated models in both real directory layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tiny_clip
from mmsearch.encoders.clip import DEFAULT_CLIP_MODEL, ClipEncoder, ModelUnavailable, load_clip
from mmsearch.errors import MMSearchError

LAYOUTS = ["immich", "immich_mclip", "transformers"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_clip")
    return {
        "immich": tiny_clip.build_immich(root / "immich"),
        "immich_mclip": tiny_clip.build_immich(root / "immich_mclip", mclip=True),
        "transformers": tiny_clip.build_transformers(root / "transformers"),
    }


@pytest.fixture(params=LAYOUTS)
def encoder(request, model_dirs) -> ClipEncoder:
    return load_clip(str(model_dirs[request.param]))


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(40, 40), (64, 48), (33, 90), (32, 32), (120, 70), (50, 51)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


def _normalised(rgb: np.ndarray) -> np.ndarray:
    """The hand-computed pixel tensor: scale 1/255, subtract the config mean, divide by its std, HWC -> CHW."""
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.array(tiny_clip.MEAN, np.float32)) / np.array(tiny_clip.STD, np.float32)
    return x.transpose(2, 0, 1)


def test_shapes_norms_and_attributes(encoder, model_dirs):
    texts = ["a photo of a cat", "红色 连衣裙", "running shoes for kids"]
    t = encoder.encode_text(texts)
    i = encoder.encode_image(_images(2))
    assert encoder.dim == tiny_clip.DIM
    assert encoder.model_id in {str(p) for p in model_dirs.values()}
    assert t.shape == (3, tiny_clip.DIM) and t.dtype == np.float32
    assert i.shape == (2, tiny_clip.DIM) and i.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(i, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_text([]).shape == (0, tiny_clip.DIM)
    assert encoder.encode_image([]).shape == (0, tiny_clip.DIM)


def test_batches_equal_one_by_one(encoder):
    texts = ["a red cat", "the blue dog", "运动鞋", "summer dress", "one two three four five six seven"]
    images = _images(5, seed=3)
    encoder.batch_size = 2
    batched_t, batched_i = encoder.encode_text(texts), encoder.encode_image(images)
    single_t = np.concatenate([encoder.encode_text([t]) for t in texts])
    single_i = np.concatenate([encoder.encode_image([im]) for im in images])
    np.testing.assert_allclose(batched_t, single_t, atol=1e-5)
    np.testing.assert_allclose(batched_i, single_i, atol=1e-5)
    assert len({tuple(np.round(v, 4)) for v in batched_t}) == 5, "distinct texts must give distinct vectors"


def test_fixed_batch_graph_is_fed_one_row_at_a_time(model_dirs):
    enc = load_clip(str(model_dirs["immich_mclip"]))  # text input traced as [1, context]
    assert enc._text_inputs["input_ids"].shape[0] == 1
    texts = ["a cat", "a dog", "红色 连衣裙"]
    together = enc.encode_text(texts)
    np.testing.assert_allclose(together, np.concatenate([enc.encode_text([t]) for t in texts]), atol=1e-6)
    assert enc.encode_image(_images(3)).shape == (3, tiny_clip.DIM)  # its image tower still takes batches


def test_deterministic_across_calls_and_loads(encoder):
    text = "a photo of a red shoe"
    twice = encoder.encode_text([text, text])
    np.testing.assert_array_equal(twice[0], twice[1])
    again = load_clip(encoder.model_id).encode_text([text])
    np.testing.assert_allclose(again[0], twice[0], atol=1e-6)
    image = _images(1)[0]
    np.testing.assert_array_equal(encoder.encode_image([image])[0], encoder.encode_image([image.copy()])[0])
    whitespace = encoder.encode_text(["  a photo   of a red\tshoe "])
    np.testing.assert_allclose(whitespace[0], twice[0], atol=1e-6)


def test_truncates_and_pads_to_context_length(encoder):
    shared = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    long_a, long_b = f"{shared} cat dog", f"{shared} shoe dress coat"
    feeds = encoder.tokenize([long_a, long_b, "a cat"])
    ids = feeds[encoder._ids_name]
    assert ids.shape == (3, tiny_clip.CONTEXT)
    np.testing.assert_array_equal(ids[0], ids[1])
    assert ids[0, -1] != tiny_clip.PAD_ID, "a long text fills the whole context"
    assert list(ids[2, :4]) == [tiny_clip.BOS_ID, 4, 12, tiny_clip.EOS_ID]  # <s> a cat </s>
    assert (ids[2, 4:] == tiny_clip.PAD_ID).all()
    vec = encoder.encode_text([long_a, long_b, shared[:20]])
    np.testing.assert_array_equal(vec[0], vec[1])
    assert not np.allclose(vec[0], vec[2])
    if encoder._mask_name:
        mask = feeds[encoder._mask_name]
        assert mask[2].tolist() == [1] * 4 + [0] * (tiny_clip.CONTEXT - 4)
        assert mask.dtype == ids.dtype


def test_token_dtype_follows_the_graph(model_dirs):
    assert load_clip(str(model_dirs["immich"])).tokenize(["a cat"])["text"].dtype == np.int32
    hf = load_clip(str(model_dirs["transformers"])).tokenize(["a cat"])
    assert hf["input_ids"].dtype == np.int64 and hf["attention_mask"].dtype == np.int64


def test_preprocess_solid_colour_after_resize(encoder):
    colour = (200, 100, 50)
    pixels = encoder.preprocess([Image.new("RGB", (80, 50), colour), Image.new("L", (64, 64), 128)])
    assert pixels.shape == (2, 3, tiny_clip.IMAGE, tiny_clip.IMAGE) and pixels.dtype == np.float32
    for c in range(3):
        expected = (colour[c] / 255.0 - tiny_clip.MEAN[c]) / tiny_clip.STD[c]
        np.testing.assert_allclose(pixels[0, c], expected, atol=1e-5)
        np.testing.assert_allclose(pixels[1, c], (128 / 255.0 - tiny_clip.MEAN[c]) / tiny_clip.STD[c], atol=1e-5)


def test_preprocess_center_crops_without_resizing_the_short_edge(encoder):
    rng = np.random.default_rng(7)
    s = tiny_clip.IMAGE
    wide = rng.integers(0, 256, (s, 3 * s, 3), dtype=np.uint8)
    tall = rng.integers(0, 256, (3 * s, s, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (s, s, 4), dtype=np.uint8)
    pixels = encoder.preprocess([Image.fromarray(wide), Image.fromarray(tall), Image.fromarray(rgba, "RGBA")])
    np.testing.assert_allclose(pixels[0], _normalised(wide[:, s : 2 * s]), atol=1e-5)
    np.testing.assert_allclose(pixels[1], _normalised(tall[s : 2 * s, :]), atol=1e-5)
    rgb = np.asarray(Image.fromarray(rgba, "RGBA").convert("RGB"))
    np.testing.assert_allclose(pixels[2], _normalised(rgb), atol=1e-5)


def test_preprocess_resizes_shortest_edge_bicubic(encoder):
    rng = np.random.default_rng(11)
    s = tiny_clip.IMAGE
    big = Image.fromarray(rng.integers(0, 256, (2 * s, 3 * s, 3), dtype=np.uint8))  # 96 x 64 -> 48 x 32
    expected = np.asarray(big.resize((int(s * 3 / 2), s), Image.Resampling.BICUBIC))[:, 8 : 8 + s]
    np.testing.assert_allclose(encoder.preprocess([big])[0], _normalised(expected), atol=1e-5)
    nearest = np.asarray(big.resize((int(s * 3 / 2), s), Image.Resampling.NEAREST))[:, 8 : 8 + s]
    assert not np.allclose(_normalised(nearest), encoder.preprocess([big])[0], atol=1e-3)


def test_image_vector_depends_on_pixels_in_the_crop(encoder):
    s = tiny_clip.IMAGE
    base = np.zeros((s, 3 * s, 3), dtype=np.uint8)
    edited_outside = base.copy()
    edited_outside[:, :s] = 255  # left third is cropped away
    edited_inside = base.copy()
    edited_inside[:, s : 2 * s] = 255
    v = encoder.encode_image([Image.fromarray(a) for a in (base, edited_outside, edited_inside)])
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)
    assert not np.allclose(v[0], v[2], atol=1e-3)


def test_uint8_image_graph_gets_rgb_pixels_and_matches_float_graph(tmp_path):
    as_float = load_clip(str(tiny_clip.build_immich(tmp_path / "float", seed=5)))
    as_uint8 = load_clip(str(tiny_clip.build_immich(tmp_path / "uint8", seed=5, uint8_image=True)))
    images = _images(4, seed=9)
    pixels = as_uint8.preprocess(images)
    assert pixels.dtype == np.uint8 and pixels.shape == (4, tiny_clip.IMAGE, tiny_clip.IMAGE, 3)
    np.testing.assert_allclose(as_uint8.encode_image(images), as_float.encode_image(images), atol=1e-5)


def test_embedding_output_found_without_its_usual_name(tmp_path, model_dirs):
    odd = load_clip(str(tiny_clip.build_transformers(tmp_path / "odd", text_output="t", image_output="i")))
    usual = load_clip(str(model_dirs["transformers"]))
    np.testing.assert_allclose(odd.encode_text(["a red cat"]), usual.encode_text(["a red cat"]), atol=1e-6)
    images = _images(2)
    np.testing.assert_allclose(odd.encode_image(images), usual.encode_image(images), atol=1e-6)


def test_providers_and_threads(model_dirs):
    enc = load_clip(str(model_dirs["transformers"]), providers="auto", threads=1)
    assert enc.providers[-1] == "CPUExecutionProvider"
    fallback = load_clip(str(model_dirs["immich"]), providers=["NoSuchExecutionProvider"])
    assert fallback.providers == ["CPUExecutionProvider"]
    assert fallback.encode_text(["a cat"]).shape == (1, tiny_clip.DIM)


def _unavailable(model: str, **kwargs) -> ModelUnavailable:
    with pytest.raises(ModelUnavailable) as info:
        load_clip(model, **kwargs)
    err = info.value
    assert isinstance(err, MMSearchError) and err.code == "ModelUnavailable"
    assert model in err.message
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), "no chained traceback"
    assert "\n" not in err.message
    return err


def test_missing_or_invalid_directory(tmp_path, model_dirs):
    _unavailable(str(tmp_path / "no" / "such" / "model"))
    (tmp_path / "empty").mkdir()
    err = _unavailable(str(tmp_path / "empty"))
    assert "textual/model.onnx" in err.message and "onnx/text_model.onnx" in err.message
    broken = tmp_path / "broken"
    shutil.copytree(model_dirs["immich"], broken)
    (broken / "textual" / "model.onnx").write_bytes(b"not an onnx file")
    assert "textual" in _unavailable(str(broken)).message
    no_vision = tmp_path / "no_vision"
    shutil.copytree(model_dirs["transformers"], no_vision)
    (no_vision / "onnx" / "vision_model.onnx").unlink()
    assert "vision_model.onnx" in _unavailable(str(no_vision)).message


def test_unreachable_repo_id_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    err = _unavailable("immich-app/No-Such-Model-For-Tests", cache_dir=tmp_path / "cache")
    assert "huggingface-cli download immich-app/No-Such-Model-For-Tests" in err.message
    assert err.field == "model"


def test_repo_id_served_from_a_copied_hf_cache(tmp_path, monkeypatch, model_dirs):
    """A cache copied from a connected machine (models--org--name/snapshots/<rev>) loads offline by repo id."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "cache" / "models--tiny-org--tiny-clip"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(model_dirs["transformers"], repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    enc = load_clip("tiny-org/tiny-clip", cache_dir=tmp_path / "cache")
    assert enc.model_id == "tiny-org/tiny-clip"
    direct = load_clip(str(model_dirs["transformers"]))
    np.testing.assert_allclose(enc.encode_text(["a cat"]), direct.encode_text(["a cat"]), atol=1e-6)


def test_default_model_is_a_documented_repo_id():
    assert DEFAULT_CLIP_MODEL.count("/") == 1
    docs = Path(__file__).resolve().parents[1] / "docs" / "models.md"
    assert DEFAULT_CLIP_MODEL in docs.read_text(encoding="utf-8")
