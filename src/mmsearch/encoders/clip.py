"""CLIP-family encoders on ONNX Runtime: text and images into one L2-normalised vector space.

Two real export layouts are recognised, so users can point mmsearch at models that already exist:

- **Immich** (`immich-app/*` on the Hugging Face hub): `config.json` (open_clip: `embed_dim`,
  `vision_cfg.image_size`, `text_cfg.context_length`), `textual/model.onnx`, `textual/tokenizer.json`
  (+ `tokenizer_config.json`), `visual/model.onnx`, `visual/preprocess_cfg.json`. Text input `text`
  (open_clip) or `input_ids` + `attention_mask` (M-CLIP), int32; image input `image`; one output.
- **transformers.js / Optimum** (`Xenova/*`, `onnx-community/*`): `config.json` (`projection_dim`,
  `text_config.max_position_embeddings`), `tokenizer.json`, `preprocessor_config.json`
  (CLIPImageProcessor), `onnx/text_model.onnx` (`input_ids` [+ `attention_mask`] -> `text_embeds`),
  `onnx/vision_model.onnx` (`pixel_values` -> `image_embeds`).

Input names, integer types, fixed shapes and the embedding output are read from the ONNX sessions
rather than assumed, so exports that differ in details still load. No PyTorch is involved.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.config import DEFAULT_CLIP_MODEL
from mmsearch.encoders.base import l2_normalise
from mmsearch.errors import MMSearchError

log = logging.getLogger(__name__)

# Output dimensions of well-known exports, so a dataset gets the right size before its model is downloaded.
KNOWN_DIMS = {
    "immich-app/XLM-Roberta-Large-Vit-B-16Plus": 640,
    "immich-app/XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k": 512,
    "immich-app/XLM-Roberta-Large-Vit-B-32": 512,
    "immich-app/XLM-Roberta-Large-Vit-L-14": 768,
    "immich-app/nllb-clip-base-siglip__v1": 768,
    "immich-app/ViT-B-32__openai": 512,
    "Xenova/clip-vit-base-patch32": 512,
}
"""Default model for Chinese + English search (an M-CLIP export by Immich, 640-dim vectors).

Its text tower is XLM-RoBERTa Large (100 languages, Chinese included) distilled onto the
ViT-B/16+ image tower of open_clip (LAION-400M), so a Chinese query and an English query land
near the same images. It is the multilingual model Immich itself recommends and ships in the
Immich layout this module reads. Alternatives (sizes, languages, speed) are listed in
`docs/models.md`; any of them can be passed by repo id or local directory.

| model | dim | languages | size (fp32) | CPU speed |
|---|---|---|---|---|
| `immich-app/XLM-Roberta-Large-Vit-B-16Plus` (default) | 640 | 100 incl. zh, en | ~1.4 GB | medium |
| `immich-app/XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k` | 512 | 100 incl. zh, en | ~1.1 GB | fast |
| `immich-app/nllb-clip-base-siglip__v1` | 768 | 200 (needs a language prefix) | ~2 GB | medium |
| `immich-app/ViT-B-16-SigLIP-i18n-256__webli` | 768 | multilingual | ~1.5 GB | medium |
| `immich-app/ViT-B-32__openai` / `Xenova/clip-vit-base-patch32` | 512 | English only | ~0.6 GB | fastest |
"""

_ALLOW_PATTERNS = [
    "*.json",
    "textual/model.onnx*",
    "visual/model.onnx*",
    "onnx/text_model.onnx*",
    "onnx/vision_model.onnx*",
]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


class ModelUnavailable(MMSearchError):
    """The model could not be found, fetched or opened; the caller can fall back to text-only search."""

    code = "ModelUnavailable"


@dataclass(frozen=True)
class ImagePreprocess:
    """How pixels become the vision tower's input, as the model's own config says."""

    size: int  # shortest edge after resize
    crop: int  # square centre crop
    mean: tuple[float, float, float] = _CLIP_MEAN
    std: tuple[float, float, float] = _CLIP_STD
    resample: int = 3  # PIL.Image.Resampling.BICUBIC
    resize: bool = True
    center_crop: bool = True
    normalize: bool = True
    rescale: float = 1.0 / 255.0
    squash: bool = False  # open_clip resize_mode "squash": straight to crop x crop, no aspect kept
    round_crop: bool = True  # torchvision rounds the crop offset; transformers floors it


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _resample(name: Any, default: int = 3) -> int:
    """open_clip names the filter ("bicubic"); transformers gives PIL's integer."""
    if isinstance(name, int):
        return name
    if isinstance(name, str):
        return _RESAMPLE.get(name.lower(), default)
    return default


def _edge(size: Any, default: int) -> int:
    """`size` is an int, a [h, w] list, or {"shortest_edge"|"height"|"width": n}."""
    if isinstance(size, int):
        return size
    if isinstance(size, list | tuple) and size:
        return int(size[0])
    if isinstance(size, dict):
        for key in ("shortest_edge", "height", "width"):
            if key in size:
                return int(size[key])
    return default


def _token_content(token: Any) -> str | None:
    """Special tokens are strings or AddedToken dicts ({"content": ...})."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else None


class ClipEncoder:
    """A CLIP text tower and image tower, each an ONNX Runtime session, behind the `Encoder` protocol."""

    def __init__(
        self,
        model_id: str,
        text_model: Path,
        vision_model: Path,
        tokenizer_file: Path,
        *,
        context_length: int,
        pad_id: int,
        image: ImagePreprocess,
        dim: int | None = None,
        providers: str | Sequence[str] | None = None,
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        from tokenizers import Tokenizer

        self.model_id = model_id
        self.dim = 0
        self.batch_size = batch_size
        self.image = image
        self.providers = _resolve_providers(providers)
        self._text = _open_session(text_model, self.providers, threads, model_id)
        self._vision = _open_session(vision_model, self.providers, threads, model_id)
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise ModelUnavailable(f"model {model_id!r}: cannot read tokenizer {tokenizer_file}: {exc}") from None

        self._text_inputs = {i.name: i for i in self._text.get_inputs()}
        ids_name = next((n for n in ("input_ids", "text", "tokens") if n in self._text_inputs), None)
        if ids_name is None:
            ids_name = next((n for n, i in self._text_inputs.items() if i.type in _INT_TYPES and "mask" not in n), None)
        if ids_name is None:
            raise ModelUnavailable(f"model {model_id!r}: text model has no token-id input ({list(self._text_inputs)})")
        self._ids_name = ids_name
        self._mask_name = "attention_mask" if "attention_mask" in self._text_inputs else None
        seq = self._text_inputs[ids_name].shape
        # A fixed sequence length in the graph wins over the config: the graph cannot take anything else.
        self.context_length = seq[1] if len(seq) > 1 and isinstance(seq[1], int) else context_length
        self.pad_id = pad_id
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.context_length)

        images = list(self._vision.get_inputs())
        self._image_input = next((i for i in images if i.name in ("pixel_values", "image")), images[0])
        self._image_uint8 = self._image_input.type == "tensor(uint8)"  # graph normalises itself (NHWC RGB)

        self._text_output = _pick_output(self._text, ("text_embeds", "embedding", "embeddings"), dim)
        self._image_output = _pick_output(self._vision, ("image_embeds", "embedding", "embeddings"), dim)
        out_dim = self._text.get_outputs()[self._text_output].shape[-1]
        if isinstance(out_dim, int) and dim and int(dim) != out_dim:
            log.warning("model %s: config dim %s, graph outputs %s; using the graph", model_id, dim, out_dim)
        # The graph's static width is what the vectors will have; the config only fills in a dynamic one.
        self.dim = out_dim if isinstance(out_dim, int) else int(dim or 0)
        if not self.dim:
            self.dim = int(self.encode_text([""]).shape[1])

    @property
    def _text_step(self) -> int:
        """Exports traced without dynamic axes (Immich's M-CLIP text towers) take one row at a time."""
        return 1 if self._fixed_batch(self._text_inputs[self._ids_name].shape) else max(1, self.batch_size)

    @property
    def _image_step(self) -> int:
        return 1 if self._fixed_batch(self._image_input.shape) else max(1, self.batch_size)

    @staticmethod
    def _fixed_batch(shape: Sequence[Any]) -> bool:
        return bool(shape) and shape[0] == 1

    def __repr__(self) -> str:
        return f"ClipEncoder({self.model_id!r}, dim={self.dim}, providers={self.providers})"

    # text

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Token ids truncated and padded to the context length, in the integer type the graph declares."""
        encodings = self.tokenizer.encode_batch([" ".join(t.split()) for t in texts])
        ids = np.full((len(texts), self.context_length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = min(len(enc.ids), self.context_length)
            ids[row, :n] = enc.ids[:n]
            mask[row, :n] = 1
        feeds = {self._ids_name: ids.astype(_INT_TYPES.get(self._text_inputs[self._ids_name].type, np.int64))}
        if self._mask_name:
            feeds[self._mask_name] = mask.astype(_INT_TYPES.get(self._text_inputs[self._mask_name].type, np.int64))
        for name, spec in self._text_inputs.items():  # BERT-style extras some exports keep
            if name == "token_type_ids":
                feeds[name] = np.zeros_like(ids, dtype=_INT_TYPES.get(spec.type, np.int64))
            elif name == "position_ids":
                positions = np.broadcast_to(np.arange(self.context_length), ids.shape)
                feeds[name] = positions.astype(_INT_TYPES.get(spec.type, np.int64))
        return feeds

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """float32[n, dim], rows L2-normalised; batched by `batch_size`."""
        step = self._text_step
        out = [
            self._run(self._text, self._text_output, self.tokenize(list(texts[start : start + step])))
            for start in range(0, len(texts), step)
        ]
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), dtype=np.float32)

    # images

    def preprocess(self, images: list[Any]) -> np.ndarray:
        """The vision input for PIL images: float32 NCHW normalised, or uint8 NHWC if the graph normalises."""
        arrays = [self._pixels(img) for img in images]
        if self._image_uint8:
            return np.stack(arrays).astype(np.uint8) if arrays else np.zeros((0, 0, 0, 3), np.uint8)
        return np.stack(arrays).astype(np.float32) if arrays else np.zeros((0, 3, 0, 0), np.float32)

    def _pixels(self, image: Any) -> np.ndarray:
        cfg = self.image
        img = image if image.mode == "RGB" else image.convert("RGB")
        if cfg.squash:
            if img.size != (cfg.crop, cfg.crop):
                img = img.resize((cfg.crop, cfg.crop), resample=cfg.resample)
        else:
            if cfg.resize:
                w, h = img.size
                short, long = (w, h) if w <= h else (h, w)
                new_long = int(cfg.size * long / short)  # torchvision and transformers both truncate
                new = (cfg.size, new_long) if w <= h else (new_long, cfg.size)
                if new != img.size:
                    img = img.resize(new, resample=cfg.resample)
            if cfg.center_crop:
                img = _center_crop(img, cfg.crop, cfg.round_crop)
        rgb = np.asarray(img, dtype=np.uint8)
        if self._image_uint8:
            return rgb
        x = rgb.astype(np.float32) * np.float32(cfg.rescale)
        if cfg.normalize:
            x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
        return x.transpose(2, 0, 1)

    def encode_image(self, images: list[Any]) -> np.ndarray:
        """float32[n, dim] for PIL images, rows L2-normalised; batched by `batch_size`."""
        name, step = self._image_input.name, self._image_step
        out = [
            self._run(self._vision, self._image_output, {name: self.preprocess(list(images[start : start + step]))})
            for start in range(0, len(images), step)
        ]
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), dtype=np.float32)

    @staticmethod
    def _run(session: Any, output: int, feeds: dict[str, np.ndarray]) -> np.ndarray:
        name = session.get_outputs()[output].name
        result = np.asarray(session.run([name], feeds)[0], dtype=np.float32)
        return result.reshape(result.shape[0], -1) if result.ndim != 2 else result


def _center_crop(img: Any, crop: int, round_offset: bool) -> Any:
    """Centre crop to crop x crop; pads with black when the image is smaller, as torchvision does."""
    w, h = img.size
    if w < crop or h < crop:
        from PIL import Image

        canvas = Image.new("RGB", (max(w, crop), max(h, crop)))
        canvas.paste(img, ((max(w, crop) - w) // 2, (max(h, crop) - h) // 2))
        img, (w, h) = canvas, canvas.size
    if round_offset:
        left, top = round((w - crop) / 2.0), round((h - crop) / 2.0)
    else:
        left, top = (w - crop) // 2, (h - crop) // 2
    return img.crop((left, top, left + crop, top + crop))


def _pick_output(session: Any, preferred: tuple[str, ...], dim: int | None) -> int:
    """The embedding output: a known name, the only output, or the rank-2 output of the configured width."""
    outputs = session.get_outputs()
    for name in preferred:
        for index, out in enumerate(outputs):
            if out.name == name:
                return index
    if len(outputs) == 1:
        return 0
    for index, out in enumerate(outputs):
        if len(out.shape) == 2 and (dim is None or out.shape[-1] == dim):
            return index
    return 0


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _resolve_providers(providers: str | Sequence[str] | None) -> list[str]:
    """CPU unless asked: "auto" takes CUDA when onnxruntime-gpu offers it; a list keeps what is installed."""
    available = available_providers()
    if providers is None or providers == "cpu":
        return ["CPUExecutionProvider"]
    if providers == "auto":
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif isinstance(providers, str):
        wanted = [p.strip() for p in providers.split(",") if p.strip()]
    else:
        wanted = list(providers)
    wanted = [p if p.endswith("ExecutionProvider") else f"{p.upper()}ExecutionProvider" for p in wanted]
    chosen = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available and p != "CPUExecutionProvider"]
    if missing and providers != "auto":
        log.warning("execution providers %s are not installed (have %s); using CPU for them", missing, available)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _open_session(path: Path, providers: list[str], threads: int | None, model_id: str) -> Any:
    import onnxruntime as ort

    if not path.is_file():
        raise ModelUnavailable(f"model {model_id!r}: missing {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:
        raise ModelUnavailable(f"model {model_id!r}: cannot open {path}: {exc}") from None


# loading


def _env_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in {"1", "true", "yes", "on"}
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _how_to_supply(model: str) -> str:
    return (
        f"pass a local model directory, or on a connected machine run `huggingface-cli download {model}` "
        "(or `hf download`) and copy its Hugging Face cache (HF_HOME) or the downloaded directory here"
    )


def resolve_model_dir(model: str, *, cache_dir: str | Path | None = None) -> Path:
    """A local directory as is; a repo id through the Hugging Face cache (downloading only needed files)."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    if not _REPO_ID.match(model) or local.exists():
        raise ModelUnavailable(f"model {model!r}: no such directory, and not a Hugging Face repo id; "
                               + _how_to_supply("<repo-id>"), field="model")
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            model,
            allow_patterns=_ALLOW_PATTERNS,
            cache_dir=str(cache_dir) if cache_dir else None,
            local_files_only=_env_offline(),
        )
    except Exception as exc:  # offline, unreachable hub, unknown or gated repo, bad id, disk errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailable(
            f"model {model!r} is not available locally and could not be downloaded ({type(exc).__name__}: "
            f"{reason}); {_how_to_supply(model)}",
            field="model",
        ) from None
    return Path(path)


def load_clip(
    model: str = DEFAULT_CLIP_MODEL,
    *,
    cache_dir: str | Path | None = None,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
    batch_size: int = 32,
) -> ClipEncoder:
    """Open a CLIP model from a local directory or a Hugging Face repo id, detecting its layout.

    Raises `ModelUnavailable` (never a raw library error) when the model cannot be found or opened.
    """
    root = resolve_model_dir(str(model), cache_dir=cache_dir)
    if (root / "textual" / "model.onnx").is_file() or (root / "visual" / "model.onnx").is_file():
        return _load_immich(model, root, providers, threads, batch_size)
    if (root / "onnx").is_dir():
        return _load_transformers(model, root, providers, threads, batch_size)
    raise ModelUnavailable(
        f"model {model!r}: {root} has neither the Immich layout (textual/model.onnx, visual/model.onnx) nor the "
        "transformers.js layout (onnx/text_model.onnx, onnx/vision_model.onnx)",
        field="model",
    )


def _load_immich(model: str, root: Path, providers: Any, threads: int | None, batch_size: int) -> ClipEncoder:
    config = _read_json(root / "config.json")
    text_cfg = config.get("text_cfg") or {}
    vision_cfg = config.get("vision_cfg") or {}
    pre = _read_json(root / "visual" / "preprocess_cfg.json")
    image_size = _edge(vision_cfg.get("image_size"), 224)
    size = _edge(pre.get("size"), image_size)
    mode = pre.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise ModelUnavailable(f"model {model!r}: unsupported resize_mode {mode!r} in visual/preprocess_cfg.json")
    if pre.get("mode", "RGB") != "RGB":
        raise ModelUnavailable(f"model {model!r}: unsupported image mode {pre.get('mode')!r}")
    image = ImagePreprocess(
        size=size,
        crop=size,
        mean=tuple(pre.get("mean", _CLIP_MEAN)),
        std=tuple(pre.get("std", _CLIP_STD)),
        resample=_resample(pre.get("interpolation"), 3),
        squash=mode == "squash",
        round_crop=True,
    )
    tokenizer_file = root / "textual" / "tokenizer.json"
    pad_id = _pad_id(tokenizer_file, [root / "textual" / "tokenizer_config.json",
                                      root / "textual" / "special_tokens_map.json"], default=0)
    return ClipEncoder(
        str(model),
        root / "textual" / "model.onnx",
        root / "visual" / "model.onnx",
        tokenizer_file,
        context_length=int(text_cfg.get("context_length", 77)),
        pad_id=pad_id,
        image=image,
        dim=config.get("embed_dim"),
        providers=providers,
        threads=threads,
        batch_size=batch_size,
    )


def _load_transformers(model: str, root: Path, providers: Any, threads: int | None, batch_size: int) -> ClipEncoder:
    config = _read_json(root / "config.json")
    text_cfg = config.get("text_config") or {}
    vision_cfg = config.get("vision_config") or {}
    pre = _read_json(root / "preprocessor_config.json")
    image_size = _edge(vision_cfg.get("image_size"), 224)
    size = _edge(pre.get("size"), image_size)
    crop = _edge(pre.get("crop_size"), size)
    if pre.get("do_convert_rgb") is False:
        log.info("model %s: do_convert_rgb is false; images are still converted to RGB", model)
    image = ImagePreprocess(
        size=size,
        crop=crop,
        mean=tuple(pre.get("image_mean", _CLIP_MEAN)),
        std=tuple(pre.get("image_std", _CLIP_STD)),
        resample=_resample(pre.get("resample"), 3),
        resize=bool(pre.get("do_resize", True)),
        center_crop=bool(pre.get("do_center_crop", True)),
        normalize=bool(pre.get("do_normalize", True)),
        rescale=float(pre.get("rescale_factor", 1.0 / 255.0)) if pre.get("do_rescale", True) else 1.0,
        round_crop=False,
    )
    tokenizer_file = root / "tokenizer.json"
    pad_id = _pad_id(tokenizer_file, [root / "tokenizer_config.json", root / "special_tokens_map.json"],
                     default=int(text_cfg.get("pad_token_id", 0) or 0))
    context = text_cfg.get("max_position_embeddings") or _read_json(root / "tokenizer_config.json").get(
        "model_max_length", 77)
    return ClipEncoder(
        str(model),
        root / "onnx" / "text_model.onnx",
        root / "onnx" / "vision_model.onnx",
        tokenizer_file,
        context_length=int(min(int(context), 4096)),
        pad_id=pad_id,
        image=image,
        dim=config.get("projection_dim"),
        providers=providers,
        threads=threads,
        batch_size=batch_size,
    )


def _pad_id(tokenizer_file: Path, token_configs: list[Path], default: int) -> int:
    """The pad id: the tokenizer's own padding, else the configured pad token, else `default` (0 for open_clip)."""
    spec = _read_json(tokenizer_file)
    padding = spec.get("padding")
    if isinstance(padding, dict) and isinstance(padding.get("pad_id"), int):
        return int(padding["pad_id"])
    vocab: dict[str, int] = {}
    for added in spec.get("added_tokens") or []:
        if isinstance(added, dict) and isinstance(added.get("id"), int):
            vocab[str(added.get("content"))] = added["id"]
    model_vocab = (spec.get("model") or {}).get("vocab")
    for cfg_path in token_configs:
        token = _token_content(_read_json(cfg_path).get("pad_token"))
        if token is None:
            continue
        if token in vocab:
            return vocab[token]
        if isinstance(model_vocab, dict) and token in model_vocab:
            return int(model_vocab[token])
        if isinstance(model_vocab, list):  # Unigram: [[piece, score], ...]
            for index, entry in enumerate(model_vocab):
                if entry and entry[0] == token:
                    return index
    return default
