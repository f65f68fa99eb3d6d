"""The SSRF guard of the outbound HTTP client factory."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from engine.errors import ErrorKind, StepError
from engine.settings import Settings
from tasks.http_client import forbidden_reason, make_client, parse_allowlist


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),  # shared address space (CGNAT)
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("240.0.0.1", True),
        ("255.255.255.255", True),
        ("::1", True),
        ("::", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("ff02::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped
        ("::ffff:8.8.8.8", False),
        ("2002:7f00:1::", True),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", True),  # 6to4 of 169.254.169.254
        ("2002:808:808::", False),
        ("64:ff9b::a00:1", True),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", False),
        ("::7f00:1", True),  # deprecated IPv4-compatible form
    ],
)
def test_forbidden_reason_table(address: str, forbidden: bool) -> None:
    """Only globally routable addresses pass, including after unwrapping embedded IPv4."""
    assert (forbidden_reason(ipaddress.ip_address(address)) is not None) is forbidden


@pytest.mark.parametrize(
    ("allowlist", "host", "address", "permitted"),
    [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "x", "::ffff:127.0.0.1", True),
        ("10.0.0.0/8", "x", "10.9.8.7", True),
        ("10.0.0.0/8", "x", "11.0.0.1", False),
        ("minio.internal, 127.0.0.1", "MINIO.internal", "10.0.0.5", True),
        ("", "x", "127.0.0.1", False),
        ("[::1]", "x", "::1", True),
    ],
)
def test_allowlist_entries(allowlist: str, host: str, address: str, permitted: bool) -> None:
    """Allow-list entries are host names, IPs or CIDRs (IPv4-mapped addresses match too)."""
    parsed = parse_allowlist(allowlist)
    ip = ipaddress.ip_address(address)
    assert (parsed.permits_host(host) or parsed.permits_ip(ip)) is permitted


def _refused(settings: Settings, url: str) -> StepError:
    with make_client(settings, timeout=2) as client, pytest.raises(StepError) as info:
        client.get(url)
    assert info.value.kind is ErrorKind.FORBIDDEN_ADDRESS
    return info.value


@pytest.fixture
def closed_settings(tmp_path: Path) -> Settings:
    """Settings with an empty allow-list."""
    return Settings(_env_file=None, data_dir=tmp_path, http_allowlist="")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://localhost/",
        "http://127.1/",
        "https://[fe80::1]/",
    ],
)
def test_forbidden_destinations_are_refused(closed_settings: Settings, url: str) -> None:
    """Private, metadata, loopback (also as names and mapped forms) and unspecified
    addresses are refused before any connection."""
    _refused(closed_settings, url)


@pytest.mark.parametrize(
    "url", ["http://[::1]/", "http://0.0.0.0/", "http://127.0.0.2/", "http://10.0.0.1/"]
)
def test_allow_listing_one_address_opens_only_that_address(settings: Settings, url: str) -> None:
    """With 127.0.0.1 allow-listed, other loopback/unspecified/private addresses stay shut."""
    _refused(settings, url)


def test_loopback_server_refused_unless_allow_listed(
    closed_settings: Settings, settings: Settings, httpserver: HTTPServer
) -> None:
    """A real server on 127.0.0.1 is unreachable until 127.0.0.1 is allow-listed."""
    httpserver.expect_request("/ok").respond_with_data("fine")
    error = _refused(closed_settings, httpserver.url_for("/ok"))
    assert error.message == "address not allowed: 127.0.0.1"
    assert httpserver.log == []  # nothing reached the server
    with make_client(settings, timeout=5) as client:
        assert client.get(httpserver.url_for("/ok")).text == "fine"


def test_allow_listed_host_name(tmp_path: Path, httpserver: HTTPServer) -> None:
    """A host name on the allow-list may resolve to a loopback address."""
    allowed = Settings(_env_file=None, data_dir=tmp_path, http_allowlist="localhost")
    httpserver.expect_request("/ok").respond_with_data("fine")
    with make_client(allowed, timeout=5) as client:
        url = f"http://localhost:{httpserver.port}/ok"
        assert client.get(url).text == "fine"


def test_redirect_to_forbidden_address_is_refused(
    tmp_path: Path, second_server: HTTPServer, httpserver: HTTPServer
) -> None:
    """A redirect hop is checked like the first request: an allowed server (127.0.0.2)
    redirecting to a forbidden one (127.0.0.1) fails, and the target is never reached."""
    only_second = Settings(_env_file=None, data_dir=tmp_path, http_allowlist="127.0.0.2")
    httpserver.expect_request("/secret").respond_with_data("internal")
    second_server.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": httpserver.url_for("/secret")}
    )
    second_server.expect_request("/plain").respond_with_data("public")
    with make_client(only_second, timeout=5) as client:
        assert client.get(second_server.url_for("/plain")).text == "public"
        with pytest.raises(StepError) as info:
            client.get(second_server.url_for("/start"))
    assert info.value.kind is ErrorKind.FORBIDDEN_ADDRESS
    assert httpserver.log == []


def test_redirect_limit(settings: Settings, httpserver: HTTPServer) -> None:
    """Redirect chains stop at max_redirects."""
    httpserver.expect_request("/loop").respond_with_data(
        "", status=302, headers={"Location": "/loop"}
    )
    with (
        make_client(settings, timeout=5, max_redirects=3) as client,
        pytest.raises(httpx.TooManyRedirects),
    ):
        client.get(httpserver.url_for("/loop"))
    assert len(httpserver.log) == 4


def test_non_http_scheme_refused(settings: Settings) -> None:
    """Only http and https leave the process."""
    with make_client(settings, timeout=2) as client, pytest.raises(Exception) as info:
        client.get("file:///etc/passwd")
    assert not isinstance(info.value, AssertionError)


def test_refusal_names_neither_the_resolved_address_nor_the_reason(
    closed_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A name resolving to a forbidden address gives the user "address not allowed: <name>";
    the resolved address and the reason go to the operator log only."""
    with caplog.at_level(logging.WARNING, logger="supaflow.http"):
        error = _refused(closed_settings, "http://localhost:9/")
    assert error.message == "address not allowed: localhost"
    assert "127.0.0.1" not in error.message and "loopback" not in error.message
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "localhost" in logged and "loopback" in logged


def test_unresolvable_host_is_host_not_found_without_resolver_detail(
    closed_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A name that does not resolve fails with the plain "host not found" (a CONNECTION step
    error); the resolver's message stays in the operator log."""
    from tasks.http_messages import guarded_call

    with (
        caplog.at_level(logging.WARNING, logger="supaflow.http"),
        pytest.raises(StepError) as info,
        guarded_call(closed_settings, "GET http://no-such-host.invalid/", timeout=5) as client,
    ):
        client.get("http://no-such-host.invalid/")
    assert info.value.kind is ErrorKind.CONNECTION
    assert info.value.message == "GET http://no-such-host.invalid/: ConnectError: host not found"
    assert "no-such-host.invalid" in caplog.text
