"""The forwarder on real loopback sockets: prefix replay, half-closes, big
transfers, resets, idle timeouts, TLS on the client side (recv/sendall path)
and both copy paths (os.splice and the portable one)."""

from __future__ import annotations

import hashlib
import os
import socket
import struct

import gevent
import pytest
from gevent import socket as gsocket
from gevent import ssl as gssl

from monoport import splice as splice_mod
from tests.clients import closed_after_the_test, read_to_eof
from monoport.errors import PeerUnavailable
from monoport.splice import dial, splice

#: every test is bounded; the machine is shared and slow
LIMIT = 60


@pytest.fixture(params=["zero-copy", "portable"])
def copy_path(request, monkeypatch):
    if request.param == "zero-copy":
        if not hasattr(os, "splice"):
            pytest.fail("os.splice is missing: this platform cannot run the zero-copy path")
    else:
        monkeypatch.setattr(splice_mod, "HAVE_SPLICE", False)
    return request.param


def tcp_pair():
    """Two connected gevent TCP sockets on 127.0.0.1 (the near end first)."""
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    near = gsocket.create_connection(listener.getsockname())
    far, _ = listener.accept()
    listener.close()
    return closed_after_the_test(near), closed_after_the_test(far)


def read_all(sock, chunk=65536) -> bytes:
    parts = []
    while True:
        data = sock.recv(chunk)
        if not data:
            return b"".join(parts)
        parts.append(data)


def wiring():
    """client app <-> [client side | splice | backend side] <-> backend app."""
    client_app, client_side = tcp_pair()
    backend_side, backend_app = tcp_pair()
    return client_app, client_side, backend_side, backend_app


def test_prefix_first_then_half_close_both_ways(copy_path):
    client_app, client_side, backend_side, backend_app = wiring()
    with gevent.Timeout(LIMIT):
        job = gevent.spawn(splice, client_side, backend_side, client_prefix=b"HELLO ")
        client_app.sendall(b"world")
        client_app.shutdown(socket.SHUT_WR)
        # The backend sees the prefix, then the client's bytes, then EOF...
        assert read_all(backend_app) == b"HELLO world"
        # ...and can still answer over the half-closed connection.
        backend_app.sendall(b"reply")
        backend_app.close()
        assert read_all(client_app) == b"reply"
        result = job.get()
    assert (result.bytes_up, result.bytes_down, result.closed_by) == (11, 5, "client")


def test_backend_half_close_keeps_client_direction_open(copy_path):
    client_app, client_side, backend_side, backend_app = wiring()
    with gevent.Timeout(LIMIT):
        job = gevent.spawn(splice, client_side, backend_side)
        backend_app.sendall(b"banner\n")
        backend_app.shutdown(socket.SHUT_WR)
        assert read_all(client_app) == b"banner\n"
        client_app.sendall(b"late bytes")
        client_app.shutdown(socket.SHUT_WR)
        assert read_all(backend_app) == b"late bytes"
        result = job.get()
    assert result.closed_by == "backend"
    assert (result.bytes_up, result.bytes_down) == (10, 7)


def test_backend_eof_ends_an_http_forward_while_the_client_keeps_its_end_open(copy_path):
    client_app, client_side, backend_side, backend_app = wiring()
    with gevent.Timeout(LIMIT):
        job = gevent.spawn(splice, client_side, backend_side, backend_eof_ends=True)
        backend_app.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        backend_app.close()
        # the client never closes (an idle keep-alive pool): the splice is over anyway
        result = job.get()
        assert read_all(client_app).startswith(b"HTTP/1.1 200 OK")
    assert result.closed_by == "backend"


def test_large_transfer_both_directions_at_once(copy_path):
    size = 24 * 1024 * 1024
    client_app, client_side, backend_side, backend_app = wiring()

    def produce(sock, seed):
        digest = hashlib.sha256()
        block = hashlib.sha256(seed).digest() * 2048  # 64 KiB
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)] + struct.pack("!Q", sent)
            sock.sendall(piece)
            digest.update(piece)
            sent += len(piece)
        sock.shutdown(socket.SHUT_WR)
        return digest.hexdigest(), sent

    def consume(sock):
        digest = hashlib.sha256()
        n = 0
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return digest.hexdigest(), n
            digest.update(data)
            n += len(data)

    with gevent.Timeout(LIMIT * 2):
        job = gevent.spawn(splice, client_side, backend_side)
        jobs = [gevent.spawn(produce, client_app, b"up"), gevent.spawn(produce, backend_app, b"down"),
                gevent.spawn(consume, backend_app), gevent.spawn(consume, client_app)]
        up_sent, down_sent, up_got, down_got = [j.get() for j in jobs]
        result = job.get()
    assert up_got == up_sent and down_got == down_sent
    assert (result.bytes_up, result.bytes_down) == (up_sent[1], down_sent[1])


def _reset_midstream(breaking: str):
    """Splice, move a few bytes, then reset the ``breaking`` side ("client" or "backend")."""
    client_app, client_side, backend_side, backend_app = wiring()
    breaker, survivor = (client_app, backend_app) if breaking == "client" else (backend_app, client_app)
    with gevent.Timeout(LIMIT):
        job = gevent.spawn(splice, client_side, backend_side)
        breaker.sendall(b"partial")
        assert survivor.recv(100) == b"partial"
        breaker.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        breaker.close()  # RST
        gevent.sleep(0.1)  # the reset reaches the spliced side first: the write below must meet it
        survivor.sendall(b"x" * 100000)  # into the reset side: EPIPE/ECONNRESET inside splice
        return job.get()


def test_client_reset_is_a_result_not_an_exception(copy_path):
    result = _reset_midstream("client")
    assert (result.closed_by, result.broken_by) == ("error", "client")
    assert result.bytes_up == 7
    assert splice_mod.termination_of(result) == "client_aborted"


def test_a_backend_that_breaks_midstream_is_told_apart_from_the_client(copy_path):
    result = _reset_midstream("backend")  # a peer killed mid-forward
    assert (result.closed_by, result.broken_by) == ("error", "backend")
    assert result.bytes_down == 7
    assert splice_mod.termination_of(result) == "peer_down"
    assert splice_mod.describe_end(result).startswith("broken by the backend")


def test_idle_timeout_ends_both_directions(copy_path):
    client_app, client_side, backend_side, backend_app = wiring()
    with gevent.Timeout(LIMIT):
        result = splice(client_side, backend_side, idle_timeout=0.3)
    assert result.closed_by == "timeout"


def test_traffic_in_one_direction_keeps_an_idle_timeout_away(copy_path):
    client_app, client_side, backend_side, backend_app = wiring()

    def drip():
        for _ in range(8):
            backend_app.sendall(b".")
            gevent.sleep(0.1)
        backend_app.shutdown(socket.SHUT_WR)
        client_app.shutdown(socket.SHUT_WR)

    with gevent.Timeout(LIMIT):
        dripper = gevent.spawn(drip)
        result = splice(client_side, backend_side, idle_timeout=0.4)
        dripper.get()
    assert result.closed_by in ("backend", "client")
    assert result.bytes_down == 8


def test_tls_client_uses_the_portable_path(tls_files):
    """The client side is a TLS socket: bytes are decrypted in user space."""
    server_ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tls_files["localhost"], tls_files["localhost_key"])
    client_ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(tls_files["ca"])
    client_raw, server_raw = tcp_pair()
    backend_side, backend_app = tcp_pair()
    with gevent.Timeout(LIMIT):
        handshake = gevent.spawn(server_ctx.wrap_socket, server_raw, server_side=True)
        client_app = closed_after_the_test(client_ctx.wrap_socket(client_raw, server_hostname="localhost"))
        client_side = closed_after_the_test(handshake.get())
        job = gevent.spawn(splice, client_side, backend_side, client_prefix=b"already read|")
        client_app.sendall(b"secret" * 10000)
        expected = b"already read|" + b"secret" * 10000
        got = b""
        while len(got) < len(expected):
            got += backend_app.recv(65536)
        assert got == expected
        backend_app.sendall(b"answer")
        backend_app.shutdown(socket.SHUT_WR)
        data = read_to_eof(client_app)
        assert data == b"answer"  # the backend's EOF reached the TLS client
        client_app.close()
        client_raw.close()
        result = job.get()
        # An OpenSSL client answers EOF-without-close_notify with an alert when
        # it closes, so the client direction may end as an error; the result
        # still names the backend, whose EOF came first.
        backend_side.close()
        assert read_all(backend_app) == b""
    assert (result.bytes_up, result.bytes_down, result.closed_by) == (len(expected), 6, "backend")


def test_dial_sets_socket_options_and_reports_refusal():
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sock = dial(listener.getsockname(), timeout=5)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        assert sock.gettimeout() is None
    finally:
        sock.close()
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(PeerUnavailable, match=f"127.0.0.1:{port}"):
        dial(("127.0.0.1", port), timeout=5)
