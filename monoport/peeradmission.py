"""Who may use the peer listener: loopback, known peers and trusted networks, PROXY v2 first,
and only from an instance of this cluster."""

from __future__ import annotations

import logging
import time
from typing import Any

from .connection import Connection
from .services import Services
from .stream import ClientGone, Silent
from .termination import Termination
from .wire.needmore import NEED_MORE
from .wire.proxyproto import ProxyHeader
from .wire.sniff import PROXY_V2_SIGNATURE
from .wire.trust import is_loopback


def admit_listener(conn: Connection, svc: Services) -> bool:
    """True when a connection to the peer listener may go on to be sniffed."""
    host = str(conn.peer[0])
    if not (is_loopback(host) or host in svc.trusted or svc.balancer.peers.source_allowed(host)):
        conn.end(Termination.PROTOCOL_ERROR,
                 f"peer listener: {host} is not loopback, a known peer or a trusted network; refused",
                 logging.WARNING)
        return False
    deadline = time.monotonic() + svc.config.sniff_timeout
    try:
        is_v2 = conn.stream.peek_until(_v2_signature, deadline, len(PROXY_V2_SIGNATURE))
    except (Silent, ClientGone, OSError):
        is_v2 = False
    if not is_v2:
        conn.end(Termination.PROTOCOL_ERROR, "peer listener: connection does not begin with a PROXY v2 header; refused",
                 logging.WARNING)
        return False
    return True


def admit_forward(conn: Connection, header: ProxyHeader, svc: Services) -> bool:
    """A PROXY header on the peer listener: only this cluster's instances may forward here."""
    balancer = svc.balancer
    if not header.proxied or header.cluster == balancer.cluster:
        return True  # LOCAL: a health poll, which is public anyway
    host = str(conn.peer[0])
    balancer.peers.strangers.warn(
        ("forward", host, str(header.forwarded_by), str(header.cluster)),
        "peer listener: %s (instance %s of cluster %r) is not of this cluster %r; its forwards are refused",
        host, header.forwarded_by, header.cluster, balancer.cluster)
    conn.end(Termination.PROTOCOL_ERROR, f"peer listener: forward from cluster {header.cluster!r} refused")
    return False


def _v2_signature(data: bytes) -> Any:
    if len(data) < len(PROXY_V2_SIGNATURE) and PROXY_V2_SIGNATURE.startswith(data):
        return NEED_MORE
    return data.startswith(PROXY_V2_SIGNATURE)
