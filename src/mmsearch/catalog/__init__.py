"""The control plane: datasets and their schemas, applications, API keys, import jobs and the query log."""

from mmsearch.catalog.db import Catalog

__all__ = ["Catalog"]
