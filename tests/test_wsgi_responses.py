"""Responses on one kept-alive connection come out whole, whatever their size and framing.

monoport writes a small first body piece in the same write as the response
head (pywsgi writes them apart), and adds the Date itself: every size around
that bound, chunked bodies and bodiless answers must still frame exactly.
"""

from __future__ import annotations

import email.utils
import http.client
import socket

import pytest

from monoport.pywsgi_lean import ONE_WRITE_MAX

APP = ["--app", "tests.apps.echo_app:app"]


@pytest.fixture
def conn(monoport, tls_args, client_ctx):
    server = monoport(APP + tls_args)
    connection = http.client.HTTPSConnection("localhost", server.port, context=client_ctx, timeout=10)
    yield connection
    connection.close()


def fetch(conn: http.client.HTTPSConnection, method: str, path: str) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path)
    response = conn.getresponse()
    return response, response.read()


def test_bodies_around_the_one_write_bound_arrive_whole_on_one_connection(conn):
    for n in (1, ONE_WRITE_MAX - 1, ONE_WRITE_MAX, ONE_WRITE_MAX + 1, 3 * ONE_WRITE_MAX + 7):
        response, body = fetch(conn, "GET", f"/big?n={n}")
        assert response.status == 200 and response.getheader("Content-Length") == str(n)
        assert body == b"x" * n
    sock = conn.sock
    response, body = fetch(conn, "GET", "/")
    assert body == b"hello from flask" and conn.sock is sock  # still the same connection


def test_chunked_bodies_arrive_whole(conn):
    for n, parts in ((5, 3), (ONE_WRITE_MAX, 2), (ONE_WRITE_MAX + 1, 2)):
        response, body = fetch(conn, "GET", f"/stream?n={n}&parts={parts}")
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert body == b"y" * n * parts
    response, body = fetch(conn, "HEAD", "/")
    assert response.status == 200 and body == b""
    response, body = fetch(conn, "GET", "/")
    assert body == b"hello from flask"


def test_every_response_has_a_current_date(conn):
    before = email.utils.formatdate(usegmt=True)
    response, _ = fetch(conn, "GET", "/")
    date = response.getheader("Date")
    after = email.utils.formatdate(usegmt=True)
    assert date in (before, after)  # one of the two seconds the request spanned (or both the same)
    assert response.msg.get_all("Date") == [date]


def test_a_response_to_http_1_0_is_whole_and_closes(monoport, tls_args, client_ctx):
    server = monoport(APP + tls_args)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /stream?n=4&parts=2 HTTP/1.0\r\nHost: localhost\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"yyyyyyyy"  # no chunks for HTTP/1.0


def test_pipelined_requests_are_all_answered_in_order(monoport, tls_args, client_ctx):
    # the next request is already buffered (one record) or already in the kernel (two records)
    # when the connection goes back to wait for it: neither may be waited for in vain
    server = monoport(APP + tls_args)
    request = b"GET /big?n=%d HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(request % 1 + request % 2)  # one TLS record
            tls.sendall(request % 3)  # and another, right behind it
            tls.sendall(request % 4 + b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in data.split(b"HTTP/1.1 200 OK\r\n")[1:]]
    assert bodies == [b"x", b"xx", b"xxx", b"xxxx", b"hello from flask"]
