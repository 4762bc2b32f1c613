"""PROXY v1/v2 parsing: exact consumption, NEED_MORE on partial input, errors on garbage."""

from __future__ import annotations

import pytest

from monoport.wire import proxyproto
from monoport.errors import ProtocolViolation
from monoport.wire.sniff import NEED_MORE


def test_v1_tcp4_gives_client_address_and_consumes_exactly_the_header():
    data = b"PROXY TCP4 203.0.113.7 127.0.0.1 56324 8443\r\nGET / HTTP/1.1\r\n"
    header, consumed = proxyproto.parse(data)
    assert header.source == ("203.0.113.7", 56324)
    assert data[consumed:].startswith(b"GET /")


def test_v1_tcp6_and_unknown():
    header, _ = proxyproto.parse(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n")
    assert header.source == ("2001:db8::1", 1)
    header, consumed = proxyproto.parse(b"PROXY UNKNOWN\r\nrest")
    assert not header.proxied and consumed == 15


def test_v2_round_trip_carries_tls_authority_and_forwarder():
    built = proxyproto.build_v2(("198.51.100.2", 4000), ("10.0.0.1", 443), tls_version="TLSv1.3",
                                authority="example.com", forwarded_by="ab12")
    header, consumed = proxyproto.parse(built + b"\x16\x03\x01")
    assert consumed == len(built)
    assert header.source == ("198.51.100.2", 4000)
    assert header.tls and header.tls_version == "TLSv1.3"
    assert header.authority == "example.com" and header.forwarded_by == "ab12"


def test_v2_ipv6():
    built = proxyproto.build_v2(("2001:db8::5", 1), ("::1", 2))
    header, _ = proxyproto.parse(built)
    assert header.source == ("2001:db8::5", 1)


@pytest.mark.parametrize("data", [
    proxyproto.build_v2(("1.2.3.4", 5), ("5.6.7.8", 9)),
    b"PROXY TCP4 1.2.3.4 5.6.7.8 5 9\r\n",
])
def test_every_proper_prefix_needs_more(data):
    for end in range(1, len(data)):
        assert proxyproto.parse(data[:end]) is NEED_MORE


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 5\r\n",
    b"PROXY TCP4 999.2.3.4 5.6.7.8 5 9\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 5 99999\r\n",
    b"PROXY " + b"A" * 200,
    b"GET / HTTP/1.1\r\n",
    proxyproto.PROXY_V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),  # version 3
])
def test_malformed_headers_raise_protocol_violation(data):
    with pytest.raises(ProtocolViolation):
        proxyproto.parse(data)
