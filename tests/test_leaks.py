"""Leaks: 20 000 short connections of mixed kinds leave no descriptor and little memory behind.

Kinds, in equal shares: HTTPS requests, clear HTTP (redirected to https),
Flash policy requests, garbage (raw TCP is off: closed), and failed TLS
handshakes (a TLS 1.1 ClientHello, refused). The server's open descriptors
(/proc/PID/fd) must come back to their baseline, and its resident memory
(VmRSS) may grow by less than 20 MB.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import corpus
from tests.conftest import wait_for

APP = ["--app", "tests.apps.echo_app:app"]
CONNECTIONS = 20_000
WARMUP = 1_000
RSS_BUDGET_KB = 20 * 1024
OLD_HELLO = corpus.client_hello(max_version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def drain(sock: socket.socket) -> int:
    got = 0
    try:
        while chunk := sock.recv(65536):
            got += len(chunk)
    except (ConnectionResetError, ssl.SSLError):
        pass
    return got


def one(port: int, ctx: ssl.SSLContext, i: int) -> int:
    kind = i % 5
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if kind == 0:
            with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                return drain(tls)
        sock.sendall({1: b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n", 2: corpus.FLASH,
                      3: b"\x00\x01garbage\n", 4: OLD_HELLO}[kind])
        return drain(sock)


def run(port: int, ctx: ssl.SSLContext, count: int) -> list[int]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: one(port, ctx, i), range(count)))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_20000_mixed_connections_leak_no_descriptor_and_little_memory(monoport, tls_args, client_ctx):
    server = monoport(APP + tls_args)
    pid = server.proc.pid
    run(server.port, client_ctx, WARMUP)  # imports, caches, pools: what a first burst allocates once
    time.sleep(1)  # the warm-up's connections finish closing on the server side before the baseline
    fd_before, rss_before = fd_count(pid), rss_kb(pid)
    started = time.monotonic()
    answers = run(server.port, client_ctx, CONNECTIONS)
    seconds = time.monotonic() - started
    # every connection has ended on the client side; the server closes its ends promptly
    wait_for(lambda: fd_count(pid) <= fd_before, timeout=30)
    fd_after, rss_after = fd_count(pid), rss_kb(pid)
    print(f"{CONNECTIONS} connections in {seconds:.1f}s: fds {fd_before} -> {fd_after} "
          f"(delta {fd_after - fd_before}), VmRSS {rss_before / 1024:.1f} MB -> {rss_after / 1024:.1f} MB "
          f"(delta {(rss_after - rss_before) / 1024:+.1f} MB)")
    assert all(answers[i] > 0 for i in range(0, CONNECTIONS, 5)), "an HTTPS request went unanswered"
    assert all(answers[i] > 0 for i in range(2, CONNECTIONS, 5)), "a Flash request went unanswered"
    assert rss_after - rss_before < RSS_BUDGET_KB
