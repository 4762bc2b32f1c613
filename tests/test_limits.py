"""Limits: connections per client, head size and count, payload size, CORS, descriptors.

A real monoport process, real TLS and real clients on loopback; the
descriptor tests change the server's RLIMIT_NOFILE from outside with
``resource.prlimit``, as an administrator's ``prlimit`` would.
"""

from __future__ import annotations

import os
import resource
import socket
import ssl
import time

import pytest
import requests
import websocket

from tests import corpus
from tests.clients import https_session, raw_exchange, websocket_connect
from tests.conftest import wait_for

APP = ["--app", "tests.apps.echo_app:app"]


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- --max-conns-per-ip ---------------------------------------------------------------
def held_https(port: int, ctx: ssl.SSLContext, prefix: bytes = b"") -> ssl.SSLSocket:
    """A TLS connection that has been served once and is kept open (keep-alive)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(prefix)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert tls.recv(65536).startswith(b"HTTP/1.1 200")
    return tls


def test_max_conns_per_ip_answers_429_over_tls_and_frees_the_slot(monoport, tls_args, client_ctx, tls_files):
    server = monoport(APP + tls_args + ["--max-conns-per-ip", "2"])
    held = [held_https(server.port, client_ctx) for _ in range(2)]
    response = https_session(tls_files["ca"]).get(server.url + "/", timeout=10)
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    server.wait_log("over --max-conns-per-ip 2 -> 429")
    # raw TCP over the limit is closed without a word
    assert raw_exchange(server.port, b"\x00garbage\n") == b""
    server.wait_log("over --max-conns-per-ip 2 -> closed")
    held.pop().close()
    wait_for(lambda: https_session(tls_files["ca"]).get(server.url + "/", timeout=10).status_code == 200)
    for sock in held:
        sock.close()


def test_max_conns_per_ip_counts_the_real_client_behind_a_trusted_proxy(monoport, tls_args, client_ctx):
    server = monoport(APP + tls_args + ["--max-conns-per-ip", "1", "--trusted-proxy", "127.0.0.1"])

    def proxied(client: str) -> bytes:
        return f"PROXY TCP4 {client} 127.0.0.1 40000 {server.port}\r\n".encode()

    first = held_https(server.port, client_ctx, proxied("203.0.113.7"))
    over = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", tls=client_ctx,
                        prefix=proxied("203.0.113.7"))
    assert status_of(over) == 429
    other = held_https(server.port, client_ctx, proxied("203.0.113.8"))  # another client: served
    first.close()
    other.close()


def test_max_conns_per_ip_is_off_by_default(server_plain):
    socks = [socket.create_connection(("127.0.0.1", server_plain.port), timeout=10) for _ in range(20)]
    try:
        assert requests.get(f"http://127.0.0.1:{server_plain.port}/", timeout=10).status_code == 200
    finally:
        for sock in socks:
            sock.close()


# -- request heads: 431 over TLS and in clear ---------------------------------------------
@pytest.fixture
def server_plain(monoport):
    return monoport(APP + ["--tls", "off"])


BIG_HEAD = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n"
MANY_HEADERS = b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n"
JUST_FITS = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(98)) + b"\r\n"


@pytest.mark.parametrize("head", [BIG_HEAD, MANY_HEADERS], ids=["16KB", "100headers"])
@pytest.mark.parametrize("where", ["tls", "clear", "clear-on-tls-port"])
def test_oversized_heads_get_431_everywhere(monoport, tls_args, client_ctx, head, where):
    if where == "clear":
        server = monoport(APP + ["--tls", "off"])
    else:
        server = monoport(APP + tls_args)
    answer = raw_exchange(server.port, head, tls=client_ctx if where == "tls" else None)
    assert status_of(answer) == 431, answer[:200]
    assert status_of(raw_exchange(server.port, JUST_FITS, tls=client_ctx if where == "tls" else None)) in (200, 301)


# -- payload limits ---------------------------------------------------------------------------
def ws_connect(server, client_ctx: ssl.SSLContext, origin: str | None = None) -> websocket.WebSocket:
    ws = websocket_connect(
        f"wss://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket", timeout=10,
        sslopt={"context": client_ctx, "server_hostname": "localhost"}, origin=origin or server.url,
    )
    assert ws.recv().startswith("0{")
    ws.send("40")
    assert ws.recv().startswith("40")
    return ws


def test_websocket_message_over_max_payload_is_refused_at_its_header(monoport, tls_args, client_ctx, tls_files):
    server = monoport(APP + tls_args + ["--max-payload", "4096"])
    ws = ws_connect(server, client_ctx)
    ws.send('42["echo","' + "x" * 3000 + '"]')  # under the limit: fine
    frame = websocket.ABNF.create_frame('42["echo","' + "x" * 100000 + '"]', websocket.ABNF.OPCODE_TEXT).format()
    ws.sock.sendall(frame[:200])  # the header says 100 KB; only the start of the payload follows
    started = time.monotonic()
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, websocket.WebSocketTimeoutException)):
        while time.monotonic() - started < 10:
            opcode, _ = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise websocket.WebSocketConnectionClosedException()
    assert time.monotonic() - started < 5, "the server waited for a payload it should have refused"
    server.wait_log("WebSocket message larger than 4096 bytes")
    ws.close()
    assert https_session(tls_files["ca"]).get(server.url + "/", timeout=10).status_code == 200


def test_polling_payload_over_max_payload_gets_413(monoport, tls_args, tls_files):
    server = monoport(APP + tls_args + ["--max-payload", "4096"])
    session = https_session(tls_files["ca"])
    sid = session.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=10).text
    sid = sid[sid.index('"sid":"') + 7:].split('"')[0]
    url = server.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    assert session.post(url, data=b"40", timeout=10).status_code == 200
    assert session.post(url, data=b"4" + b"x" * 5000, timeout=10).status_code == 413


# -- CORS ---------------------------------------------------------------------------------------
def polling_open(server, tls_files, origin: str) -> requests.Response:
    return https_session(tls_files["ca"]).get(server.url + "/socket.io/?EIO=4&transport=polling",
                                              headers={"Origin": origin}, timeout=10)


def test_socketio_is_same_origin_by_default(monoport, tls_args, tls_files, client_ctx):
    server = monoport(APP + tls_args)
    assert polling_open(server, tls_files, "https://evil.example").status_code == 400
    assert polling_open(server, tls_files, server.url).status_code == 200
    with pytest.raises(websocket.WebSocketBadStatusException):
        ws_connect(server, client_ctx, origin="https://evil.example")
    server.wait_log("same origin only")


@pytest.mark.parametrize("flag", ["https://app.example", "*"])
def test_cors_origin_widens_it(monoport, tls_args, tls_files, client_ctx, flag):
    server = monoport(APP + tls_args + ["--cors-origin", flag, "--cors-origin", "https://two.example"])
    response = polling_open(server, tls_files, "https://app.example")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    ws_connect(server, client_ctx, origin="https://app.example").close()
    other = polling_open(server, tls_files, "https://evil.example").status_code
    assert other == (200 if flag == "*" else 400)


# -- file descriptors -----------------------------------------------------------------------------
def test_soft_fd_limit_is_raised_to_the_hard_limit_at_start(monoport, tls_args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard - 1)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))  # the child inherits it
    try:
        server = monoport(APP + tls_args)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE) == (hard, hard)
    server.wait_log(f"file descriptor limit raised from {low} to {hard}")


def test_out_of_descriptors_backs_off_logs_once_a_second_and_recovers(monoport):
    server = monoport(APP + ["--tls", "off", "--sniff-timeout", "60"])
    pid = server.proc.pid
    url = f"http://127.0.0.1:{server.port}/"
    assert requests.get(url, timeout=10).status_code == 200
    limit = open_fds(pid) + 5
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, old[1]))  # soft only: no privilege needed to undo
    silent = []
    try:
        started = time.monotonic()
        for _ in range(30):  # silent clients hold a descriptor each for the 60 s sniff timeout
            silent.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        server.wait_log("(EMFILE)")
        time.sleep(3)
        lines = [line for line in server.log().splitlines() if "(EMFILE)" in line]
        elapsed = time.monotonic() - started
        print(f"{len(lines)} EMFILE log line(s) in {elapsed:.1f}s")
        assert len(lines) <= elapsed + 1
        # a client arriving now waits in the backlog and is served once descriptors free up
        result = {}
        waiting = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for sock in silent:
            sock.close()
        silent.clear()
        result["answer"] = waiting.recv(100)
        waiting.close()
        assert result["answer"].startswith(b"HTTP/1.1 200")
        server.wait_log("resumed after")
        assert requests.get(url, timeout=10).status_code == 200
    finally:
        for sock in silent:
            sock.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
