"""The control plane: datasets and their schemas (applications, keys and jobs join later)."""

from mmsearch.catalog.db import Catalog

__all__ = ["Catalog"]
