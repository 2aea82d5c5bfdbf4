"""Who sent a request: forwarded headers believed only from trusted proxies, device hints."""

from __future__ import annotations

import pytest

from threadline.http.client_info import (
    TrustedProxies,
    client_info,
    client_ip,
    device_hints,
    parse_address,
)

PROXIES = TrustedProxies(["10.0.0.0/8", "192.168.1.5", "fd00::/8"])
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" 203.0.113.9 ", "203.0.113.9"),
        ("203.0.113.9:4711", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("testclient", None),
        ("unknown", None),
        ("", None),
        (None, None),
    ],
)
def test_addresses_parse_with_or_without_a_port(value: str | None, expected: str | None) -> None:
    parsed = parse_address(value)
    assert (str(parsed) if parsed else None) == expected


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert client_ip("203.0.113.9", "1.2.3.4", PROXIES) == "203.0.113.9"


def test_a_trusted_proxy_forwards_the_client() -> None:
    assert client_ip("10.1.2.3", "198.51.100.7", PROXIES) == "198.51.100.7"


def test_a_chain_is_read_right_to_left_while_trusted() -> None:
    # The client spoofed 6.6.6.6; the first untrusted hop from the right is the real client.
    chain = "6.6.6.6, 198.51.100.7, 192.168.1.5"
    assert client_ip("10.1.2.3", chain, PROXIES) == "198.51.100.7"


def test_a_chain_of_only_trusted_proxies_gives_the_leftmost() -> None:
    assert client_ip("10.1.2.3", "10.9.9.9, 192.168.1.5", PROXIES) == "10.9.9.9"


def test_a_malformed_hop_stops_the_walk() -> None:
    assert client_ip("10.1.2.3", "198.51.100.7, garbage", PROXIES) == "10.1.2.3"


def test_ipv6_proxies_are_trusted_by_network() -> None:
    assert client_ip("fd00::1", "2001:db8::7", PROXIES) == "2001:db8::7"
    assert client_ip("2001:db8::9", "2001:db8::7", PROXIES) == "2001:db8::9"


def test_nobody_is_trusted_by_default() -> None:
    assert client_ip("10.1.2.3", "198.51.100.7", TrustedProxies([])) == "10.1.2.3"


def test_device_hints_prefer_client_hints_over_the_user_agent() -> None:
    hints = device_hints({"user-agent": WINDOWS, "sec-ch-ua-mobile": "?1", "sec-ch-ua-platform": '"Android"'})
    assert hints == {"mobile": True, "platform": "Android"}


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (IPHONE, {"mobile": True, "platform": "iOS"}),
        (WINDOWS, {"mobile": False, "platform": "Windows"}),
        ("curl/8.5.0", {"mobile": False}),
        ("", {}),
    ],
)
def test_device_hints_from_the_user_agent(user_agent: str, expected: dict[str, object]) -> None:
    assert device_hints({"user-agent": user_agent}) == expected


def test_client_info_records_ip_user_agent_and_device_and_caps_the_user_agent() -> None:
    info = client_info({"user-agent": IPHONE + "x" * 1000}, "203.0.113.9", PROXIES)
    assert info["ip"] == "203.0.113.9"
    assert len(info["user_agent"]) == 512
    assert info["device"] == {"mobile": True, "platform": "iOS"}
    assert client_info({}, None, PROXIES) == {}
