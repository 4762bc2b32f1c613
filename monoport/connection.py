"""The state of one client connection as it moves through the stages.

Its ``kind`` changes as the stages learn more (unknown -> tls -> https ->
wss ...); every change is reported to the runtime's Stats object so that
live counts by kind are always right. ``sock`` is metered: bytes sent and
received through it (after TLS, so payload bytes) add up in ``bytes_in`` /
``bytes_out``. How it ended is one typed :class:`Termination` plus a detail
for people, set by :meth:`Connection.end` and logged once, by
:mod:`monoport.path`, when the connection closes.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from .stream import Stream
from .termination import Termination
from .wire.proxyproto import ProxyHeader

log = logging.getLogger("monoport")

Address = tuple[str, int]

#: socket.MSG_PEEK as a plain int: the enum's ``&`` is a Python-level call on every recv()
_MSG_PEEK = int(socket.MSG_PEEK)

class MeteredSocket:
    """A socket proxy that counts the bytes a connection sends and receives.

    Peeks (``MSG_PEEK``) are not counted: the same bytes are read again.
    Everything else is the wrapped socket's own (``__getattr__``).
    """

    # Not "_sock": pywsgi reads `socket._sock` and blocks in recv() on it at the
    # end of every connection (it means the Python 2 inner socket).
    __slots__ = ("_inner", "_conn")

    def __init__(self, sock: Any, conn: "Connection") -> None:
        self._inner = sock
        self._conn = conn

    @property
    def wrapped(self) -> Any:
        return self._inner

    def sendall(self, data: Any, flags: int = 0) -> None:
        # One send() first: gevent's sendall() asks the kernel for the send
        # buffer size (a getsockopt()) and sets a deadline on every call, about
        # 9 µs; a response that fits the socket buffer goes out whole at once.
        if data:
            sent = self._inner.send(data, flags)
            if sent < len(data):
                self._inner.sendall(memoryview(data)[sent:], flags)
        self._conn.bytes_out += len(data)

    def send(self, data: Any, flags: int = 0) -> int:
        sent = self._inner.send(data, flags)
        self._conn.bytes_out += sent
        return sent

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = self._inner.recv(size, flags)
        if not flags & _MSG_PEEK:
            self._conn.bytes_in += len(data)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        got = self._inner.recv_into(buffer, nbytes, flags)
        if not flags & _MSG_PEEK:
            self._conn.bytes_in += got
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Nowhere:
    """What a closed connection's meter counts into, never read (see Connection.close)."""

    __slots__ = ("bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.bytes_in = self.bytes_out = 0


_NOWHERE = _Nowhere()


def format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address) or "-"


class Connection:
    """One accepted socket: who it really is, what it speaks, how it ended."""

    # Every field a connection carries, declared here (a stage cannot add one by mistake).
    __slots__ = (
        "stats", "_kind", "bytes_in", "bytes_out", "raw_sock", "sock", "stream", "peer", "client", "local",
        "listener", "started", "tls", "tls_terminated", "proxied_tls", "forwarded_by", "proxy_header",
        "termination", "detail", "level", "ended", "served_by", "quiet", "requests", "drain_note",
        "polling_sid", "preconnected", "sio_recovered", "ip_slot", "over_ip_limit", "__weakref__",
    )

    def __init__(self, sock: Any, peer: Address, local: Address, listener: Any, stats: Any = None) -> None:
        #: the Stats object told about kind changes (None: nobody counts)
        self.stats = stats
        self._kind = "unknown"
        #: payload bytes received from / sent to the client through ``sock``
        self.bytes_in = 0
        self.bytes_out = 0
        self.raw_sock = sock
        #: the socket stages talk to: ``raw_sock``, or the TLS socket over it (metered)
        self.sock = MeteredSocket(sock, self)
        #: the bytes of this connection: peeked at on the clear socket, read and replayed inside TLS
        self.stream = Stream(self.sock, peekable=sock)
        #: the address of the TCP peer (a proxy, when PROXY protocol is used)
        self.peer = peer
        #: the real client: ``peer``, or what a trusted PROXY header says
        self.client = peer
        self.local = local
        #: the listener that accepted it (its ``role``: public, peer or flash)
        self.listener = listener
        self.started = time.monotonic()
        #: the ``monoport.tls`` environ value, or None
        self.tls: dict[str, Any] | None = None
        #: True once the bytes on ``sock`` are decrypted TLS (nothing to peek)
        self.tls_terminated = False
        #: a trusted PROXY v2 header said the client used TLS in front of us
        self.proxied_tls = False
        #: the id of the instance that forwarded this connection, or None
        self.forwarded_by: str | None = None
        #: the trusted PROXY header this connection came with, or None (a forward to a peer passes it on)
        self.proxy_header: ProxyHeader | None = None
        #: how it ended (see :meth:`end`); until then a normal close by the server
        self.termination = Termination.SERVER_CLOSED
        #: the ending for people: the free-form end of the connection's log line
        self.detail = "closed"
        #: the log level of the connection's line
        self.level = logging.INFO
        #: :meth:`end` was called
        self.ended = False
        #: where the connection was served: None (here) or the peer's id
        self.served_by: str | None = None
        #: routine traffic (peers' health polls, every second): its line is DEBUG
        self.quiet = False
        self.requests = 0
        #: why a drain woke this connection from its keep-alive wait (its detail), or None
        self.drain_note: tuple[Termination, str] | None = None
        #: the Engine.IO session a long-poll GET on this connection waits for, while it waits
        self.polling_sid: str | None = None
        #: TLS with ALPN http/1.1, then silent past the sniff timeout: a browser's preconnect, served as
        #: an idle keep-alive connection (waits --keepalive-timeout for its first request), not as raw TCP
        self.preconnected = False
        #: a Socket.IO session was recovered on this connection (--recovery; set by monoport.recovery_sessions):
        #: the access log's conn line says so
        self.sio_recovered = False
        #: the client key --max-conns-per-ip counts this connection under, once counted
        self.ip_slot: str | None = None
        #: the client address already holds --max-conns-per-ip connections
        self.over_ip_limit = False

    @property
    def kind(self) -> str:
        """What the connection speaks, as far as known: unknown, proxy, tls, http,
        https, ws, wss, polling, polling-tls, raw, raw-tls, flash, flash-tls ..."""
        return self._kind

    @kind.setter
    def kind(self, value: str) -> None:
        old, self._kind = self._kind, value
        if old != value and self.stats is not None:
            self.stats.kind_changed(self, old, value)

    def end(self, termination: Termination, detail: str, level: int = logging.INFO) -> None:
        """Say how this connection ends: the reason for logs and metrics, a detail for people.

        The last call wins: an error met after a stage said how it ends (a
        reset while the answer is written) is what the connection's line tells.
        """
        self.termination = termination
        self.detail = detail
        self.level = level
        self.ended = True

    def end_unless_ended(self, termination: Termination, detail: str) -> None:
        """:meth:`end`, unless a stage already said how the connection ends."""
        if not self.ended:
            self.end(termination, detail)

    @property
    def secure(self) -> bool:
        return self.tls is not None or self.proxied_tls

    def adopt_tls(self, tls_sock: Any, info: dict[str, Any]) -> None:
        """Continue on the decrypted stream; nothing on it can be peeked."""
        self.sock = MeteredSocket(tls_sock, self)
        self.stream = Stream(self.sock)
        self.tls = info
        self.tls_terminated = True

    def describe(self) -> str:
        parts = [format_address(self.client), self.kind]
        if self.tls:
            parts.append(f"{self.tls['version']}")
            if self.tls.get("sni"):
                parts.append(f"sni={self.tls['sni']}")
        if self.client != self.peer:
            parts.append(f"via={format_address(self.peer)}")
        return " ".join(parts)

    def log_line(self) -> None:
        """The connection's one log line, at its end."""
        level = self.level
        if self.quiet and level <= logging.INFO:
            level = logging.DEBUG
        if not log.isEnabledFor(level):
            return  # (describe() would be made for nothing: --log-level warning drops every normal end)
        duration = time.monotonic() - self.started
        extra = f" requests={self.requests}" if self.requests else ""
        log.log(level, "conn %s%s %.3fs %s", self.describe(), extra, duration, self.detail)

    def close(self) -> None:
        for sock in (self.sock.wrapped, self.raw_sock):
            try:
                sock.close()
            except OSError:
                pass
        # The meter and this connection point at each other: unlinked, both (with the TLS
        # socket and the stream) go by reference counting now instead of waiting for a
        # garbage collection. (A closed socket raises before a late send could count anyway.)
        self.sock._conn = _NOWHERE  # type: ignore[assignment]
