"""One port, end to end: a real monoport process, real TLS, real clients on loopback."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import threading
import time

import pytest
import requests

from tests import corpus
from tests.clients import https_session, raw_exchange, read_to_eof, sio_client
from tests.conftest import wait_for

APP = ["--app", "tests.apps.echo_app:app"]


@pytest.fixture
def server(monoport, tls_args):
    return monoport(APP + tls_args + ["--sniff-timeout", "1", "--handshake-timeout", "1"])


def test_https_get_reaches_the_flask_app_with_a_true_environ(server, tls_files):
    session = https_session(tls_files["ca"])
    assert session.get(server.url + "/", timeout=5).text == "hello from flask"
    env = session.get(server.url + "/environ", timeout=5).json()
    assert env["wsgi.url_scheme"] == "https"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["monoport.transport"] == "http"
    assert env["monoport.tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert env["monoport.tls"]["alpn"] is None or env["monoport.tls"]["alpn"] == "http/1.1"
    assert len(env["monoport.instance_id"]) == 4
    assert env["monoport.cluster"] == "tests.apps.echo_app:app"  # --cluster, else the --app spec


def test_a_tls_client_that_chose_http_1_1_and_waits_past_the_sniff_timeout_is_served_http(server, tls_files):
    """A browser's spare connection: ALPN http/1.1 in the handshake, its request seconds later (here 2 s,
    past --sniff-timeout 1). A TLS client that chose no protocol and stays silent is still a raw client."""
    def silent_then(alpn: list[str] | None, request: bytes | None) -> bytes:
        ctx = ssl.create_default_context(cafile=tls_files["ca"])
        if alpn:
            ctx.set_alpn_protocols(alpn)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.selected_alpn_protocol() == (alpn[0] if alpn else None)
                time.sleep(2.0)
                if request is None:
                    return tls.recv(200)
                tls.sendall(request)
                return read_to_eof(tls)

    answer = silent_then(["http/1.1"], b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"hello from flask"), answer
    assert silent_then(None, None).startswith(b'0{"sid":')  # the raw transport's open packet


@pytest.mark.parametrize("mode,status", [("redirect", 301), ("serve", 200), ("reject", 400)])
def test_clear_text_http_on_the_tls_port_follows_plain_mode(monoport, tls_args, mode, status):
    server = monoport(APP + tls_args + ["--plain", mode])
    response = requests.get(f"http://127.0.0.1:{server.port}/environ?x=1", allow_redirects=False, timeout=5)
    assert response.status_code == status
    if mode == "redirect":
        assert response.headers["Location"] == f"https://127.0.0.1:{server.port}/environ?x=1"
    if mode == "serve":
        assert response.json()["wsgi.url_scheme"] == "http"


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
def test_socketio_client_emits_gets_ack_and_server_emit(server, tls_files, transports):
    client = sio_client(server.url, tls_files["ca"], transports)
    try:
        got = threading.Event()
        received = []
        client.on("shouted", lambda data: (received.append(data), got.set()))
        assert client.call("echo", {"n": 1}, timeout=10) == {"n": 1}
        assert client.call("shout", "hey", timeout=10) == "ok"
        assert got.wait(10) and received == ["hey"]
        session = client.call("whoami", timeout=10)
        assert session["scheme"] == "https"
        assert session["transport"] == transports[0]
        assert client.get_sid() and client.eio.sid.startswith(session["instance"] + ".")
    finally:
        client.disconnect()


def test_flask_socketio_app_runs_unchanged(monoport, tls_args, tls_files):
    server = monoport(["--app", "tests.apps.fsio_app:app"] + tls_args)
    assert https_session(tls_files["ca"]).get(server.url + "/", timeout=5).text == "flask-socketio app"
    client = sio_client(server.url, tls_files["ca"], ["websocket"])
    try:
        echoed = []
        client.on("echoed", echoed.append)
        assert client.call("echo", "x", timeout=10) == "ack:x"
        wait_for(lambda: echoed)
        assert echoed[0]["data"] == "x"
    finally:
        client.disconnect()


def test_flash_policy_is_answered_in_clear_and_inside_tls(server, client_ctx):
    for tls in (None, client_ctx):
        answer = raw_exchange(server.port, corpus.FLASH, tls=tls)
        assert answer.endswith(b"\x00")
        assert b"<cross-domain-policy>" in answer
        assert f'to-ports="{server.port}"'.encode() in answer


def test_sni_picks_the_certificate_for_each_name(monoport, tls_files, ca):
    server = monoport(APP + ["--cert", tls_files["localhost"], "--key", tls_files["localhost_key"],
                             "--cert", tls_files["other"], "--key", tls_files["other_key"]])
    ctx = ssl.create_default_context(cafile=tls_files["ca"])
    for name, expect in (("localhost", "localhost"), ("other.test", "other.test"), ("a.other.test", "*.other.test")):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                sans = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
                assert expect in sans


def test_bad_clients_cost_one_log_line_each_while_others_are_served(monoport, tls_args, tls_files):
    server = monoport(APP + tls_args + ["--sniff-timeout", "1", "--handshake-timeout", "1", "--raw", "off"])
    session = https_session(tls_files["ca"])
    hello = corpus.client_hello()
    bad = []
    # garbage, a silent client, a half-sent ClientHello, a client that resets
    garbage = socket.create_connection(("127.0.0.1", server.port))
    garbage.sendall(b"\x00\xffgarbage\r\n\r\n")
    bad.append(garbage)
    bad.append(socket.create_connection(("127.0.0.1", server.port)))
    half = socket.create_connection(("127.0.0.1", server.port))
    half.sendall(hello[: len(hello) // 2])
    bad.append(half)
    for _ in range(5):
        assert session.get(server.url + "/", timeout=5).status_code == 200
    log = server.wait_log("TLS handshake failed (timeout)", timeout=10)
    server.wait_log("sniff timeout (silent client)", timeout=10)
    for sock in bad:
        sock.close()
    log = server.log()
    assert "not TLS, HTTP, PROXY or Flash" in log
    assert log.count("TLS handshake failed") == 1
    assert "Traceback" not in log
    # and the listener still serves afterwards
    assert session.get(server.url + "/", timeout=5).status_code == 200


def test_tls_handshake_with_untrusted_client_is_one_line(server):
    with pytest.raises(ssl.SSLError):
        ctx = ssl.create_default_context()  # does not trust the test CA
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            ctx.wrap_socket(raw, server_hostname="localhost")
    server.wait_log("TLS handshake failed")


def test_forwarded_headers_from_untrusted_clients_are_removed(server, tls_files):
    env = https_session(tls_files["ca"]).get(
        server.url + "/environ", headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "http"}, timeout=5
    ).json()
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["HTTP_X_FORWARDED_FOR"] is None
    assert env["wsgi.url_scheme"] == "https"


def test_forwarded_headers_from_trusted_proxies_are_believed(monoport):
    server = monoport(APP + ["--tls", "off", "--trusted-proxy", "127.0.0.1"])
    env = requests.get(f"http://127.0.0.1:{server.port}/environ", timeout=5,
                       headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}).json()
    assert env["REMOTE_ADDR"] == "203.0.113.9" and env["wsgi.url_scheme"] == "https"


def test_request_headers_reach_the_app_as_in_any_wsgi_server(server, client_ctx):
    head = (b"POST /headers HTTP/1.1\r\nHost: localhost\r\nX-Repeated: one\r\nx-repeated: two\r\n"
            b"Cookie: a=1\r\nCookie: b=2\r\nX_Smuggled: yes\r\nX-Folded: first\r\n second\r\n"
            b"X-Empty:\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
    answer = raw_exchange(server.port, head, tls=client_ctx)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200")
    env = json.loads(body)
    assert env["HTTP_X_REPEATED"] == "one,two"  # repeated headers joined, whatever their case
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_SMUGGLED" not in env  # an underscore could pass for a dash: dropped
    assert env["HTTP_X_FOLDED"] == "first second"  # obs-fold is one space (pywsgi alone kept the CRLF)
    assert env["HTTP_X_EMPTY"] == ""
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/plain", "2")
    assert "HTTP_CONTENT_TYPE" not in env and env["HTTP_HOST"] == "localhost"


def test_response_says_connection_close_when_the_client_asked_for_it(server, client_ctx):
    answer = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", tls=client_ctx)
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200") and b"connection: close" in head


def test_oversized_request_head_gets_431(server, client_ctx):
    answer = raw_exchange(server.port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", tls=client_ctx)
    assert answer.startswith(b"HTTP/1.1 431")


def test_slow_request_head_is_cut_at_the_deadline(monoport, tls_args, client_ctx):
    server = monoport(APP + tls_args + ["--head-timeout", "1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            started = time.monotonic()
            tls.sendall(b"GET / HTTP/1.1\r\n")
            for _ in range(30):  # one byte every 0.2 s: never completes the head
                try:
                    tls.sendall(b"X")
                except OSError:
                    break
                time.sleep(0.2)
                tls.settimeout(0.01)
                try:
                    if tls.recv(1) == b"":
                        break
                except (socket.timeout, ssl.SSLWantReadError):
                    pass
            assert time.monotonic() - started < 4
    server.wait_log("client timeout (request head)")


def test_malformed_polling_payload_gets_400_and_one_log_line(server, tls_files):
    session = https_session(tls_files["ca"])
    handshake = session.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=5).text
    sid = json.loads(handshake[1:])["sid"]
    response = session.post(server.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}", data=b"Zgarbage", timeout=5)
    assert response.status_code == 400
    log = server.wait_log("bad Engine.IO polling request")
    assert "Traceback" not in log


def in_app(server, ca: str) -> int:
    """How many requests are inside the app now (health's ``in_app``), asked on a connection of its own."""
    with https_session(ca) as probe:
        return probe.get(server.url + "/monoport/health", headers={"Connection": "close"}, timeout=5).json()["in_app"]


def test_sigterm_finishes_in_flight_requests_and_exits_0(server, tls_files):
    session = https_session(tls_files["ca"])
    client = sio_client(server.url, tls_files["ca"], ["websocket"])
    disconnected = threading.Event()
    client.on("disconnect", lambda *a: disconnected.set())
    result = {}

    def slow():
        result["r"] = session.get(server.url + "/slow?s=1.5", timeout=10)

    thread = threading.Thread(target=slow)
    thread.start()
    wait_for(lambda: in_app(server, tls_files["ca"]) >= 1, what="the slow request to be inside the app")
    server.send(signal.SIGTERM)
    thread.join(10)
    assert result["r"].status_code == 200 and result["r"].text == "slow done"
    assert result["r"].headers.get("Connection", "").lower() == "close"
    assert disconnected.wait(10)
    assert server.proc.wait(15) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)


def test_sighup_reloads_a_replaced_certificate(monoport, tls_files, tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    shutil.copy(tls_files["localhost"], cert)
    shutil.copy(tls_files["localhost_key"], key)
    server = monoport(APP + ["--cert", str(cert), "--key", str(key)])
    ctx = ssl.create_default_context(cafile=tls_files["ca"])
    ctx.check_hostname = False

    def names():
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                return [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]

    assert "localhost" in names()
    kept = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    kept_tls = ssl.create_default_context(cafile=tls_files["ca"]).wrap_socket(kept, server_hostname="localhost")
    shutil.copy(tls_files["other"], cert)
    shutil.copy(tls_files["other_key"], key)
    server.send(signal.SIGHUP)
    server.wait_log("certificates reloaded")
    assert "other.test" in names()
    # a connection opened before the reload is still served
    kept_tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert kept_tls.recv(100).startswith(b"HTTP/1.1 200")
    kept_tls.close()
