"""What can go wrong with a video on its way in (intake, probe, decoding), in the ingest's
own terms. Each kind has a stable `code` that clients and job statuses see; the HTTP layer
(`server.errors`) maps each kind to a status, in one table."""

from __future__ import annotations

from typing import ClassVar


class IngestError(Exception):
    code: ClassVar[str] = "ingest_failed"


class MalformedUpload(IngestError):
    code = "bad_request"


class EmptyVideo(IngestError):
    code = "empty_video"


class VideoTooLarge(IngestError):
    """Too many bytes, or too many pixels a frame."""

    code = "too_large"


class VideoTooLong(IngestError):
    code = "too_long"


class NotAVideo(IngestError):
    """Not a container, codec or stream we decode."""

    code = "unsupported_media"


class DecodeTimeout(IngestError):
    code = "decode_timeout"


class SpoolFull(IngestError):
    """The uploads on disk are at their budget; it frees as jobs finish."""

    code = "spool_full"


class DiskFull(IngestError):
    code = "disk_full"


class InvalidUrl(IngestError):
    code = "url_invalid"


class UrlNotAllowed(IngestError):
    code = "url_not_allowed"


class UrlUnreachable(IngestError):
    code = "url_unreachable"


class FetchFailed(IngestError):
    code = "url_fetch_failed"


class FetchTimeout(IngestError):
    code = "url_timeout"


class BadPlaylist(IngestError):
    """A live stream's URL that is not an HLS playlist we follow."""

    code = "bad_playlist"


class StreamGone(IngestError):
    """A live stream that failed or stalled for longer than LONGVU_STREAM_GONE_S."""

    code = "stream_gone"
