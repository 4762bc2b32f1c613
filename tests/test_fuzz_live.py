"""Loopback fuzzing: random and damaged first bytes against a live monoport.

Real first bytes (a ClientHello, HTTP requests, PROXY v1/v2, the Flash
request) are cut, flipped, spliced and padded, or replaced by random bytes,
and sent on fresh connections, in clear and inside TLS. The count is
bounded and the seed fixed, so a failure replays. Afterwards the server
must still serve HTTPS and Socket.IO, and its log holds no traceback (the
``monoport`` fixture checks that for every test).
"""

from __future__ import annotations

import random
import time
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

from tests import corpus
import pytest

from tests.clients import https_session, sio_client, websocket_connect
from tests.test_fuzz import SEEDS

APP = ["--app", "tests.apps.echo_app:app"]
#: connections sent; about a quarter inside TLS
COUNT = 600
SEED = 20261127


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(0, 4)):
        at = rng.randint(0, len(out))
        op = rng.choice(["flip", "cut", "insert", "delete", "splice", "repeat"])
        if op == "flip" and at < len(out):
            out[at] = rng.randrange(256)
        elif op == "cut":
            del out[at:]
        elif op == "insert":
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op == "delete":
            del out[at : at + rng.randint(1, 16)]
        elif op == "splice":
            out[at:] = rng.choice(SEEDS)
        elif op == "repeat":
            out[at:at] = out[at:] * rng.randint(1, 3)
    return bytes(out)


def inputs(rng: random.Random) -> list[tuple[bytes, bool, bool]]:
    """(bytes, inside TLS, half-close after sending)"""
    cases = []
    for _ in range(COUNT):
        data = rng.randbytes(rng.randint(0, 200)) if rng.random() < 0.25 else mutate(rng, rng.choice(SEEDS))
        cases.append((data, rng.random() < 0.25, rng.random() < 0.5))
    return cases


def send(port: int, ctx: ssl.SSLContext, data: bytes, tls: bool, half_close: bool) -> int:
    """Send one case and read what comes back until the server closes (or 2 s: a raw Socket.IO
    session that likes its lines would stay open); return its size."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        if tls:
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(data)
        if half_close and not tls:
            sock.shutdown(socket.SHUT_WR)
        got = 0
        while True:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return got
            if not chunk:
                return got
            got += len(chunk)
    except (OSError, ssl.SSLError):
        return -1
    finally:
        sock.close()


def test_garbage_first_bytes_never_break_the_server(monoport, tls_args, tls_files, client_ctx):
    server = monoport(APP + tls_args + ["--trusted-proxy", "127.0.0.1", "--sniff-timeout", "0.5",
                                        "--handshake-timeout", "1", "--head-timeout", "1", "--keepalive-timeout", "1"])
    cases = inputs(random.Random(SEED))
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda case: send(server.port, client_ctx, *case), cases))
    print(f"{len(cases)} fuzzed connections ({sum(tls for _, tls, _ in cases)} inside TLS): "
          f"{sum(a > 0 for a in answers)} answered, {sum(a == 0 for a in answers)} closed silently, "
          f"{sum(a < 0 for a in answers)} reset or failed")
    assert server.proc.poll() is None
    session = https_session(tls_files["ca"])
    assert session.get(server.url + "/", timeout=10).text == "hello from flask"
    client = sio_client(server.url, tls_files["ca"], ["websocket"])
    try:
        assert client.call("echo", "still here", timeout=10) == "still here"
    finally:
        client.disconnect()
    polling = sio_client(server.url, tls_files["ca"], ["polling"])
    try:
        assert polling.call("echo", 1, timeout=10) == 1
    finally:
        polling.disconnect()
    assert corpus.FLASH  # the seeds include every protocol's real first bytes


@pytest.mark.parametrize("bad", ['42{not json', "42[]", "42{}", "425", '43["no ack id"', "4x", "47", "4/nsp"])
def test_malformed_socketio_packets_cost_one_line_each(monoport, tls_args, tls_files, client_ctx, bad):
    server = monoport(APP + tls_args)
    ws = websocket_connect(
        f"wss://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket", timeout=10,
        sslopt={"context": client_ctx, "server_hostname": "localhost"}, origin=server.url)
    try:
        assert ws.recv().startswith("0{")
        ws.send("40")
        assert ws.recv().startswith("40")
        ws.send(bad)
        ws.send('42["echo","after"]')
    finally:
        time.sleep(0.5)  # the server reads both packets before the close (a close frame may overtake them)
        ws.close()
    session = https_session(tls_files["ca"])
    assert session.get(server.url + "/", timeout=10).status_code == 200
    time.sleep(0.5)  # what the test proves: no traceback comes, even a moment later
    assert "Traceback" not in server.log()
