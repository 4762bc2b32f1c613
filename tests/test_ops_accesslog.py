"""The access log: every termination reason caused on purpose, both formats, SIGUSR1."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import struct

import requests

from monoport.ops.accesslog import FIELDS
from tests.clients import https_session, raw_exchange, sio_client
from tests.conftest import free_port, wait_for

APP = ["--app", "tests.apps.echo_app:app"]


def lines(path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def conn_lines(path, termination: str) -> list[dict]:
    return [r for r in lines(path) if r["event"] == "conn" and r["termination"] == termination]


def wait_termination(path, termination: str) -> dict:
    return wait_for(lambda: conn_lines(path, termination), timeout=15)[-1]


def by_kind(port: int, ca: str) -> dict[str, int]:
    """The server's open connections by kind (its stats page, asked over HTTPS)."""
    with https_session(ca) as http:
        return http.get(f"https://localhost:{port}/monoport/stats.json", timeout=5).json()["connections"]["by_kind"]


def test_each_termination_reason_is_logged_for_the_client_that_caused_it(monoport, tls_args, tls_files, tmp_path):
    log = tmp_path / "access.log"
    server = monoport(APP + tls_args + ["--access-log", str(log), "--log-format", "json", "--sniff-timeout", "1",
                                        "--head-timeout", "1", "--raw", "off"])
    port = server.port

    # client_closed: a keep-alive client goes away after its request
    with https_session(tls_files["ca"]) as session:
        assert session.get(f"https://localhost:{port}/", timeout=5).status_code == 200
    closed = wait_for(lambda: [r for r in conn_lines(log, "client_closed") if r["kind"] == "https"])[0]
    assert closed["kind"] == "https" and closed["tls"] in ("TLSv1.2", "TLSv1.3") and closed["sni"] == "localhost"
    assert closed["served"] == "local" and closed["bytes_out"] > 0 and closed["client"].startswith("127.0.0.1:")
    request = next(r for r in lines(log) if r["event"] == "req" and r["request"] == "GET /")
    assert request["status"] == 200 and request["bytes_out"] > 0 and request["termination"] is None

    # server_closed: the client asked for Connection: close; and the Flash policy answer
    reply = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                         tls=ssl.create_default_context(cafile=tls_files["ca"]))
    assert b"200 OK" in reply
    assert raw_exchange(port, b"<policy-file-request/>\0")
    wait_for(lambda: {r["kind"] for r in conn_lines(log, "server_closed")} >= {"https", "flash"}, timeout=15)

    # client_timeout: half a request head, then nothing past --head-timeout
    raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n", timeout=10)  # returns when the server closes
    assert wait_termination(log, "client_timeout")["detail"] == "client timeout (request head)"

    # sniff_timeout: a client that says nothing, with raw TCP off
    with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
        assert silent.recv(1) == b""
    assert wait_termination(log, "sniff_timeout")["kind"].startswith("raw")

    # protocol_error: bytes that are no protocol monoport knows
    raw_exchange(port, b"\x00\x01garbage\r\n")
    assert wait_termination(log, "protocol_error")["kind"] == "raw"
    # ... and a request head over the limit: a 431 request line, then the connection's line
    reply = raw_exchange(port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
                         tls=ssl.create_default_context(cafile=tls_files["ca"]))
    assert b" 431 " in reply
    oversized = wait_for(lambda: [r for r in conn_lines(log, "protocol_error") if "431" in r["detail"]])[0]
    assert oversized["kind"] == "https" and oversized["bytes_in"] >= 16384  # read up to the head limit, no further
    assert any(r["event"] == "req" and r["status"] == 431 and r["request"] is None for r in lines(log))

    # tls_failed: the client does not trust the certificate and aborts the handshake
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            ssl.create_default_context().wrap_socket(sock, server_hostname="localhost")
        except ssl.SSLError:
            pass
    assert wait_termination(log, "tls_failed")["kind"] == "tls"

    # client_aborted: a reset (SO_LINGER 0) in the middle of a request head
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\n")
    wait_for(lambda: by_kind(port, tls_files["ca"]).get("http", 0) >= 1,
             what="the server to sniff HTTP and start reading the head")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    assert wait_termination(log, "client_aborted")["kind"] in ("http", "unknown")

    for record in lines(log):
        assert list(record) == list(FIELDS)


def test_draining_and_websocket_lines_in_text_format(monoport, tls_args, tls_files, tmp_path):
    log = tmp_path / "access.log"
    server = monoport(APP + tls_args + ["--access-log", str(log)])
    client = sio_client(server.url, tls_files["ca"], ["websocket"])
    client.disconnect()
    # the conn line of the WebSocket itself (an earlier probe connection also ends client_closed)
    line = wait_for(lambda: next((l for l in log.read_text().splitlines() if " conn " in l and " wss " in l), None))
    fields = line.split(" ")
    assert fields[1] == "conn" and fields[3] == "wss" and fields[4] in ("TLSv1.2", "TLSv1.3")
    assert line.endswith('local client_closed "client closed (websocket)"')

    session = https_session(tls_files["ca"])
    assert session.get(server.url + "/", timeout=5).status_code == 200  # now idle in keep-alive
    wait_for(lambda: '"GET /" 200' in log.read_text())
    assert server.stop(signal.SIGTERM) == 0
    draining = [l for l in log.read_text().splitlines() if " draining " in l]
    assert draining and " conn " in draining[0] and " https " in draining[0]


def test_sigusr1_reopens_the_access_log(monoport, tmp_path):
    log = tmp_path / "access.log"
    server = monoport(APP + ["--tls", "off", "--access-log", str(log)])
    base = f"http://127.0.0.1:{server.port}"
    requests.get(base + "/first", timeout=5)
    wait_for(lambda: "/first" in log.read_text())
    rotated = tmp_path / "access.log.1"
    log.rename(rotated)
    server.send(signal.SIGUSR1)
    server.wait_log("access log reopened")
    requests.get(base + "/second", timeout=5)
    wait_for(lambda: log.exists() and "/second" in log.read_text())
    assert "/second" not in rotated.read_text()


def test_a_client_over_its_connection_limit_is_logged_as_client_limit(monoport, tmp_path):
    log = tmp_path / "access.log"
    server = monoport(APP + ["--tls", "off", "--max-conns-per-ip", "1", "--access-log", str(log), "--log-format",
                             "json"])
    wait_for(lambda: conn_lines(log, "client_closed"))  # the fixture's start-up probe has gone
    with requests.Session() as first:
        assert first.get(f"http://127.0.0.1:{server.port}/", timeout=5).status_code == 200  # held open, idle
        assert requests.get(f"http://127.0.0.1:{server.port}/", timeout=5).status_code == 429
        assert wait_termination(log, "client_limit")["kind"] == "http"


def test_a_raw_backend_that_refuses_is_logged_as_peer_down(monoport, tmp_path):
    log = tmp_path / "access.log"
    closed_port = free_port()  # nothing listens there
    server = monoport(APP + ["--tls", "off", "--raw", f"127.0.0.1:{closed_port}", "--access-log", str(log),
                             "--log-format", "json"])
    raw_exchange(server.port, b"hello backend\n")
    record = wait_termination(log, "peer_down")
    assert record["kind"] == "raw" and "unavailable" in record["detail"]
