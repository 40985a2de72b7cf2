"""Tiny CLIP-shaped ONNX models (random weights, real graphs, real tokenizer file) in the real layouts.

`build_immich(dir)` writes the Immich layout (config.json, textual/, visual/); `build_transformers(dir)`
writes the transformers.js/Optimum layout (config.json, preprocessor_config.json, tokenizer.json, onnx/).
The towers are small but not trivial: token embeddings plus position embeddings through tanh then
pooled (so order, padding and truncation all change the vector) and a projection; the vision tower
flattens every pixel through a projection (so crop and normalisation change the vector).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers, processors

DIM = 32
HIDDEN = 24
CONTEXT = 16
IMAGE = 32
MEAN = [0.5, 0.4, 0.3]
STD = [0.25, 0.2, 0.1]

WORDS = [
    "a", "an", "the", "photo", "of", "red", "blue", "green", "cat", "dog", "shoe", "shoes", "running", "dress",
    "bag", "coat", "summer", "winter", "kids", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
    "运动鞋", "连衣裙", "红色", "猫", "狗", "白色",
]
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def build_tokenizer(path: Path, *, with_padding: bool = False) -> Tokenizer:
    """A WordLevel tokenizer with <s> ... </s> framing, saved as a real tokenizer.json."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", BOS_ID), ("</s>", EOS_ID)]
    )
    tok.add_special_tokens(SPECIALS)
    if with_padding:  # transformers.js exports often carry their own padding section
        tok.enable_padding(pad_id=PAD_ID, pad_token="<pad>")
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return tok


def _text_graph(rng: np.random.Generator, *, ids_name: str, int_type: int, with_mask: bool,
                output: str, extra_output: bool, batch: str | int = "batch") -> onnx.ModelProto:
    vocab = len(SPECIALS) + len(WORDS)
    inits = [
        numpy_helper.from_array(rng.standard_normal((vocab, HIDDEN)).astype(np.float32), "tok_emb"),
        numpy_helper.from_array(rng.standard_normal((CONTEXT, HIDDEN)).astype(np.float32), "pos_emb"),
        numpy_helper.from_array(rng.standard_normal((HIDDEN, DIM)).astype(np.float32), "proj"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Gather", ["tok_emb", ids_name], ["tok"], axis=0),
        helper.make_node("Add", ["tok", "pos_emb"], ["tp"]),
        helper.make_node("Tanh", ["tp"], ["hidden"]),
    ]
    inputs = [helper.make_tensor_value_info(ids_name, int_type, [batch, CONTEXT])]
    if with_mask:  # masked mean over real tokens, like a pooled transformer output
        inputs.append(helper.make_tensor_value_info("attention_mask", int_type, [batch, CONTEXT]))
        inits.append(numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"))
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["hidden", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
            helper.make_node("Div", ["summed", "count"], ["pooled"]),
        ]
    else:  # fixed-length open_clip style: every position (padding included) feeds the pool
        nodes.append(helper.make_node("ReduceMean", ["hidden", "axis1"], ["pooled"], keepdims=0))
    nodes.append(helper.make_node("MatMul", ["pooled", "proj"], [output]))
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, [batch, DIM])]
    if extra_output:  # real HF exports also return the hidden states; the encoder must pick the embedding
        nodes.append(helper.make_node("Identity", ["hidden"], ["last_hidden_state"]))
        outputs.insert(0, helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                                        ["batch", CONTEXT, HIDDEN]))
    graph = helper.make_graph(nodes, "tiny_text", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def _vision_graph(rng: np.random.Generator, *, input_name: str, output: str, extra_output: bool,
                  uint8: bool = False) -> onnx.ModelProto:
    flat = 3 * IMAGE * IMAGE
    inits = [numpy_helper.from_array((rng.standard_normal((flat, DIM)) / 8).astype(np.float32), "proj")]
    nodes = [
        helper.make_node("Flatten", ["pixels"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "proj"], [output]),
    ]
    if uint8:  # newer Immich exports take RGB uint8 NHWC and normalise inside the graph
        inits += [
            numpy_helper.from_array(np.float32(255.0).reshape(()), "scale"),
            numpy_helper.from_array(np.array(MEAN, np.float32).reshape(1, 3, 1, 1), "mean"),
            numpy_helper.from_array(np.array(STD, np.float32).reshape(1, 3, 1, 1), "std"),
        ]
        nodes[:0] = [
            helper.make_node("Cast", [input_name], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["as_float"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Div", ["nchw", "scale"], ["unit"]),
            helper.make_node("Sub", ["unit", "mean"], ["centred"]),
            helper.make_node("Div", ["centred", "std"], ["pixels"]),
        ]
        inputs = [helper.make_tensor_value_info(input_name, TensorProto.UINT8, ["batch", IMAGE, IMAGE, 3])]
    else:
        nodes.insert(0, helper.make_node("Identity", [input_name], ["pixels"]))
        inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, IMAGE, IMAGE])]
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", DIM])]
    if extra_output:
        nodes.append(helper.make_node("GlobalAveragePool", [input_name], ["pooled_pixels"]))
        outputs.insert(0, helper.make_tensor_value_info("pooled_pixels", TensorProto.FLOAT, ["batch", 3, 1, 1]))
    graph = helper.make_graph(nodes, "tiny_vision", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def _save(model: onnx.ModelProto, path: Path) -> None:
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def build_immich(root: Path, *, seed: int = 0, mclip: bool = False, uint8_image: bool = False) -> Path:
    """Immich layout; open_clip text input `text` (int32), or M-CLIP `input_ids` + `attention_mask`.

    Immich traces M-CLIP text towers without dynamic axes, so that variant has a fixed batch of 1.

    `uint8_image` makes the image tower take RGB uint8 NHWC and normalise itself (same weights per seed).
    """
    rng = np.random.default_rng(seed)
    ids_name = "input_ids" if mclip else "text"
    text = _text_graph(rng, ids_name=ids_name, int_type=TensorProto.INT32, with_mask=mclip,
                       output="embedding", extra_output=False, batch=1 if mclip else "batch")
    _save(text, root / "textual" / "model.onnx")
    _save(_vision_graph(rng, input_name="image", output="embedding", extra_output=False, uint8=uint8_image),
          root / "visual" / "model.onnx")
    build_tokenizer(root / "textual" / "tokenizer.json")
    _write_json(root / "textual" / "tokenizer_config.json", {"pad_token": "<pad>", "model_max_length": CONTEXT})
    _write_json(root / "config.json", {
        "embed_dim": DIM,
        "vision_cfg": {"image_size": IMAGE, "layers": 1, "width": 8, "patch_size": 16},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": len(SPECIALS) + len(WORDS), "width": HIDDEN},
    })
    _write_json(root / "visual" / "preprocess_cfg.json", {
        "size": [IMAGE, IMAGE], "mode": "RGB", "mean": MEAN, "std": STD,
        "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0,
    })
    return root


def build_transformers(root: Path, *, seed: int = 1, crop: int = IMAGE, shortest_edge: int | None = None,
                       text_output: str = "text_embeds", image_output: str = "image_embeds") -> Path:
    """transformers.js / Optimum layout: onnx/text_model.onnx, onnx/vision_model.onnx and HF configs.

    Other output names stand for exports that do not use the usual ones: the encoder must still find
    the embedding among the outputs (the hidden-state output comes first).
    """
    rng = np.random.default_rng(seed)
    _save(_text_graph(rng, ids_name="input_ids", int_type=TensorProto.INT64, with_mask=True,
                      output=text_output, extra_output=True), root / "onnx" / "text_model.onnx")
    _save(_vision_graph(rng, input_name="pixel_values", output=image_output, extra_output=True),
          root / "onnx" / "vision_model.onnx")
    build_tokenizer(root / "tokenizer.json", with_padding=True)
    _write_json(root / "tokenizer_config.json", {"pad_token": "<pad>", "model_max_length": CONTEXT})
    _write_json(root / "config.json", {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": DIM,
        "text_config": {"max_position_embeddings": CONTEXT, "hidden_size": HIDDEN, "pad_token_id": PAD_ID},
        "vision_config": {"image_size": crop, "patch_size": 16},
    })
    _write_json(root / "preprocessor_config.json", {
        "crop_size": {"height": crop, "width": crop},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": MEAN,
        "image_std": STD,
        "image_processor_type": "CLIPImageProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": shortest_edge or crop},
    })
    return root
