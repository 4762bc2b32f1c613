"""Trust: a PROXY header is believed only from --trusted-proxy networks (not even loopback by default).

The forwarded-header half of the rule is proved in test_core_e2e
(X-Forwarded-For/-Proto removed from untrusted clients, believed from
trusted ones); Socket.IO's CORS rule in test_limits.
"""

from __future__ import annotations

import json

from tests import corpus
from tests.clients import raw_exchange

APP = ["--app", "tests.apps.echo_app:app"]
GET_ENVIRON = b"GET /environ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def environ_through(port: int, prefix: bytes, client_ctx) -> dict | None:
    answer = raw_exchange(port, GET_ENVIRON, tls=client_ctx, prefix=prefix)
    if not answer.startswith(b"HTTP/1.1 200"):
        return None
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def test_proxy_header_from_an_untrusted_address_is_refused(monoport, tls_args, client_ctx):
    server = monoport(APP + tls_args)  # no --trusted-proxy: loopback is a stranger too
    for header in (corpus.PROXY_V1, corpus.PROXY_V2):
        assert raw_exchange(server.port, header + b"GET / HTTP/1.1\r\n\r\n") == b""
    log = server.wait_log("PROXY header from untrusted 127.0.0.1")
    assert log.count("PROXY header from untrusted") == 2


def test_proxy_header_from_a_trusted_network_names_the_client(monoport, tls_args, client_ctx):
    server = monoport(APP + tls_args + ["--trusted-proxy", "127.0.0.0/8"])
    for header in (corpus.PROXY_V1, corpus.PROXY_V2):
        env = environ_through(server.port, header, client_ctx)
        assert env is not None
        assert env["REMOTE_ADDR"] == "203.0.113.7" and env["REMOTE_PORT"] == "56324"
        assert env["wsgi.url_scheme"] == "https"
