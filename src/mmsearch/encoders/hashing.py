"""A deterministic, model-free encoder: texts sharing words get similar vectors.

It exists so the whole pipeline (import, vlm channel, fusion) runs without a model, in tests,
benchmarks and offline demos. It is not a semantic model and says so in its `model_id`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from mmsearch.encoders.base import l2_normalise
from mmsearch.text import tokenize_query


class HashingEncoder:
    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self.model_id = f"hashing-{dim}"

    def _token_vector(self, token: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for token in tokenize_query(text) or [text]:
                out[i] += self._token_vector(token)
        return l2_normalise(out)

    def encode_image(self, images: list[Any]) -> np.ndarray:
        """Projects a 16x16 grey thumbnail: the same pixels give the same vector."""
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        projection = np.random.default_rng(0).standard_normal((256, self.dim)).astype(np.float32)
        for i, image in enumerate(images):
            pixels = np.asarray(image.convert("L").resize((16, 16)), dtype=np.float32).reshape(-1) / 255.0
            out[i] = (pixels - pixels.mean()) @ projection
        return l2_normalise(out)
