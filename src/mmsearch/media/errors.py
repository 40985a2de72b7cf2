"""Media errors: a refused address is the caller's fault (InvalidArgument); a failed download or an unreadable
video is not."""

from __future__ import annotations

from mmsearch.errors import InvalidArgument, MMSearchError


class UnsafeURL(InvalidArgument):
    """The URL's scheme or resolved address is not allowed (SSRF guard) or a local path is outside the roots."""


class FetchError(MMSearchError):
    """A download failed: HTTP status, timeout, too large, too many redirects, not an image."""

    code = "FetchFailed"

    def __init__(self, message: str, field: str | None = None, url: str | None = None, status: int | None = None):
        super().__init__(message, field=field)
        self.url = url
        self.status = status


class VideoError(MMSearchError):
    """A video (or subtitle file) that cannot be indexed: corrupt, not a video, no video stream, a codec this
    FFmpeg cannot decode, or over a limit. The message names the field, the value found and the rule."""

    code = "VideoUnreadable"
