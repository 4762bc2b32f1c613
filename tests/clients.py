"""Small real clients used by the end-to-end tests."""

from __future__ import annotations

import json
import socket
import ssl
import time

import requests
import socketio


def https_session(ca: str) -> requests.Session:
    session = requests.Session()
    session.verify = ca
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
    return session


def sio_client(url: str, ca: str | None, transports: list[str], **kwargs) -> socketio.Client:
    """A connected python-socketio client (bounded wait)."""
    http = https_session(ca) if ca else None
    client = socketio.Client(http_session=http, reconnection=kwargs.pop("reconnection", False), **kwargs)
    client.connect(url, transports=transports, wait_timeout=10)
    return client


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
        self.sock = tls.wrap_socket(sock, server_hostname="localhost") if tls is not None else sock
        self.buf = b""
        self.open = None
        #: lines read past by :meth:`expect`, looked at first next time
        self.seen: list[str] = []
        if connect:
            self.send("40")  # at once, before the open packet: no sniff deadline to wait for
            self.open = json.loads(self.line()[1:])
            assert self.line().startswith("40{")

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
