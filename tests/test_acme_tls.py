"""TLS-ALPN-01 on the serving port: the challenge certificate, validators answered, everyone else untouched.

A real monoport process with ``--acme`` and a directory that cannot be
reached (so it keeps serving its self-signed stand-in); the test places
challenges in the shared registry under ``--certs-dir`` as the ordering code
does, and connects as a validator would.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import time

import pytest
from cryptography import x509

from monoport.acme_challenge import ACME_IDENTIFIER_OID, Challenges, challenge_certificate
from tests import corpus
from tests.conftest import free_port, wait_for

NAME = "chat.test"
KEY_AUTHORIZATION = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


def acme_args(tmp_path, *extra: str) -> list[str]:
    unreachable = f"http://127.0.0.1:{free_port()}/directory"
    return ["--acme", NAME, "--acme-directory", unreachable, "--acme-retry", "30:60",
            "--certs-dir", str(tmp_path / "certs"), *extra]


def handshake(port: int, name: str | None, alpn: list[str], timeout: float = 5.0) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(sock, server_hostname=name)


def peer_cert(tls: ssl.SSLSocket) -> x509.Certificate:
    return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_challenge_certificate_carries_the_digest_in_a_critical_acme_identifier():
    cert_pem, _ = challenge_certificate(NAME, KEY_AUTHORIZATION)
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [NAME]
    ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    assert ext.critical
    digest = hashlib.sha256(KEY_AUTHORIZATION.encode()).digest()
    assert ext.value.value == b"\x04\x20" + digest  # DER OCTET STRING of the SHA-256
    assert cert.issuer == cert.subject  # self-signed


def test_validator_gets_the_challenge_certificate_and_the_connection_closes(monoport, tmp_path):
    log = tmp_path / "access.log"
    server = monoport(acme_args(tmp_path, "--access-log", str(log), "--log-format", "json"))
    Challenges(tmp_path / "certs" / "acme" / "challenges").put_tls_alpn(NAME, KEY_AUTHORIZATION)
    tls = handshake(server.port, NAME, ["acme-tls/1"])
    try:
        assert tls.selected_alpn_protocol() == "acme-tls/1"
        ext = peer_cert(tls).extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
        assert ext.value.value[2:] == hashlib.sha256(KEY_AUTHORIZATION.encode()).digest()
        assert tls.recv(100) == b""  # no application data follows: closed
    finally:
        tls.close()
    server.wait_log(f"acme tls-alpn-01 challenge answer for {NAME}")
    wait_for(lambda: "acme-tls-alpn" in log.read_text(), 10, what=lambda: log.read_text())
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(r["kind"] == "acme-tls-alpn" and r["sni"] == NAME for r in records), records


def test_validator_for_a_name_without_challenge_is_refused_with_one_line(monoport, tmp_path):
    server = monoport(acme_args(tmp_path))
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(server.port, "other.test", ["acme-tls/1"]).close()
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(server.port, NAME, ["acme-tls/1"]).close()  # the name is managed, but nothing is pending
    text = server.wait_log("acme-tls/1 for chat.test: no pending challenge")
    assert text.count("acme-tls/1 for other.test: no pending challenge") == 1
    assert "Traceback" not in text


def test_ordinary_client_gets_the_self_signed_stand_in_not_the_dev_ca(monoport, tmp_path):
    server = monoport(acme_args(tmp_path, "--hsts", "600"))
    server.wait_log(f"serving a self-signed certificate for {NAME}")
    Challenges(tmp_path / "certs" / "acme" / "challenges").put_tls_alpn(NAME, KEY_AUTHORIZATION)
    # a browser offering acme-tls/1 among others is an ordinary client
    tls = handshake(server.port, NAME, ["acme-tls/1", "http/1.1"])
    with tls:
        cert = peer_cert(tls)
        assert cert.issuer == cert.subject
        assert cert.subject.rfc4514_string() == f"CN={NAME}"
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
        assert tls.selected_alpn_protocol() == "http/1.1"
        tls.sendall(b"GET / HTTP/1.1\r\nHost: chat.test\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Strict-Transport-Security: max-age=600" in head
    assert not (tmp_path / "certs" / "monoport-dev-ca.pem").exists()


def test_ordinary_hello_sent_in_pieces_is_handshaked_unchanged(monoport, tmp_path):
    """The ClientHello is only peeked: split over segments with pauses, the handshake still completes."""
    server = monoport(acme_args(tmp_path))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=NAME)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        done = False
        for _ in range(50):
            try:
                obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                pass
            data = outgoing.read()
            if data and not incoming.pending and obj.version() is None and len(data) > 100:
                for piece in (data[:7], data[7:60], data[60:]):  # the first flight, in three segments
                    sock.sendall(piece)
                    time.sleep(0.15)
            elif data:
                sock.sendall(data)
            if done:
                break
            incoming.write(sock.recv(65536))
        assert done and obj.version() in ("TLSv1.3", "TLSv1.2")


def test_malformed_client_hello_is_one_line_and_the_listener_goes_on(monoport, tmp_path):
    server = monoport(acme_args(tmp_path))
    hello = bytearray(corpus.client_hello(NAME, alpn=["acme-tls/1"]))
    hello[9 + 34] = 0xFF  # the session id's length now runs past the message
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(bytes(hello))
        sock.settimeout(10)
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
    log = server.wait_log("TLS handshake failed")
    assert log.count("TLS handshake failed") == 1 and "Traceback" not in log
    # the next client is served as usual
    with handshake(server.port, NAME, ["http/1.1"]) as tls:
        assert tls.version()
