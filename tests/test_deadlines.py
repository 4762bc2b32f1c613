"""Slow and silent clients: every stage has a deadline, and a slowloris costs others nothing.

Stages and the test that proves each deadline:
sniff (test_core_e2e: silent client), TLS handshake (test_tls_hardening:
stalled halfway), request head (test_core_e2e: slow head), request body
progress and keep-alive idle (here), and a slowloris of 1 000 connections
while a normal client is served (here, marked slow).
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import statistics
import threading
import time

import pytest

from tests.clients import https_session
from tests.conftest import wait_for

APP = ["--app", "tests.apps.echo_app:app"]


def wait_closed(sock: socket.socket, limit: float = 15.0) -> tuple[bytes, float]:
    """Read until the server closes; return what it sent and how long it took."""
    started = time.monotonic()
    sock.settimeout(limit)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks), time.monotonic() - started


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response with a Content-Length (headers and body may come in several records)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("path", ["/echo", "/socket.io/?EIO=4&transport=polling&sid={sid}"])
def test_a_request_body_that_stops_moving_gets_408_and_one_line(monoport, tls_args, client_ctx, tls_files, path):
    server = monoport(APP + tls_args + ["--body-timeout", "1"])
    if "{sid}" in path:
        text = https_session(tls_files["ca"]).get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=10).text
        path = path.format(sid=text[text.index('"sid":"') + 7:].split('"')[0])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n40".encode())
            answer, waited = wait_closed(tls)
    print(f"stalled body answered after {waited:.2f}s: {answer[:40]!r}")
    assert answer.startswith(b"HTTP/1.1 408")
    assert waited < 10
    log = server.wait_log("client timeout (request body)")
    assert "Traceback" not in log and "500" not in log.split("Socket.IO:")[-1]


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(monoport, tls_args, client_ctx):
    server = monoport(APP + tls_args + ["--keepalive-timeout", "2"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            for _ in range(3):  # a client that keeps talking is not cut
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert read_response(tls).startswith(b"HTTP/1.1 200")
                time.sleep(0.3)
            answer, waited = wait_closed(tls)
    assert answer == b""
    assert waited < 10
    server.wait_log("client timeout (keep-alive idle)")


# -- slowloris --------------------------------------------------------------------------------
ATTACKERS = 1000
ATTACK_SECONDS = 14.0
#: sent at once, as slowloris does, so the sniffer sees HTTP; then one byte a second
OPENING = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "


class Slowloris:
    """``ATTACKERS`` connections, each sending one header byte a second; reconnects when cut."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks: list[tuple[socket.socket, int]] = []
        self.cut = 0

    def connect(self) -> tuple[socket.socket, int]:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(OPENING)
        sock.setblocking(False)
        return sock, 0

    def run(self, seconds: float) -> None:
        self.socks = [self.connect() for _ in range(ATTACKERS)]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            tick = time.monotonic()
            for i, (sock, sent) in enumerate(self.socks):
                try:
                    sock.send(b"a")
                    self.socks[i] = (sock, sent + 1)
                except BlockingIOError:
                    pass
                except OSError:  # the server cut it: come back, as slowloris does
                    sock.close()
                    self.cut += 1
                    self.socks[i] = self.connect()
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))

    def close(self) -> None:
        for sock, _ in self.socks:
            sock.close()


@pytest.mark.slow
def test_slowloris_of_1000_connections_does_not_stop_a_normal_client(monoport, tls_args, tls_files):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    assert hard > 2 * ATTACKERS + 100, "the test needs 1 000 descriptors on each side"
    server = monoport(APP + tls_args)  # default deadlines: a 10 s request head
    session = https_session(tls_files["ca"])

    def timed_get() -> float:
        started = time.monotonic()
        response = session.get(server.url + "/", timeout=10)
        assert response.status_code == 200
        return time.monotonic() - started

    baseline = [timed_get() for _ in range(20)]
    attack = Slowloris(server.port)
    during: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def normal_client() -> None:
        time.sleep(2)  # let the attack build up
        while not stop.is_set():
            try:
                during.append(timed_get())
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
            time.sleep(0.2)

    fds = []
    watcher = threading.Thread(target=normal_client)
    watcher.start()
    sampler = threading.Thread(target=lambda: [fds.append(len(os.listdir(f"/proc/{server.proc.pid}/fd")))
                                                or time.sleep(1) for _ in range(int(ATTACK_SECONDS) - 2)])
    sampler.start()
    try:
        attack.run(ATTACK_SECONDS)
    finally:
        stop.set()
        watcher.join(30)
        sampler.join(30)
        attack.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print(f"slowloris {ATTACKERS} conns x {ATTACK_SECONDS:.0f}s: server fds peak {max(fds)}, "
          f"attackers cut by the head deadline {attack.cut}; normal client latency "
          f"baseline median {statistics.median(baseline) * 1000:.1f} ms, during attack median "
          f"{statistics.median(during) * 1000:.1f} ms, max {max(during) * 1000:.1f} ms over {len(during)} requests")
    assert not failures, failures[:3]
    assert len(during) >= 10 and max(during) < 10
    assert max(fds) > ATTACKERS * 0.9, "the attack never held its connections open"
    assert attack.cut > ATTACKERS * 0.5, "the request-head deadline did not cut the attackers"
    wait_for(lambda: "client timeout (request head)" in server.log(), timeout=10)


def test_idle_keep_alive_tls_connections_at_sigterm_end_as_draining(monoport, tls_args, client_ctx):
    server = monoport(APP + tls_args)
    idle = []
    for _ in range(30):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        tls = client_ctx.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        read_response(tls)
        idle.append(tls)
    server.send(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    for tls in idle:
        tls.close()
    log = server.log()
    assert log.count("draining") >= 30 and "Traceback" not in log
