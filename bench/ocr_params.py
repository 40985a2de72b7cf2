"""Choose RapidOCR's parameters by measurement on the demo pictures (src/mmsearch/samples/images, 400x300 cards).

Each variant builds its own RapidOCR with mmsearch's options plus the variant's overrides, reads the same
pictures one at a time (one process, `--threads` ONNX Runtime threads), and is compared against the first
variant (mmsearch's options before issue 10): ms per picture (det/cls/rec split) and every picture whose
text (lines kept at mmsearch's min score, joined as the import joins them) differs.

    python bench/ocr_params.py --limit 60            # timing on 60 pictures, all variants
    python bench/ocr_params.py --variants base,chosen  # the text of all 240 pictures, before vs chosen
    python bench/ocr_params.py --pool --limit 48       # one process x all cores vs one process per core

Timings on a shared machine are noisy: compare variants within one run only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mmsearch.encoders.ocr import DEFAULT_MIN_SCORE, RAPIDOCR_OPTIONS, rapidocr_kwargs

IMAGES = Path(__file__).resolve().parents[1] / "src" / "mmsearch" / "samples" / "images"
BASE = {"det_limit_type": "max", "det_limit_side_len": 960, "rec_batch_num": 6, "use_cls": True}
VARIANTS: dict[str, dict[str, Any]] = {
    "base": BASE,
    "chosen": dict(RAPIDOCR_OPTIONS),
    "no_cls": {**BASE, "use_cls": False},
    "rec_batch_1": {**BASE, "rec_batch_num": 1},
    "rec_batch_12": {**BASE, "rec_batch_num": 12},
    "det_320": {**BASE, "det_limit_side_len": 320},
    "det_256": {**BASE, "det_limit_side_len": 256},
    "det_min_480": {**BASE, "det_limit_type": "min", "det_limit_side_len": 480},
}


def text_of(raw: Any) -> str:
    """The text the import stores: lines at or above the min score, joined by newlines."""
    return "\n".join(str(t).strip() for _, t, s in (raw or []) if str(t).strip() and float(s) >= DEFAULT_MIN_SCORE)


def run(name: str, options: dict[str, Any], pictures: list[np.ndarray], threads: int) -> tuple[float, list[str], Any]:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(**rapidocr_kwargs(threads, options))
    engine(pictures[0])  # warm-up
    split = np.zeros(3)
    texts = []
    start = time.perf_counter()
    for bgr in pictures:
        raw, elapsed = engine(bgr)
        split += np.asarray(elapsed or [0, 0, 0], dtype=float)
        texts.append(text_of(raw))
    ms = (time.perf_counter() - start) * 1000 / len(pictures)
    return ms, texts, split * 1000 / len(pictures)


def pool(paths: list[Path]) -> None:
    """`OcrEngine.read_many` in this process (ONNX Runtime on all cores) against the process pool (one process
    per core, one thread each), pool start included; the texts must match."""
    from mmsearch.encoders.ocr import OcrEngine, available_cores

    images = [Image.open(p).convert("RGB") for p in paths]
    serial = OcrEngine(workers=1)
    serial.read(images[0])  # model load outside the timing, as in a long-lived server
    start = time.perf_counter()
    serial_texts = [r.text for r in serial.read_many(images)]
    serial_s = time.perf_counter() - start
    pooled = OcrEngine(workers=0)
    start = time.perf_counter()
    pooled_texts = [r.text for r in pooled.read_many(images)]
    pooled_s = time.perf_counter() - start
    start = time.perf_counter()
    pooled.read_many(images)
    warm_s = time.perf_counter() - start
    pooled.close()
    diff = sum(a != b for a, b in zip(serial_texts, pooled_texts, strict=True))
    n = len(images)
    print(f"{n} pictures, {available_cores()} cores: in-process {n / serial_s:.2f} pictures/s ({serial_s:.1f} s); "
          f"pool of {pooled.workers} {n / pooled_s:.2f} pictures/s ({pooled_s:.1f} s, pool start included), "
          f"warm pool {n / warm_s:.2f} pictures/s; texts differing: {diff}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="first N pictures (0 = all 240)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated; the first is the reference")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (1 = as in the pool)")
    ap.add_argument("--dump", type=Path, help="write {variant: {picture: text}} as JSON here")
    ap.add_argument("--pool", action="store_true", help="compare in-process and pooled read_many instead")
    args = ap.parse_args()
    paths = sorted(IMAGES.glob("*.png"))[: args.limit or None]
    if args.pool:
        pool(paths)
        return
    pictures = [np.ascontiguousarray(np.asarray(Image.open(p).convert("RGB"))[:, :, ::-1]) for p in paths]
    names = args.variants.split(",")
    ref: list[str] | None = None
    dump: dict[str, dict[str, str]] = {}
    print(f"{len(pictures)} pictures, {args.threads} thread(s); reference: {names[0]} {VARIANTS[names[0]]}")
    print("| variant | options | ms/picture | det / cls / rec ms | pictures whose text differs |")
    print("|---|---|---|---|---|")
    for name in names:
        ms, texts, split = run(name, VARIANTS[name], pictures, args.threads)
        dump[name] = {p.name: t for p, t in zip(paths, texts, strict=True)}
        ref = texts if ref is None else ref
        diff = [p.name for p, a, b in zip(paths, ref, texts, strict=True) if a != b]
        shown = ", ".join(diff[:8]) + (" …" if len(diff) > 8 else "")
        print(f"| {name} | {json.dumps(VARIANTS[name])} | {ms:.0f} | {split[0]:.0f} / {split[1]:.0f} / {split[2]:.0f} "
              f"| {len(diff)} {shown} |", flush=True)
    if args.dump:
        args.dump.write_text(json.dumps(dump, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
