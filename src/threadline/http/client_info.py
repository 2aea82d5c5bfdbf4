"""Who sent a request: IP (forwarded headers believed only from trusted proxies), user agent, device."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from litestar.connection import ASGIConnection

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_USER_AGENT = 512
MAX_HINT = 64
_MOBILE = re.compile(r"Mobi|Android|iPhone|iPod", re.IGNORECASE)
# Order matters: iPhones say "like Mac OS X", Android says "Linux".
_PLATFORMS = (
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("CrOS", "Chrome OS"),
    ("Linux", "Linux"),
)


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __contains__(self, address: Address) -> bool:
        return any(address.version == net.version and address in net for net in self._networks)


@functools.lru_cache(maxsize=8)
def trusted_proxies(networks: tuple[str, ...]) -> TrustedProxies:
    return TrustedProxies(networks)


def parse_address(value: str | None) -> Address | None:
    """An IP from a peer address or a forwarded hop, with or without a port; None if it is none."""
    if not value:
        return None
    text = value.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_ip(peer: str | None, forwarded_for: str | None, trusted: TrustedProxies) -> str | None:
    """The address of whoever is behind the chain of trusted proxies that relayed the request.

    Each trusted proxy appends the address it got the request from to X-Forwarded-For, so the hops
    are read right to left while they are trusted; an untrusted peer's header is ignored entirely.
    """
    address = parse_address(peer)
    if address is None:
        return None
    if forwarded_for and address in trusted:
        for hop in reversed(forwarded_for.split(",")):
            parsed = parse_address(hop)
            if parsed is None:
                break
            address = parsed
            if parsed not in trusted:
                break
    return str(address)


def device_hints(headers: Mapping[str, str]) -> dict[str, Any]:
    """Mobile or not and the platform, from client hints when the browser sends them, else the UA."""
    user_agent = headers.get("user-agent") or ""
    hints: dict[str, Any] = {}
    mobile = headers.get("sec-ch-ua-mobile")
    if mobile in {"?0", "?1"}:
        hints["mobile"] = mobile == "?1"
    elif user_agent:
        hints["mobile"] = bool(_MOBILE.search(user_agent))
    platform = (headers.get("sec-ch-ua-platform") or "").strip().strip('"')[:MAX_HINT]
    if not platform:
        platform = next((name for marker, name in _PLATFORMS if marker in user_agent), "")
    if platform:
        hints["platform"] = platform
    return hints


def client_info(headers: Mapping[str, str], peer: str | None, trusted: TrustedProxies) -> dict[str, Any]:
    """What Threadline records as `metadata.client` on threads and messages."""
    info: dict[str, Any] = {}
    if ip := client_ip(peer, headers.get("x-forwarded-for"), trusted):
        info["ip"] = ip
    if user_agent := (headers.get("user-agent") or "")[:MAX_USER_AGENT]:
        info["user_agent"] = user_agent.replace("\x00", "")
    if device := device_hints(headers):
        info["device"] = device
    return info


def recorded_client(connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
    """`client_info` for a request, with the app's trusted proxies."""
    networks: tuple[str, ...] = connection.app.state.services.settings.sessions.trusted_proxies
    peer = connection.client.host if connection.client else None
    return client_info(connection.headers, peer, trusted_proxies(networks))
