"""The demo catalogue shipped with mmsearch: 240 products (`products.jsonl`), their schema and one picture each.

Items reference their picture relative to this folder (`{"image_url": "images/P0000.png"}`), because the install
location is not known when the file is written. A relative local path is looked up under the working directory and
then under each of `MMSEARCH_IMAGE_ROOTS`, so with `SAMPLES_DIR` among the roots the items import as they are (and
search results show `images/P0000.png`, as `mmsearch quickstart` does); `load_products()` gives absolute paths for
callers that prefer them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES_DIR = Path(__file__).resolve().parent
PRODUCTS = SAMPLES_DIR / "products.jsonl"
SCHEMA = SAMPLES_DIR / "products.schema.json"
IMAGES_DIR = SAMPLES_DIR / "images"


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def absolute_image_refs(item: dict[str, Any], base: Path = SAMPLES_DIR) -> dict[str, Any]:
    """A copy of `item` whose relative `images` references are absolute paths under `base`."""
    images = item.get("images")
    if not isinstance(images, list):
        return item

    def fix(ref: Any) -> Any:
        relative = isinstance(ref, str) and ref and "://" not in ref and not ref.startswith("data:")
        return str(base / ref) if relative and not Path(ref).is_absolute() else ref

    return {**item, "images": [{**x, "image_url": fix(x.get("image_url"))} if isinstance(x, dict) else fix(x)
                               for x in images]}


def load_products(absolute_images: bool = True) -> list[dict[str, Any]]:
    """The 240 demo items; with `absolute_images` their picture references are absolute paths under SAMPLES_DIR."""
    with PRODUCTS.open(encoding="utf-8") as fh:
        items = [json.loads(line) for line in fh if line.strip()]
    return [absolute_image_refs(i) for i in items] if absolute_images else items
