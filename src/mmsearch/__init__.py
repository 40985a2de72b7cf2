"""mmsearch: self-hosted multimodal search."""

__version__ = "0.1.0"
