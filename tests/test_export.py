"""`mmsearch export`: a dataset's items as imported, so a re-import elsewhere gives the same results; with
--vectors the same vectors (no image model needed); Parquet when every field has one type, else a clear error."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLE_SCHEMA, VECTOR_DIM
from mmsearch.cli import app
from mmsearch.config import Settings
from mmsearch.core import MMSearch
from mmsearch.encoders.hashing import HashingEncoder
from mmsearch.errors import InvalidArgument
from mmsearch.search import SearchRequest

QUERIES = ["running shoe", "运动鞋", "bag", "summer dress"]


def _engine(home, items=None) -> MMSearch:
    mm = MMSearch(Settings(home=home, ocr=False), encoder=HashingEncoder(VECTOR_DIM))
    mm.create_dataset("products", copy.deepcopy(EXAMPLE_SCHEMA), vector_dim=VECTOR_DIM)
    if items is not None:
        assert mm.import_items("products", items).rejected == 0
    return mm


def _ranked(mm: MMSearch, request: SearchRequest) -> list[tuple[str, float]]:
    return [(h.id, round(h.score, 6)) for h in mm.search("products", request).hits]


def test_a_jsonl_export_reimported_elsewhere_answers_the_same(tmp_path, product_items):
    source = _engine(tmp_path / "a", copy.deepcopy(product_items))
    path = tmp_path / "out.jsonl"
    assert source.export("products", path, vectors=True) == len(product_items)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {i["item_id"] for i in lines} == {p["item_id"] for p in product_items}
    first = next(i for i in lines if i["item_id"] == "p01")
    assert first["brand_note"] == "official store" and first["specs"] == {"weight_g": 320}  # extras kept
    assert len(first["_vector"]) == VECTOR_DIM
    copy_ = _engine(tmp_path / "b", lines)
    for text in QUERIES:
        assert _ranked(copy_, SearchRequest(text=text)) == _ranked(source, SearchRequest(text=text)), text
    probe = SearchRequest(vector=np.asarray(first["_vector"], dtype=np.float32))
    assert _ranked(copy_, probe) == _ranked(source, probe)
    assert copy_.get("products", ["p02"]) == source.get("products", ["p02"])


def test_without_vectors_no_vector_is_written(tmp_path, product_items):
    source = _engine(tmp_path / "a", copy.deepcopy(product_items))
    path = tmp_path / "out.jsonl"
    source.export("products", path)
    assert all("_vector" not in json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())


def test_parquet_round_trip_and_mixed_types_refused(tmp_path):
    items = [{"item_id": f"x{n}", "title": f"帆布包 {n}", "status": n % 3, "price": 10.0 + n, "_vector":
              [0.1 * ((n + k) % 7) + 0.01 for k in range(VECTOR_DIM)]} for n in range(20)]
    source = _engine(tmp_path / "a", copy.deepcopy(items))
    path = tmp_path / "out.parquet"
    assert source.export("products", path, vectors=True) == 20
    copy_ = _engine(tmp_path / "b")
    assert copy_.import_file("products", path).rejected == 0
    assert _ranked(copy_, SearchRequest(text="帆布包")) == _ranked(source, SearchRequest(text="帆布包"))
    mixed = _engine(tmp_path / "c", [{"item_id": "m1", "title": "t", "images": "https://x/a.jpg"},
                                     {"item_id": "m2", "title": "t", "images": ["https://x/b.jpg"]}])
    with pytest.raises(InvalidArgument, match=r"export to \.jsonl"):
        mixed.export("products", tmp_path / "mixed.parquet")
    assert not (tmp_path / "mixed.parquet").exists() and not list(tmp_path.glob(".mixed*"))


def test_the_cli_exports_and_refuses_other_formats(tmp_path, product_items):
    _engine(tmp_path, copy.deepcopy(product_items))
    done = CliRunner().invoke(app, ["--home", str(tmp_path), "export", "products", str(tmp_path / "x.jsonl"),
                                    "--json"])
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {"dataset": "products", "file": str(tmp_path / "x.jsonl"),
                                       "items": len(product_items), "vectors": False}
    bad = CliRunner().invoke(app, ["--home", str(tmp_path), "export", "products", str(tmp_path / "x.csv"), "--json"])
    assert bad.exit_code == 1 and json.loads(bad.stderr)["error"]["field"] == "file"
