"""The ingest's errors reach clients through one table at the HTTP edge."""

import pytest

from server.errors import INGEST_STATUS, as_api_error
from server.ingest import errors as ingest


def every_kind() -> list[type[ingest.IngestError]]:
    return [k for k in vars(ingest).values()
            if isinstance(k, type) and issubclass(k, ingest.IngestError) and k is not ingest.IngestError]


def test_every_kind_of_ingest_error_has_its_status() -> None:
    assert set(every_kind()) == set(INGEST_STATUS)
    assert len({kind.code for kind in every_kind()}) == len(every_kind())  # one code for each kind


@pytest.mark.parametrize(("kind", "status", "retry_after"), [
    (ingest.VideoTooLarge, 413, None), (ingest.NotAVideo, 415, None), (ingest.DecodeTimeout, 422, None),
    (ingest.SpoolFull, 503, "30"), (ingest.DiskFull, 503, "60"),
])
def test_mapped_to_status_code_and_retry_after(kind: type[ingest.IngestError], status: int,
                                               retry_after: str | None) -> None:
    error = as_api_error(kind("what went wrong"))
    assert (error.status, error.code, error.message) == (status, kind.code, "what went wrong")
    assert (error.headers or {}).get("Retry-After") == retry_after
