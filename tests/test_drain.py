"""SIGTERM drains without cutting anyone who could be answered.

Each test holds a keep-alive connection opened before the signal (the public
listener closes at once, so that is how a client still reaches a draining
instance) and checks what the next request on it gets.
"""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import threading
import time

from tests.clients import RawSio, closed_after_the_test, sio_client
from tests.cluster import held_connection, https_get, start_cluster
from tests.conftest import wait_for


def _held(port: int, ctx: ssl.SSLContext) -> http.client.HTTPSConnection:
    conn = held_connection(port, ctx)
    assert conn.sock is not None  # kept alive (http.client drops a socket the server will close)
    return conn


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, dict, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def _by_kind(port: int, ctx: ssl.SSLContext) -> dict[str, int]:
    """The instance's open connections by kind (its stats page)."""
    return json.loads(https_get(port, "/monoport/stats.json", ctx)[2])["connections"]["by_kind"]


def _wait_exit(server, timeout: float) -> float:
    began = time.monotonic()
    server.proc.wait(timeout)
    return time.monotonic() - began


def test_idle_keepalive_clients_get_their_next_request_answered_with_connection_close(monoport, tls_args,
                                                                                     client_ctx):
    server = monoport(tls_args + ["--app", "tests.apps.echo_app:app", "--graceful-timeout", "20"])
    page, health, sio = (_held(server.port, client_ctx) for _ in range(3))
    server.send(signal.SIGTERM)
    server.wait_log("graceful shutdown")
    # a request sent just after the signal is served, not reset
    status, headers, body = _get(page, "/")
    assert (status, body, headers["Connection"]) == (200, b"hello from flask", "close")
    # load balancers (and Kubernetes readiness probes) read 503 and take the instance out
    status, headers, body = _get(health, "/monoport/health")
    assert status == 503 and json.loads(body)["draining"] is True and headers["Connection"] == "close"
    # a Socket.IO session opened now would be cut in a moment: the client is sent elsewhere
    status, headers, _ = _get(sio, "/socket.io/?EIO=4&transport=polling")
    assert status == 503 and headers["Retry-After"] == "1"
    # nothing is left to wait for: the drain ends long before the graceful timeout
    assert _wait_exit(server, 10) < 5 and server.proc.returncode == 0
    assert "still open" not in server.log()


def test_socketio_sessions_end_as_a_lost_transport_so_clients_reconnect(monoport, tls_args, tls_files,
                                                                         client_ctx):
    server = monoport(tls_args + ["--app", "tests.apps.echo_app:app", "--graceful-timeout", "20"])
    raw = RawSio(server.port, tls=client_ctx)
    python_client = sio_client(server.url, tls_files["ca"], ["websocket"])
    reasons: list[str] = []
    gone = threading.Event()
    python_client.on("disconnect", lambda reason: (reasons.append(reason), gone.set()))
    server.send(signal.SIGTERM)
    # no Engine.IO close packet ("1"): python-socketio's client would take it as "do not reconnect"
    lines = []
    try:
        while True:
            lines.append(raw.line())
    except EOFError:
        pass
    assert "1" not in lines
    assert gone.wait(10)
    # a lost transport, after which the client reconnects (not "the server disconnected me")
    assert reasons == [python_client.reason.TRANSPORT_ERROR]
    python_client.disconnect()
    assert _wait_exit(server, 10) < 5 and server.proc.returncode == 0


def test_a_connection_idle_through_the_grace_is_closed_and_the_drain_ends(monoport, tls_args, client_ctx):
    server = monoport(tls_args + ["--app", "tests.apps.echo_app:app", "--graceful-timeout", "20"])
    idle = _held(server.port, client_ctx)
    began = time.monotonic()
    server.send(signal.SIGTERM)
    server.proc.wait(10)
    assert 0.8 < time.monotonic() - began < 5  # the one-second grace, not the 20 s timeout
    assert idle.sock.recv(1) == b""  # closed by the server, cleanly
    assert "still open" not in server.log()


def _polling_session(port: int, ctx: ssl.SSLContext) -> str:
    status, _, body = https_get(port, "/socket.io/?EIO=4&transport=polling", ctx)
    assert status == 200, body
    return json.loads(body[1:])["sid"]


def test_a_long_poll_sent_through_a_draining_instance_is_answered_at_once(monoport, redis_url, tls_args,
                                                                          client_ctx):
    a, b = start_cluster(monoport, redis_url, ["a", "b"], tls_args + ["--graceful-timeout", "20"])
    sid = _polling_session(b.port, client_ctx)
    through_a = closed_after_the_test(http.client.HTTPSConnection("127.0.0.1", a.port, context=client_ctx, timeout=30))
    target = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    # b's session: a forwards the connection to b (a pong, which queues no answer)
    through_a.request("POST", target, body=b"3")
    answer = through_a.getresponse()
    assert (answer.status, answer.read()) == (200, b"ok")
    a.send(signal.SIGTERM)
    b.wait_log("draining: ending the 1 connection(s) it forwarded here")
    began = time.monotonic()
    status, headers, body = _get(through_a, target)
    # b answers the long-poll at once (not after pingInterval) and closes, so a's splice
    # ends and the client's next poll goes to a live instance
    assert time.monotonic() - began < 1.0
    assert (status, body, headers["Connection"]) == (200, b"6", "close")
    assert _wait_exit(a, 10) < 5 and a.proc.returncode == 0
    assert "still open" not in a.log()


def test_a_long_poll_forwarded_by_a_draining_peer_is_answered_at_once_so_the_peer_can_stop(
        monoport, redis_url, tls_args, client_ctx):
    a, b = start_cluster(monoport, redis_url, ["a", "b"], tls_args + ["--graceful-timeout", "20"])
    sid = _polling_session(b.port, client_ctx)
    through_a = _held(a.port, client_ctx)
    # a forwards this long-poll (and the rest of the connection) to b, where it waits for
    # a packet: nothing comes before the ping, pingInterval (25 s) away
    through_a.request("GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}")
    wait_for(lambda: any(kind.startswith("polling") for kind in _by_kind(b.port, client_ctx)), 10,
             what="the long-poll to reach b")
    began = time.monotonic()
    a.send(signal.SIGTERM)
    response = through_a.getresponse()
    body = response.read()
    # b saw a draining in its health poll (once a second) and ended the poll with a noop
    assert time.monotonic() - began < 5
    assert (response.status, body, response.getheader("Connection")) == (200, b"6", "close")
    assert _wait_exit(a, 10) < 5 and a.proc.returncode == 0
    assert "still open" not in a.log()
    # the session itself lives on at b: it takes a packet (Socket.IO's connect)
    at_b = closed_after_the_test(http.client.HTTPSConnection("127.0.0.1", b.port, context=client_ctx, timeout=10))
    at_b.request("POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", body=b"40")
    answer = at_b.getresponse()
    assert (answer.status, answer.read()) == (200, b"ok")


def test_drain_delay_keeps_accepting_with_health_503_then_closes(monoport, tls_args, client_ctx):
    server = monoport(tls_args + ["--drain-delay", "2", "--graceful-timeout", "20"])
    began = time.monotonic()
    server.send(signal.SIGTERM)
    server.wait_log("still accepting")
    # a load balancer that has not noticed yet still reaches it, and reads why it should stop
    status, headers, _ = https_get(server.port, "/", client_ctx)
    assert status == 200 and headers["Connection"] == "close"
    assert https_get(server.port, "/monoport/health", client_ctx)[0] == 503
    server.proc.wait(10)
    assert 2 <= time.monotonic() - began < 6 and server.proc.returncode == 0


def test_a_second_sigterm_ends_the_drain_delay_at_once(monoport, tls_args):
    server = monoport(tls_args + ["--drain-delay", "30"])
    server.send(signal.SIGTERM)
    server.wait_log("still accepting")
    began = time.monotonic()
    server.send(signal.SIGTERM)
    server.proc.wait(10)
    assert time.monotonic() - began < 5 and server.proc.returncode == 0
    assert server.log().count("stopped") == 1
