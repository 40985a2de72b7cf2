"""OCR: RapidOCR (PP-OCRv4 weights shipped inside the wheel, so it works offline) turns text inside images into words.

The recognised text feeds the `text` recall channel through `mmsearch.text.index_text`, so a product photo that
says 春夏新款运动鞋 is found by that query even without a CLIP model. The ONNX sessions are loaded once per
process (per thread setting) and shared by every `OcrEngine`, because loading takes a second or two.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.errors import InvalidArgument, MMSearchError

__all__ = ["OcrEngine", "OcrLine", "OcrResult", "OcrUnavailable", "ocr_available"]

DEFAULT_MIN_SCORE = 0.5
DEFAULT_MAX_SIDE = 2000
DEFAULT_MIN_SIDE = 16
# RapidOCR's default detector setting ("min" side to 736) upscales a 400x100 banner to 2944x736: ~10x slower and it
# split "Wireless Headphones" into two wrong lines. "max" keeps small images as they are and caps big ones.
_DET_LIMIT_TYPE = "max"
_DET_LIMIT_SIDE = 960
_RAPIDOCR_LOGGERS = ("RapidOCR", "OrtInferSession")

Point = tuple[float, float]


class OcrUnavailable(MMSearchError):
    """RapidOCR could not be imported or its models could not be loaded; the `text` channel still works on fields."""

    code = "OcrUnavailable"


@dataclass(frozen=True)
class OcrLine:
    """One detected text line: recognised text, recognition confidence in [0, 1], and its quadrilateral.

    `box` is four (x, y) corners (top-left, top-right, bottom-right, bottom-left) in the caller's image pixels.
    """

    text: str
    score: float
    box: tuple[Point, Point, Point, Point]


@dataclass(frozen=True)
class OcrResult:
    """All lines kept for one image, in reading order (top to bottom, then left to right)."""

    lines: list[OcrLine] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Lines joined by newlines: what gets tokenised into the full-text column."""
        return "\n".join(line.text for line in self.lines)

    def __bool__(self) -> bool:
        return bool(self.lines)


def _quiet_rapidocr_logs() -> None:
    """RapidOCR installs DEBUG-level stream handlers on its loggers; raise them to WARNING so ingest stays quiet.

    Its `get_logger` is lru-cached and resets the level only on first creation, so creating them here first
    (before the sessions are built) and then setting WARNING sticks.
    """
    try:
        from rapidocr_onnxruntime.utils.logger import get_logger
    except ImportError:  # pragma: no cover - layout of another RapidOCR version
        get_logger = logging.getLogger
    for name in _RAPIDOCR_LOGGERS:
        get_logger(name).setLevel(logging.WARNING)


_load_lock = threading.Lock()
_call_lock = threading.Lock()
_loaded: dict[tuple[int | None], Any] = {}


def _load_rapidocr(threads: int | None) -> Any:
    """Build (once per thread setting, thread-safe) the RapidOCR pipeline; raise OcrUnavailable on any failure."""
    key = (threads,)
    engine = _loaded.get(key)
    if engine is not None:
        return engine
    with _load_lock:
        engine = _loaded.get(key)
        if engine is not None:
            return engine
        try:
            _quiet_rapidocr_logs()
            from rapidocr_onnxruntime import RapidOCR

            kwargs: dict[str, Any] = {
                # we apply our own per-engine threshold; RapidOCR's global one would be shared by all engines
                "text_score": 0.0,
                "max_side_len": DEFAULT_MAX_SIDE,
                "det_limit_type": _DET_LIMIT_TYPE,
                "det_limit_side_len": _DET_LIMIT_SIDE,
            }
            if threads is not None:
                kwargs["intra_op_num_threads"] = threads
                kwargs["inter_op_num_threads"] = 1
            engine = RapidOCR(**kwargs)
            _quiet_rapidocr_logs()
        except Exception as exc:  # any import/model/ORT failure means "OCR unavailable"
            raise OcrUnavailable(f"RapidOCR could not be loaded: {type(exc).__name__}: {exc}") from exc
        _loaded[key] = engine
        return engine


def ocr_available() -> tuple[bool, str]:
    """Whether RapidOCR imports and its models load, with a one-line reason; never raises (for `doctor`)."""
    try:
        _load_rapidocr(None)
    except OcrUnavailable as exc:
        return False, exc.message
    except Exception as exc:  # doctor must report, not crash
        return False, f"{type(exc).__name__}: {exc}"
    try:
        from importlib.metadata import version

        detail = f"rapidocr_onnxruntime {version('rapidocr_onnxruntime')}, onnxruntime {version('onnxruntime')}"
    except Exception:  # version lookup is cosmetic
        detail = "rapidocr_onnxruntime"
    return True, f"{detail} (PP-OCRv4 det/rec, bundled weights)"


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any PIL mode; transparent areas become white, since transparent pixels are often black underneath."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class OcrEngine:
    """Reads text lines out of PIL images with RapidOCR.

    - `min_score`: lines whose recognition confidence is below it are dropped (they are mostly noise).
    - `max_side`: larger images are downscaled to this longest side first (speed; boxes are mapped back).
    - `min_side`: images with a shorter side below this hold no readable text; they give an empty result.
    - `threads`: ONNX Runtime intra-op threads; None keeps ONNX Runtime's default (all cores).

    The model is loaded on first use, once per process, and shared. Calls are serialised by a lock: RapidOCR
    keeps per-call state on the instance, and ONNX Runtime already uses every core for one image.
    """

    def __init__(
        self,
        min_score: float = DEFAULT_MIN_SCORE,
        *,
        max_side: int = DEFAULT_MAX_SIDE,
        min_side: int = DEFAULT_MIN_SIDE,
        threads: int | None = None,
    ) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise InvalidArgument(f"min_score must be within [0, 1], got {min_score}", field="min_score")
        if max_side < 32:
            raise InvalidArgument(f"max_side must be at least 32, got {max_side}", field="max_side")
        if min_side < 1:
            raise InvalidArgument(f"min_side must be at least 1, got {min_side}", field="min_side")
        if threads is not None and threads < 1:
            raise InvalidArgument(f"threads must be at least 1, got {threads}", field="threads")
        self.min_score = min_score
        self.max_side = max_side
        self.min_side = min_side
        self.threads = threads

    def load(self) -> None:
        """Load the models now (e.g. at startup) instead of on the first image; raises OcrUnavailable."""
        _load_rapidocr(self.threads)

    def read(self, image: Image.Image) -> OcrResult:
        """Text lines of one image in reading order; empty for images too small or without text."""
        if not isinstance(image, Image.Image):
            raise InvalidArgument(f"image must be a PIL image, got {type(image).__name__}", field="image")
        width, height = image.size
        if min(width, height) < self.min_side:
            return OcrResult()
        if max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
            image = image.resize(
                (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR
            )
        # RapidOCR treats a 3-channel ndarray as BGR (OpenCV order); PIL gives RGB
        bgr = np.ascontiguousarray(np.asarray(_to_rgb(image))[:, :, ::-1])
        engine = _load_rapidocr(self.threads)
        with _call_lock:
            raw, _elapsed = engine(bgr)
        # boxes come back in working-copy pixels; map them to the caller's image
        return OcrResult(self._lines(raw or [], width / image.size[0], height / image.size[1]))

    def read_many(self, images: Iterable[Image.Image]) -> list[OcrResult]:
        """One result per image, in order (sequential: one image already uses all cores)."""
        return [self.read(image) for image in images]

    def _lines(self, raw: Sequence[Sequence[Any]], sx: float, sy: float) -> list[OcrLine]:
        lines: list[OcrLine] = []
        for box, text, score in raw:
            text = str(text).strip()
            if not text or float(score) < self.min_score:
                continue
            corners = tuple((float(x) * sx, float(y) * sy) for x, y in box)
            lines.append(OcrLine(text=text, score=float(score), box=corners))  # type: ignore[arg-type]
        return lines
