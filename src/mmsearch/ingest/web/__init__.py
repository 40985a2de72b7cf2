"""The web image corpus: pages and images from a crawler, WARC files or LAION-style metadata, one import path."""
