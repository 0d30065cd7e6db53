"""The URL guard at the address level, with the DNS answer supplied by the test."""

import asyncio

import pytest

from server.errors import ApiError
from server.ingest.addresses import refusal
from server.ingest.intake import check_url
from server.settings import Settings

NEVER = ["169.254.169.254", "169.254.0.1", "fe80::1", "224.0.0.1", "ff02::1", "0.0.0.0", "::", "240.0.0.1"]
PRIVATE = ["10.0.0.1", "10.255.255.255", "172.16.5.4", "192.168.1.1", "127.0.0.1", "127.8.9.10", "::1",
           "fd00::1", "fd12:3456::1", "100.64.0.1", "::ffff:10.0.0.1", "::ffff:127.0.0.1"]
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700::1111"]


@pytest.mark.parametrize("address", NEVER)
def test_never_allowed(address: str) -> None:
    assert refusal(address, allow_private=False)
    assert refusal(address, allow_private=True)


@pytest.mark.parametrize("address", PRIVATE)
def test_private_only_by_setting(address: str) -> None:
    assert refusal(address, allow_private=False)
    assert refusal(address, allow_private=True) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_allowed(address: str) -> None:
    assert refusal(address, allow_private=False) is None


def _check(url: str, answer: list[str], **settings: object) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return answer

    asyncio.run(check_url(url, Settings(**settings), resolve))  # type: ignore[arg-type]


def test_a_name_resolving_to_metadata_is_refused() -> None:
    with pytest.raises(ApiError, match="link-local"):
        _check("http://innocent.example/video.mp4", ["93.184.216.34", "169.254.169.254"])


def test_a_name_resolving_to_private_is_refused() -> None:
    with pytest.raises(ApiError, match="private"):
        _check("https://intranet.example/v.mp4", ["10.1.2.3"])


def test_public_name_passes_and_allow_list_applies() -> None:
    _check("https://videos.example/v.mp4", ["93.184.216.34"])
    with pytest.raises(ApiError, match="allowed list"):
        _check("https://other.example/v.mp4", ["93.184.216.34"], url_allowed_hosts=["videos.example"])
    _check("https://VIDEOS.example./v.mp4", ["93.184.216.34"], url_allowed_hosts=["videos.example"])
