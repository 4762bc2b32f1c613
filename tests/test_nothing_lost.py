"""Nothing lost: every byte a client sends arrives, intact and in order.

WebSocket messages from 1 byte to 1 MB (text and binary) echoed through
python-socketio over wss; 100 MB each way through ``--raw HOST:PORT``, in
clear and inside TLS, compared by sha256. The payload never repeats, so a
reordered or duplicated block would change the hash.
"""

from __future__ import annotations

import hashlib
import random
import socket
import ssl
import threading
import time

import pytest

from tests.clients import sio_client
from tests.test_raw_forward import EchoBackend

APP = ["--app", "tests.apps.echo_app:app"]
SIZES = [1, 2, 10, 125, 126, 127, 1000, 65535, 65536, 65537, 100_000, 500_000, 1 << 20]


def test_websocket_messages_from_1_byte_to_1_mb_arrive_intact_and_in_order(monoport, tls_args, tls_files):
    # 1 MB of text is up to 12 MB of JSON (non-ASCII is \\u-escaped): over the default 1 000 000
    server = monoport(APP + tls_args + ["--max-payload", str(16 << 20)])
    client = sio_client(server.url, tls_files["ca"], ["websocket"])
    rng = random.Random(7)
    sent: list[str | bytes] = []
    for size in SIZES:
        sent.append("".join(rng.choice("abcdefghijé€😀") for _ in range(size))[:size])
        sent.append(rng.randbytes(size))
    received: dict[int, str | bytes] = {}
    done = threading.Event()

    def on_replayed(index, data):
        received[index] = data
        if len(received) == len(sent):
            done.set()

    client.on("replayed", on_replayed)
    try:
        started = time.monotonic()
        for index, message in enumerate(sent):  # pipelined: ordering is the transport's job
            client.emit("collect", (index, message))
        arrival = client.call("replay", timeout=60)
        assert done.wait(60), f"{len(received)} of {len(sent)} messages came back"
        print(f"{len(sent)} WebSocket messages, {sum(map(len, sent))} characters/bytes, "
              f"up and back in {time.monotonic() - started:.2f}s")
    finally:
        client.disconnect()
    # up: the server saw them in the order they were sent
    assert arrival == list(range(len(sent)))
    # and back: each one intact (the python-socketio client runs each event handler in
    # its own thread, so the order of the callbacks says nothing about the wire)
    for index, want in enumerate(sent):
        got = received[index]
        assert type(got) is type(want) and got == want, f"message {index} ({len(want)}) differs"


MB = 1 << 20
TOTAL = 100 * MB


def stream_blocks(seed: int):
    """TOTAL bytes that never repeat; the first is NUL so the sniffer calls it raw at once."""
    rng = random.Random(seed)
    for i in range(TOTAL // MB):
        block = rng.randbytes(MB)
        yield b"\x00" + block[1:] if i == 0 else block


@pytest.mark.slow
@pytest.mark.parametrize("use_tls", [False, True], ids=["clear", "tls"])
def test_100_mb_through_a_raw_forward_keep_their_sha256(monoport, tls_args, client_ctx, use_tls):
    echo = EchoBackend()
    server = monoport(APP + tls_args + ["--raw", f"127.0.0.1:{echo.port}"])
    sent, got = hashlib.sha256(), hashlib.sha256()
    received = 0
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock = client_ctx.wrap_socket(raw, server_hostname="localhost") if use_tls else raw
    errors: list[BaseException] = []
    started = time.monotonic()
    try:
        def read_until(count: int) -> None:
            nonlocal received
            while received < count:
                data = sock.recv(MB)
                if not data:
                    break
                got.update(data)
                received += len(data)

        if use_tls:
            # One OpenSSL connection must not be read and written by two threads at
            # once (the client itself then sends corrupt records: bad record MAC),
            # so over TLS the client goes in lockstep, a block up, then its echo.
            for n, block in enumerate(stream_blocks(11), 1):
                sent.update(block)
                sock.sendall(block)
                read_until(n * MB)
        else:
            def writer() -> None:
                try:
                    for block in stream_blocks(11):
                        sent.update(block)
                        sock.sendall(block)
                    sock.shutdown(socket.SHUT_WR)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            thread = threading.Thread(target=writer)
            thread.start()
            read_until(TOTAL)
            thread.join(60)
    finally:
        sock.close()
        echo.close()
    seconds = time.monotonic() - started
    print(f"raw forward ({'tls' if use_tls else 'clear'}): {TOTAL // MB} MB up and back in {seconds:.1f}s, "
          f"sha256 {got.hexdigest()[:16]}")
    assert not errors, errors
    assert received == TOTAL
    assert got.hexdigest() == sent.hexdigest()
