"""The path of one connection: sniff, then hand it to the stage that speaks it.

Theory of operation (see DESIGN.md, "The path of one connection"):

    PROXY (trusted peers only) -> TLS -> Flash -> HTTP -> raw

On the clear socket the sniffer only *peeks* (MSG_PEEK), so the kernel keeps
every byte for whoever takes the connection; the only bytes consumed before
dispatch are a PROXY header's, exactly its length. Inside TLS nothing can be
peeked: bytes are read into the connection's :class:`~monoport.stream.Stream`
and replayed from there. Each stage runs under a deadline.

Error policy: a client's fault (reset, broken pipe, timeout, garbage, failed
handshake) is one log line and the end of that connection only; a bug in
monoport propagates to gevent's handler, which logs it and still closes just
this connection. The listener never stops for either.
"""

from __future__ import annotations

import logging
import socket
import ssl as _ssl
import time
from typing import Any, Callable, Final

import gevent

from .acme_challenge import ACME_TLS_ALPN
from .connection import Connection, format_address
from .errors import ProtocolViolation
from .tls import HandshakeTimeout, answer_tls_alpn, describe, failure_reason
from .wire import clienthello, proxyproto
from .wire.httphead import RequestHead
from .wire.needmore import NEED_MORE
from .wire.responses import simple_response
from .wire.sniff import MAX_SIGNATURE, Kind, classify
from .wsgi import HeadTimeout, read_head

log = logging.getLogger("monoport")

#: Upper bound of bytes looked at to sniff: the longest signature (the Flash
#: request, 23 bytes) plus room; a PROXY header is parsed by its own bound.
SNIFF_BYTES: Final = max(64, MAX_SIGNATURE)
#: Backoff while peeking at a prefix that is still ambiguous: the bytes are
#: in the kernel already, so there is nothing to block on; poll gently.
PEEK_POLL_MIN: Final = 0.001
PEEK_POLL_MAX: Final = 0.05


class ClientGone(Exception):
    """The client closed before saying anything decisive."""


class Silent(Exception):
    """The sniff deadline passed with no decisive bytes."""


def peek(conn: Connection, deadline: float, want: Callable[[bytes], Any], size: int = SNIFF_BYTES) -> tuple[Any, bytes]:
    """Peek at the clear socket until ``want(prefix)`` is not NEED_MORE.

    Raises:
        Silent: the deadline passed first (the prefix seen is in ``args[0]``).
        ClientGone: the client closed.
    """
    sock = conn.raw_sock
    delay = PEEK_POLL_MIN
    last = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Silent(last)
        sock.settimeout(remaining)
        try:
            data = sock.recv(size, socket.MSG_PEEK)
        except (socket.timeout, TimeoutError):
            raise Silent(last) from None
        if not data:
            raise ClientGone()
        result = want(data)
        if result is not NEED_MORE:
            return result, data
        if data == last:
            gevent.sleep(min(delay, remaining))
            delay = min(delay * 2, PEEK_POLL_MAX)
        else:
            delay = PEEK_POLL_MIN
        last = data


def read_prefix(conn: Connection, deadline: float) -> tuple[Any, bytes]:
    """Inside TLS: read into the replay buffer until the sniffer decides."""
    stream = conn.stream
    while True:
        result = classify(bytes(stream.buf[:SNIFF_BYTES]))
        if result is not NEED_MORE:
            return result, bytes(stream.buf)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Silent(bytes(stream.buf))
        stream.sock.settimeout(remaining)
        try:
            if not stream.fill():
                raise ClientGone()
        except (socket.timeout, TimeoutError):
            raise Silent(bytes(stream.buf)) from None


def sniff(conn: Connection, deadline: float) -> Kind:
    if conn.tls_terminated:
        kind, _ = read_prefix(conn, deadline)
    else:
        kind, _ = peek(conn, deadline, classify)
    return kind


class Dispatcher:
    """Runs the ordered stage table for each connection of one runtime."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        #: Kind -> stage; a stage returns True to sniff again (it peeled a layer: PROXY, TLS), False when done.
        self.stages: dict[Kind, Callable[[Connection], bool]] = {
            Kind.PROXY: self.proxy,
            Kind.TLS: self.tls,
            Kind.FLASH: self.flash,
            Kind.HTTP: self.http,
            Kind.RAW: self.raw,
        }

    # -- entry ---------------------------------------------------------------
    def serve(self, conn: Connection) -> None:
        stats = getattr(self.rt, "stats", None)
        try:
            self._serve(conn)
        except _Done:
            pass
        except ClientGone:
            conn.finish("client closed before sending anything")
        except ProtocolViolation as exc:
            conn.finish(f"protocol error ({exc})", logging.WARNING)
        except (socket.timeout, TimeoutError, Silent):  # Silent: a PROXY header cut short by its deadline
            conn.finish(f"client timeout ({conn.kind})")
        except (ConnectionError, OSError, _ssl.SSLError) as exc:
            conn.finish(f"connection error ({type(exc).__name__}: {exc})")
        else:
            conn.finish()
        finally:
            self.rt.per_client.release(conn)
            if stats is not None:
                stats.connection_closed(conn)
            conn.close()

    def serve_flash_only(self, conn: Connection) -> None:
        """The optional --flash-policy-port listener: the policy, nothing else."""
        conn.kind = "flash"
        try:
            kind = sniff(conn, conn.started + self.rt.config.sniff_timeout)
            if kind is Kind.FLASH:
                self.flash(conn)
            else:
                conn.outcome = "not a Flash policy request on the Flash policy port"
        except Silent:
            conn.outcome = "sniff timeout (silent client on the Flash policy port)"
        except ClientGone:
            conn.outcome = "client closed before sending anything"
        except (ProtocolViolation, OSError) as exc:
            conn.outcome = f"error ({exc})"
        conn.finish()
        conn.close()

    def _serve(self, conn: Connection) -> None:
        deadline = conn.started + self.rt.config.sniff_timeout
        for _ in range(3):  # at most PROXY, then TLS, then the payload protocol
            try:
                kind = sniff(conn, deadline)
            except Silent:
                if conn.tls and conn.tls.get("alpn") == "http/1.1":
                    # It chose HTTP/1.1 in the handshake: a browser that opened a spare connection
                    # and sends its request when it needs one (seconds later, under load).
                    conn.preconnected = True
                    self.http(conn)
                    return
                conn.kind = "raw-silent" if not conn.tls else "raw-tls-silent"
                if self._over_ip_limit(conn):
                    return
                self.rt.raw_stage(conn, silent=True)
                return
            if kind is not Kind.PROXY and not self.rt.per_client.admit(conn):  # the client is known now
                conn.over_ip_limit = True
            stage = self.stages[kind]
            again = stage(conn)
            if not again:
                return
            deadline = time.monotonic() + self.rt.config.sniff_timeout
        raise ProtocolViolation("too many nested protocol layers")

    # -- stages ----------------------------------------------------------------
    def proxy(self, conn: Connection) -> bool:
        conn.kind = "proxy"
        if conn.tls_terminated or conn.client != conn.peer:
            raise ProtocolViolation("PROXY header where none may be")
        if conn.peer[0] not in self.rt.trusted and not getattr(conn.listener, "peer_listener", False):
            raise ProtocolViolation(f"PROXY header from untrusted {conn.peer[0]}")
        deadline = time.monotonic() + self.rt.config.sniff_timeout
        header, _ = peek(conn, deadline, _parse_proxy, size=proxyproto.V2_MAX)
        header, consumed = header
        if conn.listener.role == "peer" and not self.rt.balancer.admit_forward(conn, header):
            return False
        _recv_exactly(conn.raw_sock, consumed)
        if header.proxied and header.source:
            conn.client = header.source
        conn.proxied_tls = header.tls
        conn.forwarded_by = header.forwarded_by
        conn.proxy_header = header
        return True

    def tls(self, conn: Connection) -> bool:
        conn.kind = "tls"
        certs = self.rt.certs
        if certs is None:
            raise ProtocolViolation("TLS ClientHello on a port without TLS")
        if conn.tls_terminated:
            raise ProtocolViolation("TLS inside TLS")
        challenges = getattr(self.rt, "challenges", None)
        if challenges is not None and self._acme_tls_alpn(conn, challenges):
            return False
        started = time.monotonic()
        try:
            tls_sock = certs.handshake(conn.raw_sock, self.rt.config.handshake_timeout)
        except (HandshakeTimeout, _ssl.SSLError, OSError) as exc:
            reason = failure_reason(exc)
            self.rt.on_handshake(conn, time.monotonic() - started, reason)
            level = logging.INFO if reason in ("eof", "reset", "timeout") else logging.WARNING
            conn.finish(f"TLS handshake failed ({reason})", level)
            raise _Done() from None
        conn.adopt_tls(tls_sock, describe(tls_sock))
        self.rt.on_handshake(conn, time.monotonic() - started, None)
        return True

    def _acme_tls_alpn(self, conn: Connection, challenges: Any) -> bool:
        """Answer an RFC 8737 validator (ALPN exactly acme-tls/1); True when this connection was one.

        The whole ClientHello is only peeked: for every other client the
        handshake below reads the very same bytes, so nothing changes for it.
        """
        deadline = time.monotonic() + self.rt.config.handshake_timeout
        try:
            hello, _ = peek(conn, deadline, _validator_hello, size=clienthello.MAX_PREFIX)
        except Silent:
            return False  # the handshake's own deadline ends it
        if not isinstance(hello, clienthello.ClientHello) or hello.alpn != (ACME_TLS_ALPN,):
            return False
        conn.kind = "acme-tls-alpn"
        name = hello.server_name
        pem = challenges.tls_alpn_path(name)
        if pem is None:
            conn.finish(f"protocol error (acme-tls/1 for {name or 'no name'}: no pending challenge) -> refused",
                        logging.WARNING)
            raise _Done()
        try:
            answer_tls_alpn(conn.raw_sock, str(pem), self.rt.config.handshake_timeout)
        except (HandshakeTimeout, _ssl.SSLError, OSError) as exc:
            conn.finish(f"TLS handshake failed ({failure_reason(exc)}; acme-tls/1 challenge for {name})",
                        logging.WARNING)
            raise _Done() from None
        conn.tls = {"version": "-", "cipher": None, "sni": name, "alpn": ACME_TLS_ALPN}
        conn.outcome = f"closed after the acme tls-alpn-01 challenge answer for {name}"
        return True

    def flash(self, conn: Connection) -> bool:
        conn.kind = "flash-tls" if conn.tls else "flash"
        policy = self.rt.flash_policy
        if policy is None:
            raise ProtocolViolation("Flash policy request, but --no-flash is set")
        if not conn.tls_terminated:
            _recv_exactly(conn.raw_sock, len(b"<policy-file-request/>\0"))
        conn.sock.settimeout(self.rt.config.head_timeout)
        conn.sock.sendall(policy)
        conn.outcome = "flash policy sent"
        return False

    def http(self, conn: Connection) -> bool:
        conn.kind = "https" if conn.secure else "http"
        if conn.over_ip_limit:
            self._too_many(conn)
            return False
        # On the peer listener the forwarder already applied --plain to its client.
        if (self.rt.certs is not None and not conn.secure and self.rt.config.plain != "serve"
                and conn.listener.role != "peer"):
            self._plain_on_tls_port(conn)
            return False
        self.rt.serve_http(conn)
        return False

    def raw(self, conn: Connection) -> bool:
        conn.kind = "raw-tls" if conn.tls else "raw"
        if not self._over_ip_limit(conn):
            self.rt.raw_stage(conn, silent=False)
        return False

    def _over_ip_limit(self, conn: Connection) -> bool:
        """Raw TCP over --max-conns-per-ip is closed with one log line (no protocol to say why in)."""
        if conn.over_ip_limit or not self.rt.per_client.admit(conn):
            conn.over_ip_limit = True
            conn.outcome = f"over --max-conns-per-ip {self.rt.config.max_conns_per_ip} -> closed"
            return True
        return False

    def _read_head(self, conn: Connection) -> RequestHead | None:
        """Read a request head this module answers itself; None when already answered or gone."""
        try:
            head = read_head(conn.stream, self.rt.config.head_timeout)
        except HeadTimeout:
            conn.outcome = "client timeout (request head)"
            return None
        except ProtocolViolation as exc:  # too large (431) or malformed (400): say so
            conn.sock.sendall(simple_response(exc.status))
            conn.outcome = f"protocol error ({exc}) -> {exc.status}"
            return None
        if head is None:
            conn.outcome = "client closed"
        return head

    def _too_many(self, conn: Connection) -> None:
        """HTTP over --max-conns-per-ip: read the head (so the client sees the answer), then 429."""
        if self._read_head(conn) is None:
            return
        body = b"Too many connections from your address\n"
        conn.sock.sendall(simple_response(429, body, [("Retry-After", "1")]))
        conn.outcome = f"over --max-conns-per-ip {self.rt.config.max_conns_per_ip} -> 429"

    def _plain_on_tls_port(self, conn: Connection) -> None:
        head = self._read_head(conn)
        if head is None:
            return
        if self._acme_http(conn, head):
            return
        if self.rt.config.plain == "reject":
            body = b"This port speaks TLS: use https://\n"
            conn.sock.sendall(simple_response(400, body))
            conn.outcome = "clear-text HTTP rejected -> 400"
            return
        host = head.header("host") or f"{conn.local[0]}:{conn.local[1]}"
        location = f"https://{host}{head.target if head.target.startswith('/') else '/'}"
        conn.sock.sendall(simple_response(301, b"", [("Location", location)]))
        conn.outcome = "clear-text HTTP redirected -> 301"


    def _acme_http(self, conn: Connection, head: RequestHead) -> bool:
        """HTTP-01 (RFC 8555 8.3): a pending token's key authorization, before any redirect."""
        challenges = getattr(self.rt, "challenges", None)
        if challenges is None or head.method not in ("GET", "HEAD"):
            return False
        answer = challenges.http_answer(head.target.partition("?")[0])
        if answer is None:
            return False
        conn.kind = "acme-http-01"
        body = answer if head.method == "GET" else b""
        conn.sock.sendall(simple_response(200, body))
        conn.outcome = "closed after the acme http-01 challenge answer"
        return True


class _Done(Exception):
    """The stage already logged the outcome."""


#: The ALPN entry a TLS-ALPN-01 validator sends, as it appears on the wire.
_ACME_ALPN_BYTES: Final = ACME_TLS_ALPN.encode()


def _validator_hello(data: bytes) -> Any:
    """The parsed ClientHello, or False at once when a whole hello does not mention acme-tls/1
    (most clients: a substring search instead of a parse on every handshake)."""
    if clienthello.lacks(data, _ACME_ALPN_BYTES):
        return False
    return clienthello.parse(data)


def _parse_proxy(data: bytes) -> Any:
    return proxyproto.parse(data)


def _recv_exactly(sock: Any, n: int) -> bytes:
    chunks = []
    while n:
        data = sock.recv(n)
        if not data:
            raise ClientGone()
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)
