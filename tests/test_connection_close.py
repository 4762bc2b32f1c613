"""A response that says Connection: close is followed by the server closing (no client wait)."""

from __future__ import annotations

import socket
import time


def test_server_closes_right_after_a_connection_close_response(monoport):
    server = monoport(["--app", "tests.apps.echo_app:app", "--tls", "off"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        started, data = time.monotonic(), b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        # pywsgi once blocked in recv() on the connection after answering: EOF
        # came only when the 30 s body timeout expired (or the client gave up).
        assert time.monotonic() - started < 5
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data
