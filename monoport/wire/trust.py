"""Client addresses and the networks trusted to name them; pure.

An address text (from a socket, a PROXY header or X-Forwarded-For) becomes
an ``ip_address`` with IPv4-mapped IPv6 unwrapped, so one client counts as
one key; forwarded headers are believed only from ``--trusted-proxy``
networks and stripped otherwise.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

#: headers a client could use to lie about who it is; removed unless trusted
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                     "HTTP_X_FORWARDED_PORT", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


def ip_of(host: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address text as an ip_address (IPv4-mapped IPv6 unwrapped), or None."""
    if not isinstance(host, str):
        return None
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


def is_loopback(address: str | None) -> bool:
    """True for a loopback address text (127.0.0.0/8, ::1, or ::ffff:127.x)."""
    addr = ip_of(address)
    return addr is not None and addr.is_loopback


class Networks:
    """A set of trusted networks (``--trusted-proxy``)."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(c) for c in cidrs]

    def __contains__(self, host: object) -> bool:
        if not self.networks:
            return False
        addr = ip_of(host)
        return addr is not None and any(addr in net for net in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)


def apply_forwarded(env: dict[str, Any], trusted: Networks) -> None:
    """Believe X-Forwarded-For/-Proto from a trusted sender; strip them otherwise."""
    if env.get("REMOTE_ADDR") not in trusted:
        for key in FORWARDED_HEADERS:
            env.pop(key, None)
        return
    forwarded_for = env.get("HTTP_X_FORWARDED_FOR")
    if forwarded_for:
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        # The rightmost hop not in a trusted network is the client; earlier
        # ones were written by that client and may be lies.
        client = next((h for h in reversed(hops) if h not in trusted), hops[0] if hops else None)
        if client:
            env["REMOTE_ADDR"] = client
            env["REMOTE_PORT"] = "0"
    proto = env.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
    if proto in ("http", "https"):
        env["wsgi.url_scheme"] = proto


__all__ = ["FORWARDED_HEADERS", "Networks", "apply_forwarded", "ip_of", "is_loopback"]
