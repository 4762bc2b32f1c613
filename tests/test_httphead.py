"""Request-head checks: complete heads parse, limits answer 431, garbage 400."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monoport.errors import ProtocolViolation
from monoport.wire.httphead import _END, MAX_HEAD, MAX_HEADERS, _find_end, parse_head, parse_query
from monoport.wire.sniff import NEED_MORE


def test_head_with_query_gives_sid_and_exact_length():
    data = b"GET /socket.io/?EIO=4&transport=polling&sid=ab12.XyZ HTTP/1.1\r\nHost: h\r\n\r\nBODY"
    head = parse_head(data)
    assert head.query("sid") == "ab12.XyZ"
    assert head.path == "/socket.io/"
    assert data[head.length:] == b"BODY"
    assert head.header("host") == "h"


def test_partial_head_needs_more():
    data = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    for end in range(len(data) - 1):
        assert parse_head(data[:end]) is NEED_MORE


def test_oversized_head_is_431():
    data = b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD
    with pytest.raises(ProtocolViolation) as info:
        parse_head(data)
    assert info.value.status == 431


def test_too_many_headers_is_431():
    data = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n"
    with pytest.raises(ProtocolViolation) as info:
        parse_head(data)
    assert info.value.status == 431


@pytest.mark.parametrize("data", [b"GET /\r\n\r\n", b"GET / HTTP/1.1\r\nnocolon\r\n\r\n", b"GET / FTP/1.0\r\n\r\n"])
def test_malformed_head_is_400(data):
    with pytest.raises(ProtocolViolation) as info:
        parse_head(data)
    assert info.value.status == 400


@pytest.mark.parametrize("query", ["", "EIO=4&transport=polling&t=Pb1&sid=ab.cd", "a=1&a=2&b=%20x+y", "sid=&x", "=&&"])
def test_parse_query_is_parse_qs_made_once_and_read_only(query):
    parsed = parse_query(query)
    assert dict(parsed) == parse_qs(query)
    assert parse_query(query) is parsed  # the balancer's and the router's reads of one request share it
    with pytest.raises(TypeError):
        parsed["sid"] = ["forged"]  # type: ignore[index]


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\n\n", b"a", b": ", b"GET / HTTP/1.1"]),
                max_size=14).map(b"".join))
def test_the_end_of_a_head_is_where_the_first_blank_line_ends_crlf_or_bare_lf(data):
    # the CRLF CRLF search must agree with the regex that also accepts bare-LF blank lines
    match = _END.search(data)
    assert _find_end(data) == ((match.start(), match.end()) if match else (-1, -1))
