"""OCR: RapidOCR (PP-OCRv4 weights shipped inside the wheel, so it works offline) turns text inside images into words.

The recognised text feeds the `text` recall channel through `mmsearch.text.index_text`, so a product photo that
says 春夏新款运动鞋 is found by that query even without a CLIP model. The ONNX sessions are loaded once per
process (per thread setting) and shared by every `OcrEngine`, because loading takes a second or two.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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
# Chosen by bench/ocr_params.py on the 240 demo pictures (docs/benchmarks.md, "Demo import"): one text line per
# recognition call (rec_batch_num 1) is ~30% faster than batches of 6 padded to their widest line, and reads the
# space in "米色 耳机" that padding lost (same tokens otherwise); a smaller detector input or no orientation classifier
# gained nothing measurable on these 400x300 cards. Part of `OcrEngine.version`: changing them invalidates the cache.
RAPIDOCR_OPTIONS: dict[str, Any] = {
    "det_limit_type": "max", "det_limit_side_len": 960, "rec_batch_num": 1, "use_cls": True,
}
_RAPIDOCR_LOGGERS = ("RapidOCR", "OrtInferSession")
# A pool start costs ~2 s (spawn, imports, model load per process): below this many pictures one process is quicker.
POOL_MIN_IMAGES = 8
POOL_IDLE_S = 60.0  # worker processes (~150 MB each) are shut down after this long without work
MAX_AUTO_WORKERS = 8
log = logging.getLogger("mmsearch.ocr")

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

            engine = RapidOCR(**rapidocr_kwargs(threads))
            _quiet_rapidocr_logs()
        except Exception as exc:  # any import/model/ORT failure means "OCR unavailable"
            raise OcrUnavailable(f"RapidOCR could not be loaded: {type(exc).__name__}: {exc}") from exc
        _loaded[key] = engine
        return engine


def rapidocr_kwargs(threads: int | None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """RapidOCR's constructor arguments: `options` (default RAPIDOCR_OPTIONS) plus our fixed settings."""
    kwargs: dict[str, Any] = {
        # we apply our own per-engine threshold; RapidOCR's global one would be shared by all engines
        "text_score": 0.0,
        "max_side_len": DEFAULT_MAX_SIDE,
        **(RAPIDOCR_OPTIONS if options is None else options),
    }
    if threads is not None:
        kwargs["intra_op_num_threads"] = threads
        kwargs["inter_op_num_threads"] = 1
    return kwargs


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
    - `workers`: processes `read_many` spreads a batch over (0 = one per core, 1 = in this process). Each runs
      RapidOCR with one intra-op thread: on small pictures one thread per core reads about twice as many
      pictures per second as all cores on one picture (docs/benchmarks.md, "Demo import").

    The model is loaded on first use, once per process, and shared. Calls in this process are serialised by a
    lock: RapidOCR keeps per-call state on the instance.
    """

    def __init__(
        self,
        min_score: float = DEFAULT_MIN_SCORE,
        *,
        max_side: int = DEFAULT_MAX_SIDE,
        min_side: int = DEFAULT_MIN_SIDE,
        threads: int | None = None,
        workers: int = 1,
    ) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise InvalidArgument(f"min_score must be within [0, 1], got {min_score}", field="min_score")
        if max_side < 32:
            raise InvalidArgument(f"max_side must be at least 32, got {max_side}", field="max_side")
        if min_side < 1:
            raise InvalidArgument(f"min_side must be at least 1, got {min_side}", field="min_side")
        if threads is not None and threads < 1:
            raise InvalidArgument(f"threads must be at least 1, got {threads}", field="threads")
        if workers < 0:
            raise InvalidArgument(f"workers must be 0 (one per core) or more, got {workers}", field="workers")
        self.min_score = min_score
        self.max_side = max_side
        self.min_side = min_side
        self.threads = threads
        self.workers = workers or min(MAX_AUTO_WORKERS, available_cores())
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._idle_timer: threading.Timer | None = None
        self._busy = 0

    @property
    def version(self) -> str:
        """Everything the text read from a picture depends on; the OCR cache keys entries by it and the hash."""
        try:
            from importlib.metadata import version

            engine = f"rapidocr_onnxruntime {version('rapidocr_onnxruntime')}"
        except Exception:  # the version is only part of a cache key
            engine = "rapidocr_onnxruntime"
        params = {**RAPIDOCR_OPTIONS, "min_score": self.min_score, "max_side": self.max_side,
                  "min_side": self.min_side}
        return f"{engine} {json.dumps(params, sort_keys=True)}"

    def load(self) -> None:
        """Load the models now (e.g. at startup) instead of on the first image; raises OcrUnavailable."""
        _load_rapidocr(self.threads)

    def read(self, image: Image.Image, upright: bool = False) -> OcrResult:
        """Text lines of one image in reading order; empty for images too small or without text. `upright` skips
        the text-direction classifier (video frames: text is never upside down there; ~15% of a read)."""
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
            raw, _elapsed = engine(bgr, use_cls=False) if upright else engine(bgr)
        # boxes come back in working-copy pixels; map them to the caller's image
        return OcrResult(self._lines(raw or [], width / image.size[0], height / image.size[1]))

    def read_many(self, images: Iterable[Image.Image], upright: bool = False) -> list[OcrResult]:
        """One result per image, in order: across the worker processes when there are enough pictures to pay
        for them, else here. A pool that breaks (a worker killed) is dropped and the batch read here."""
        images = list(images)
        for image in images:
            if not isinstance(image, Image.Image):
                raise InvalidArgument(f"image must be a PIL image, got {type(image).__name__}", field="image")
        if self.workers > 1 and len(images) >= POOL_MIN_IMAGES:
            try:
                return self._read_pooled(images, upright)
            except (BrokenProcessPool, OSError) as exc:
                log.warning("OCR worker processes failed (%s: %s); reading in this process", type(exc).__name__, exc)
                self.close()
        return [self.read(image, upright) for image in images]

    def close(self) -> None:
        """Stop the worker processes now (they also stop after POOL_IDLE_S without work, and at exit)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _read_pooled(self, images: list[Image.Image], upright: bool = False) -> list[OcrResult]:
        with self._pool_lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),  # never fork a process with ORT/Lance threads
                    initializer=_worker_init,
                    initargs=(self.min_score, self.max_side, self.min_side),
                )
            pool = self._pool
            self._busy += 1
        try:
            results = list(pool.map(_worker_read, images, [upright] * len(images)))
        finally:
            with self._pool_lock:
                self._busy -= 1
                if self._busy == 0 and self._pool is pool:
                    self._idle_timer = threading.Timer(POOL_IDLE_S, self._close_if_idle, args=(pool,))
                    self._idle_timer.daemon = True
                    self._idle_timer.start()
        for result in results:
            if isinstance(result, str):
                raise OcrUnavailable(result)
        return results  # type: ignore[return-value]

    def _close_if_idle(self, pool: ProcessPoolExecutor) -> None:
        with self._pool_lock:
            if self._pool is not pool or self._busy:
                return
            self._pool = None
            self._idle_timer = None
        pool.shutdown(wait=True)

    def _lines(self, raw: Sequence[Sequence[Any]], sx: float, sy: float) -> list[OcrLine]:
        lines: list[OcrLine] = []
        for box, text, score in raw:
            text = str(text).strip()
            if not text or float(score) < self.min_score:
                continue
            corners = tuple((float(x) * sx, float(y) * sy) for x, y in box)
            lines.append(OcrLine(text=text, score=float(score), box=corners))  # type: ignore[arg-type]
        return lines


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


_worker_engine: OcrEngine | None = None


def _worker_init(min_score: float, max_side: int, min_side: int) -> None:
    """In each pool process: one engine with one ONNX Runtime thread, so N processes use N cores, not N x N."""
    global _worker_engine
    _worker_engine = OcrEngine(min_score, max_side=max_side, min_side=min_side, threads=1, workers=1)


def _worker_read(image: Image.Image, upright: bool = False) -> OcrResult | str:
    """One picture in a pool process; a failure comes back as its message (our errors do not all unpickle)."""
    assert _worker_engine is not None
    try:
        return _worker_engine.read(image, upright)
    except MMSearchError as exc:
        return exc.message
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
