"""Small real clients used by the end-to-end tests."""

from __future__ import annotations

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
