"""The balancer's forwarding in-process: peers are local listening sockets the test controls.

This instance is full, so an HTTP request spills over to a peer: the peer
must receive the PROXY v2 header (the real client, our id and cluster) and
then every byte the client sent, the head already read here included; a
peer that answers "full" (503 with X-Monoport-Full) or closes before
answering is skipped and the next one gets the very same bytes.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from monoport.forwarding import FULL_HEADER
from monoport.termination import Termination
from monoport.wire import proxyproto
from monoport.wire.needmore import NEED_MORE
from tests.inproc import OneConnection, ResponseReader, certificates, request, wait_until

BODY = bytes(range(256)) * 8
REQUEST = request("POST", "/spilled", BODY)


class PeerStub(OneConnection):
    """A peer's listener taking one connection: the PROXY header and the request after it, then an answer
    as ``mode`` says (``ok``: 200 naming itself, ``full``: the full 503, ``close``: nothing)."""

    def __init__(self, name: str, mode: str) -> None:
        self.name, self.mode = name, mode
        super().__init__(lambda got: len(self.after_header(got)[1]) >= len(REQUEST), self.reply)

    @staticmethod
    def after_header(data: bytes) -> tuple[proxyproto.ProxyHeader | None, bytes]:
        parsed = proxyproto.parse(data) if data else NEED_MORE
        if parsed is NEED_MORE:
            return None, b""
        header, consumed = parsed
        return header, data[consumed:]

    @property
    def header(self) -> proxyproto.ProxyHeader | None:
        return self.after_header(self.received)[0]

    @property
    def request(self) -> bytes:
        return self.after_header(self.received)[1]

    def reply(self, received: bytes) -> bytes:
        if self.mode == "ok":
            body = f"served by {self.name}".encode()
            return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        if self.mode == "full":
            return (f"HTTP/1.1 503 Service Unavailable\r\n{FULL_HEADER}: {self.name}\r\n"
                    "Content-Length: 0\r\n\r\n").encode()
        return b""


@pytest.fixture
def peers():
    made: list[PeerStub] = []

    def make(*modes: str) -> list[PeerStub]:
        for n, mode in enumerate(modes):
            made.append(PeerStub(f"peer{n}", mode))
        return made

    yield make
    for stub in made:
        stub.close()


def full_instance_with(inproc, stubs: list[PeerStub], *flags: str, **parts):
    """An in-process instance with no room of its own, whose peers are ``stubs`` (the first the emptiest)."""
    server = inproc(*flags, **parts)
    balancer = server.services.balancer
    balancer.max_conns = 0  # this instance is full: every request spills over
    for n, stub in enumerate(stubs):
        # as --peer does (the flag itself needs --redis, which this process has no use for)
        peer = balancer.peers.add(stub.address, static=True)
        for _ in range(2):  # passes in a row mark it up (peers.RISE): what the health poller records
            balancer.peers.record(peer, {"id": stub.name, "cluster": "test", "conns": 0,
                                         "max_conns": 100 - n}, None)
        assert peer.up
    return server


@pytest.mark.parametrize("secure", [False, True], ids=["clear", "tls"])
def test_a_spilled_request_reaches_the_peer_as_a_proxy_v2_header_then_every_byte(inproc, peers, tls_files, secure):
    (stub,) = peers("ok")
    server = full_instance_with(inproc, [stub], certs=certificates(tls_files) if secure else None)
    with server.serve() as served:
        sock = served.tls(tls_files) if secure else served.client
        sock.sendall(REQUEST)
        response = ResponseReader(sock).next()
        conn = served.finish()
    assert (response.status, response.body) == (200, b"served by peer0")
    assert stub.request == REQUEST
    header = stub.header
    assert header is not None and header.proxied
    assert (header.source, header.forwarded_by, header.cluster) == (conn.client, "here", "test")
    assert (header.tls, header.authority) == ((True, "localhost") if secure else (False, None))
    assert server.services.balancer.forwarded_out == 1 and not server.app.seen
    assert [t for _, t in server.stats.endings] == [conn.termination]


@pytest.mark.parametrize("first_mode, then", [("full", "marked full"), ("close", "marked down")])
def test_a_peer_that_does_not_take_the_connection_is_skipped_and_the_next_gets_the_same_bytes(
        inproc, peers, first_mode, then):
    refusing, taking = peers(first_mode, "ok")
    server = full_instance_with(inproc, [refusing, taking])
    table = server.services.balancer.peers
    with server.serve() as served:
        served.client.sendall(REQUEST)
        response = ResponseReader(served.client).next()
        served.finish()
    assert (response.status, response.body) == (200, b"served by peer1")
    assert refusing.request == taking.request == REQUEST
    skipped = table.peers[refusing.address]
    if then == "marked full":
        assert skipped.up and skipped.free <= 0
    else:
        assert not skipped.up and skipped.last_error == "closed before answering"
    assert table.peers[taking.address].forwarded == 1 and skipped.forwarded == 0
    assert len(server.stats.endings) == 1


def test_when_no_peer_takes_the_connection_the_client_gets_503_after_the_queue_timeout(inproc, peers):
    stubs = peers("close", "full")
    server = full_instance_with(inproc, stubs, "--queue-timeout", "0.3")
    with server.serve() as served:
        served.client.sendall(REQUEST)
        response = ResponseReader(served.client).next()
        served.finish()
    assert response.status == 503 and FULL_HEADER.lower() not in response.headers
    assert [t for _, t in server.stats.endings] == [Termination.SERVER_FULL]


def test_a_forward_between_two_instances_gives_the_app_the_real_client_and_its_scheme(inproc, tls_files):
    there = inproc("--instance-id", "there")
    with there.listen("peer") as peer_listener:
        stub = SimpleNamespace(address=peer_listener.address, name="there")
        here = full_instance_with(inproc, [stub], certs=certificates(tls_files))
        with here.serve() as served:
            tls = served.tls(tls_files)
            tls.sendall(request("POST", "/spilled", BODY, headers=[("Connection", "close")]))
            response = ResponseReader(tls).next()
            conn = served.finish()
        wait_until(lambda: peer_listener.served and all(g.ready() for g in peer_listener.served),
                   "the peer's side of the forward ended")
    assert (response.status, response.body) == (200, b"POST /spilled 2048\n" + BODY)
    (seen,) = there.app.seen
    assert (seen.body, seen.remote, seen.scheme) == (BODY, conn.client[0], "https")
    (forwarded,) = peer_listener.conns
    assert (forwarded.client, forwarded.forwarded_by) == (conn.client, "here")
    assert [t for _, t in there.stats.endings] == [Termination.SERVER_CLOSED]
    assert len(here.stats.endings) == 1 and here.services.balancer.forwarded_out == 1
