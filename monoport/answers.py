"""HTTP answered by monoport itself, before any app: clear text on the TLS port, the per-IP limit,
ACME HTTP-01 tokens. Each reads the request head (so the client sees the answer) and closes."""

from __future__ import annotations

from .connection import Connection
from .errors import ProtocolViolation
from .services import Services
from .termination import Termination
from .wire.httphead import RequestHead
from .wire.responses import simple_response
from .wsgi import HeadTimeout, read_head


def _read_head(conn: Connection, svc: Services) -> RequestHead | None:
    """Read a request head answered here; None when already answered or gone."""
    try:
        head = read_head(conn.stream, svc.config.head_timeout)
    except HeadTimeout:
        conn.end(Termination.CLIENT_TIMEOUT, "client timeout (request head)")
        return None
    except ProtocolViolation as exc:  # too large (431) or malformed (400): say so
        conn.sock.sendall(simple_response(exc.status))
        conn.end(Termination.PROTOCOL_ERROR, f"protocol error ({exc}) -> {exc.status}")
        return None
    if head is None:
        conn.end(Termination.CLIENT_CLOSED, "client closed")
    return head


def too_many(conn: Connection, svc: Services) -> None:
    """HTTP over --max-conns-per-ip: 429 with Retry-After."""
    if _read_head(conn, svc) is None:
        return
    body = b"Too many connections from your address\n"
    conn.sock.sendall(simple_response(429, body, [("Retry-After", "1")]))
    conn.end(Termination.CLIENT_LIMIT, f"over --max-conns-per-ip {svc.config.max_conns_per_ip} -> 429")


def plain_on_tls_port(conn: Connection, svc: Services) -> None:
    """Clear-text HTTP on a TLS port: an ACME token, else --plain redirect (301) or reject (400)."""
    head = _read_head(conn, svc)
    if head is None:
        return
    if _acme_http(conn, svc, head):
        return
    if svc.config.plain == "reject":
        body = b"This port speaks TLS: use https://\n"
        conn.sock.sendall(simple_response(400, body))
        conn.end(Termination.SERVER_CLOSED, "clear-text HTTP rejected -> 400")
        return
    host = head.header("host") or f"{conn.local[0]}:{conn.local[1]}"
    location = f"https://{host}{head.target if head.target.startswith('/') else '/'}"
    conn.sock.sendall(simple_response(301, b"", [("Location", location)]))
    conn.end(Termination.SERVER_CLOSED, "clear-text HTTP redirected -> 301")


def _acme_http(conn: Connection, svc: Services, head: RequestHead) -> bool:
    """HTTP-01 (RFC 8555 8.3): a pending token's key authorization, before any redirect."""
    challenges = svc.challenges
    if challenges is None or head.method not in ("GET", "HEAD"):
        return False
    answer = challenges.http_answer(head.target.partition("?")[0])
    if answer is None:
        return False
    conn.kind = "acme-http-01"
    body = answer if head.method == "GET" else b""
    conn.sock.sendall(simple_response(200, body))
    conn.end(Termination.SERVER_CLOSED, "closed after the acme http-01 challenge answer")
    return True
