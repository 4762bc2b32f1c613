"""HTTP on a sniffed connection: gevent.pywsgi + gevent-websocket, hardened.

pywsgi parses and answers; this module adds what it lacks for a public port
(see DESIGN.md): a deadline on the whole request head and a keep-alive idle
timeout, head limits answered with 431, a body-progress timeout, an environ
that names the real client and scheme, forwarded headers believed only from
trusted networks, and ``Connection: close`` said whenever the connection is
about to close (pywsgi closes silently, and Node keep-alive clients then
reuse a dead socket).
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from typing import Any, Callable

import gevent
from gevent import pywsgi

from .connection import Connection, format_address
from .errors import ProtocolViolation
from .services import Services
from .stream import ClientGone, Silent, Stream
from .termination import Termination
from .pywsgi_lean import LeanHandler, ParsedHeaders, wait_readable
from .websocket import limit_messages
from .wire.httphead import MAX_HEADERS, RequestHead, parse_head
from .wire.responses import simple_response
from .wire.trust import apply_forwarded

log = logging.getLogger("monoport")

#: On a graceful stop (ours, or of the peer that forwarded a connection here),
#: how long an idle keep-alive connection may still send its next request,
#: answered with "Connection: close", before it is closed.
DRAIN_IDLE_GRACE = 1.0


class HeadTimeout(Exception):
    """The request head did not arrive within its deadline."""


class BodyStalled(BaseException):
    """The request body made no progress for --body-timeout.

    A BaseException, like GreenletExit, so that it passes through the
    application's ``except Exception`` (Flask would answer 500 and log a
    traceback for what is the client's fault) up to :class:`Handler`.
    """


def read_head(stream: Stream, timeout: float) -> RequestHead | None:
    """Read a whole request head into ``stream``'s buffer (left there for replay).

    Returns:
        the parsed head, or None if the client closed before sending one.
    Raises:
        HeadTimeout: the head was not complete within ``timeout`` seconds.
        ProtocolViolation: oversized (431) or malformed (400) head.
        OSError: the connection broke.
    """
    try:
        return stream.read_until(parse_head, time.monotonic() + timeout)
    except Silent:
        raise HeadTimeout() from None
    except ClientGone as exc:
        if exc.partial:
            raise ProtocolViolation("connection closed in the middle of a request head") from None
        return None


class Handler(LeanHandler):
    """pywsgi's handler driven by monoport for one already-sniffed connection."""

    #: what the handler uses, set on the subclass the runtime builds
    services: Services
    #: (config, environ entries taken from it), made at the first request (see get_environ)
    constant_environ: tuple[Any, dict[str, str]] = (None, {})

    # monoport's own attributes live in slots: pywsgi and gevent-websocket set 28
    # in the instance dict, and CPython 3.11 keeps up to 30 names as a compact
    # array shared by all instances; past that each handler gets a dict of its
    # own (about 1.3 KB more for every WebSocket, held as long as it lives)
    __slots__ = ("conn", "monoport_head", "_line_length", "ws_max_message", "ws_message_size")

    def __init__(self, conn: Connection, server: pywsgi.WSGIServer) -> None:
        super().__init__(conn.sock, conn.client, server, rfile=conn.stream)
        self.conn = conn

    # -- one request at a time -------------------------------------------------
    def handle_one_request(self) -> Any:
        conn, stream, svc = self.conn, self.conn.stream, self.services
        if conn.requests or conn.preconnected:
            if svc.state.draining:
                conn.end(Termination.DRAINING, "draining")
                return None
            if not self._wait_next_request():
                return None
            conn.preconnected = False
        try:
            head = read_head(stream, svc.config.head_timeout)
        except HeadTimeout:
            conn.end(Termination.CLIENT_TIMEOUT, "client timeout (request head)")
            return None
        except ProtocolViolation as exc:
            conn.end(Termination.PROTOCOL_ERROR, f"protocol error ({exc}) -> {exc.status}")
            return (str(exc.status), simple_response(exc.status))
        if head is None:
            conn.end(Termination.CLIENT_CLOSED, "client closed")
            return None
        self.monoport_head: RequestHead | None = head
        if svc.balancer.before_request(self, head) is False:
            return None
        del head  # this frame lasts as long as a WebSocket does; MessageClass takes the head from self
        conn.requests += 1
        conn.sock.settimeout(svc.config.body_timeout)
        stream.on_timeout = BodyStalled
        try:
            result = super().handle_one_request()
        finally:
            stream.on_timeout = None
        if result is None:
            conn.end_unless_ended(Termination.SERVER_CLOSED, "closed after response")
        return result

    def read_request(self, raw_requestline: str) -> Any:
        self._line_length = len(raw_requestline)  # latin-1: one character per byte
        return super().read_request(raw_requestline)

    def MessageClass(self, *args: Any) -> Any:  # noqa: N802 (pywsgi's name)
        """The request's headers: the parse :func:`read_head` already made, else pywsgi's own.

        pywsgi would parse the head a second time with http.client's email
        parser (about 20 µs a request, ~6 % of a keep-alive request's CPU).
        The header block is whole in the stream: it is skipped, and the
        message is filled from :class:`~monoport.wire.httphead.RequestHead`.
        """
        head = getattr(self, "monoport_head", None)
        # consumed here: not kept for the life of a WebSocket (about 1 KB of header tuples each)
        self.monoport_head = None
        stream = self.conn.stream
        if head is not None and args and args[0] is stream:
            rest = head.length - getattr(self, "_line_length", head.length)
            if stream.drop_line_rest(rest):
                message = ParsedHeaders()
                # (lower-cased name, value), as email keeps them; private, so not in the stubs
                message._headers = list(head.headers)  # type: ignore[attr-defined]
                return message
        return self._parse_headers(*args)

    def _parse_headers(self, *args: Any) -> Any:
        # pywsgi parses headers with http.client, which stops at 100 lines
        # *counting the blank one*: a head with exactly MAX_HEADERS headers,
        # already accepted by parse_head, would get 400. The head is buffered
        # whole in the Stream, so parsing it never yields to another greenlet
        # while the bound is raised.
        # (http.client's private bound: typeshed does not declare it)
        saved = http.client._MAXHEADERS  # type: ignore[attr-defined]
        http.client._MAXHEADERS = max(saved, MAX_HEADERS + 1)  # type: ignore[attr-defined]
        try:
            return super().MessageClass(*args)
        finally:
            http.client._MAXHEADERS = saved  # type: ignore[attr-defined]

    def _wait_next_request(self) -> bool:
        """Wait for the first byte of the next request (keep-alive idle)."""
        conn, stream, state = self.conn, self.conn.stream, self.services.state
        if stream.has_buffered():
            return True
        state.idle.add(conn)
        try:
            conn.sock.settimeout(self.services.config.keepalive_timeout)
            wait_readable(conn.sock.wrapped)
            if not stream.fill():
                if conn.drain_note is not None:
                    conn.end(*conn.drain_note)
                elif state.draining:
                    conn.end(Termination.DRAINING, "draining")
                else:
                    conn.end(Termination.CLIENT_CLOSED, "client closed (keep-alive)")
                return False
            return True
        except (socket.timeout, TimeoutError):
            conn.end(Termination.CLIENT_TIMEOUT, "client timeout (keep-alive idle)")
            return False
        except (OSError, ValueError):
            # shutdown() woke this wait up on purpose; over TLS gevent may say so
            # as ValueError("Read on closed or unwrapped SSL socket.")
            if conn.drain_note is not None:
                conn.end(*conn.drain_note)
                return False
            if state.draining:
                conn.end(Termination.DRAINING, "draining")
                return False
            raise
        finally:
            state.idle.discard(conn)

    # -- environ ---------------------------------------------------------------
    def get_environ(self) -> dict[str, Any]:
        env = super().get_environ()
        conn, svc = self.conn, self.services
        env["REMOTE_ADDR"] = str(conn.client[0])
        env["REMOTE_PORT"] = str(conn.client[1])
        env["SERVER_PORT"] = str(conn.local[1]) if isinstance(conn.local, tuple) else ""
        env["wsgi.url_scheme"] = "https" if conn.secure else "http"
        apply_forwarded(env, svc.trusted)
        config, constant = type(self).constant_environ
        if config is not svc.config:  # the same for every request of this runtime's config: made once
            config = svc.config
            constant = {"monoport.instance_id": config.instance_id, "monoport.cluster": config.cluster_name}
            type(self).constant_environ = (config, constant)
        env.update(constant)
        env["monoport.tls"] = conn.tls
        env["monoport.forwarded_by"] = conn.forwarded_by
        env["monoport.transport"] = "http"
        env["monoport.connection"] = conn
        return env

    # -- response ----------------------------------------------------------------
    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        svc = self.services
        if svc.state.draining or svc.balancer.forwarder_draining(self.conn):
            # the client opens its next connection elsewhere; a forwarder that
            # is stopping ends its splice when we close
            # pywsgi's own attribute, in the instance dict its classes keep (mypy reads only our slots)
            self.close_connection = True  # type: ignore[misc]
        write = super().start_response(status, headers, exc_info)
        if svc.config.hsts is not None and self.conn.secure:
            self.response_headers.append((b"Strict-Transport-Security", f"max-age={svc.config.hsts}".encode()))
        if (
            self.close_connection
            and self.code != 101
            and self.request_version != "HTTP/1.0"
            and not any(name.lower() == b"connection" for name, _ in self.response_headers)
        ):
            self.response_headers.append((b"Connection", b"close"))
        return write

    def run_application(self) -> Any:
        # gevent-websocket looks for an upgrade first (two debug log calls and
        # four environ reads a request); a request that asks for none, outside
        # the Socket.IO paths (whose upgrade refusals also judge a plain
        # request's Origin), goes straight to pywsgi's.
        environ = self.environ
        if (environ.get("HTTP_UPGRADE", "").lower() != "websocket"
                and not self.services.router.is_sio_path(environ["PATH_INFO"])):
            return pywsgi.WSGIHandler.run_application(self)
        return super().run_application()

    def upgrade_websocket(self) -> Any:
        refusal = self.services.router.refuse_upgrade(self.environ)
        if refusal is None:
            return super().upgrade_websocket()
        self.conn.end(Termination.PROTOCOL_ERROR, f"WebSocket refused ({refusal}) -> 400")
        body = f"{refusal}\n".encode()
        self.start_response("400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    def run_websocket(self) -> None:
        # A WebSocket has no idle timeout of its own: Socket.IO pings keep it alive.
        self.conn.sock.settimeout(None)
        self.environ["monoport.transport"] = "websocket"
        self.conn.kind = "wss" if self.conn.secure else "ws"
        limit_messages(self.websocket, self, self.services.max_message)
        super().run_websocket()
        if self.services.state.draining:
            self.conn.end_unless_ended(Termination.DRAINING, "draining")
        else:
            self.conn.end_unless_ended(Termination.CLIENT_CLOSED, "client closed (websocket)")

    def log_request(self) -> None:
        self.services.on_request(self)

    def log_error(self, msg: str, *args: Any) -> None:
        try:
            message = msg % args
        except Exception:
            message = f"{msg!r} {args!r}"
        self.conn.end(Termination.PROTOCOL_ERROR, f"protocol error ({message.strip()})")

    def handle_error(self, t: Any, v: BaseException, tb: Any) -> None:
        # pywsgi prints a traceback for anything the app raised; a client that
        # stalls its body or stops reading the response is one log line.
        if isinstance(v, BodyStalled):
            self.conn.end(Termination.CLIENT_TIMEOUT, "client timeout (request body)")
        elif isinstance(v, (socket.timeout, TimeoutError)):
            self.conn.end(Termination.CLIENT_TIMEOUT, "client timeout (response not read)")
        elif isinstance(v, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            # pywsgi ignores EPIPE/ECONNRESET this way, but not their TLS forms
            self.conn.end(Termination.CLIENT_CLOSED, "client closed during the response")
        else:
            super().handle_error(t, v, tb)
            return
        self.close_connection = True  # type: ignore[misc]  # pywsgi's, in the instance dict
        if not self.headers_sent:
            try:
                self.socket.sendall(simple_response(408))
            except OSError:
                pass

    def _handle_client_error(self, ex: Exception) -> Any:
        # pywsgi prints a traceback for client errors that are not ValueError;
        # a client's bad input is one log line and a 400, never a traceback.
        self.conn.end(Termination.PROTOCOL_ERROR, f"protocol error ({type(ex).__name__}: {ex})")
        return ("400", simple_response(400))


def make_wsgi_server(application: Callable, port: int) -> pywsgi.WSGIServer:
    """A never-started WSGIServer: pywsgi's handler reads its settings from it."""
    server = pywsgi.WSGIServer(
        ("127.0.0.1", port), application, log=None,
        error_log=pywsgi.LoggingLogAdapter(logging.getLogger("monoport.http"), logging.WARNING),
        environ={"SERVER_NAME": "monoport", "SERVER_PORT": str(port)},
    )
    return server


__all__ = ["Handler", "read_head", "make_wsgi_server", "format_address"]
