"""Dataset schemas: field definitions, item validation and the filter language."""

from mmsearch.schema.fields import DatasetInfo, DatasetSchema, FieldSpec, parse_schema
from mmsearch.schema.filters import Filter, parse_filter
from mmsearch.schema.validate import ItemError, ValidItem, validate_item

__all__ = [
    "DatasetInfo",
    "DatasetSchema",
    "FieldSpec",
    "Filter",
    "ItemError",
    "ValidItem",
    "parse_filter",
    "parse_schema",
    "validate_item",
]
