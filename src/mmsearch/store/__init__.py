"""Storage engines behind one small protocol; LanceDB is the embedded default."""

from mmsearch.store.base import Candidate, Record, Store, UpsertResult

__all__ = ["Candidate", "Record", "Store", "UpsertResult"]
