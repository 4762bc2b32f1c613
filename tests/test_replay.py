"""No byte is lost between sniffing and the stage: one test per way in, in-process over loopback TCP.

The rule lives in :class:`monoport.stream.Stream` (the one owner of the
replayed bytes): on a clear socket the sniffer only peeks and a stage
consumes exactly what it used; inside TLS the bytes read while sniffing stay
buffered for the stage. Each test sends bytes that arrive together with (or
right after) the ones the sniffer decided on, and checks that the stage saw
every one of them, in order.
"""

from __future__ import annotations

import json
import socket
import time

import gevent
import pytest
import socketio
from gevent import socket as gsocket

from monoport.stream import ClientGone, Silent, Stream
from monoport.termination import Termination
from monoport.wire import proxyproto
from monoport.wire.needmore import NEED_MORE
from tests.clients import RawSio
from tests.inproc import LIMIT, OneConnection, ResponseReader, certificates, request

BODY = bytes(range(256)) * 4  # every byte value, so a dropped or shifted one shows


def _exchange_two(sock, first_and_second: bytes):
    """Send two pipelined requests in one write; their two answers, and the reader (for what follows)."""
    sock.sendall(first_and_second)
    reader = ResponseReader(sock)
    return reader.next(), reader.next(), reader


PIPELINED = request("POST", "/first", BODY) + request("GET", "/second", headers=[("Connection", "close")])


def test_clear_http_head_sniffed_by_peek_reaches_the_app_with_its_body_and_a_pipelined_request(inproc):
    server = inproc()
    with server.serve() as served:
        first, second, reader = _exchange_two(served.client, PIPELINED)
        assert (first.status, first.body) == (200, b"POST /first 1024\n" + BODY)
        assert (second.status, second.body) == (200, b"GET /second 0\n")
        assert reader.at_eof()
        conn = served.finish()
    assert [(s.method, s.path, s.body) for s in server.app.seen] == [("POST", "/first", BODY), ("GET", "/second", b"")]
    assert conn.requests == 2
    assert conn.bytes_in == len(PIPELINED)  # every byte read once: peeks are not counted


def test_bytes_read_while_sniffing_inside_tls_are_replayed_to_the_handler(inproc, tls_files):
    server = inproc(certs=certificates(tls_files))
    with server.serve() as served:
        tls = served.tls(tls_files)
        # one TLS record carries the head, the body and the next request: the sniff reads them all
        first, second, _ = _exchange_two(tls, PIPELINED)
        assert (first.status, first.body) == (200, b"POST /first 1024\n" + BODY)
        assert (second.status, second.body) == (200, b"GET /second 0\n")
        conn = served.finish()
    assert [(s.method, s.body, s.scheme) for s in server.app.seen] == [("POST", BODY, "https"), ("GET", b"", "https")]
    assert conn.kind == "https" and conn.requests == 2


@pytest.mark.parametrize("version", [1, 2])
def test_exactly_the_proxy_header_is_consumed_and_the_request_after_it_is_whole(inproc, version):
    server = inproc("--trusted-proxy", "127.0.0.1/32")
    if version == 1:
        header = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n"
    else:
        header = proxyproto.build_v2(("203.0.113.7", 40000), ("192.0.2.1", 443))
    with server.serve() as served:
        first, second, _ = _exchange_two(served.client, header + PIPELINED)
        assert (first.status, first.body) == (200, b"POST /first 1024\n" + BODY)
        assert second.status == 200
        conn = served.finish()
    assert [(s.body, s.remote) for s in server.app.seen] == [(BODY, "203.0.113.7"), (b"", "203.0.113.7")]
    assert conn.client == ("203.0.113.7", 40000)


def test_a_flash_request_in_two_writes_gets_the_whole_policy(inproc):
    server = inproc()
    request_bytes = b"<policy-file-request/>\0"
    with server.serve() as served:
        served.client.sendall(request_bytes[:9])
        gevent.sleep(0.05)  # the sniffer sees a prefix that may still be Flash, and waits
        served.client.sendall(request_bytes[9:])
        got = _read_to_eof(served.client)
        conn = served.finish()
    assert got == server.services.flash_policy
    assert (conn.kind, conn.termination) == ("flash", Termination.SERVER_CLOSED)


def test_a_flash_request_inside_tls_is_taken_from_the_sniffed_bytes(inproc, tls_files):
    server = inproc(certs=certificates(tls_files))
    with server.serve() as served:
        tls = served.tls(tls_files)
        tls.sendall(b"<policy-file-request/>\0")
        got = _read_to_eof(tls)
        conn = served.finish()
    assert got == server.services.flash_policy and conn.kind == "flash-tls"


RAW = b"\x00\x01raw bytes that are neither HTTP nor TLS\n" + BODY


@pytest.fixture
def backend():
    # the --raw HOST:PORT backend: keeps what arrives and answers with its length
    one = OneConnection(lambda got: len(got) >= len(RAW), lambda got: f"got {len(got)}".encode())
    yield one
    one.close()




@pytest.mark.parametrize("secure", [False, True], ids=["clear", "tls"])
def test_every_raw_byte_reaches_the_raw_backend_in_order_sniffed_prefix_first(inproc, backend, tls_files, secure):
    server = inproc("--raw", "{}:{}".format(*backend.address), certs=certificates(tls_files) if secure else None)
    with server.serve() as served:
        sock = served.tls(tls_files) if secure else served.client
        sock.sendall(RAW[:5])  # decided on these: not a prefix of any signature
        gevent.sleep(0.05)
        sock.sendall(RAW[5:])
        assert _read_to_eof(sock) == f"got {len(RAW)}".encode()
        sock.shutdown(socket.SHUT_WR)  # the backend closed; the client's close ends the splice
        conn = served.finish()
    assert backend.received == RAW
    assert conn.kind == ("raw-tls" if secure else "raw")


def _read_to_eof(sock) -> bytes:
    chunks = []
    while True:  # bounded: the socket's timeout, and the server closes
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@pytest.fixture
def sio():
    server = socketio.Server(async_mode="gevent")

    @server.on("echo")
    def echo(sid, data):
        return data

    yield server
    server.eio.shutdown()


@pytest.mark.parametrize("secure", [False, True], ids=["clear", "tls"])
def test_raw_socketio_lines_sent_before_the_open_packet_are_all_delivered(inproc, sio, tls_files, secure):
    server = inproc("--raw", "sio", sio=sio, certs=certificates(tls_files) if secure else None)
    payload = "é" + "x" * 3000
    with server.serve() as served:
        sock = served.tls(tls_files) if secure else served.client
        # the connect and a first event in the bytes that are sniffed; a second one after
        sock.sendall(b"40\n421" + json.dumps(["echo", payload]).encode() + b"\n")
        reader = RawSio.over(sock)
        assert reader.line().startswith("0{")
        assert reader.line().startswith("40{")
        assert json.loads(reader.line()[3:]) == [payload]  # 431[...]
        sock.sendall(b'422["echo","second"]\n')
        assert reader.line() == '432["second"]'
        sock.close()
        conn = served.finish()
    assert conn.termination is Termination.CLIENT_CLOSED
    assert conn.detail.endswith("3 lines in, 4 out, client closed")


@pytest.mark.parametrize("secure", [False, True], ids=["clear-behind-proxy-v1", "tls"])
def test_a_request_written_one_byte_at_a_time_is_served_whole(inproc, tls_files, secure):
    server = inproc("--trusted-proxy", "127.0.0.1/32", certs=certificates(tls_files) if secure else None)
    data = request("POST", "/slowly", b"one byte at a time", headers=[("Connection", "close")])
    if not secure:
        data = b"PROXY TCP4 203.0.113.9 192.0.2.1 40000 80\r\n" + data
    with server.serve() as served:
        sock = served.tls(tls_files) if secure else served.client
        for i in range(len(data)):  # bounded: one write per byte (a TLS record each, inside TLS)
            sock.sendall(data[i:i + 1])
            gevent.sleep(0.002)
        response = ResponseReader(sock).next()
        served.finish()
    assert (response.status, response.body) == (200, b"POST /slowly 18\none byte at a time")
    assert [(s.body, s.remote) for s in server.app.seen] == [
        (b"one byte at a time", "127.0.0.1" if secure else "203.0.113.9")]


# -- Stream, the owner of the replayed bytes ----------------------------------------------------
@pytest.fixture
def pair():
    a, b = gsocket.socketpair()
    a.settimeout(LIMIT)
    yield a, b
    a.close()
    b.close()


def _line(buf):
    """A parser that decides at the first LF: the line."""
    end = bytes(buf).find(b"\n")
    return NEED_MORE if end < 0 else bytes(buf[:end + 1])


def test_read_until_returns_when_the_parser_decides_and_leaves_every_byte_buffered(pair):
    near, far = pair
    stream = Stream(near)
    far.sendall(b"first line\nand what follows")
    assert stream.read_until(_line, _soon()) == b"first line\n"
    assert stream.buffered() == b"first line\nand what follows"
    far.sendall(b" later\n")
    assert stream.read(len(b"first line\nand what follows later\n")) == b"first line\nand what follows later\n"


def test_read_until_raises_silent_with_the_bytes_seen_when_the_deadline_passes(pair):
    near, far = pair
    stream = Stream(near)
    far.sendall(b"no end of line")
    with pytest.raises(Silent) as caught:
        stream.read_until(_line, time.monotonic() + 0.2)
    assert caught.value.args[0] == b"no end of line"
    assert stream.buffered() == b"no end of line"  # nothing lost to the timeout


@pytest.mark.parametrize("sent, partial", [(b"", False), (b"half a li", True)])
def test_read_until_raises_client_gone_at_eof_saying_whether_it_was_mid_message(pair, sent, partial):
    near, far = pair
    stream = Stream(near)
    far.sendall(sent)
    far.close()
    with pytest.raises(ClientGone) as caught:
        stream.read_until(_line, _soon())
    assert caught.value.partial is partial


def test_peek_until_consumes_nothing_and_consume_takes_exactly_n(pair):
    near, far = pair
    stream = Stream(near, peekable=near)
    far.sendall(b"HEAD")
    gevent.spawn_later(0.05, far.sendall, b"ER:rest")
    assert stream.peek_until(lambda data: NEED_MORE if b":" not in data else data.index(b":"), _soon(), 64) == 6
    assert stream.peek_available(64) == b"HEADER:rest"  # still all in the kernel
    assert stream.consume(7) == b"HEADER:"
    assert near.recv(64) == b"rest"


def test_consume_takes_buffered_bytes_first_then_exactly_the_rest_from_the_socket(pair):
    near, far = pair
    stream = Stream(near)  # inside TLS: no peeking, the sniff read into the buffer
    far.sendall(b"abc")
    stream.read_until(lambda buf: len(buf) if len(buf) >= 3 else NEED_MORE, _soon())
    far.sendall(b"defgh")
    assert stream.consume(5) == b"abcde"
    assert stream.take_all() == b""
    assert near.recv(64) == b"fgh"


def _soon() -> float:
    return time.monotonic() + LIMIT
