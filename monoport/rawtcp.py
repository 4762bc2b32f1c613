"""Socket.IO for raw TCP clients (``--raw sio``): newline-framed Engine.IO.

Theory of operation
-------------------
python-engineio already knows how to run a session over a WebSocket: its
gevent driver takes ``environ['wsgi.websocket']`` (gevent-websocket's
object), reads packets with ``receive()`` and writes them with ``send()``
from a writer greenlet, and calls ``close()`` when the session ends (client
gone, missed pongs, server disconnect). :class:`RawWebSocket` offers that
same surface over a sniffed TCP or TLS connection, translating frames to
lines (:mod:`monoport.wire.rawframing`): text frames are lines as they are,
binary frames are ``b<base64>`` lines (python-engineio decodes that form
itself on the way in). :func:`serve` then calls the router with a WebSocket
upgrade environ for the first Socket.IO path, so handshake, pings, acks,
rooms and disconnects are python-engineio's and python-socketio's own code;
the app sees ``environ['monoport.transport'] == 'raw'`` and nothing else new.

The server speaks first: python-engineio queues the open packet before the
session starts, and the writer greenlet sends it at once, whether the
client has spoken (a first line makes the sniffer say RAW immediately) or
stayed silent until the sniff deadline.

No socket timeout while connected: Engine.IO's pings decide liveness, and
``close()`` shuts the socket down to wake the reader when they fail. The
one gap pings leave, a client that stops reading while the server writes,
is closed by a deadline on each line sent (ping interval + ping timeout,
the time python-engineio gives a silent client).

Error policy: a line that is too long, not UTF-8 or not an Engine.IO packet
ends this connection only, as one ``protocol error`` log line (the
violation is raised to monoport.path after python-engineio has cleaned the
session up); resets and broken pipes are a normal end of the session.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
from typing import Any, Callable, Iterable

import gevent
from gevent import socket as gsocket

from .config import Config
from .connection import Connection, format_address
from .errors import ProtocolViolation
from .stream import RECV_SIZE
from .wire.needmore import NEED_MORE
from .wire.rawframing import LineDecoder, encode_packet
from .termination import Termination

log = logging.getLogger("monoport")

#: The query python-engineio needs to take a request for a new WebSocket session.
QUERY: str = "EIO=4&transport=websocket"


class RawWebSocket:
    """What gevent-websocket's ``environ['wsgi.websocket']`` offers, over lines.

    ``receive()`` returns one packet as text, or None when the connection is
    over (EOF, reset, a protocol violation, or ``close()``); ``send()``
    writes one packet as a line. ``violation`` keeps why the client was cut
    off, for the log line.
    """

    version = "13"
    protocol = None
    origin = None

    def __init__(self, conn: Connection, limit: int, path: str, send_timeout: float | None = None) -> None:
        self.conn = conn
        self.path = path
        #: seconds one line may take to leave; past it the client stopped reading
        self.send_timeout = send_timeout
        self.stalled = False
        self.decoder = LineDecoder(limit)
        self.closed = False
        self.violation: ProtocolViolation | None = None
        self.client_closed = False
        self.sid: str | None = None
        self.lines_in = 0
        self.lines_out = 0
        # Bytes the sniffer read inside TLS (nothing was consumed on a clear socket).
        buffered = conn.stream.take_all()
        self.decoder.feed(buffered)

    # -- what python-engineio calls --------------------------------------------
    def receive(self) -> str | None:
        while not self.closed:
            try:
                packet = self.decoder.next_packet()
            except ProtocolViolation as exc:
                self.violation = exc
                self.close()
                return None
            if packet is not NEED_MORE:
                self.lines_in += 1
                return packet  # type: ignore[return-value]
            try:
                data = self.conn.sock.recv(RECV_SIZE)
            except OSError:  # reset, or close() from the writer woke us up
                data = b""
            if not data:
                self.client_closed = not self.closed
                self.close()
                return None
            self.decoder.feed(data)
        return None

    def send(self, message: str | bytes) -> None:
        if self.closed:
            raise OSError("raw connection is closed")
        if self.sid is None and isinstance(message, str) and message.startswith("0"):
            self.sid = _open_sid(message)
        try:
            line = encode_packet(message)
        except ValueError as exc:  # an app sent text with a line break: cannot be framed
            log.warning("raw Socket.IO: cannot send a packet to %s: %s", self.conn.describe(), exc)
            self.close()
            raise OSError(str(exc)) from None
        deadline = gevent.Timeout(self.send_timeout)
        deadline.start()
        try:
            self.conn.sock.sendall(line)
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            # Nobody else notices a client that stops reading: python-engineio's
            # writer would block here forever, holding the session.
            self.stalled = True
            self.close()
            raise OSError("client stopped reading") from None
        finally:
            deadline.close()
        self.lines_out += 1

    def close(self) -> None:
        """Stop both directions; a reader blocked in ``recv`` wakes up with EOF."""
        if self.closed:
            return
        self.closed = True
        sock: Any = getattr(self.conn.sock, "wrapped", self.conn.sock)  # past the byte meter (a socket or SSL socket)
        try:
            # socket-level shutdown: SSLSocket.shutdown would drop the TLS state
            # under a reader that may be inside recv() right now.
            gsocket.socket.shutdown(sock, socket.SHUT_RDWR)
        except (OSError, TypeError):
            pass

    # -- for the log -------------------------------------------------------------
    def ending(self) -> tuple[Termination, str]:
        """How the session's connection ended, and its detail for the log line."""
        who = f"sid={self.sid}" if self.sid else "no session"
        if self.client_closed:
            reason, why = Termination.CLIENT_CLOSED, "client closed"
        elif self.stalled:
            reason, why = Termination.CLIENT_TIMEOUT, f"client timeout (stopped reading for {self.send_timeout:g}s)"
        elif self.violation is not None:
            reason, why = Termination.PROTOCOL_ERROR, "cut off"
        else:
            reason, why = Termination.SERVER_CLOSED, "closed by server (disconnect or missed pongs)"
        return reason, f"raw Socket.IO {who}: {self.lines_in} lines in, {self.lines_out} out, {why}"


def _open_sid(packet: str) -> str | None:
    try:
        return json.loads(packet[1:]).get("sid")
    except (ValueError, AttributeError):
        return None


def environ_for(config: Config, conn: Connection, ws: RawWebSocket) -> dict[str, Any]:
    """The WSGI environ of a WebSocket upgrade request, as the raw client would have sent it."""
    sni = conn.tls.get("sni") if conn.tls else None
    host = f"{sni}:{conn.local[1]}" if sni else format_address(conn.local)
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": ws.path,
        "QUERY_STRING": QUERY,
        "SERVER_NAME": "monoport",
        "SERVER_PORT": str(conn.local[1]),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": str(conn.client[0]),
        "REMOTE_PORT": str(conn.client[1]),
        "HTTP_HOST": host,
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if conn.secure else "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.websocket": ws,
        "wsgi.websocket_version": ws.version,
        "monoport.instance_id": config.instance_id,
        "monoport.cluster": config.cluster_name,
        "monoport.tls": conn.tls,
        "monoport.forwarded_by": conn.forwarded_by,
        "monoport.transport": "raw",
        "monoport.connection": conn,
    }


def _refuse_early(conn: Connection, ws: RawWebSocket) -> None:
    """Refuse a client whose bytes already in hand break the framing, before any session exists.

    An Engine.IO session costs more than its connection: python-engineio keeps
    a ping greenlet for it for a whole ping interval (25 s) even when it ends
    at once, so garbage that opened a session each time would cost ~12 KB per
    connection for 25 s (a flood of it, hundreds of MB). Lines already
    received (peeked on a clear socket, buffered inside TLS) are checked on a
    copy of the decoder; nothing is consumed.

    Raises:
        ProtocolViolation: those bytes hold a line the framing refuses.
    """
    probe = LineDecoder(ws.decoder.limit)
    probe.feed(bytes(ws.decoder._buf))
    probe.feed(conn.stream.peek_available(RECV_SIZE))
    try:
        while probe.next_packet() is not NEED_MORE:
            pass
    except ProtocolViolation as exc:
        conn.end(Termination.PROTOCOL_ERROR, f"raw Socket.IO no session: {exc}")
        raise ProtocolViolation(f"{exc}; raw Socket.IO refused before a session") from None


class RawSio:
    """The ``--raw sio`` stage: run one Socket.IO session over each connection given to it."""

    def __init__(self, config: Config, sio: Any, router: Callable, max_message: int) -> None:
        self.config, self.sio, self.router, self.max_message = config, sio, router, max_message

    def __call__(self, conn: Connection, silent: bool) -> None:
        serve(self, conn)


def serve(raw: RawSio, conn: Connection) -> None:
    """The ``--raw sio`` stage: run one Socket.IO session over this connection.

    Raises:
        ProtocolViolation: the client sent a line the framing refuses
            (:mod:`monoport.path` logs it as one line).
    """
    if raw.sio is None:
        conn.end(Termination.OTHER, "raw Socket.IO client, but the app has no Socket.IO server")
        return
    conn.sock.settimeout(None)
    eio = raw.sio.eio
    ws = RawWebSocket(conn, raw.max_message, raw.config.sio_path[0],
                      send_timeout=eio.ping_interval + eio.ping_timeout)
    _refuse_early(conn, ws)
    status: list[str] = []

    def start_response(code: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
        status.append(code)
        return lambda data: None

    try:
        body: Iterable[bytes] = raw.router(environ_for(raw.config, conn, ws), start_response)
        for _ in body:
            pass
    finally:
        ws.close()
    if status:  # python-engineio answered with HTTP instead of running the session
        conn.end(Termination.PROTOCOL_ERROR, f"raw Socket.IO refused by the server ({status[0]})")
        return
    conn.end(*ws.ending())
    if ws.violation is not None:
        raise ProtocolViolation(f"{ws.violation}; {conn.detail}")
