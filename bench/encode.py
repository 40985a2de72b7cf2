"""Encode benchmark: fetch + decode + preprocess, CLIP embedding, OCR, and the full image import path.

Product-like pictures (640x480, coloured background, a shape, rendered Chinese and English text lines;
every one different, alternately JPEG and PNG) are generated once into a temp dir and served by a
`ThreadingHTTPServer` on 127.0.0.1. Nothing leaves the machine: the fetcher is allowed loopback only
(`FetchConfig(allowed_networks=("127.0.0.0/8",))`) and the Hugging Face hub is forced offline.

1. *fetch* with the real `Fetcher.fetch_many` at the import's default concurrency (`Settings.fetch_workers`,
   8; the fetcher's per-host limit of 4 still applies, and every URL is on one host), *decode* with
   `decode_image`, and *preprocess* with `ClipEncoder.preprocess` (resize, centre crop, normalise) set to
   224 px; then all three per image in a pool of 8 threads.
2. *embedding* with the tiny test model (`tests/tiny_clip.build_immich`: 32x32 input, so it measures the
   pipeline, not a network) and with a real model when one is available locally (`--model`).
3. *OCR*: `OcrEngine.read` (RapidOCR, PP-OCRv4) per image, one at a time as the import does.
4. *import*: `MMSearch.import_items` of N items whose image field is the http://127.0.0.1 URL, with the
   tiny CLIP model, once with OCR and once with the schema's `"ocr": false`.

    python bench/encode.py --n 200
    python bench/encode.py --model /models/XLM-Roberta-Large-Vit-B-16Plus

Figures are printed as a table and written to docs/benchmarks.md between `<!-- bench:encode ... -->`
markers, so a re-run at the same N replaces its own section only.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub: never reach the hub

import argparse
import copy
import dataclasses
import datetime as dt
import functools
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from docs_section import DOC, record_section
from mmsearch.config import DEFAULT_CLIP_MODEL, Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.clip import _CLIP_MEAN, _CLIP_STD, ClipEncoder, ModelUnavailable, load_clip
from mmsearch.encoders.ocr import OcrEngine, OcrUnavailable
from mmsearch.media import FetchConfig, Fetcher, decode_image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from render import font  # tests/ helpers: the WQY CJK font, tiny CLIP exports
from tiny_clip import build_immich

DEFAULT_CONCURRENCY = Settings().fetch_workers  # 8: what import_items uses
SIZE = (640, 480)
SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "item_id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
        {"name": "image", "type": "image"},
    ]
}
_WORDS = ("新款", "运动鞋", "连衣裙", "背包", "蓝牙耳机", "保温杯", "羽绒服", "台灯", "包邮", "正品", "特价", "限时")
_LATIN = ("SUMMER SALE", "Wireless Headphones", "Running Shoes", "NEW ARRIVAL", "Free Shipping", "50% OFF")


# -- data --------------------------------------------------------------------------------------------
def product_image(i: int) -> Image.Image:
    """A seeded 640x480 'product shot': background, a shape, two Chinese lines, an English line, a price."""
    rng = np.random.default_rng([20241122, i])
    bg = tuple(int(c) for c in rng.integers(200, 256, 3))
    img = Image.new("RGB", SIZE, bg)
    draw = ImageDraw.Draw(img)
    x, y = int(rng.integers(300, 420)), int(rng.integers(120, 220))
    fill = tuple(int(c) for c in rng.integers(0, 200, 3))
    (draw.ellipse if i % 2 else draw.rectangle)((x, y, x + 180, y + 180), fill=fill)
    words = rng.choice(len(_WORDS), size=4, replace=False)
    color = tuple(int(c) for c in rng.integers(0, 90, 3))
    draw.text((30, 30), _WORDS[words[0]] + _WORDS[words[1]], font=font(48), fill=color)
    draw.text((30, 100), _WORDS[words[2]] + " " + _WORDS[words[3]], font=font(36), fill=color)
    draw.text((30, 390), _LATIN[i % len(_LATIN)], font=font(32), fill=color)
    draw.text((30, 160), f"¥{int(rng.integers(9, 2000))}.{i % 100:02d}", font=font(40), fill=(200, 0, 0))
    return img


def title(i: int) -> str:
    rng = np.random.default_rng([20241122, i])
    words = rng.choice(len(_WORDS), size=4, replace=False)
    return f"{_WORDS[words[0]]}{_WORDS[words[1]]} {_WORDS[words[2]]} {_LATIN[i % len(_LATIN)]}"


def generate(root: Path, n: int) -> tuple[list[str], int]:
    """Files img00000.jpg / img00001.png ...; returns their names and total bytes."""
    names, total = [], 0
    for i in range(n):
        name = f"img{i:05d}.{'jpg' if i % 2 == 0 else 'png'}"
        path = root / name
        product_image(i).save(path, **({"quality": 88} if name.endswith("jpg") else {"optimize": False}))
        names.append(name)
        total += path.stat().st_size
    return names, total


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(root: Path) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# -- measuring ---------------------------------------------------------------------------------------
@dataclass
class Row:
    stage: str
    count: int
    unit: str
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Results:
    n: int
    ocr_n: int
    image_bytes: int = 0
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    real_model: str = ""
    wall_s: float = 0.0


def clock(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_encoder(res: Results, name: str, enc: ClipEncoder, images: list[Image.Image], texts: list[str]) -> None:
    enc.encode_image(images[:4])  # warm-up: first ONNX run allocates
    enc.encode_text(texts[:4])
    n = len(images)
    cfg = enc.image
    _, pre_s = clock(lambda: [enc.preprocess(images[i : i + enc.batch_size]) for i in range(0, n, enc.batch_size)])
    res.rows.append(Row(f"preprocess ({name}: resize {cfg.size}, crop {cfg.crop})", n, "images", pre_s))
    _, img_s = clock(lambda: enc.encode_image(images))
    res.rows.append(Row(f"embed images ({name}, incl. preprocess)", n, "images", img_s,
                        f"batch {enc.batch_size}, {enc.dim}-d"))
    _, txt_s = clock(lambda: enc.encode_text(texts))
    res.rows.append(Row(f"embed texts ({name})", len(texts), "texts", txt_s,
                        f"context {enc.context_length}, batch {enc._text_step}"))


def import_rate(res: Results, home: Path, model_dir: Path, base: str, names: list[str], ocr: bool,
                console: Console) -> None:
    mm = MMSearch(Settings(home=home, clip_model=str(model_dir), allow_private_networks=True))
    schema = {**SCHEMA, "ocr": ocr}
    dataset = f"bench_encode_{'ocr' if ocr else 'noocr'}"
    mm.create_dataset(dataset, schema)  # loads the encoder (its dim sizes the dataset): not timed
    if ocr:
        mm.ocr.load()  # shared per process; already loaded by the OCR stage
    items = [{"item_id": f"p{i:05d}", "title": title(i), "image": f"{base}/{name}"} for i, name in enumerate(names)]
    report, secs = clock(lambda: mm.import_items(dataset, items, batch_size=100))
    if report.imported != len(items) or report.warnings:
        raise SystemExit(f"import: {report.imported}/{len(items)} imported, warnings {report.warnings[:3]}")
    imgs = report.images or {}
    label = "with OCR" if ocr else 'schema "ocr": false'
    res.rows.append(Row(f"import_items, tiny CLIP, {label}", len(items), "items", secs,
                        f"embedded {imgs.get('embedded')}, OCR chars {imgs.get('ocr_chars')}; incl. maintain()"))
    console.log(f"import ({label}): {len(items) / secs:.1f} items/s")


def run(n: int, ocr_n: int, model: str | None, console: Console) -> Results:
    wall = time.perf_counter()
    res = Results(n=n, ocr_n=min(ocr_n, n))
    tmp = Path(tempfile.mkdtemp(prefix="mmsearch-bench-encode-"))
    server = None
    try:
        (tmp / "www").mkdir()
        names, res.image_bytes = generate(tmp / "www", n)
        console.log(f"generated {n} images ({res.image_bytes / n / 1024:.0f} KiB average)")
        server, base = serve(tmp / "www")
        urls = [f"{base}/{name}" for name in names]

        # 1. fetch, decode, preprocess. The tiny model's preprocessing resizes to 32 px; a copy of it set to
        # the usual CLIP 224 px (bicubic, centre crop, normalise) runs the same `ClipEncoder.preprocess` code
        # at a real model's input size.
        tiny_dir = build_immich(tmp / "tiny_clip")
        tiny = load_clip(str(tiny_dir))
        clip224 = copy.copy(tiny)
        clip224.image = dataclasses.replace(tiny.image, size=224, crop=224, mean=_CLIP_MEAN, std=_CLIP_STD)
        with Fetcher(FetchConfig(allowed_networks=("127.0.0.0/8",))) as fetcher:
            fetcher.fetch(urls[0])  # warm-up: connection pool
            outcomes, fetch_s = clock(lambda: fetcher.fetch_many(urls, concurrency=DEFAULT_CONCURRENCY))
            failed = [o for o in outcomes if o.error is not None]
            if failed:
                raise SystemExit(f"fetch failed for {len(failed)} URLs: {failed[0].error}")
            res.rows.append(Row("fetch (Fetcher.fetch_many, loopback HTTP)", n, "images", fetch_s,
                                f"concurrency {DEFAULT_CONCURRENCY}, per-host limit {fetcher.config.per_host}"))
            decoded, decode_s = clock(lambda: [decode_image(o.result.data) for o in outcomes])
            res.rows.append(Row("decode (decode_image, half JPEG half PNG)", n, "images", decode_s, "sequential"))
            images = [d.image for d in decoded]
            _, pre_s = clock(lambda: [clip224.preprocess(images[i : i + 32]) for i in range(0, n, 32)])
            res.rows.append(Row("preprocess (ClipEncoder.preprocess at 224 px)", n, "images", pre_s,
                                "bicubic resize, centre crop, normalise; sequential"))

            def load(url: str) -> Any:
                return clip224.preprocess([decode_image(fetcher.fetch(url).data).image])

            def pooled() -> list[Any]:
                with ThreadPoolExecutor(max_workers=DEFAULT_CONCURRENCY) as pool:
                    return list(pool.map(load, urls))

            _, all_s = clock(pooled)
            res.rows.append(Row("fetch + decode + preprocess 224, pooled", n, "images", all_s,
                                f"{DEFAULT_CONCURRENCY} threads, one image per task"))
        console.log("fetch, decode and preprocess done")

        # 2. embedding
        texts = [title(i) for i in range(n)]
        bench_encoder(res, "tiny", tiny, images, texts)
        if model and model.lower() != "none":
            try:
                real, load_s = clock(lambda: load_clip(model))
            except ModelUnavailable as exc:
                reason = exc.message.split("; pass a local", 1)[0]  # drop the how-to-supply advice
                note = f"real model {model!r} skipped (HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}): {reason}"
                res.notes.append(note)
                console.log(note)
            else:
                res.real_model = f"{model} ({real.dim}-d, loaded in {load_s:.1f} s)"
                bench_encoder(res, "real", real, images, texts)
        else:
            res.notes.append("real model skipped: --model none")
        console.log("embedding done")

        # 3. OCR
        engine = OcrEngine()
        try:
            _, load_s = clock(engine.load)
        except OcrUnavailable as exc:
            res.notes.append(f"OCR skipped: {exc.message}")
        else:
            engine.read(images[0])  # warm-up
            found, ocr_s = clock(lambda: engine.read_many(images[: res.ocr_n]))
            lines = sum(len(r.lines) for r in found)
            res.rows.append(Row("OCR (OcrEngine.read, RapidOCR)", res.ocr_n, "images", ocr_s,
                                f"{lines / res.ocr_n:.1f} lines/image; model load {load_s:.1f} s (not counted)"))
            console.log("OCR done")

        # 4. full import path
        import_rate(res, tmp / "home_noocr", tiny_dir, base, names, False, console)
        import_rate(res, tmp / "home_ocr", tiny_dir, base, names, True, console)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        shutil.rmtree(tmp, ignore_errors=True)
    res.wall_s = time.perf_counter() - wall
    return res


# -- reporting ---------------------------------------------------------------------------------------
def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("onnxruntime", "rapidocr_onnxruntime", "Pillow", "httpx", "lancedb"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} (missing)")
    return ", ".join(out)


def markdown(res: Results) -> str:
    lines = [
        f"<!-- bench:encode N={res.n} -->",
        f"### Encode and image import, N = {res.n}",
        "",
        f"Run {dt.date.today().isoformat()} on {machine()}; {versions()}. "
        f"`python bench/encode.py --n {res.n} --ocr-n {res.ocr_n}`. {res.n} images of 640x480 "
        f"(half JPEG, half PNG, {res.image_bytes / res.n / 1024:.0f} KiB average) served over loopback HTTP.",
        "",
        "| stage | count | rate | time | notes |",
        "|---|---|---|---|---|",
        *[f"| {r.stage} | {r.count} | {r.rate:,.1f} {r.unit}/s | {r.seconds:.2f} s | {r.note} |" for r in res.rows],
        "",
    ]
    if res.real_model:
        lines += [f"Real model: {res.real_model}.", ""]
    lines += [f"- {note}" for note in res.notes]
    lines += [
        f"- The tiny model's image tower takes 32x32 pixels, so its rates show the pipeline's own cost "
        f"(preprocessing, ONNX Runtime call overhead), not a CLIP network. The OCR stage reads the "
        f"first {res.ocr_n} images; both imports take all {res.n}. Import rates include fetching, decoding, "
        "embedding, OCR, the LanceDB write and the final `maintain()`.",
        f"- Benchmark wall time {res.wall_s:.0f} s (including image generation).",
        "<!-- /bench:encode -->",
    ]
    return "\n".join(lines)


def record(section: str, n: int, path: Path = DOC) -> None:
    record_section("encode", n, section, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images (and items) to generate, fetch and embed")
    parser.add_argument("--ocr-n", type=int, default=100, help="images for the OCR stage (the imports use all --n)")
    parser.add_argument("--model", default=DEFAULT_CLIP_MODEL,
                        help="real CLIP model, directory or cached repo id (skipped if it cannot be loaded "
                             "offline; 'none' to skip)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if args.n < 1 or args.ocr_n < 1:
        parser.error("--n and --ocr-n must be positive")

    console = Console(width=max(Console().width, 150))
    res = run(args.n, args.ocr_n, args.model, console)
    table = Table(title=f"mmsearch encode, N={args.n} ({machine()})")
    for col, justify in (("stage", "left"), ("count", "right"), ("rate", "right"), ("time", "right"),
                         ("notes", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in res.rows:
        table.add_row(r.stage, str(r.count), f"{r.rate:,.1f} {r.unit}/s", f"{r.seconds:.2f} s", r.note)
    console.print(table)
    for note in res.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"wall time {res.wall_s:.0f} s")
    if not args.no_record:
        record(markdown(res), args.n)
        console.log(f"recorded in {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
