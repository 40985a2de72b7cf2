"""Getting items into a dataset: file readers and the batch importer."""

from mmsearch.ingest.importer import ImportReport, import_items
from mmsearch.ingest.readers import count_items, read_items

__all__ = ["ImportReport", "count_items", "import_items", "read_items"]
