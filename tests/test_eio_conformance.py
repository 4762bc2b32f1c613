"""Engine.IO v4 / Socket.IO v5 as the protocol documents say, checked with raw clients.

Each test is one rule of socketio/engine.io-protocol or socketio/socket.io-protocol
(their test suites, ``test-suite/test-suite.js``, send the same requests) that
python-engineio alone breaks; the README's "Protocol conformance" section names
them. Raw HTTP (http.client) and raw WebSocket (websocket-client) clients, over
clear HTTP and TLS on one port (``--plain serve``).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import socketio
import websocket

from tests.clients import RawSio, https_session, sio_client, websocket_connect
from tests.conftest import ROOT, MonoportProcess, wait_for

APP = ["--app", "tests.apps.echo_app:app"]
#: a ping interval with a fraction of a second (python-engineio alone advertises 10000)
INTERVAL = "10.25"


class Eio:
    """A raw Engine.IO client: one HTTP request per connection, or a WebSocket."""

    def __init__(self, port: int, ctx: ssl.SSLContext | None) -> None:
        self.port = port
        self.ctx = ctx

    def request(self, method: str, query: str, body: bytes | None = None,
                path: str = "/socket.io/") -> tuple[int, bytes, Any]:
        import http.client

        if self.ctx is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        try:
            conn.request(method, f"{path}?{query}", body=body)
            response = conn.getresponse()
            return response.status, response.read(), response.headers
        finally:
            conn.close()

    def handshake(self) -> tuple[str, dict]:
        status, body, _ = self.request("GET", "EIO=4&transport=polling")
        assert status == 200 and body.startswith(b"0"), body
        opened = json.loads(body[1:])
        return opened["sid"], opened

    def poll(self, sid: str) -> tuple[int, bytes]:
        status, body, _ = self.request("GET", f"EIO=4&transport=polling&sid={sid}")
        return status, body

    def post(self, sid: str, body: bytes) -> tuple[int, bytes]:
        status, answer, _ = self.request("POST", f"EIO=4&transport=polling&sid={sid}", body)
        return status, answer

    def websocket(self, query: str = "EIO=4&transport=websocket", timeout: float = 20) -> websocket.WebSocket:
        scheme = "ws" if self.ctx is None else "wss"
        sslopt = {} if self.ctx is None else {"context": self.ctx}
        return websocket_connect(f"{scheme}://127.0.0.1:{self.port}/socket.io/?{query}", timeout=timeout, sslopt=sslopt)

    def stats(self) -> dict:
        """The server's stats page (open to loopback)."""
        status, body, _ = self.request("GET", "", path="/monoport/stats.json")
        assert status == 200
        return json.loads(body)

    def sessions(self) -> int:
        """Engine.IO sessions the server holds."""
        return self.stats()["socketio"]["sessions"]

    def poll_waiting(self, sid: str) -> Callable[[], Any]:
        """Send a GET long-poll from a thread; return once the server holds it (bounded)."""
        waiting = in_background(lambda: self.poll(sid))
        wait_for(lambda: any(kind.startswith("polling") for kind in self.stats()["connections"]["by_kind"]),
                 timeout=20, what="the long-poll to reach the server")
        time.sleep(0.2)  # from the router into python-engineio's wait
        return waiting


def in_background(call: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``call`` in a thread; the returned function waits for its result (bounded)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()

    def wait() -> Any:
        thread.join(30)
        assert result, "the request did not finish"
        return result[0]

    return wait


def start_server(tmp_path: Path, tls_files: dict[str, str], args: list[str]) -> MonoportProcess:
    tls = ["--cert", tls_files["localhost"], "--key", tls_files["localhost_key"], "--plain", "serve"]
    return MonoportProcess(APP + tls + args, tmp_path / "monoport.log").start()


def stop_server(server: MonoportProcess) -> None:
    server.stop()
    assert "Traceback" not in server.log(), server.log()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tls_files: dict[str, str]) -> Iterator[MonoportProcess]:
    """One server for the module: pings far apart, so no ping lands in an answer a test reads."""
    server = start_server(tmp_path_factory.mktemp("conformance"), tls_files,
                          ["--ping-interval", INTERVAL, "--ping-timeout", "20"])
    yield server
    stop_server(server)


@pytest.fixture(params=["clear", "tls"])
def eio(request: pytest.FixtureRequest, server: MonoportProcess, client_ctx: ssl.SSLContext) -> Eio:
    return Eio(server.port, client_ctx if request.param == "tls" else None)


def refused_upgrade(client: Eio, query: str) -> int:
    """The HTTP status a WebSocket handshake for ``query`` gets (101 when it opens)."""
    try:
        ws = client.websocket(query, timeout=10)
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    ws.close()
    return 101


# -- 1. pingInterval in milliseconds ---------------------------------------------------------------
@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_handshake_advertises_the_ping_interval_in_milliseconds_with_its_fraction(eio, transport):
    if transport == "polling":
        _, opened = eio.handshake()
    else:
        ws = eio.websocket()
        opened = json.loads(ws.recv()[1:])
        ws.close()
    assert (opened["pingInterval"], opened["pingTimeout"]) == (10250, 20000)
    assert set(opened) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}


def test_raw_transport_advertises_the_ping_interval_in_milliseconds(server, client_ctx):
    for tls in (None, client_ctx):
        raw = RawSio(server.port, tls=tls)
        try:
            assert (raw.open["pingInterval"], raw.open["pingTimeout"]) == (10250, 20000)
        finally:
            raw.close()


# -- 2. transport missing or unknown -----------------------------------------------------------------
def test_missing_or_unknown_transport_gets_400_with_a_json_body_and_no_session(eio):
    before = eio.sessions()
    for query in ("EIO=4", "EIO=4&transport=abc", "EIO=4&transport="):
        status, body, headers = eio.request("GET", query)
        assert status == 400, (query, body)
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"code": 0, "message": "Transport unknown"}
    # a bad EIO was refused already; it stays so
    for query in ("transport=polling", "EIO=abc&transport=polling", "EIO=3&transport=polling"):
        assert eio.request("GET", query)[0] == 400, query
    assert eio.sessions() <= before


def test_websocket_handshake_without_a_valid_transport_or_eio_is_refused_before_101(eio):
    before = eio.sessions()
    for query in ("EIO=4", "EIO=4&transport=abc", "EIO=4&transport=polling",
                  "transport=websocket", "EIO=abc&transport=websocket"):
        assert refused_upgrade(eio, query) == 400, query
    assert eio.sessions() <= before
    assert refused_upgrade(eio, "EIO=4&transport=websocket") == 101


# -- 3. methods ----------------------------------------------------------------------------------------
def test_methods_other_than_get_and_post_get_400(eio):
    sid, _ = eio.handshake()
    for method in ("PUT", "DELETE", "PATCH"):
        status, body, _ = eio.request(method, "EIO=4&transport=polling")
        assert (status, json.loads(body)) == (400, {"code": 2, "message": "Bad handshake method"}), method
        status, body, _ = eio.request(method, f"EIO=4&transport=polling&sid={sid}")
        assert (status, json.loads(body)) == (400, {"code": 3, "message": "Bad request"}), method
    # a POST opens no session
    assert eio.request("POST", "EIO=4&transport=polling", b"40")[0] == 400
    # browsers' CORS preflight still reaches python-engineio
    assert eio.request("OPTIONS", "EIO=4&transport=polling")[0] == 200
    assert eio.post(sid, b"1")[0] == 200


# -- 4. ok -----------------------------------------------------------------------------------------------
def test_a_post_taken_is_answered_ok_in_lower_case(eio):
    sid, _ = eio.handshake()
    assert eio.post(sid, b"40") == (200, b"ok")
    status, body = eio.poll(sid)
    assert status == 200 and body.startswith(b"40{")
    assert eio.post(sid, b'42["echo","a"]\x1e42["echo","b"]') == (200, b"ok")
    assert eio.post(sid, b"1") == (200, b"ok")


# -- 5. close packet by POST ---------------------------------------------------------------------------
def test_a_close_packet_ends_the_waiting_poll_with_a_noop_and_the_session(eio, server):
    sid, _ = eio.handshake()
    waiting = eio.poll_waiting(sid)  # nothing is queued for it for 10 s
    assert eio.post(sid, b"1") == (200, b"ok")
    assert waiting() == (200, b"6")
    assert eio.poll(sid)[0] == 400
    assert eio.post(sid, b"40")[0] == 400


def test_a_close_packet_on_a_websocket_closes_it(eio):
    ws = eio.websocket()
    assert ws.recv().startswith("0")
    ws.send("1")
    assert ws.recv() == ""  # the server closed the WebSocket
    ws.close()


# -- 7. malformed payload ----------------------------------------------------------------------------------
def test_a_malformed_post_closes_the_session(eio, server):
    sid, _ = eio.handshake()
    assert eio.post(sid, b"40") == (200, b"ok")
    status, body = eio.post(sid, b"abc")
    assert status == 400, body
    assert eio.poll(sid)[0] == 400
    assert eio.post(sid, b"3")[0] == 400
    server.wait_log("bad Engine.IO polling request")


def test_a_malformed_websocket_packet_closes_the_session_with_one_log_line(eio, server):
    ws = eio.websocket()
    sid = json.loads(ws.recv()[1:])["sid"]
    ws.send("40")
    assert ws.recv().startswith("40{")
    ws.send("abc")
    assert ws.recv() == ""  # closed
    ws.close()
    log = server.wait_log(f"bad Engine.IO WebSocket packet from 127.0.0.1 (session {sid})")
    assert "Traceback" not in log


# -- 8. two GETs at once -------------------------------------------------------------------------------------
def test_a_second_get_while_one_waits_closes_the_session(eio):
    sid, _ = eio.handshake()
    first = eio.poll_waiting(sid)  # nothing is queued for it for 10 s
    status, _ = eio.poll(sid)
    assert status == 400
    assert first() == (200, b"1")  # the waiting one gets the close packet
    assert eio.poll(sid)[0] == 400


# -- 9. no noop on the WebSocket after the upgrade -------------------------------------------------------------
@pytest.mark.parametrize("poll_during_upgrade", [True, False])
def test_the_first_message_on_the_websocket_after_the_upgrade_is_the_apps(eio, poll_during_upgrade):
    sid, _ = eio.handshake()
    assert eio.post(sid, b"40") == (200, b"ok")
    assert eio.poll(sid)[1].startswith(b"40{")
    ws = eio.websocket(f"EIO=4&transport=websocket&sid={sid}")
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        if poll_during_upgrade:
            # the client's poll, sent after the probe (as the protocol's test suite does): a noop
            assert eio.poll(sid) == (200, b"6")
        ws.send("5")
        ws.send('421["echo","after the upgrade"]')
        assert ws.recv() == '431["after the upgrade"]'
        # HTTP requests of an upgraded session are refused, the WebSocket goes on
        assert eio.poll(sid)[0] == 400
        ws.send('422["echo","still"]')
        assert ws.recv() == '432["still"]'
    finally:
        ws.close()


# -- 10. CONNECT to an unknown namespace ------------------------------------------------------------------------
INVALID_NAMESPACE = '44/random,{"message":"Invalid namespace"}'


def test_connect_to_an_unknown_namespace_gets_invalid_namespace_over_each_transport(eio, server, client_ctx):
    ws = eio.websocket()
    try:
        assert ws.recv().startswith("0")
        ws.send("40/random,")
        assert ws.recv() == INVALID_NAMESPACE
        ws.send("40")  # the session goes on
        assert ws.recv().startswith("40{")
    finally:
        ws.close()
    sid, _ = eio.handshake()
    assert eio.post(sid, b"40/random,") == (200, b"ok")
    assert eio.poll(sid) == (200, INVALID_NAMESPACE.encode())
    raw = RawSio(server.port, tls=eio.ctx)
    try:
        raw.send("40/random,")
        assert raw.expect(lambda line: line.startswith("44")) == INVALID_NAMESPACE
    finally:
        raw.close()


def test_python_socketio_client_hears_invalid_namespace(server, tls_files):
    errors: list[Any] = []
    http = https_session(tls_files["ca"])
    client = socketio.Client(http_session=http, reconnection=False)
    client.on("connect_error", lambda *data: errors.append(data), namespace="/random")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server.url, namespaces=["/random"], transports=["polling"], wait_timeout=10)
    client.disconnect()
    assert errors == [({"message": "Invalid namespace"},)]
    # the main namespace is unchanged
    client = sio_client(server.url, tls_files["ca"], ["websocket"])
    try:
        assert client.call("echo", "x", timeout=10) == "x"
    finally:
        client.disconnect()


def test_npm_socketio_client_upgrades_echoes_and_hears_invalid_namespace(server, tls_files):
    node = shutil.which("node")
    assert node, "node is missing: run scripts/system-deps.sh"
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=tls_files["ca"], NODE_PATH=str(ROOT / "webapp" / "node_modules"))
    done = subprocess.run([node, str(ROOT / "tests" / "js" / "conformance_client.js"), server.url],
                          env=env, capture_output=True, text=True, timeout=60)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert events == [
        {"event": "echo", "answer": "through websocket", "transport": "websocket"},
        {"event": "connect_error", "namespace": "/random", "message": "Invalid namespace"},
    ]


# -- 6. missed pong ------------------------------------------------------------------------------------------------
#: python-engineio's sweeper looks at a lone session every ping_timeout seconds (at 0, 3, 6 s
#: here), so a session that missed its pong at 3.2 s is still alive at 4.7 s without monoport
FAST = ["--ping-interval", "0.2", "--ping-timeout", "3"]
#: when the tests look: past pingInterval + pingTimeout, with room for a loaded machine
LOOK_AT = 0.2 + 3 + 1.5


@pytest.mark.parametrize("scheme", ["clear", "tls"])
@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_a_missed_pong_closes_the_session_at_ping_interval_plus_timeout(tmp_path, tls_files, client_ctx,
                                                                          scheme, transport):
    server = start_server(tmp_path, tls_files, FAST)
    try:
        eio = Eio(server.port, client_ctx if scheme == "tls" else None)
        began = time.monotonic()
        if transport == "polling":
            sid, opened = eio.handshake()
            assert opened["pingInterval"] == 200
            time.sleep(max(0.0, LOOK_AT - (time.monotonic() - began)))
            assert eio.poll(sid)[0] == 400
        else:
            # python-engineio checks the pong when it sends, and ends a WebSocket whose
            # writer was idle for pingInterval + pingTimeout: a packet sent to the client
            # at 2 s (before the deadline) kept this session until 5.2 s without monoport.
            ws = eio.websocket(timeout=LOOK_AT)
            assert json.loads(ws.recv()[1:])["pingInterval"] == 200
            ws.send("40")
            heard = [ws.recv(), ws.recv()]
            assert {heard[0][:3], heard[1][:3]} == {"40{", "2"}, heard  # pinged; never answered
            time.sleep(max(0.0, 2.0 - (time.monotonic() - began)))
            ws.send('421["echo","late"]')
            ws.settimeout(max(0.1, LOOK_AT - (time.monotonic() - began)))
            while heard[-1] not in ("1", "") or len(heard) < 3:  # the close packet, or the end of the WebSocket
                try:
                    heard.append(ws.recv())
                except (websocket.WebSocketConnectionClosedException, ConnectionError):
                    heard.append("")
            ws.close()
        server.wait_log("no pong within 3s, closed")
    finally:
        stop_server(server)


def test_answered_pings_keep_a_polling_session(tmp_path, tls_files):
    server = start_server(tmp_path, tls_files, FAST)
    try:
        eio = Eio(server.port, None)
        sid, _ = eio.handshake()
        deadline = time.monotonic() + 4  # past a ping timeout, many pings
        pings = 0
        while time.monotonic() < deadline:
            status, body = eio.poll(sid)
            assert status == 200, body
            if body == b"2":
                pings += 1
                assert eio.post(sid, b"3") == (200, b"ok")
        assert pings >= 3
    finally:
        stop_server(server)


# -- the hooks into python-engineio ----------------------------------------------------------------------------------
def test_the_python_engineio_hooks_are_where_monoport_expects_them():
    """The private names listed in monoport/eioconform.py (its "Hooks" section) still exist."""
    import inspect

    import engineio
    from engineio import base_server, server as eio_server, socket as eio_socket

    assert "self.sockets[sid] = s" in inspect.getsource(eio_server.Server._handle_connect)
    assert "self.sockets = {}" in inspect.getsource(base_server.BaseServer.__init__)
    for name in ("_websocket_handler", "send", "receive", "handle_get_request", "close", "schedule_ping"):
        assert callable(getattr(eio_socket.Socket, name)), name
    handler = inspect.getsource(eio_socket.Socket._websocket_handler)
    assert "ws.wait()" in handler and "ws.send(" in handler
    session = eio_socket.Socket(engineio.Server(async_mode="gevent"), "x")
    for name in ("queue", "last_ping", "upgrading", "upgraded", "closing", "closed"):
        assert hasattr(session, name), name
    assert hasattr(engineio.Server(async_mode="gevent"), "ping_interval_grace_period")


def test_check_shows_the_ping_settings(tmp_path):
    done = subprocess.run([sys.executable, "-m", "monoport", "--check", "--tls", "off", "--bind", "127.0.0.1:0",
                           *APP, "--ping-interval", "0.3", "--ping-timeout", "0.2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ping interval 0.3s, timeout 0.2s" in done.stdout
    # an app that sets its own keeps it
    done = subprocess.run([sys.executable, "-m", "monoport", "--check", "--tls", "off", "--bind", "127.0.0.1:0",
                           "--app", "tests.apps.fastping_app:app", "--ping-interval", "0.3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ping interval 1s, timeout 2s" in done.stdout


# -- the router's request check, pure ------------------------------------------------------------------------------
@pytest.mark.parametrize("method,query,upgrade,expected", [
    ("GET", "EIO=4&transport=polling", False, None),
    ("GET", "EIO=4&transport=websocket", True, None),
    ("POST", "EIO=4&transport=polling&sid=a.b", False, None),
    ("OPTIONS", "EIO=4&transport=polling", False, None),
    ("GET", "EIO=4", False, (0, "Transport unknown")),
    ("GET", "EIO=4&transport=abc", False, (0, "Transport unknown")),
    ("GET", "EIO=4&transport=polling", True, (0, "Transport unknown")),
    ("PUT", "EIO=4&transport=polling", False, (2, "Bad handshake method")),
    ("POST", "EIO=4&transport=polling", False, (2, "Bad handshake method")),
    ("DELETE", "EIO=4&transport=polling&sid=a.b", False, (3, "Bad request")),
    ("GET", "transport=websocket", True, (5, "Unsupported protocol version")),
    ("GET", "EIO=3&transport=websocket", True, (5, "Unsupported protocol version")),
    ("GET", "EIO=3&transport=websocket&sid=a.b", True, None),  # python-engineio checks EIO at the handshake only
])
def test_request_error_names_what_the_reference_server_would(method, query, upgrade, expected):
    from urllib.parse import parse_qs

    from monoport.wire.eiopackets import request_error

    assert request_error(method, parse_qs(query), ["polling", "websocket"], upgrade=upgrade) == expected
    if expected is None and "transport=polling" in query:
        # a server that offers WebSocket only refuses polling
        assert request_error(method, parse_qs(query), ["websocket"], upgrade=upgrade) == (0, "Transport unknown")


def test_the_session_table_survives_reassignment_and_is_a_plain_attribute():
    from monoport import eioconform

    sio = socketio.Server(async_mode="threading")
    eioconform.install(sio)
    assert isinstance(sio.eio.sockets, eioconform.SessionTable)
    assert vars(sio.eio)["sockets"] is sio.eio.sockets  # read as an instance attribute, no Python call
    sio.eio.sockets = {}  # as python-engineio's disconnect() does
    assert isinstance(sio.eio.sockets, eioconform.SessionTable)
    sio.eio.ping_timeout = 7  # every other attribute is set as ever
    assert sio.eio.ping_timeout == 7 and "ping_timeout" in vars(sio.eio)
