"""The stages of a connection, one per sniffed kind: functions of the connection and its services.

A stage returns True when it peeled a layer (PROXY, TLS) and the bytes
after it are to be sniffed again, False when it served the connection. It
says how the connection ended with :meth:`Connection.end`; the cleanup,
the log line and the counting are :mod:`monoport.path`'s.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any, Callable, Final

from . import answers, peeradmission
from .acme_challenge import ACME_TLS_ALPN
from .connection import Connection
from .errors import ProtocolViolation
from .services import Services
from .stream import ClientGone, Silent
from .termination import Termination
from .tls import HandshakeTimeout, answer_tls_alpn, describe, failure_reason
from .wire import clienthello, proxyproto
from .wire.sniff import MAX_SIGNATURE, Kind, classify

__all__ = ["Kind", "STAGES", "SNIFF_BYTES", "silent", "flash_only", "admit_peer_listener"]

#: Upper bound of bytes looked at to sniff: the longest signature (the Flash
#: request, 23 bytes) plus room; a PROXY header is parsed by its own bound.
SNIFF_BYTES: Final = max(64, MAX_SIGNATURE)
#: The Flash policy request, as it arrives.
FLASH_REQUEST: Final = b"<policy-file-request/>\0"
#: The ALPN entry a TLS-ALPN-01 validator sends, as it appears on the wire.
_ACME_ALPN_BYTES: Final = ACME_TLS_ALPN.encode()

admit_peer_listener = peeradmission.admit_listener


def proxy(conn: Connection, svc: Services) -> bool:
    """A PROXY header (v1 or v2) from a trusted sender: the real client, then sniff what follows."""
    conn.kind = "proxy"
    if conn.tls_terminated or conn.client != conn.peer:
        raise ProtocolViolation("PROXY header where none may be")
    if conn.peer[0] not in svc.trusted and conn.listener.role != "peer":
        raise ProtocolViolation(f"PROXY header from untrusted {conn.peer[0]}")
    deadline = time.monotonic() + svc.config.sniff_timeout
    header, consumed = conn.stream.peek_until(proxyproto.parse, deadline, proxyproto.V2_MAX)
    if conn.listener.role == "peer" and not peeradmission.admit_forward(conn, header, svc):
        return False
    conn.stream.consume(consumed)
    if header.proxied and header.source:
        conn.client = header.source
    conn.proxied_tls = header.tls
    conn.forwarded_by = header.forwarded_by
    conn.proxy_header = header
    return True


def tls(conn: Connection, svc: Services) -> bool:
    """The TLS handshake (SNI picks the certificate), then sniff the decrypted bytes."""
    conn.kind = "tls"
    certs = svc.certs
    if certs is None:
        raise ProtocolViolation("TLS ClientHello on a port without TLS")
    if conn.tls_terminated:
        raise ProtocolViolation("TLS inside TLS")
    if svc.challenges is not None and _acme_tls_alpn(conn, svc):
        return False
    started = time.monotonic()
    try:
        tls_sock = certs.handshake(conn.raw_sock, svc.config.handshake_timeout)
    except (HandshakeTimeout, ssl.SSLError, OSError) as exc:
        reason = failure_reason(exc)
        svc.stats.handshake(conn, time.monotonic() - started, reason)
        level = logging.INFO if reason in ("eof", "reset", "timeout") else logging.WARNING
        conn.end(Termination.TLS_FAILED, f"TLS handshake failed ({reason})", level)
        return False
    conn.adopt_tls(tls_sock, describe(tls_sock))
    svc.stats.handshake(conn, time.monotonic() - started, None)
    return True


def _acme_tls_alpn(conn: Connection, svc: Services) -> bool:
    """Answer an RFC 8737 validator (ALPN exactly acme-tls/1); True when this connection was one.

    The whole ClientHello is only peeked: for every other client the
    handshake reads the very same bytes, so nothing changes for it.
    """
    deadline = time.monotonic() + svc.config.handshake_timeout
    try:
        hello = conn.stream.peek_until(_validator_hello, deadline, clienthello.MAX_PREFIX)
    except Silent:
        return False  # the handshake's own deadline ends it
    if not isinstance(hello, clienthello.ClientHello) or hello.alpn != (ACME_TLS_ALPN,):
        return False
    conn.kind = "acme-tls-alpn"
    name = hello.server_name
    pem = svc.challenges.tls_alpn_path(name)
    if pem is None:
        conn.end(Termination.PROTOCOL_ERROR,
                 f"protocol error (acme-tls/1 for {name or 'no name'}: no pending challenge) -> refused",
                 logging.WARNING)
        return True
    try:
        answer_tls_alpn(conn.raw_sock, str(pem), svc.config.handshake_timeout)
    except (HandshakeTimeout, ssl.SSLError, OSError) as exc:
        conn.end(Termination.TLS_FAILED,
                 f"TLS handshake failed ({failure_reason(exc)}; acme-tls/1 challenge for {name})", logging.WARNING)
        return True
    conn.tls = {"version": "-", "cipher": None, "sni": name, "alpn": ACME_TLS_ALPN}
    conn.end(Termination.SERVER_CLOSED, f"closed after the acme tls-alpn-01 challenge answer for {name}")
    return True


def _validator_hello(data: bytes) -> Any:
    """The parsed ClientHello, or False at once when a whole hello does not mention acme-tls/1
    (most clients: a substring search instead of a parse on every handshake)."""
    if clienthello.lacks(data, _ACME_ALPN_BYTES):
        return False
    return clienthello.parse(data)


def flash(conn: Connection, svc: Services) -> bool:
    """The Flash cross-domain policy request: the policy file, then close."""
    conn.kind = "flash-tls" if conn.tls else "flash"
    policy = svc.flash_policy
    if policy is None:
        raise ProtocolViolation("Flash policy request, but --no-flash is set")
    conn.stream.consume(len(FLASH_REQUEST))
    conn.sock.settimeout(svc.config.head_timeout)
    conn.sock.sendall(policy)
    conn.end(Termination.SERVER_CLOSED, "flash policy sent")
    return False


def flash_only(conn: Connection, svc: Services) -> None:
    """The optional --flash-policy-port listener: the policy, nothing else."""
    conn.kind = "flash"
    try:
        kind = conn.stream.sniff_until(classify, conn.started + svc.config.sniff_timeout, SNIFF_BYTES)
        if kind is Kind.FLASH:
            flash(conn, svc)
        else:
            conn.end(Termination.PROTOCOL_ERROR, "not a Flash policy request on the Flash policy port")
    except Silent:
        conn.end(Termination.SNIFF_TIMEOUT, "sniff timeout (silent client on the Flash policy port)")
    except ClientGone:
        conn.end(Termination.CLIENT_CLOSED, "client closed before sending anything")
    except (ProtocolViolation, OSError) as exc:
        conn.end(Termination.PROTOCOL_ERROR, f"error ({exc})")


def http(conn: Connection, svc: Services) -> bool:
    """HTTP: the app (through the balancer), or an answer of monoport's own before it."""
    conn.kind = "https" if conn.secure else "http"
    if conn.over_ip_limit:
        answers.too_many(conn, svc)
        return False
    # On the peer listener the forwarder already applied --plain to its client.
    if svc.certs is not None and not conn.secure and svc.config.plain != "serve" and conn.listener.role != "peer":
        answers.plain_on_tls_port(conn, svc)
        return False
    svc.serve_http(conn)
    return False


def raw(conn: Connection, svc: Services) -> bool:
    """Anything else: the --raw stage (Socket.IO over lines, a backend, or off)."""
    conn.kind = "raw-tls" if conn.tls else "raw"
    if not _over_ip_limit(conn, svc):
        svc.serve_raw(conn, False)
    return False


def silent(conn: Connection, svc: Services) -> None:
    """Nothing decisive within the sniff timeout."""
    if conn.tls and conn.tls.get("alpn") == "http/1.1":
        # It chose HTTP/1.1 in the handshake: a browser that opened a spare connection
        # and sends its request when it needs one (seconds later, under load).
        conn.preconnected = True
        http(conn, svc)
        return
    conn.kind = "raw-silent" if not conn.tls else "raw-tls-silent"
    if not _over_ip_limit(conn, svc):
        svc.serve_raw(conn, True)


def _over_ip_limit(conn: Connection, svc: Services) -> bool:
    """Raw TCP over --max-conns-per-ip is closed with one log line (no protocol to say why in)."""
    if conn.over_ip_limit or not svc.per_client.admit(conn):
        conn.over_ip_limit = True
        conn.end(Termination.CLIENT_LIMIT, f"over --max-conns-per-ip {svc.config.max_conns_per_ip} -> closed")
        return True
    return False


#: Kind -> stage.
STAGES: Final[dict[Kind, Callable[[Connection, Services], bool]]] = {
    Kind.PROXY: proxy,
    Kind.TLS: tls,
    Kind.FLASH: flash,
    Kind.HTTP: http,
    Kind.RAW: raw,
}
