"""One connection's life, in-process: :func:`monoport.path.serve_connection` over loopback TCP.

Each way a connection ends is recorded once, with its typed
:class:`~monoport.termination.Termination`: one close counted by the real
Stats, one ``conn`` record in the access log, and the socket closed. The
HTTP handler's keep-alive, head deadline and drain behaviour are driven the
same way, with the real pywsgi handler and a tiny WSGI app.
"""

from __future__ import annotations

from types import SimpleNamespace

import gevent
import pytest

from monoport.lifecycle import Lifecycle
from monoport.termination import Termination
from monoport.wire import proxyproto
from monoport.wire.httphead import MAX_HEADERS
from tests.inproc import Inproc, ResponseReader, Served, certificates, request, wait_until


def ended_once(server: Inproc, served: Served, termination: Termination) -> None:
    """The connection ended as ``termination``, counted once, logged once, and its socket closed."""
    conn = served.finish()
    assert (conn.termination, conn.detail) == (termination, conn.detail)
    assert server.stats.endings == [(conn, termination)], "closed more or less than once"
    assert sum(server.stats.closed.values()) == 1
    assert [key[2] for key in server.stats.closed] == [termination.value]
    assert not server.stats.open
    conn_records = [r for r in server.access_records() if r["event"] == "conn"]
    assert [r["termination"] for r in conn_records] == [termination.value]
    assert conn.raw_sock.fileno() == -1 and conn.sock.wrapped.fileno() == -1
    assert not server.services.per_client.counts and not server.services.balancer.local


def client_sees_close(sock) -> bool:
    try:
        for _ in range(100):  # bounded: whatever was still in flight, then EOF
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    return False


def one_answer_then_closed(server: Inproc, served: Served, sent: bytes, termination: Termination):
    """Send ``sent``; the one response, after which the server closed, the connection ended as ``termination``."""
    served.client.sendall(sent)
    response = ResponseReader(served.client).next()
    assert client_sees_close(served.client)
    ended_once(server, served, termination)
    return response


# -- endings ---------------------------------------------------------------------------------------
def test_a_client_that_closes_before_sending_anything_ends_client_closed(inproc):
    server = inproc()
    with server.serve() as served:
        served.client.close()
        ended_once(server, served, Termination.CLIENT_CLOSED)


#: (flags, TLS on, listener role, what the client sends, then says nothing) -> how the connection ends, its detail
CLOSED_BY_THE_SERVER = {
    "garbage-without-raw": (("--raw", "off"), False, "public", b"\x01\x02 not a protocol this port speaks\r\n",
                            Termination.PROTOCOL_ERROR, "not TLS, HTTP, PROXY or Flash; raw TCP is off"),
    "silent-without-raw": (("--raw", "off", "--sniff-timeout", "0.2"), False, "public", b"",
                           Termination.SNIFF_TIMEOUT, "sniff timeout (silent client); raw TCP is off"),
    "tls-handshake-garbage": ((), True, "public", b"\x16\x03\x01\x00\x10" + b"\xff" * 16,  # not a ClientHello
                              Termination.TLS_FAILED, "TLS handshake failed"),
    "proxy-header-untrusted": ((), False, "public",
                               b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\nGET / HTTP/1.1\r\n\r\n",
                               Termination.PROTOCOL_ERROR, "PROXY header from untrusted 127.0.0.1"),
    "head-unfinished": (("--head-timeout", "0.3"), False, "public", b"GET /never HTTP/1.1\r\nHost: localhost\r\n",
                        Termination.CLIENT_TIMEOUT, "client timeout (request head)"),
    "peer-listener-without-proxy-v2": ((), False, "peer", request("GET", "/"),
                                       Termination.PROTOCOL_ERROR, "does not begin with a PROXY v2 header"),
    "peer-listener-other-cluster": ((), False, "peer", proxyproto.build_v2(
        ("203.0.113.7", 40000), ("127.0.0.1", 1), forwarded_by="stranger", cluster="other") + request("GET", "/"),
        Termination.PROTOCOL_ERROR, "forward from cluster 'other' refused"),
    "flash-port-not-flash": ((), False, "flash", request("GET", "/"),
                             Termination.PROTOCOL_ERROR, "not a Flash policy request on the Flash policy port"),
}


@pytest.mark.parametrize("case", CLOSED_BY_THE_SERVER)
def test_a_connection_the_server_closes_ends_once_with_its_termination(inproc, tls_files, case):
    flags, secure, role, sent, termination, detail = CLOSED_BY_THE_SERVER[case]
    server = inproc(*flags, certs=certificates(tls_files) if secure else None)
    with server.serve(role) as served:
        served.client.sendall(sent)
        assert client_sees_close(served.client)  # bounded by the client's own timeout
        ended_once(server, served, termination)
    assert detail in served.conn.detail
    assert not server.app.seen


def test_clear_http_on_a_tls_port_is_redirected_with_301(inproc, tls_files):
    server = inproc(certs=certificates(tls_files))
    with server.serve() as served:
        response = one_answer_then_closed(server, served, request("GET", "/where?x=1"), Termination.SERVER_CLOSED)
    assert (response.status, response.headers["location"]) == (301, "https://localhost/where?x=1")
    assert not server.app.seen


@pytest.mark.parametrize("speaks", ["http", "raw"])
def test_a_client_over_max_conns_per_ip_is_refused_and_its_first_connection_is_not(inproc, speaks):
    server = inproc("--max-conns-per-ip", "1", "--raw", "off")
    with server.serve() as first, server.serve() as second:
        first.client.sendall(request("GET", "/first"))
        reader = ResponseReader(first.client)
        assert reader.next().status == 200  # the first stays open, idle in keep-alive
        if speaks == "http":
            second.client.sendall(request("GET", "/second"))
            refused = ResponseReader(second.client).next()
            assert (refused.status, refused.headers["retry-after"]) == (429, "1")
        else:
            second.client.sendall(b"\x01 raw bytes")
        assert client_sees_close(second.client)
        second_conn = second.finish()
        assert second_conn.termination is Termination.CLIENT_LIMIT
        assert not first.greenlet.ready()
        first.client.close()
        first.finish()
    assert [t for _, t in server.stats.endings] == [Termination.CLIENT_LIMIT, Termination.CLIENT_CLOSED]
    assert [s.path for s in server.app.seen] == ["/first"]
    assert not server.services.per_client.counts  # both released


# -- the HTTP handler ---------------------------------------------------------------------------------
def test_keep_alive_serves_requests_one_after_another_on_one_connection(inproc):
    server = inproc()
    with server.serve() as served:
        reader = ResponseReader(served.client)
        for n in range(3):  # each sent only after the previous answer: the idle wait in between
            served.client.sendall(request("POST", f"/{n}", b"x" * n))
            response = reader.next()
            assert (response.status, response.body) == (200, f"POST /{n} {n}\n".encode() + b"x" * n)
            assert "close" not in response.headers.get("connection", "")
        served.client.close()
        ended_once(server, served, Termination.CLIENT_CLOSED)
    assert served.conn.requests == 3 and server.requests == [("/0", 200), ("/1", 200), ("/2", 200)]
    assert served.conn.detail == "client closed (keep-alive)"


def test_a_keep_alive_connection_idle_past_its_timeout_ends_client_timeout(inproc):
    server = inproc("--keepalive-timeout", "0.3")
    with server.serve() as served:
        served.client.sendall(request("GET", "/once"))
        assert ResponseReader(served.client).next().status == 200
        assert client_sees_close(served.client)
        ended_once(server, served, Termination.CLIENT_TIMEOUT)
    assert served.conn.detail == "client timeout (keep-alive idle)"


def test_a_response_while_draining_says_connection_close_and_the_connection_ends(inproc):
    server = inproc()
    server.services.state.draining = True
    with server.serve() as served:
        response = one_answer_then_closed(server, served, request("GET", "/last"), Termination.SERVER_CLOSED)
    assert (response.status, response.headers["connection"]) == (200, "close")


def test_a_request_on_a_kept_connection_while_draining_is_answered_with_connection_close(inproc):
    server = inproc()
    with server.serve() as served:
        reader = ResponseReader(served.client)
        served.client.sendall(request("GET", "/before"))
        assert reader.next().headers.get("connection") is None
        server.services.state.draining = True
        served.client.sendall(request("GET", "/after"))
        assert reader.next().headers["connection"] == "close"
        assert client_sees_close(served.client)
        ended_once(server, served, Termination.SERVER_CLOSED)
    assert [s.path for s in server.app.seen] == ["/before", "/after"]


def test_an_idle_keep_alive_connection_woken_by_the_drain_ends_draining(inproc):
    server = inproc()
    state = server.services.state
    with server.serve() as served:
        served.client.sendall(request("GET", "/before"))
        assert ResponseReader(served.client).next().status == 200
        wait_until(lambda: served.conn in state.idle, "the connection waits for its next request")
        state.draining = True
        Lifecycle(SimpleNamespace(state=state)).close_idle()  # what a graceful stop does (it needs only the state)
        assert client_sees_close(served.client)
        ended_once(server, served, Termination.DRAINING)
    assert not state.idle


def test_a_request_head_with_too_many_headers_is_answered_431_and_ends_protocol_error(inproc):
    server = inproc()
    with server.serve() as served:
        # small (all of it read before the close, so no reset hides the answer), but over MAX_HEADERS
        big = request("GET", "/", headers=[(f"X-{n}", "v") for n in range(MAX_HEADERS + 1)])
        response = one_answer_then_closed(server, served, big, Termination.PROTOCOL_ERROR)
    assert response.status == 431


def test_a_tls_client_that_chose_http11_and_stays_silent_is_kept_as_a_preconnect(inproc, tls_files):
    server = inproc("--sniff-timeout", "0.2", certs=certificates(tls_files))
    with server.serve() as served:
        tls = served.tls(tls_files, alpn=["http/1.1"])
        gevent.sleep(0.4)  # past the sniff timeout: a browser's spare connection
        tls.sendall(request("GET", "/later", headers=[("Connection", "close")]))
        response = ResponseReader(tls).next()
        served.finish()
    assert response.status == 200 and served.conn.kind == "https"
    assert [s.path for s in server.app.seen] == ["/later"]
