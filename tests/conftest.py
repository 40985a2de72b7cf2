"""Shared fixtures: the issue's example schema, a small product catalogue and real engines on temp dirs.

Everything runs against real components: LanceDB tables under pytest's tmp dirs, the real catalog,
the real tokenizer. Read-only tests share one populated dataset per session (`products`); tests
that write get their own `mm` on a fresh `tmp_path`.
"""

from __future__ import annotations

import os

# Tests never reach a model hub: engines built without an explicit encoder load no CLIP model, and any
# hub lookup stays in the local cache. Tests that want a model pass one (tiny ONNX exports, see tiny_clip).
os.environ.setdefault("MMSEARCH_CLIP_MODEL", "none")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest

from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.search import SearchOptions, SearchRequest

# the smallest searchable catalogue: an id and a title
TITLE_SCHEMA: dict[str, Any] = {"fields": [
    {"name": "id", "type": "string", "primary_key": True},
    {"name": "title", "type": "string", "searchable": True},
]}
EXAMPLE_SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "item_id", "type": "string", "primary_key": True},
        {"name": "title", "type": "string", "searchable": True},
        {"name": "category", "type": "string", "filterable": True},
        {"name": "status", "type": "int32", "filterable": True, "sortable": True},
        {"name": "price", "type": "float", "filterable": True, "sortable": True},
        {"name": "on_sale", "type": "bool", "filterable": True},
        {"name": "tags", "type": "array<string>", "filterable": True},
        {"name": "sizes", "type": "array<int64>", "filterable": True},
        {"name": "product", "type": "object", "sortable_paths": ["price"]},
        {"name": "images", "type": "image"},
        {"name": "location", "type": "geo_point"},
        {"name": "create_at", "type": "int64", "sortable": True},
    ]
}

VECTOR_DIM = 8


def _vec(seed: int) -> list[float]:
    return np.random.default_rng(seed).standard_normal(VECTOR_DIM).round(4).tolist()


# A small catalogue with deliberate gaps: some items lack status, price, tags, sizes, product.price,
# on_sale or create_at, so "missing field" semantics (filters, sorting) are exercised.
_RAW_PRODUCTS: list[dict[str, Any]] = [
    {"item_id": "p01", "title": "Nike Air Max 90 running shoe", "category": "shoes", "status": 1, "price": 899.0,
     "on_sale": True, "tags": ["sport", "running"], "sizes": [40, 41, 42], "product": {"price": 899.0},
     "images": "https://img.example.com/p01.jpg", "location": {"latitude": 31.23, "longitude": 121.47},
     "create_at": 1_700_000_001},
    {"item_id": "p02", "title": "Adidas 运动鞋 white", "category": "shoes", "status": 2, "price": 599.5,
     "on_sale": False, "tags": ["sport"], "sizes": [38, 39], "product": {"price": 599.5},
     "images": ["https://img.example.com/p02a.jpg", "https://img.example.com/p02b.jpg"],
     "create_at": 1_700_000_002},
    {"item_id": "p03", "title": "红色连衣裙 summer dress", "category": "dress", "status": 1, "price": 259.0,
     "on_sale": True, "tags": ["summer", "red"], "sizes": [36], "product": {"price": 259.0},
     "images": [{"image_url": "https://img.example.com/p03.jpg"}], "create_at": 1_700_000_003},
    {"item_id": "p04", "title": "Leather handbag brown", "category": "bags", "status": 3, "price": 1299.0,
     "on_sale": False, "tags": ["leather"], "product": {"price": 1299.0}, "create_at": 1_700_000_004},
    {"item_id": "p05", "title": "Canvas tote bag", "category": "bags", "status": 2, "price": 89.9,
     "tags": [], "sizes": [], "product": {"brand": "none"}, "create_at": 1_700_000_005},
    {"item_id": "p06", "title": "儿童运动鞋 kids shoe", "category": "shoes", "status": 1, "price": 199.0,
     "on_sale": True, "tags": ["sport", "kids"], "sizes": [30, 31, 32], "product": {"price": 199.0},
     "create_at": 1_700_000_006},
    {"item_id": "p07", "title": "Wool winter coat", "category": "coats", "price": 1599.0,
     "on_sale": True, "tags": ["winter"], "sizes": [42, 44], "product": {"price": 1599.0}},
    {"item_id": "p08", "title": "Running socks 3 pack", "category": "socks", "status": 2,
     "tags": ["sport", "running"], "sizes": [40], "create_at": 1_700_000_008},
    {"item_id": "p09", "title": "Silk scarf", "status": 3, "price": 399.0, "on_sale": False,
     "product": {"price": 399.0}, "create_at": 1_700_000_009},
    {"item_id": "p10", "title": "Trail running shoe waterproof", "category": "shoes", "status": 2, "price": 1099.0,
     "on_sale": False, "tags": ["running", "outdoor"], "sizes": [41, 42, 43], "product": {"price": 1099.0},
     "create_at": 1_700_000_010},
    {"item_id": "p11", "title": "Denim jacket", "category": "coats", "status": 1, "price": 499.0,
     "tags": ["denim"], "sizes": [44], "create_at": 1_700_000_011},
    {"item_id": "p12", "title": "Basketball shoe high top", "category": "shoes", "status": 3, "price": 759.0,
     "on_sale": True, "sizes": [44, 45], "product": {"price": 759.0}, "create_at": 1_700_000_012},
]

# Fields outside the schema are kept and returned as display fields.
_RAW_PRODUCTS[0]["brand_note"] = "official store"
_RAW_PRODUCTS[0]["specs"] = {"weight_g": 320}


@pytest.fixture(scope="session")
def example_schema() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE_SCHEMA)


@pytest.fixture(scope="session")
def product_items() -> list[dict[str, Any]]:
    """The catalogue as it is imported: every item carries a precomputed `_vector`."""
    return [dict(copy.deepcopy(p), _vector=_vec(i)) for i, p in enumerate(_RAW_PRODUCTS)]


@pytest.fixture
def mm(tmp_path) -> MMSearch:
    """A fresh engine on its own data directory."""
    return MMSearch(Settings(home=tmp_path))


@pytest.fixture(scope="session")
def products(tmp_path_factory, product_items) -> MMSearch:
    """One engine with dataset `products` imported, shared by read-only tests."""
    engine = MMSearch(Settings(home=tmp_path_factory.mktemp("products")))
    engine.create_dataset("products", EXAMPLE_SCHEMA, vector_dim=VECTOR_DIM)
    report = engine.import_items("products", product_items)
    assert report.rejected == 0, report.as_dict()
    assert report.inserted == len(product_items)
    return engine


def ids(result) -> list[str]:
    return [h.id for h in result.hits]


ALL = SearchOptions(recall_size=1_000)


def every_item(engine: MMSearch, dataset: str, filter: Any = None, **request: Any) -> list:
    """All items passing `filter`: every item has a vector, so a vector query with a large recall
    reaches each of them, and the filter is the only thing deciding membership."""
    req = SearchRequest(vector=np.ones(engine.dataset(dataset).vector_dim), filter=filter,
                        channels=("vlm",), page_size=1_000, **request)
    return engine.search(dataset, req, ALL).hits


def oracle(items: Iterable[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {it["item_id"] for it in items if pred(it)}


from console_browser import browser  # noqa: E402, F401  (the console tests' Chromium fixture)
from postgres import postgres_server  # noqa: E402, F401  (a throwaway PostgreSQL for the catalog tests)
