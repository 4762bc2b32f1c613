"""``--raw HOST:PORT``: raw connections spliced to a real TCP backend, end to end."""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import pytest

from tests.conftest import free_port, wait_for

APP = ["--app", "tests.apps.echo_app:app"]


class EchoBackend:
    """A threaded TCP server: optional greeting, echo until EOF, then half-close back."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            got = []
            conn.sendall(self.greeting)
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                got.append(data)
                conn.sendall(data)
            self.received.append(b"".join(got))
            conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def backend():
    server = EchoBackend(greeting=b"hello from backend\n")
    yield server
    server.close()


def read_until_eof(sock: socket.socket, timeout: float = 20.0) -> bytes:
    sock.settimeout(timeout)
    parts = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(parts)
        parts.append(data)


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


GREETING = b"hello from backend\n"


def closed_without_data(sock: socket.socket) -> bool:
    """EOF or reset (the kernel resets a socket closed with unread bytes)."""
    try:
        return read_until_eof(sock) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("use_tls", [False, True], ids=["clear", "tls"])
def test_first_bytes_reach_the_backend_and_half_close_passes_both_ways(monoport, tls_args, client_ctx,
                                                                      backend, use_tls):
    server = monoport(APP + tls_args + ["--raw", f"127.0.0.1:{backend.port}"])
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    if use_tls:
        sock = client_ctx.wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(b"\x01\x02 device hello\n")  # decisive at once: not TLS/HTTP/PROXY/Flash
        assert read_exactly(sock, len(GREETING) + 16) == GREETING + b"\x01\x02 device hello\n"
        sock.sendall(b"more")
        if use_tls:  # TLS has no half-close that Python's ssl can send
            assert read_exactly(sock, 4) == b"more"
        else:
            sock.shutdown(socket.SHUT_WR)  # the backend sees EOF and half-closes back
            assert read_until_eof(sock) == b"more"
    log = server.wait_log("raw forwarded to")
    assert f"20 bytes up, {len(GREETING) + 20} down" in log
    if not use_tls:
        assert "closed by client" in log
    wait_for(lambda: backend.received)
    assert backend.received == [b"\x01\x02 device hello\nmore"]


def test_ambiguous_bytes_sent_before_the_deadline_are_not_lost(monoport, tls_args, backend):
    server = monoport(APP + tls_args + ["--raw", f"127.0.0.1:{backend.port}", "--sniff-timeout", "0.5"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"PO")  # could still become "POST " or "PROXY ": only the deadline decides
        assert read_exactly(sock, len(GREETING)) == GREETING  # spliced after the deadline
        sock.sendall(b"NG\n")
        assert read_exactly(sock, 5) == b"PONG\n"
        sock.shutdown(socket.SHUT_WR)
        assert read_until_eof(sock) == b""
    server.wait_log("raw-silent")
    wait_for(lambda: backend.received)
    assert backend.received == [b"PONG\n"]


def test_silent_client_is_spliced_after_the_deadline(monoport, tls_args, backend):
    server = monoport(APP + tls_args + ["--raw", f"127.0.0.1:{backend.port}", "--sniff-timeout", "0.5"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        assert read_exactly(sock, len(GREETING)) == GREETING
    log = server.wait_log("raw forwarded to")
    assert "raw-silent" in log


def test_large_transfer_is_intact(monoport, tls_args):
    echo = EchoBackend()
    server = monoport(APP + tls_args + ["--raw", f"127.0.0.1:{echo.port}"])
    size = 16 * 1024 * 1024
    block = hashlib.sha256(b"seed").digest() * 2048
    sent = hashlib.sha256()
    got = hashlib.sha256()
    received = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        def writer():
            for _ in range(size // len(block)):
                sock.sendall(block)
                sent.update(block)
            sock.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=writer)
        thread.start()
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            got.update(data)
            received += len(data)
        thread.join(30)
    echo.close()
    assert received == size
    assert got.hexdigest() == sent.hexdigest()
    server.wait_log(f"{size} bytes up, {size} down, closed by client")


def test_refusing_backend_costs_one_log_line_and_closes_the_client(monoport, tls_args):
    dead = free_port()
    server = monoport(APP + tls_args + ["--raw", f"127.0.0.1:{dead}"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"\x00hello\n")
        assert closed_without_data(sock)
    log = server.wait_log("raw backend unavailable")
    lines = [line for line in log.splitlines() if " conn " in line and f"127.0.0.1:{dead}" in line]
    assert len(lines) == 1, log
    time.sleep(0.2)  # room for a crash after the refusal to show (no event to wait for)
    # the server is still serving
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"\x00again\n")
        assert closed_without_data(sock)
