"""TLS on the public port: old protocols and weak ciphers refused, stalls cut, SNI fallbacks.

Every client here is Python's ssl module on a real loopback socket against
a real monoport process; old protocol versions are offered with
``@SECLEVEL=0``, without which OpenSSL 3 would not even send them.
"""

from __future__ import annotations

import socket
import ssl
import time
import warnings

import pytest
import trustme

from tests import corpus

APP = ["--app", "tests.apps.echo_app:app"]
OLD = "DEFAULT:@SECLEVEL=0"


@pytest.fixture(scope="module")
def rsa_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An RSA certificate: the only kind with which RSA key exchange could be negotiated at all."""
    base = tmp_path_factory.mktemp("rsa")
    cert = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA)
    cert.cert_chain_pems[0].write_to_path(str(base / "rsa.pem"))
    cert.private_key_pem.write_to_path(str(base / "rsa.key"))
    return {"cert": str(base / "rsa.pem"), "key": str(base / "rsa.key")}


def handshake(port: int, ctx: ssl.SSLContext, name: str = "localhost") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return ctx.wrap_socket(raw, server_hostname=name)
    except BaseException:
        raw.close()
        raise


def old_client(ca: str, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_ciphers(OLD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = version
    return ctx


@pytest.fixture
def rsa_server(monoport, rsa_files):
    return monoport(APP + ["--cert", rsa_files["cert"], "--key", rsa_files["key"], "--handshake-timeout", "1"])


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_1_0_and_1_1_clients_are_refused(rsa_server, tls_files, version):
    ctx = old_client(tls_files["ca"], getattr(ssl.TLSVersion, version))
    with pytest.raises(ssl.SSLError):
        handshake(rsa_server.port, ctx).close()
    rsa_server.wait_log("TLS handshake failed")
    # the same client allowed TLS 1.2 is served: the refusal is the version's
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with handshake(rsa_server.port, ctx) as tls:
        assert tls.version() == "TLSv1.2"


def test_sslv3_client_hello_gets_an_alert_not_a_server_hello(rsa_server):
    hello = bytearray(corpus.client_hello(max_version=ssl.TLSVersion.TLSv1_1, ciphers=OLD))
    hello[1:3] = b"\x03\x00"  # record version
    hello[9:11] = b"\x03\x00"  # ClientHello.client_version: SSL 3.0
    with socket.create_connection(("127.0.0.1", rsa_server.port), timeout=10) as sock:
        sock.sendall(bytes(hello))
        answer = sock.recv(100)
    assert answer[:1] != b"\x16", "the server answered an SSLv3 hello with a handshake"
    assert answer == b"" or answer[:1] == b"\x15"  # closed, or a TLS alert record
    rsa_server.wait_log("TLS handshake failed")


@pytest.mark.parametrize("ciphers", [
    "AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256",  # RSA key exchange, CBC
    "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA",  # forward secret, but CBC with SHA-1
])
def test_tls_1_2_client_offering_only_weak_ciphers_is_refused(rsa_server, tls_files, ciphers):
    ctx = ssl.create_default_context(cafile=tls_files["ca"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError:
        pytest.fail(f"this OpenSSL cannot offer {ciphers}: the test would prove nothing")
    with pytest.raises(ssl.SSLError):
        handshake(rsa_server.port, ctx).close()
    log = rsa_server.wait_log("TLS handshake failed")
    assert "Traceback" not in log


def test_tls_1_2_with_a_strong_cipher_is_served(rsa_server, tls_files):
    ctx = ssl.create_default_context(cafile=tls_files["ca"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with handshake(rsa_server.port, ctx) as tls:
        assert "GCM" in tls.cipher()[0] or "CHACHA20" in tls.cipher()[0]


def test_handshake_stalled_after_the_server_flight_is_cut_at_the_deadline(rsa_server):
    """The client sends its ClientHello, reads the server's answer, then goes silent."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.2: the server waits for our Finished
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    with socket.create_connection(("127.0.0.1", rsa_server.port), timeout=15) as sock:
        sock.sendall(outgoing.read())
        started = time.monotonic()
        first = sock.recv(65536)
        assert first[:1] == b"\x16"  # ServerHello: the handshake is halfway
        while True:  # never answer; wait for the server to give up
            try:
                if not sock.recv(65536):
                    break
            except ConnectionResetError:
                break
        waited = time.monotonic() - started
    print(f"stalled handshake cut after {waited:.2f}s (deadline 1 s)")
    assert waited < 10
    rsa_server.wait_log("TLS handshake failed (timeout)")


@pytest.fixture
def two_cert_args(tls_files):
    return APP + ["--cert", tls_files["localhost"], "--key", tls_files["localhost_key"],
                  "--cert", tls_files["other"], "--key", tls_files["other_key"]]


def sans(tls: ssl.SSLSocket) -> list[str]:
    return [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]


def test_unknown_sni_gets_the_default_certificate(monoport, two_cert_args, tls_files):
    server = monoport(two_cert_args)
    ctx = ssl.create_default_context(cafile=tls_files["ca"])
    ctx.check_hostname = False  # the name is unknown on purpose; the chain is still verified
    with handshake(server.port, ctx, "unknown.example") as tls:
        assert "localhost" in sans(tls)


def test_strict_sni_refuses_unknown_names_and_serves_known_ones(monoport, two_cert_args, tls_files):
    server = monoport(two_cert_args + ["--strict-sni"])
    ctx = ssl.create_default_context(cafile=tls_files["ca"])
    ctx.check_hostname = False
    with pytest.raises(ssl.SSLError):
        handshake(server.port, ctx, "unknown.example").close()
    server.wait_log("TLS handshake failed")
    with handshake(server.port, ctx, "a.other.test") as tls:
        assert "*.other.test" in sans(tls)
