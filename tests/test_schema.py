"""Schemas: the example schema is valid; broken schemas and dataset ids/types are refused by name."""

from __future__ import annotations

import copy

import pytest

from mmsearch.errors import AlreadyExists, InvalidArgument, NotFound
from mmsearch.schema.fields import check_dataset_id, check_dataset_type, parse_schema


def test_example_schema_is_valid(example_schema):
    schema = parse_schema(example_schema)
    assert [f.name for f in schema.fields] == [f["name"] for f in example_schema["fields"]]
    assert schema.primary_key.name == "item_id"
    assert [f.name for f in schema.searchable] == ["title"]
    assert [f.name for f in schema.filterable] == [
        "category", "status", "price", "on_sale", "tags", "sizes"
    ]
    assert [f.name for f in schema.images] == ["images"]
    assert schema.field("tags").is_array and schema.field("tags").element_type == "string"
    assert schema.field("sizes").element_type == "int64"
    assert schema.field("location").type == "geo_point"
    assert set(schema.sortable_keys()) == {"item_id", "status", "price", "product.price", "create_at"}


def test_type_names_are_normalised():
    schema = parse_schema({"fields": [
        {"name": "id", "type": "String", "primary_key": True},
        {"name": "tags", "type": "Array< String >"},
    ]})
    assert schema.field("id").type == "string"
    assert schema.field("tags").type == "array<string>"


def _with(example_schema, *extra, drop_pk=False):
    schema = copy.deepcopy(example_schema)
    if drop_pk:
        schema["fields"] = [f for f in schema["fields"] if not f.get("primary_key")]
    schema["fields"].extend(extra)
    return schema


def test_unknown_type_names_field_and_rule(example_schema):
    with pytest.raises(InvalidArgument) as exc:
        parse_schema(_with(example_schema, {"name": "colour", "type": "color"}))
    assert "colour" in exc.value.message
    assert "unknown type" in exc.value.message
    assert exc.value.code == "InvalidArgument"
    assert "colour" in exc.value.field


def test_duplicate_names_are_refused(example_schema):
    with pytest.raises(InvalidArgument) as exc:
        parse_schema(_with(example_schema, {"name": "title", "type": "int32"}))
    assert exc.value.message == "schema: duplicate field name 'title'"


def test_missing_primary_key_is_refused(example_schema):
    with pytest.raises(InvalidArgument) as exc:
        parse_schema(_with(example_schema, drop_pk=True))
    assert "primary_key" in exc.value.message
    assert "no field" in exc.value.message


def test_two_primary_keys_are_refused_naming_both(example_schema):
    with pytest.raises(InvalidArgument) as exc:
        parse_schema(_with(example_schema, {"name": "sku", "type": "string", "primary_key": True}))
    msg = exc.value.message
    assert "primary_key" in msg
    assert "'item_id'" in msg and "'sku'" in msg


@pytest.mark.parametrize(
    ("field", "rule"),
    [
        ({"name": "score_pk", "type": "float", "primary_key": True}, "primary_key must be a string, int32 or int64"),
        ({"name": "count_n", "type": "int32", "searchable": True}, "searchable applies to string"),
        ({"name": "meta", "type": "object", "filterable": True}, "filterable applies to"),
        ({"name": "tags2", "type": "array<string>", "sortable": True}, "sortable applies to"),
        ({"name": "label_s", "type": "string", "sortable_paths": ["x"]}, "sortable_paths applies to object"),
        ({"name": "9lives", "type": "string"}, "must match"),
        ({"name": "odd_key", "type": "string", "colour": "red"}, "Extra inputs"),
        ({"name": "zero_len", "type": "string", "max_length": 0}, "greater than or equal to 1"),
    ],
)
def test_flag_rules_name_the_field(example_schema, field, rule):
    schema = _with(example_schema, field)
    if field.get("primary_key"):
        schema["fields"] = [f for f in schema["fields"] if f["name"] != "item_id"]
    with pytest.raises(InvalidArgument) as exc:
        parse_schema(schema)
    assert rule in exc.value.message
    assert field["name"] in exc.value.message


@pytest.mark.parametrize("raw", [None, [], {"fields": []}, {"fields": "x"}, {"fields": [], "extra": 1}])
def test_malformed_schemas_are_refused(raw):
    with pytest.raises(InvalidArgument) as exc:
        parse_schema(raw)
    assert exc.value.message.startswith("schema")


@pytest.mark.parametrize("dataset_id", ["a", "A-b_9", "x" * 64, "123", "-_-"])
def test_valid_dataset_ids(dataset_id):
    assert check_dataset_id(dataset_id) == dataset_id


@pytest.mark.parametrize("dataset_id", ["", "x" * 65, "a b", "a.b", "a/b", "数据", "a'b", None, 5])
def test_invalid_dataset_ids(dataset_id):
    with pytest.raises(InvalidArgument) as exc:
        check_dataset_id(dataset_id)
    assert exc.value.field == "dataset_id"
    assert "[A-Za-z0-9_-]{1,64}" in exc.value.message


def test_dataset_types():
    assert check_dataset_type("image_text") == "image_text"
    assert check_dataset_type("video") == "video"
    for bad in ("image", "Video", "", "text"):
        with pytest.raises(InvalidArgument) as exc:
            check_dataset_type(bad)
        assert exc.value.field == "type"


def test_create_dataset_checks_id_type_and_schema(mm, example_schema):
    with pytest.raises(InvalidArgument, match="dataset_id"):
        mm.create_dataset("bad id", example_schema)
    with pytest.raises(InvalidArgument, match="type"):
        mm.create_dataset("ok", example_schema, type="audio")
    with pytest.raises(InvalidArgument, match="duplicate"):
        mm.create_dataset("ok", _with(example_schema, {"name": "title", "type": "string"}))
    with pytest.raises(InvalidArgument, match="vector_dim"):
        mm.create_dataset("ok", example_schema, vector_dim=1)
    assert mm.datasets() == []  # nothing half-created

    info = mm.create_dataset("ok", example_schema, type="video", vector_dim=16)
    assert (info.id, info.type, info.vector_dim) == ("ok", "video", 16)
    assert mm.dataset("ok") == info  # the catalog round-trips the schema
    with pytest.raises(AlreadyExists, match="'ok'"):
        mm.create_dataset("ok", example_schema)
    with pytest.raises(NotFound, match="'nope'"):
        mm.dataset("nope")
