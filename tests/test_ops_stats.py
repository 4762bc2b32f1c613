"""Stats, metrics and the admin access rule, driven by real clients of each kind."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from monoport.wire import proxyproto
from monoport.ops.metrics import METRICS, RECOVERY_METRICS
from tests.clients import RawSio, https_session, raw_exchange, sio_client
from tests.conftest import wait_for

APP = ["--app", "tests.apps.echo_app:app"]
PUBLIC = "203.0.113.7"  # TEST-NET-3: a "public" client claimed through a trusted proxy


def snapshot(server, session):
    return session.get(server.url + "/monoport/stats.json", timeout=5).json()


def closed(snap, kind, termination=None):
    return sum(r["count"] for r in snap["connections"]["closed"]
               if r["kind"] == kind and (termination is None or r["termination"] == termination))


def failed_handshake(port: int) -> None:
    """A client that does not trust the server's certificate aborts the handshake."""
    ctx = ssl.create_default_context()  # system CAs: the trustme CA is unknown to it
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(sock, server_hostname="localhost")


def test_counters_move_as_clients_of_each_kind_connect_and_leave(monoport, tls_args, tls_files, client_ctx):
    server = monoport(APP + tls_args + ["--plain", "serve", "--sniff-timeout", "1", "--raw", "off"])
    admin = https_session(tls_files["ca"])
    before = snapshot(server, admin)
    assert before["connections"]["by_kind"] == {"https": 1}  # the admin session itself

    assert requests.get(f"http://127.0.0.1:{server.port}/", timeout=5).text == "hello from flask"
    with https_session(tls_files["ca"]) as once:
        assert once.get(server.url + "/", timeout=5).status_code == 200
    assert raw_exchange(server.port, b"<policy-file-request/>\0").startswith(b"<?xml")
    assert raw_exchange(server.port, b"<policy-file-request/>\0", tls=client_ctx).startswith(b"<?xml")
    raw_exchange(server.port, b"\x01\x02 not a protocol\n")
    failed_handshake(server.port)

    ws = sio_client(server.url, tls_files["ca"], ["websocket"])
    try:
        now = wait_for(lambda: (s := snapshot(server, admin))["connections"]["by_kind"].get("wss") == 1
                       and s["socketio"]["sessions"] == 1 and s, timeout=20)
        assert now["conns"] == sum(now["connections"]["by_kind"].values())
        assert any(c["kind"] == "wss" and c["tls"] for c in now["connections"]["clients"])
    finally:
        ws.disconnect()
    wait_for(lambda: snapshot(server, admin)["socketio"]["sessions"] == 0)

    # A polling client's close packet does not always reach the server before the
    # client drops its connections (then the session ends at the ping timeout):
    # count its connections, not its session.
    polling = sio_client(server.url, tls_files["ca"], ["polling"])
    assert polling.call("echo", 1, timeout=10) == 1
    polling.disconnect()
    polling.eio.http.close()  # its keep-alive connections end now, not at the idle timeout

    snap = wait_for(lambda: (s := snapshot(server, admin)) and closed(s, "wss") == 1
                    and closed(s, "polling-tls") >= 1 and closed(s, "tls", "tls_failed") == 1 and s, timeout=20)
    assert "wss" not in snap["connections"]["by_kind"]
    assert closed(snap, "http") == 1 and closed(snap, "https") >= 1
    assert closed(snap, "flash") == 1 and closed(snap, "flash-tls") == 1
    assert closed(snap, "raw", "protocol_error") == 1
    assert closed(snap, "tls", "tls_failed") == 1
    handshakes = snap["tls"]["handshakes"]
    assert handshakes["ok"] >= 4 and sum(n for r, n in handshakes.items() if r != "ok") == 1
    assert snap["tls"]["seconds"]["count"] == sum(handshakes.values())
    assert snap["sniff"]["tls"] >= 4 and snap["sniff"]["http"] == 1 and snap["sniff"]["raw"] == 1
    assert snap["sniff"]["flash"] == 1 and snap["sniff"]["flash-tls"] == 1
    assert snap["errors"]["tls_failed"] == 1 and snap["errors"]["protocol_error"] == 1
    assert snap["bytes"]["in"] > before["bytes"]["in"] and snap["bytes"]["out"] > before["bytes"]["out"]
    assert snap["connections"]["opened_total"] >= 9
    transports = {(r["transport"], r["status"]) for r in snap["http"]["requests"]}
    assert {("http", "2xx"), ("polling", "2xx")} <= transports
    assert snap["event_loop"]["lag"] >= 0 and snap["uptime"] > 0


def test_metrics_parse_with_prometheus_client(monoport, tls_args, tls_files):
    server = monoport(APP + tls_args)
    session = https_session(tls_files["ca"])
    session.get(server.url + "/", timeout=5)
    failed_handshake(server.port)
    # the client returns as soon as it has sent its alert; the server reads it a moment later
    wait_for(lambda: snapshot(server, session)["errors"].get("tls_failed") == 1)
    response = session.get(server.url + "/monoport/metrics", timeout=5)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    samples = {s.name: s for f in families.values() for s in f.samples}
    for name, (kind, _, _) in METRICS.items():
        if name == "monoport_max_connections" or name.startswith("monoport_acme_"):
            continue  # absent while --max-conns is unlimited; only with --acme (tests/test_acme_pebble.py)
        if name in RECOVERY_METRICS:
            continue  # absent without --recovery (tests/test_recovery.py reads them)
        if kind == "histogram":
            assert name + "_count" in samples, name
        elif kind in ("gauge", "info", "counter") and name not in ("monoport_peer_up", "monoport_peer_connections"):
            assert name in samples or name in families, name
    https = [s for s in families["monoport_open_connections"].samples if s.labels["kind"] == "https"]
    assert https and https[0].labels["tls"] == "true" and https[0].value >= 1
    closed_tls = [s for s in families["monoport_connections_closed"].samples if s.labels["kind"] == "tls"]
    assert closed_tls[0].labels["outcome"] == "tls_failed" and closed_tls[0].value == 1
    assert samples["monoport_tls_handshake_duration_seconds_count"].value == 2  # the session's one connection + the failed one


def _get_as_public(port: int, path: str, auth: tuple[str, str] | None = None, proxy_v2: bool = False) -> int:
    """A request whose real client, after trusted-proxy handling, is a public address."""
    headers = [f"GET {path} HTTP/1.1", "Host: x", "Connection: close"]
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers.append(f"Authorization: Basic {token}")
    prefix = b""
    if proxy_v2:
        prefix = proxyproto.build_v2((PUBLIC, 40000), ("127.0.0.1", port))
    else:
        headers.append(f"X-Forwarded-For: {PUBLIC}")
    reply = raw_exchange(port, prefix + ("\r\n".join(headers) + "\r\n\r\n").encode())
    return int(reply.split(b" ", 2)[1])


PAGES = ("/monoport/stats", "/monoport/stats.json", "/monoport/metrics")


def test_without_stats_auth_only_loopback_sees_the_pages(monoport):
    server = monoport(APP + ["--tls", "off", "--trusted-proxy", "127.0.0.1"])
    for page in PAGES:
        assert requests.get(f"http://127.0.0.1:{server.port}{page}", timeout=5).status_code == 200
        assert _get_as_public(server.port, page) == 404
        assert _get_as_public(server.port, page, proxy_v2=True) == 404
    assert _get_as_public(server.port, "/monoport/health") == 200
    assert _get_as_public(server.port, "/monoport/health", proxy_v2=True) == 200


def test_with_stats_auth_everyone_needs_the_credentials(monoport):
    # from the environment, as the README suggests (keeps the password out of `ps`)
    server = monoport(APP + ["--tls", "off", "--trusted-proxy", "127.0.0.1"], env={"MONOPORT_STATS_AUTH": "ops:s3cret"})
    base = f"http://127.0.0.1:{server.port}"
    for page in PAGES:
        assert _get_as_public(server.port, page) == 401
        assert _get_as_public(server.port, page, auth=("ops", "wrong")) == 401
        assert _get_as_public(server.port, page, auth=("ops", "s3cret"), proxy_v2=True) == 200
        loopback = requests.get(base + page, timeout=5)
        assert loopback.status_code == 401 and loopback.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(base + page, auth=("ops", "s3cre"), timeout=5).status_code == 401
        assert requests.get(base + page, auth=("ops", "s3cret"), timeout=5).status_code == 200
    assert _get_as_public(server.port, "/monoport/health") == 200


def test_raw_forwarded_connections_are_counted_with_their_bytes_and_who_closed(monoport, tls_files, tmp_path):
    backend = socket.create_server(("127.0.0.1", 0))
    backend_port = backend.getsockname()[1]

    def echo_once() -> None:
        conn, _ = backend.accept()
        with conn:
            conn.sendall(conn.recv(1024).upper())

    threading.Thread(target=echo_once, daemon=True).start()
    log = tmp_path / "access.log"
    server = monoport(APP + ["--tls", "off", "--raw", f"127.0.0.1:{backend_port}", "--access-log", str(log),
                             "--log-format", "json"])
    try:
        assert raw_exchange(server.port, b"hello raw\n") == b"HELLO RAW\n"
    finally:
        backend.close()
    record = wait_for(lambda: [r for r in map(json.loads, log.read_text().splitlines())
                               if r["event"] == "conn" and r["kind"] == "raw"])[0]
    assert record["bytes_in"] == 10 and record["bytes_out"] == 10
    assert record["termination"] == "server_closed"  # the backend closed first
    snap = requests.get(f"http://127.0.0.1:{server.port}/monoport/stats.json", timeout=5).json()
    assert closed(snap, "raw", "server_closed") == 1 and snap["sniff"]["raw"] == 1


def test_raw_socketio_clients_count_while_connected_and_when_they_leave(monoport, tls_args, tls_files, client_ctx,
                                                                        tmp_path):
    log = tmp_path / "access.log"
    server = monoport(APP + tls_args + ["--raw", "sio", "--access-log", str(log), "--log-format", "json"])
    admin = https_session(tls_files["ca"])
    clear, secure = RawSio(server.port), RawSio(server.port, tls=client_ctx)
    try:
        assert clear.call(1, "echo", "x") == ["x"] and secure.call(2, "echo", "y") == ["y"]
        snap = wait_for(lambda: (s := snapshot(server, admin))["connections"]["by_kind"].get("raw") == 1
                        and s["connections"]["by_kind"].get("raw-tls") == 1 and s)
        assert snap["socketio"]["sessions"] == 2
        kinds = {c["kind"]: c for c in snap["connections"]["clients"]}
        assert kinds["raw-tls"]["tls"] and kinds["raw"]["bytes_in"] > 0 and kinds["raw"]["bytes_out"] > 0
    finally:
        clear.close()
        secure.close()
    snap = wait_for(lambda: (s := snapshot(server, admin)) and closed(s, "raw", "client_closed") == 1
                    and closed(s, "raw-tls", "client_closed") == 1 and s)
    assert "raw" not in snap["connections"]["by_kind"] and snap["sniff"]["raw"] == 1
    records = [json.loads(line) for line in log.read_text().splitlines()]
    raw_lines = [r for r in records if r["event"] == "conn" and r["kind"] in ("raw", "raw-tls")]
    assert {r["termination"] for r in raw_lines} == {"client_closed"} and len(raw_lines) == 2
