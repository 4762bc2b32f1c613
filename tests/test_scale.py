"""Scale-out end to end: three real instances on loopback, a real redis-server, real clients."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import socketserver

import pytest
import requests
import socketio

from monoport.wire.sniff import PROXY_V2_SIGNATURE
from tests.clients import RawSio, closed_without_answer, https_session, serialized_tls_context
from tests.cluster import APP, held_connection, https_get, peer_health, start_cluster
from tests.conftest import wait_for


@pytest.fixture
def trio(redis_url, monoport, tls_args):
    return start_cluster(monoport, redis_url, ["a", "b", "c"], tls_args + ["--max-conns", "2"])


def test_clients_beyond_capacity_are_served_by_peers(trio, client_ctx):
    a = trio[0]
    held = [held_connection(a.port, client_ctx) for _ in range(2)]
    assert [c.served_by for c in held] == ["a", "a"]
    served = []
    for _ in range(4):
        status, _, body = https_get(a.port, "/environ", client_ctx)
        assert status == 200
        env = json.loads(body)
        served.append(env["monoport.instance_id"])
        # the peer sees the real client and its TLS, and who forwarded it
        assert env["monoport.forwarded_by"] == "a"
        assert env["wsgi.url_scheme"] == "https"
        assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert set(served) <= {"b", "c"}
    for conn in held:
        conn.close()
    assert "forwarded to b@" in a.log() or "forwarded to c@" in a.log()


class RotatingSession(requests.Session):
    """Sends each request to the next instance's port: sessions must route themselves."""

    def __init__(self, ports: list[int], ca: str) -> None:
        super().__init__()
        self.ports = ports
        self.verify = ca
        self.trust_env = False
        self.used: list[int] = []
        self.lock = threading.Lock()

    def request(self, method, url, *args, **kwargs):
        with self.lock:
            port = self.ports[len(self.used) % len(self.ports)]
            self.used.append(port)
        parts = urlsplit(url)
        url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))
        return super().request(method, url, *args, **kwargs)


def test_polling_client_keeps_its_session_whichever_instance_it_reaches(redis_url, monoport, tls_args, tls_files):
    servers = start_cluster(monoport, redis_url, ["a", "b", "c"], tls_args + ["--max-conns", "20"])
    session = RotatingSession([s.port for s in servers], tls_files["ca"])
    client = socketio.Client(http_session=session, reconnection=False)
    client.connect(servers[0].url, transports=["polling"], wait_timeout=10)
    try:
        owner = client.eio.sid.partition(".")[0]
        for n in range(6):
            assert client.call("echo", {"n": n}, timeout=10) == {"n": n}
        assert client.call("whoami", timeout=10)["instance"] == owner
        assert len(set(session.used)) == 3  # every instance got some of its requests
        assert client.connected and client.eio.state == "connected"
    finally:
        client.disconnect()
        session.close()
    others = [s for s in servers if s.instance_id != owner]
    wait_for(lambda: any(f"forwarded to {owner}@" in s.log() for s in others), timeout=15)


def test_raw_socketio_clients_beyond_capacity_are_served_by_peers(trio, client_ctx):
    a = trio[0]
    held = [held_connection(a.port, client_ctx) for _ in range(2)]
    try:
        for tls in (None, client_ctx):
            raw = RawSio(a.port, tls=tls)  # sends "40" at once: decided at sniff time
            try:
                assert raw.open["sid"].split(".")[0] in ("b", "c")  # a peer's session
                raw.send('421["echo","raw via peer"]')
                assert raw.expect(lambda line: line.startswith("431")) == '431["raw via peer"]'
            finally:
                raw.sock.close()
    finally:
        for conn in held:
            conn.close()


def test_keep_alive_connection_whose_next_request_belongs_to_another_instance(trio, client_ctx):
    a, b, _ = trio
    status, _, body = https_get(a.port, "/socket.io/?EIO=4&transport=polling", client_ctx)
    assert status == 200
    sid = json.loads(body[1:])["sid"]
    assert sid.startswith("a.")
    conn = http.client.HTTPSConnection("127.0.0.1", b.port, context=client_ctx, timeout=10)
    try:
        conn.request("GET", "/environ")  # served by b itself
        response = conn.getresponse()
        assert json.loads(response.read())["monoport.instance_id"] == "b"
        conn.request("POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", body=b"40",
                     headers={"Content-Type": "text/plain;charset=UTF-8"})
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"ok")
        conn.request("GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}")
        response = conn.getresponse()
        assert response.status == 200 and response.read().startswith(b"40{")  # namespace connected, at a
    finally:
        conn.close()


def wss_options(tls_files):
    """websocket-client options that keep the threaded client's TLS socket single-file."""
    return {"sslopt": {"context": serialized_tls_context(tls_files["ca"])}}


def test_room_emit_reaches_members_on_every_instance(trio, tls_files):
    clients, got = [], []
    lock = threading.Lock()
    try:
        for server in trio:
            http = https_session(tls_files["ca"])
            client = socketio.Client(http_session=http, reconnection=False, websocket_extra_options=wss_options(tls_files))
            client.on("room_message", lambda data, name=server.instance_id: (lock.acquire(), got.append(name),
                                                                               lock.release()))
            client.connect(server.url, transports=["websocket"], wait_timeout=10)
            assert client.call("join", "lobby", timeout=10) == "joined"
            assert client.call("whoami", timeout=10)["instance"] == server.instance_id
            clients.append(client)
        assert clients[1].call("to_room", ("lobby", "hi all"), timeout=10) == "sent"
        wait_for(lambda: len(got) >= 3, timeout=15)
        time.sleep(0.3)  # what the test proves: no second copy arrives meanwhile
        assert sorted(got) == ["a", "b", "c"]  # once everywhere
    finally:
        for client in clients:
            client.disconnect()


def test_room_emits_survive_a_redis_restart(redis_server, monoport, tls_args, tls_files):
    servers = start_cluster(monoport, redis_server.url, ["a", "b"], tls_args)
    got: list[tuple[str, str]] = []
    clients = []
    try:
        for server in servers:
            client = socketio.Client(http_session=https_session(tls_files["ca"]), reconnection=False,
                                     websocket_extra_options=wss_options(tls_files))
            client.on("room_message", lambda data, name=server.instance_id: got.append((name, data)))
            client.connect(server.url, transports=["websocket"], wait_timeout=10)
            assert client.call("join", "lobby", timeout=10) == "joined"
            clients.append(client)
        redis_server.stop()
        redis_server.start()  # same port, empty: every subscription is gone
        # python-socketio's listener reconnects with a back-off; emit until both hear it
        def delivered() -> bool:
            try:
                clients[0].call("to_room", ("lobby", "after restart"), timeout=10)
            except socketio.exceptions.TimeoutError:
                return False  # the emitting handler waited on a Redis that was not back yet
            time.sleep(0.5)
            return {name for name, data in got if data == "after restart"} == {"a", "b"}

        wait_for(delivered, timeout=30, interval=0.5)
    finally:
        for client in clients:
            client.disconnect()


def test_killed_peer_is_skipped_and_no_unsent_request_fails(redis_url, monoport, tls_args, client_ctx):
    a, b, c = start_cluster(monoport, redis_url, ["a", "b", "c"], tls_args + ["--max-conns", "1"])
    held = held_connection(a.port, client_ctx)  # a is now full: everything spills to b or c
    try:
        b.stop(signal.SIGKILL)
        killed = time.monotonic()
        served = []
        while time.monotonic() - killed < 3.0:
            status, _, body = https_get(a.port, "/environ", client_ctx)
            assert status == 200, body
            served.append(json.loads(body)["monoport.instance_id"])
        assert served and set(served) == {"c"}
        assert "peer b@" in a.log() and "down" in a.log()
    finally:
        held.close()


class FullPeer(socketserver.ThreadingTCPServer):
    """A stand-in peer that looks roomy in its health answer and refuses every forward as full."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), self.Handler)
        self.refused = 0
        self.bad = 0  # connections that did not begin with a PROXY v2 header

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                data += chunk
            if not data.startswith(PROXY_V2_SIGNATURE):
                self.server.bad += 1
                return
            if b"GET /monoport/health " in data:
                body = json.dumps({"id": "z", "cluster": APP[1], "conns": 0, "max_conns": 100,
                                   "draining": False}).encode()
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                self.server.refused += 1
                self.request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nX-Monoport-Full: z\r\n"
                                     b"Content-Length: 0\r\nConnection: close\r\n\r\n")


def test_a_peer_that_answers_full_is_skipped_for_the_next(redis_url, monoport, tls_args, client_ctx):
    full = FullPeer()
    threading.Thread(target=full.serve_forever, daemon=True).start()
    try:
        # z (the roomiest by its health answer) is tried first, refuses, and c takes the request
        a, c = start_cluster(monoport, redis_url, ["a", "c"],
                             tls_args + ["--max-conns", "1", "--peer", f"127.0.0.1:{full.server_address[1]}"])
        a.wait_log("peer z@", timeout=10)
        wait_for(lambda: " up (conns 0/100)" in a.log(), timeout=10)
        held = held_connection(a.port, client_ctx)
        try:
            for _ in range(5):
                status, _, body = https_get(a.port, "/environ", client_ctx)
                assert status == 200, body
                assert json.loads(body)["monoport.instance_id"] == "c"
        finally:
            held.close()
        assert full.refused >= 1 and full.bad == 0
        assert "not taken (full); trying the next peer" in a.log()
    finally:
        full.shutdown()
        full.server_close()


def test_untrusted_proxy_headers_are_rejected_and_spoofed_forwarded_for_ignored(trio, client_ctx):
    import socket

    from monoport.wire import proxyproto

    a, b, _ = trio
    header = proxyproto.build_v2(("203.0.113.9", 4242), ("127.0.0.1", a.port))
    # public port: loopback is not a trusted proxy by default
    with socket.create_connection(("127.0.0.1", a.port), timeout=5) as sock:
        sock.sendall(header + b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_without_answer(sock)
    a.wait_log("PROXY header from untrusted 127.0.0.1")
    # the peer listener wants PROXY v2 first, even from loopback
    with socket.create_connection(("127.0.0.1", b.peer_port), timeout=5) as sock:
        sock.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_without_answer(sock)
    b.wait_log("does not begin with a PROXY v2 header")
    # spoofed X-Forwarded-For changes nothing, served here or forwarded
    held = [held_connection(a.port, client_ctx) for _ in range(2)]
    try:
        for _ in range(2):
            status, _, body = https_get(a.port, "/environ", client_ctx, {"X-Forwarded-For": "6.6.6.6",
                                                                         "X-Forwarded-Proto": "http"})
            env = json.loads(body)
            assert env["REMOTE_ADDR"] == "127.0.0.1" and env["HTTP_X_FORWARDED_FOR"] is None
            assert env["wsgi.url_scheme"] == "https" and env["monoport.forwarded_by"] == "a"
    finally:
        for conn in held:
            conn.close()


def test_peer_listener_refuses_a_source_that_is_not_loopback_a_peer_or_trusted(trio):
    """Needs a non-loopback address of this machine as the source (the connection stays on this host)."""
    import socket

    from monoport.wire import proxyproto

    a, b, _ = trio
    header = proxyproto.build_v2(("203.0.113.9", 4242), ("127.0.0.1", a.port))
    outside = _non_loopback_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.bind((outside, 0))
        sock.connect(("127.0.0.1", b.peer_port))  # from a non-loopback source address
        sock.sendall(header + b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_without_answer(sock)
    b.wait_log("is not loopback, a known peer or a trusted network; refused")


def _non_loopback_address() -> str | None:
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_full_everywhere_queues_then_503_with_retry_after(monoport, tls_args, client_ctx):
    server = monoport(["--app", "tests.apps.echo_app:app", "--max-conns", "1", "--queue-timeout", "0.5"] + tls_args)
    held = held_connection(server.port, client_ctx)
    try:
        status, headers, _ = https_get(server.port, "/environ", client_ctx)
        assert status == 503 and headers["Retry-After"] == "1" and headers["Connection"] == "close"
    finally:
        held.close()
    # the slot is free again once the held connection closed
    wait_for(lambda: https_get(server.port, "/environ", client_ctx)[0] == 200, timeout=10)


def test_draining_instance_says_so_in_health_at_once(trio, client_ctx):
    a, b, _ = trio
    slow = threading.Thread(target=https_get, args=(b.port, "/slow?s=3", client_ctx), daemon=True)
    slow.start()
    wait_for(lambda: peer_health(b.peer_port)["in_app"] >= 1, timeout=10, what="the slow request in flight")
    assert peer_health(b.peer_port)["draining"] is False
    b.send(signal.SIGTERM)
    wait_for(lambda: peer_health(b.peer_port)["draining"] is True, timeout=5)
    slow.join(10)
