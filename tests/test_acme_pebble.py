"""Automatic HTTPS against a real ACME CA: Pebble, offline, on loopback.

Pebble's validator is pointed at monoport's serving port (TLS-ALPN-01); its
mock DNS answers every name with 127.0.0.1. A client that trusts only
Pebble's root then verifies the certificate monoport serves.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys

import pytest
from cryptography import x509

from tests.clients import websocket_connect
from tests.cluster import APP
from tests.conftest import ROOT, free_port, wait_for

NAME = "chat.test"
#: an order against Pebble takes about two seconds; room for a loaded machine
ISSUE_TIMEOUT = 60.0


def acme_args(pebble_server, certs_dir, *names: str) -> list[str]:
    args = ["--certs-dir", str(certs_dir), "--acme-retry", "1:4", *pebble_server.args()]
    for name in names or (NAME,):
        args += ["--acme", name]
    return args


def served_certificate(port: int, ctx: ssl.SSLContext, name: str = NAME) -> x509.Certificate:
    """Handshake as ``name`` with ``ctx`` (verification on) and return the leaf."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=name) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def get(port: int, ctx: ssl.SSLContext, path: str = "/", name: str = NAME) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=name) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    return answer


def test_certificate_issued_through_tls_alpn_01_on_the_serving_port(monoport, pebble, tmp_path):
    port = free_port()
    ca = pebble(tls_port=port)
    server = monoport(acme_args(ca, tmp_path / "certs"), port=port)
    server.wait_log(f"acme: certificate for {NAME} issued by Pebble", timeout=ISSUE_TIMEOUT)
    log = server.wait_log("acme: certificates reloaded")
    assert "acme-tls-alpn - sni=chat.test" in log  # Pebble's validator reached the serving port
    ctx = ca.client_context()
    cert = served_certificate(port, ctx)  # verifies the chain up to Pebble's root and the name
    assert "Pebble" in cert.issuer.rfc4514_string()
    answer = get(port, ctx)
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"Strict-Transport-Security" not in answer.split(b"\r\n\r\n")[0]  # --hsts is off by default
    # the stats page, stats.json and metrics show the certificate
    stats = json.loads(get(port, ctx, "/monoport/stats.json").split(b"\r\n\r\n", 1)[1])
    [shown] = stats["extra"]["acme"]
    assert shown["names"] == [NAME] and "Pebble" in shown["issuer"] and shown["failures"] == 0
    assert shown["not_after"] == cert.not_valid_after_utc.isoformat()
    assert 0 < shown["renew_in"] < shown["expires_in"]
    metrics = get(port, ctx, "/monoport/metrics").decode()
    assert 'monoport_acme_failed_attempts{names="chat.test"} 0.0' in metrics
    assert 'monoport_acme_certificate_renewal_seconds{names="chat.test"}' in metrics
    assert "Pebble" in get(port, ctx, "/monoport/stats").decode()
    # keys are private to the server's user
    base = tmp_path / "certs" / "acme"
    for key in (base / "account.key", base / "certs" / NAME / "key.pem"):
        assert key.stat().st_mode & 0o777 == 0o600


def test_restart_reuses_the_stored_certificate_without_ordering_again(monoport, pebble, tmp_path):
    port = free_port()
    ca = pebble(tls_port=port)
    first = monoport(acme_args(ca, tmp_path / "certs"), port=port)
    first.wait_log(f"acme: certificate for {NAME} issued", timeout=ISSUE_TIMEOUT)
    first.wait_log("acme: certificates reloaded")
    ctx = ca.client_context()
    serial = served_certificate(port, ctx).serial_number
    first.stop()
    orders = ca.orders()
    assert orders == 1
    second = monoport(acme_args(ca, tmp_path / "certs"), port=port)
    assert served_certificate(port, ctx).serial_number == serial
    assert "self-signed" not in second.log()
    assert "acme: ordering" not in second.log()
    assert ca.orders() == orders


def check(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PORT", None)
    return subprocess.run([sys.executable, "-m", "monoport", "--check", *args], capture_output=True, text=True,
                          check=False, env=env, cwd=ROOT, timeout=60)


def test_check_refuses_acme_on_the_production_directory_without_agreeing_to_its_terms(tmp_path):
    port = str(free_port())
    refused = check("--bind", f"127.0.0.1:{port}", "--acme", "chat.example.com", "--certs-dir", str(tmp_path))
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--acme-agree-tos" in lines[0], refused.stderr
    agreed = check("--bind", f"127.0.0.1:{port}", "--acme", "chat.example.com", "--acme-agree-tos",
                   "--certs-dir", str(tmp_path))
    assert agreed.returncode == 0, agreed.stderr
    assert "acme chat.example.com from https://acme-v02.api.letsencrypt.org/directory" in agreed.stdout
    staging = check("--bind", f"127.0.0.1:{port}", "--acme", "chat.example.com", "--acme-directory", "staging",
                    "--certs-dir", str(tmp_path))
    assert staging.returncode == 0, staging.stderr


@pytest.mark.parametrize("plain", ["redirect", "serve"])
def test_certificate_issued_through_http_01_on_a_second_bind(monoport, pebble, tmp_path, plain):
    """The token is answered before the redirect to https (--plain redirect) or before the app (serve)."""
    port, clear = free_port(), free_port()
    ca = pebble(tls_port=free_port(), http_port=clear)  # nothing answers TLS-ALPN-01 for this CA
    server = monoport(acme_args(ca, tmp_path / "certs") + ["--bind", f"127.0.0.1:{clear}", "--plain", plain,
                                                            "--acme-challenge", "http-01"], port=port)
    server.wait_log(f"acme: certificate for {NAME} issued by Pebble", timeout=ISSUE_TIMEOUT)
    log = server.wait_log("acme: certificates reloaded")
    assert "acme-http-01" in log and "acme-tls-alpn" not in log
    ctx = ca.client_context()
    for bound in (port, clear):  # both binds serve the new certificate over TLS
        assert "Pebble" in served_certificate(bound, ctx).issuer.rfc4514_string()
    # clear-text requests for anything else still get what --plain says
    with socket.create_connection(("127.0.0.1", clear), timeout=10) as sock:
        sock.sendall(b"GET /.well-known/acme-challenge/unknown-token-123456 HTTP/1.1\r\nHost: chat.test\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 301" if plain == "redirect" else b"HTTP/1.1 404")


def test_short_lived_certificate_is_renewed_while_a_websocket_stays_connected(monoport, pebble, tmp_path):
    port = free_port()
    ca = pebble(tls_port=port, validity=15)  # renewal due 10 s after issuance
    server = monoport(acme_args(ca, tmp_path / "certs"), port=port)
    server.wait_log(f"acme: certificate for {NAME} issued", timeout=ISSUE_TIMEOUT)
    server.wait_log("acme: certificates reloaded")
    root = tmp_path / "pebble-root.pem"
    root.write_text(ca.root())
    ctx = ca.client_context()
    first = served_certificate(port, ctx)
    ws = websocket_connect(f"wss://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
                           sslopt={"ca_certs": str(root), "server_hostname": NAME},
                           host=NAME, origin=f"https://{NAME}", timeout=10)
    try:
        assert ws.recv().startswith("0{")
        wait_for(lambda: server.log().count(f"acme: certificate for {NAME} issued") >= 2, timeout=ISSUE_TIMEOUT,
                 what=lambda: server.log())
        assert f"acme: renewing a certificate for {NAME}" in server.log()
        wait_for(lambda: served_certificate(port, ctx).serial_number != first.serial_number, timeout=10)
        # the WebSocket opened under the first certificate is still served
        ws.send("40")
        for _ in range(10):
            packet = ws.recv()
            if packet == "2":
                ws.send("3")
                continue
            assert packet.startswith("40{"), packet
            break
        else:
            raise AssertionError("no Socket.IO CONNECT answer")
    finally:
        ws.close()
    assert ca.orders() >= 2


def test_directory_down_at_start_then_up_the_certificate_arrives_after_back_off(monoport, pebble, tmp_path):
    port = free_port()
    ca = pebble(tls_port=port, start=False)
    server = monoport(acme_args(ca, tmp_path / "certs"), port=port)
    server.wait_log(f"acme: ordering {NAME} failed (attempt 1)", timeout=ISSUE_TIMEOUT)
    server.wait_log(f"acme: ordering {NAME} failed (attempt 2)", timeout=ISSUE_TIMEOUT)
    # meanwhile the self-signed stand-in is served, and TLS keeps working
    stand_in = served_certificate(port, ssl._create_unverified_context())
    assert stand_in.issuer == stand_in.subject
    ca.start()
    server.wait_log(f"acme: certificate for {NAME} issued by Pebble", timeout=ISSUE_TIMEOUT)
    server.wait_log("acme: certificates reloaded")
    assert "Pebble" in served_certificate(port, ca.client_context()).issuer.rfc4514_string()
    log = server.log()
    assert "next attempt in 1s" in log and "next attempt in 2s" in log  # doubling from --acme-retry's minimum
    assert log.count("Traceback") == 0


def test_two_workers_sharing_the_certs_dir_order_once(monoport, pebble, redis_url, tmp_path):
    port = free_port()
    ca = pebble(tls_port=port)
    server = monoport(APP + acme_args(ca, tmp_path / "certs") + ["--workers", "2", "--redis", redis_url,
                                                                  "--instance-id", "w"], port=port)
    wait_for(lambda: server.log().count("instance w") >= 2, timeout=20, what=server.log)
    server.wait_log(f"acme: certificate for {NAME} issued by Pebble", timeout=ISSUE_TIMEOUT)
    server.wait_log(f"acme: picked up the certificate for {NAME}", timeout=ISSUE_TIMEOUT)  # the other worker
    ctx = ca.client_context()
    # new connections spread over both workers (SO_REUSEPORT): each serves the one certificate
    serials = {served_certificate(port, ctx).serial_number for _ in range(12)}
    assert len(serials) == 1
    assert ca.orders() == 1
    assert server.log().count("acme: ordering a certificate") == 1


def test_a_rejected_challenge_is_one_line_and_a_back_off(monoport, pebble, tmp_path):
    port = free_port()
    ca = pebble(tls_port=free_port())  # the validator knocks where nobody listens
    server = monoport(acme_args(ca, tmp_path / "certs") + ["--acme-challenge", "tls-alpn-01"], port=port)
    log = server.wait_log(f"acme: ordering {NAME} failed (attempt 1)", timeout=ISSUE_TIMEOUT)
    [line] = [line for line in log.splitlines() if "failed (attempt 1)" in line]
    assert "next attempt in 1s, serving the self-signed one" in line
    assert "challenge rejected (chat.test: urn:ietf:params:acme:error:" in line
    assert "Traceback" not in log
    stand_in = served_certificate(port, ssl._create_unverified_context())
    assert stand_in.issuer == stand_in.subject


def test_an_account_the_ca_forgot_is_registered_again(monoport, pebble, tmp_path):
    port = free_port()
    ca = pebble(tls_port=port)
    first = monoport(acme_args(ca, tmp_path / "certs"), port=port)
    first.wait_log(f"acme: certificate for {NAME} issued", timeout=ISSUE_TIMEOUT)
    first.stop()
    ca.stop()
    ca.start()  # a new Pebble on the same port: it knows no account
    second = monoport(acme_args(ca, tmp_path / "certs", NAME, "other.test"), port=port)
    forgotten = "acme: ordering other.test failed (attempt 1): urn:ietf:params:acme:error:accountDoesNotExist"
    log = second.wait_log(forgotten, timeout=ISSUE_TIMEOUT)
    assert "acme: ordering a certificate for chat.test" not in log  # the stored one is still used
    second.wait_log("acme: certificate for other.test issued by Pebble", timeout=ISSUE_TIMEOUT)
    assert second.log().count("acme: account ") == 1  # registered anew, once


def test_instances_on_two_hosts_sharing_redis_order_once_and_answer_each_others_challenges(
        monoport, pebble, redis_url, tmp_path):
    """Different --certs-dir (as on two hosts), one Redis: the validator reaches only B, A orders."""
    port_a, port_b = free_port(), free_port()
    ca = pebble(tls_port=port_b, start=False)
    common = APP + ["--redis", redis_url, "--acme", NAME, *ca.args()]
    b = monoport(common + ["--certs-dir", str(tmp_path / "b"), "--acme-retry", "3600:3600", "--instance-id", "b"],
                 port=port_b)
    b.wait_log(f"acme: ordering {NAME} failed (attempt 1)", timeout=ISSUE_TIMEOUT)  # B now waits an hour
    a = monoport(common + ["--certs-dir", str(tmp_path / "a"), "--acme-retry", "1:2", "--instance-id", "a"],
                 port=port_a)
    ca.start()
    a.wait_log(f"acme: certificate for {NAME} issued by Pebble", timeout=ISSUE_TIMEOUT)
    assert f"closed after the acme tls-alpn-01 challenge answer for {NAME}" in b.log()  # B answered A's challenge
    b.wait_log(f"acme: picked up the certificate for {NAME}", timeout=ISSUE_TIMEOUT)
    b.wait_log("acme: certificates reloaded")
    ctx = ca.client_context()
    assert served_certificate(port_a, ctx).serial_number == served_certificate(port_b, ctx).serial_number
    assert ca.log.read_text().count("Issued certificate serial") == 1
