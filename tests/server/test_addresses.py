"""The URL guard at the address level, with the DNS answer supplied by the test."""

import asyncio

import httpcore
import pytest

from server.errors import as_api_error
from server.ingest.addresses import refusal
from server.ingest.client import check_url
from server.ingest.connect import GuardedBackend
from server.ingest.errors import IngestError, UrlNotAllowed
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


def _connect(url: str, answer: list[str], **settings: object) -> list[str]:
    """Run the guard as a fetch does (URL check, then the connect-time address check) with
    the DNS answer given; returns the addresses it would connect to."""
    config = Settings(**settings)  # type: ignore[arg-type]
    parsed = check_url(url, config)

    async def resolve(host: str, port: int) -> list[str]:
        return answer

    backend = GuardedBackend(config.url_allow_private, resolve)
    return asyncio.run(backend.checked_addresses(parsed.host, parsed.port or 443))


def test_a_name_resolving_to_metadata_is_refused() -> None:
    with pytest.raises(UrlNotAllowed, match="metadata"):
        _connect("http://innocent.example/video.mp4", ["93.184.216.34", "169.254.169.254"])


def test_a_name_resolving_to_private_is_refused() -> None:
    with pytest.raises(UrlNotAllowed, match="private"):
        _connect("https://intranet.example/v.mp4", ["10.1.2.3"])


def test_public_name_passes_and_allow_list_applies() -> None:
    assert _connect("https://videos.example/v.mp4", ["93.184.216.34"]) == ["93.184.216.34"]
    with pytest.raises(UrlNotAllowed, match="allowed list"):
        _connect("https://other.example/v.mp4", ["93.184.216.34"], url_allowed_hosts=["videos.example"])
    _connect("https://VIDEOS.example./v.mp4", ["93.184.216.34"], url_allowed_hosts=["videos.example"])


METADATA_ANY_SETTING = ["192.0.0.192", "2002:a9fe:a9fe::1", "fd00:ec2::254", "100.100.100.200", "169.254.170.2",
                        "64:ff9b::a9fe:a9fe", "::ffff:169.254.169.254", "::169.254.169.254"]
SPECIAL = ["192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1", "192.88.99.1", "2001:db8::1", "100::1",
           "fec0::1", "255.255.255.255", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2002:c000:0201::1"]


@pytest.mark.parametrize("address", METADATA_ANY_SETTING + SPECIAL)
def test_metadata_and_special_purpose_never(address: str) -> None:
    assert refusal(address, allow_private=False)
    assert refusal(address, allow_private=True)


@pytest.mark.parametrize("address", ["2002:0808:0808::1", "64:ff9b::808:808", "::ffff:8.8.8.8"])
def test_embedded_public_addresses_pass(address: str) -> None:
    assert refusal(address, allow_private=False) is None


def test_the_connection_goes_to_the_checked_address() -> None:
    """One resolution: the backend connects to the addresses it checked, never resolving again."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])  # a rebinding DNS server
    tried: list[str] = []

    class Recorder:
        async def connect_tcp(self, host: str, port: int, *args: object) -> None:
            tried.append(host)
            raise httpcore.ConnectError("test: no network")

    async def resolve(host: str, port: int) -> list[str]:
        return next(answers)

    backend = GuardedBackend(False, resolve, inner=Recorder())  # type: ignore[arg-type]
    with pytest.raises(httpcore.ConnectError):
        asyncio.run(backend.connect_tcp("rebind.example", 443))
    assert tried == ["93.184.216.34"]


def test_malformed_urls_are_refused_cleanly() -> None:
    for url in ("http://0010.0010.0010.0010/v.mp4", "http://[::1/v.mp4", "http:///v.mp4", "http://:80/v.mp4"):
        with pytest.raises(IngestError) as caught:
            _connect(url, ["93.184.216.34"])
        assert as_api_error(caught.value).status == 422, url
