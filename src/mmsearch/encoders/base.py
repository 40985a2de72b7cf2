"""The encoder protocol the search pipeline and ingest depend on."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Encoder(Protocol):
    model_id: str
    dim: int

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """float32[n, dim], each row L2-normalised."""
        ...

    def encode_image(self, images: list[Any]) -> np.ndarray:
        """float32[n, dim] for PIL images, each row L2-normalised."""
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)
