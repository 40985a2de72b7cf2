"""Encoders turn text and images into L2-normalised float32 vectors; they know no store."""

from mmsearch.encoders.base import Encoder
from mmsearch.encoders.hashing import HashingEncoder

__all__ = ["Encoder", "HashingEncoder"]
