"""Media: turn image references (data URIs, http(s) URLs, local paths) into checked RGB pictures."""

from mmsearch.media.datauri import is_data_uri, parse_data_uri
from mmsearch.media.errors import FetchError, UnsafeURL
from mmsearch.media.fetch import USER_AGENT, FetchConfig, Fetcher, FetchOutcome, FetchResult
from mmsearch.media.images import DecodedImage, check_dimensions, decode_image, mime_for_format, supported_formats
from mmsearch.media.local import load_local
from mmsearch.media.netguard import address_problem, check_address, resolve_target
from mmsearch.media.refs import load_image_ref
from mmsearch.media.sniff import sniff_image_format

__all__ = [
    "USER_AGENT",
    "DecodedImage",
    "FetchConfig",
    "FetchError",
    "FetchOutcome",
    "FetchResult",
    "Fetcher",
    "UnsafeURL",
    "address_problem",
    "check_address",
    "check_dimensions",
    "decode_image",
    "is_data_uri",
    "load_image_ref",
    "load_local",
    "mime_for_format",
    "parse_data_uri",
    "resolve_target",
    "sniff_image_format",
    "supported_formats",
]
