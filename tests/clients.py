"""Small real clients used by the end-to-end tests."""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time

import requests
import socketio
import websocket


#: sessions and sockets these helpers opened for the running test (tests/conftest.py closes them after it)
_opened: list = []


def closed_after_the_test(thing):
    """``thing`` (anything with a ``close()``), to be closed once the running test ends."""
    _opened.append(thing)
    return thing


def close_opened() -> None:
    """Close what these helpers opened during the test that just ended.

    A requests session keeps its connections pooled until it is closed; dropped instead, its
    sockets reach the garbage collector, which reports a ResourceWarning during whichever later
    test it runs in. Closing twice is harmless, so a test may still close its own.
    """
    while _opened:
        _opened.pop().close()


class ClientSockets:
    """A python-socketio client's end, as :func:`close_opened` wants it: disconnected, and its WebSocket
    closed even when the server ended it (python-engineio then leaves the socket open)."""

    def __init__(self, client: socketio.Client) -> None:
        self.client = client

    def close(self) -> None:
        self.client.disconnect()
        ws = getattr(self.client.eio, "ws", None)
        if ws is not None:
            ws.shutdown()


class ReleasingWebSocket(websocket.WebSocket):
    """websocket-client's WebSocket whose ``close()`` always releases the socket: websocket-client's own
    returns at once when a close frame was already sent (``send_close``, or ``recv_data`` answering the
    server's close), and leaves the socket open."""

    def close(self, *args, **kwargs) -> None:
        super().close(*args, **kwargs)
        self.shutdown()


def websocket_connect(url: str, **options) -> websocket.WebSocket:
    """``websocket.create_connection``; the connection is closed once the test ends, if the test did not."""
    return closed_after_the_test(websocket.create_connection(url, class_=ReleasingWebSocket, **options))


def https_session(ca: str) -> requests.Session:
    session = closed_after_the_test(requests.Session())
    session.verify = ca
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
    return session


class SerializedSSLSocket(ssl.SSLSocket):
    """An SSLSocket whose reads and writes never run at the same time.

    python-socketio's threaded client reads its WebSocket in one thread and
    writes it from another; OpenSSL forbids using one connection from two
    threads at once, and under load the client then writes corrupt records
    (the server answers "bad record MAC"). Waiting for readability happens
    outside the lock, so a blocked reader never stalls a writer.
    """

    _guard = threading.Lock()

    def _io_lock(self) -> threading.Lock:
        lock = self.__dict__.get("_mp_io_lock")
        if lock is None:
            with self._guard:
                lock = self.__dict__.setdefault("_mp_io_lock", threading.Lock())
        return lock

    def _wait_readable(self) -> None:
        if self.pending() == 0:
            readable, _, _ = select.select([self], [], [], self.gettimeout())
            if not readable:
                raise socket.timeout("timed out")

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self._wait_readable()
        with self._io_lock():
            return super().recv(buflen, flags)

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        self._wait_readable()
        with self._io_lock():
            return super().recv_into(buffer, nbytes, flags)

    def send(self, data, flags: int = 0) -> int:
        with self._io_lock():
            return super().send(data, flags)

    def sendall(self, data, flags: int = 0) -> None:
        with self._io_lock():
            return super().sendall(data, flags)


class SerializedTLSContext(ssl.SSLContext):
    """Makes :class:`SerializedSSLSocket` s, each closed once the test ends: python-engineio leaves the
    WebSocket of a connection the server ended open, and drops it when its client reconnects."""

    sslsocket_class = SerializedSSLSocket

    def wrap_socket(self, *args, **kwargs) -> ssl.SSLSocket:  # type: ignore[override]
        return closed_after_the_test(super().wrap_socket(*args, **kwargs))


def serialized_tls_context(ca: str) -> ssl.SSLContext:
    """A client context trusting ``ca`` (what ``ssl.create_default_context`` makes) whose sockets are
    :class:`SerializedSSLSocket`."""
    ctx = SerializedTLSContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
    ctx.load_verify_locations(cafile=ca)
    return ctx


def sio_client(url: str, ca: str | None, transports: list[str], auth: dict | None = None,
               **kwargs) -> socketio.Client:
    """A connected python-socketio client (bounded wait); over wss its TLS socket is serialized."""
    # python-engineio drops a session it made itself without closing it: always give it ours
    http = https_session(ca) if ca else closed_after_the_test(requests.Session())
    if ca and "websocket_extra_options" not in kwargs:
        kwargs["websocket_extra_options"] = {"sslopt": {"context": serialized_tls_context(ca)}}
    client = socketio.Client(http_session=http, reconnection=kwargs.pop("reconnection", False), **kwargs)
    closed_after_the_test(ClientSockets(client))
    client.connect(url, transports=transports, wait_timeout=10, auth=auth)
    return client


def connection_per_request_client(port: int) -> socketio.Client:
    """A long-polling client on clear HTTP whose every request is a new TCP connection, so the
    kernel spreads its requests over the workers sharing the port."""
    http = closed_after_the_test(requests.Session())
    http.trust_env = False
    http.headers["Connection"] = "close"
    client = socketio.Client(http_session=http, reconnection=False)
    closed_after_the_test(ClientSockets(client))
    client.connect(f"http://127.0.0.1:{port}", transports=["polling"], wait_timeout=10)
    return client


def closed_without_answer(sock) -> bool:
    """The server closed ``sock`` without a byte of answer (a reset if our request was left unread)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def read_to_eof(sock) -> bytes:
    """Everything the peer sends until it closes (the socket's own timeout bounds each read)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0, tls: ssl.SSLContext | None = None,
                 server_hostname: str = "localhost", shut_write: bool = False, prefix: bytes = b"") -> bytes:
    """Send ``data`` and read until the server closes (bounded); ``prefix`` goes first, before TLS."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if prefix:
        sock.sendall(prefix)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=server_hostname)
    with sock:
        sock.sendall(data)
        if shut_write and tls is None:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


class RawSio:
    """A raw TCP (or TLS) Socket.IO client speaking newline-framed Engine.IO, for tests."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, timeout: float = 20.0,
                 connect: bool = True) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._start(tls.wrap_socket(sock, server_hostname="localhost") if tls is not None else sock)
        closed_after_the_test(self.sock)
        if connect:
            self.send("40")  # at once, before the open packet: no sniff deadline to wait for
            self.open = json.loads(self.line()[1:])
            assert self.line().startswith("40{")

    @classmethod
    def over(cls, sock) -> "RawSio":
        """The client over a socket already connected (a gevent one, in-process); nothing sent yet."""
        client = cls.__new__(cls)
        client._start(sock)
        return client

    def _start(self, sock) -> None:
        self.sock = sock
        self.buf = b""
        self.open = None
        #: lines read past by :meth:`expect`, looked at first next time
        self.seen: list[str] = []

    def send(self, line: str | bytes) -> None:
        self.sock.sendall((line.encode() if isinstance(line, str) else line) + b"\n")

    def line(self) -> str:
        """The next line (without its LF); raises EOFError when the server closes."""
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def expect(self, predicate, answer_pings: bool = True, limit: int = 100) -> str:
        """Read lines until one satisfies ``predicate`` (answering pings on the way)."""
        for line in self.seen:
            if predicate(line):
                self.seen.remove(line)
                return line
        for _ in range(limit):
            line = self.line()
            if answer_pings and line == "2":
                self.send("3")
                continue
            if predicate(line):
                return line
            self.seen.append(line)
        raise AssertionError(f"no matching line in {limit}")

    def call(self, ack_id: int, *args) -> list:
        """Emit an event with an ack id and return the ack's arguments."""
        self.send(f"42{ack_id}" + json.dumps(list(args)))
        line = self.expect(lambda l: l.startswith(f"43{ack_id}["))
        return json.loads(line[len(f"43{ack_id}"):])

    def closed(self) -> bool:
        """True when the server has closed (EOF or reset) before another line arrives."""
        try:
            while True:
                self.line()
        except EOFError:
            return True
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()
