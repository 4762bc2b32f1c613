"""monoport in-process, for the middle of the test pyramid: one connection's path over loopback TCP.

No subprocess: :func:`build` assembles the :class:`~monoport.services.Services`
a connection's stages get from small real objects (a Config parsed from
flags, Stats, PerClientLimit, a Balancer, pywsgi through monoport's Handler,
the real raw stage), the way :meth:`monoport.runtime.Runtime.build` does for a
process; :meth:`Inproc.serve` accepts one loopback TCP connection and runs
:func:`monoport.path.serve_connection` on it in a greenlet, the test holding
the client's end. Every socket is a gevent one (the test process is not
monkey-patched) and every wait is bounded by :data:`LIMIT`.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from gevent import socket as gsocket
from gevent import ssl as gssl

from monoport import flash, path, rawstage
from monoport.balancer import Balancer
from monoport.config_sources import from_sources
from monoport.connection import Connection
from monoport.limits import PerClientLimit
from monoport.ops.accesslog import AccessLog, status_of
from monoport.ops.stats import Stats
from monoport.router import Router
from monoport.services import ServerState, Services
from monoport.termination import Termination
from monoport.tls import Certificates, Pair
from monoport.wire.trust import Networks
from monoport.wsgi import Handler, make_wsgi_server

#: The bound of every wait in these tests (generous: the machine is shared).
LIMIT = 20.0
#: Flags every in-process server gets (a fixed identity, so PROXY v2 headers can be checked).
BASE_FLAGS = ("--instance-id", "here", "--cluster", "test")


# -- the app ------------------------------------------------------------------------------------
@dataclass
class Seen:
    """One request as the WSGI app received it."""

    method: str
    path: str
    body: bytes
    remote: str
    scheme: str


class Recorder:
    """A tiny WSGI app: keeps every request it gets and answers ``METHOD PATH LENGTH\\n`` + the body."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        method, target = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        self.seen.append(Seen(method, target, body, environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]))
        answer = f"{method} {target} {len(body)}\n".encode() + body
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(answer)))])
        return [answer]


# -- what the stages get ----------------------------------------------------------------------
class RecordingStats(Stats):
    """The real Stats, also keeping every close it is told about (one per connection is the rule)."""

    def __init__(self) -> None:
        super().__init__("here", "test")
        self.endings: list[tuple[Connection, Termination]] = []

    def connection_closed(self, conn: Any) -> None:
        self.endings.append((conn, conn.termination))
        super().connection_closed(conn)


@dataclass
class Role:
    """What a connection knows of the listener that accepted it: its role."""

    role: str = "public"


@dataclass
class Inproc:
    """A Services and what the tests look at."""

    services: Services
    stats: RecordingStats
    app: Recorder
    #: (path, status) of every HTTP request the handler finished
    requests: list[tuple[str, int | None]] = field(default_factory=list)
    access_path: Path | None = None

    def serve(self, role: str = "public") -> Served:
        return Served(self.services, role)

    def listen(self, role: str = "peer") -> Listening:
        return Listening(self.services, role)

    def access_records(self) -> list[dict[str, Any]]:
        assert self.access_path is not None
        return [json.loads(line) for line in self.access_path.read_text().splitlines() if line]

    def close(self) -> None:
        if self.services.access is not None:
            self.services.access.close()


def certificates(tls_files: dict[str, str]) -> Certificates:
    """monoport's Certificates over the trustme localhost pair (tests/conftest.py's ``tls_files``)."""
    return Certificates([Pair(tls_files["localhost"], tls_files["localhost_key"])])


def build(*flags: str, app: Recorder | None = None, sio: Any = None, certs: Certificates | None = None,
          access_path: Path | None = None) -> Inproc:
    """The Services one connection's stages use, from ``flags`` (as on the command line)."""
    config, _ = from_sources([*BASE_FLAGS, *flags], {})
    stats = RecordingStats()
    state = ServerState()
    app = app or Recorder()
    balancer = Balancer(config, stats, state, close_idle=lambda match, note: None, started_at=time.time(), sio=sio)
    router = Router(app, sio, config.sio_path)
    max_message = sio.eio.max_http_buffer_size if sio is not None else 1_000_000
    access = AccessLog(str(access_path), "json") if access_path is not None else None
    requests: list[tuple[str, int | None]] = []

    def on_request(handler: Any) -> None:
        environ = getattr(handler, "environ", None) or {}  # None: the head was refused before it parsed
        requests.append((environ.get("PATH_INFO", ""), status_of(handler)))

    svc = Services(
        config=config, stats=stats, state=state, trusted=Networks(config.trusted_proxy),
        per_client=PerClientLimit(config.max_conns_per_ip), balancer=balancer,
        flash_policy=None if config.no_flash else flash.load_policy(config.flash_policy, config.ports),
        certs=certs, challenges=None, serve_http=lambda conn: None,
        serve_raw=rawstage.build(config, balancer, sio, router, max_message),
        router=router, on_request=on_request, max_message=max_message, access=access,
    )
    handler_class = type("InprocHandler", (Handler,), {"services": svc})
    wsgi_server = make_wsgi_server(router, config.ports[0])
    svc.serve_http = lambda conn: handler_class(conn, wsgi_server).handle()
    return Inproc(svc, stats, app, requests, access_path)


# -- one connection ------------------------------------------------------------------------------
def tcp_pair() -> tuple[gsocket.socket, gsocket.socket]:
    """A connected loopback TCP pair of gevent sockets: (client end, server end)."""
    listener = gsocket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = gsocket.create_connection(listener.getsockname(), timeout=LIMIT)
        server, _ = listener.accept()
    finally:
        listener.close()
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.settimeout(LIMIT)
    return client, server


class Served:
    """One accepted connection in :func:`monoport.path.serve_connection`; the test holds ``client``."""

    def __init__(self, svc: Services, role: str = "public") -> None:
        self.client: Any
        self.client, server = tcp_pair()
        self.conn = Connection(server, server.getpeername()[:2], server.getsockname()[:2], Role(role))
        self.greenlet = gevent.spawn(path.serve_connection, self.conn, svc)

    def tls(self, tls_files: dict[str, str], server_name: str = "localhost", alpn: list[str] | None = None) -> Any:
        """Do the client's TLS handshake; the client end is the TLS socket from here on."""
        ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_CLIENT)  # gevent's (its create_default_context is the stdlib's)
        ctx.load_verify_locations(tls_files["ca"])
        if alpn:
            ctx.set_alpn_protocols(alpn)
        self.client = ctx.wrap_socket(self.client, server_hostname=server_name)
        return self.client

    def finish(self, timeout: float = LIMIT) -> Connection:
        """Wait for the connection's end (re-raising what the path raised); the connection."""
        self.greenlet.join(timeout)
        assert self.greenlet.ready(), f"connection still served after {timeout:g}s ({self.conn.describe()})"
        self.greenlet.get()
        return self.conn

    def close(self) -> None:
        self.greenlet.kill(block=True, timeout=LIMIT)
        self.client.close()
        self.conn.close()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = LIMIT) -> Any:
    """Poll ``predicate`` with gevent's sleep (the served greenlets run meanwhile); bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        gevent.sleep(0.01)
    raise AssertionError(f"not within {timeout:g}s: {what}")


class Listening:
    """A listening socket whose connections go to :func:`monoport.path.serve_connection` (a peer listener)."""

    def __init__(self, svc: Services, role: str) -> None:
        self.svc, self.role = svc, role
        self.listener = gsocket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.address = self.listener.getsockname()
        self.conns: list[Connection] = []
        self.served: list[gevent.Greenlet] = []
        self.acceptor = gevent.spawn(self._accept)

    def _accept(self) -> None:
        while True:  # until close() kills it
            sock, peer = self.listener.accept()
            conn = Connection(sock, peer[:2], sock.getsockname()[:2], Role(self.role))
            self.conns.append(conn)
            self.served.append(gevent.spawn(path.serve_connection, conn, self.svc))

    def close(self) -> None:
        self.acceptor.kill(block=True, timeout=LIMIT)
        gevent.killall(self.served, block=True, timeout=LIMIT)
        for conn in self.conns:
            conn.close()
        self.listener.close()

    def __enter__(self) -> Listening:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OneConnection:
    """A listening socket standing for a backend or a peer: it takes one connection, reads until
    ``enough(received)`` (or EOF), keeps the bytes in ``received``, sends ``answer(received)`` and closes."""

    def __init__(self, enough: Callable[[bytes], bool], answer: Callable[[bytes], bytes]) -> None:
        self.enough, self.answer = enough, answer
        self.listener = gsocket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.address: tuple[str, int] = self.listener.getsockname()
        self.received = b""
        self.greenlet = gevent.spawn(self._serve_one)

    def _serve_one(self) -> None:
        sock, _ = self.listener.accept()
        with sock:
            sock.settimeout(LIMIT)
            while not self.enough(self.received):  # bounded: the timeout, or EOF
                more = sock.recv(65536)
                if not more:
                    break
                self.received += more
            sock.sendall(self.answer(self.received))

    def close(self) -> None:
        self.greenlet.kill(block=True, timeout=LIMIT)
        self.listener.close()


# -- the client's side of HTTP ----------------------------------------------------------------------
@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class ResponseReader:
    """HTTP/1.1 responses read off a client socket in order (pipelining keeps the bytes that follow)."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed; unread: {self.buf!r}")
        self.buf += data

    def next(self) -> Response:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return Response(status, headers, body)

    def at_eof(self) -> bool:
        """True when the server closed with nothing more to read."""
        if self.buf:
            return False
        return self.sock.recv(65536) == b""


def request(method: str, target: str, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """One HTTP/1.1 request's bytes (Content-Length when there is a body)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", *(f"{k}: {v}" for k, v in headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
