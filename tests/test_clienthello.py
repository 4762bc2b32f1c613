"""The ClientHello parser reads SNI and ALPN from real ClientHellos, fed whole, byte by byte and in chunks."""

from __future__ import annotations

import random
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoport.wire.clienthello import MAX_HELLO, MAX_PREFIX, ClientHello, Unparseable, lacks, parse
from monoport.wire.sniff import NEED_MORE
from tests import corpus

CASES = [
    (corpus.client_hello("chat.example.com", alpn=["acme-tls/1"]), ClientHello("chat.example.com", ("acme-tls/1",))),
    (corpus.client_hello("Example.ORG", alpn=["h2", "http/1.1"]), ClientHello("example.org", ("h2", "http/1.1"))),
    (corpus.client_hello("localhost"), ClientHello("localhost", ())),
    (corpus.client_hello(None, alpn=["http/1.1"]), ClientHello(None, ("http/1.1",))),
    (corpus.client_hello("old.test", max_version=ssl.TLSVersion.TLSv1_2, alpn=["acme-tls/1"]),
     ClientHello("old.test", ("acme-tls/1",))),
]


def split_records(hello: bytes, size: int) -> bytes:
    """The same handshake message re-cut into TLS records of ``size`` bytes (as a client may send it)."""
    header, body = hello[:5], hello[5:]
    out = b""
    for start in range(0, len(body), size):
        fragment = body[start:start + size]
        out += header[:3] + len(fragment).to_bytes(2, "big") + fragment
    return out


def first_answer(data: bytes, cuts: list[int]):
    """Parse growing prefixes as TCP segments would deliver them; the first answer and its length."""
    for end in cuts + [len(data)]:
        result = parse(data[:end])
        if result is not NEED_MORE:
            return result, end
    return NEED_MORE, len(data)


@pytest.mark.parametrize("data,expected", CASES, ids=lambda v: repr(v)[:40])
def test_whole_hello_gives_sni_and_alpn(data, expected):
    assert parse(data) == expected


@pytest.mark.parametrize("data,expected", CASES, ids=lambda v: repr(v)[:40])
def test_byte_by_byte_needs_more_until_the_hello_is_complete(data, expected):
    result, used = first_answer(data, list(range(1, len(data))))
    assert result == expected
    assert used == len(data)


@pytest.mark.parametrize("data,expected", CASES, ids=lambda v: repr(v)[:40])
def test_random_chunks_give_the_same_answer(data, expected):
    rng = random.Random(len(data))
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(0, 6)))
        assert first_answer(data, cuts)[0] == expected


@pytest.mark.parametrize("size", [1, 7, 100, 511])
def test_hello_split_over_several_records(size):
    hello = corpus.client_hello("split.test", alpn=["acme-tls/1"])
    records = split_records(hello, size)
    if len(hello) - 5 > size * 32:
        assert isinstance(parse(records), Unparseable)  # more records than any client sends
    else:
        assert parse(records) == ClientHello("split.test", ("acme-tls/1",))
        assert first_answer(records, list(range(1, len(records))))[0] == ClientHello("split.test", ("acme-tls/1",))


def test_bytes_after_the_hello_are_ignored():
    hello = corpus.client_hello("a.test", alpn=["h2"])
    assert parse(hello + b"\x17\x03\x03garbage") == ClientHello("a.test", ("h2",))


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",
                                  b"\x15\x03\x03\x00\x02\x02\x28", b"\x16\x03\x01\x00\x00"])
def test_other_bytes_are_not_parseable(data):
    assert isinstance(parse(data), Unparseable)


def test_oversized_hello_is_refused_without_waiting_for_it():
    header = b"\x16\x03\x01\x40\x00" + b"\x01" + (MAX_HELLO + 1).to_bytes(3, "big")
    assert isinstance(parse(header), Unparseable)


def test_a_hello_truncated_inside_its_lengths_is_not_parseable():
    hello = corpus.client_hello("t.test", alpn=["acme-tls/1"])
    # a record and message that end inside the session id: its length overruns the message
    cut = bytearray(hello[:5 + 4 + 40])
    cut[3:5] = (4 + 40).to_bytes(2, "big")
    cut[6:9] = (40).to_bytes(3, "big")
    assert parse(bytes(cut)) == Unparseable("a length overruns its container")
    # bytes left over after the extensions
    longer = bytearray(hello + b"\x00")
    longer[3:5] = (int.from_bytes(hello[3:5], "big") + 1).to_bytes(2, "big")
    longer[6:9] = (int.from_bytes(hello[6:9], "big") + 1).to_bytes(3, "big")
    assert isinstance(parse(bytes(longer)), Unparseable)


def test_max_prefix_always_decides():
    assert parse(b"\x16\x03\x01\x00\x01\x01" * (MAX_PREFIX // 6 + 1)) is not NEED_MORE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data):
    result = parse(data)
    assert result is NEED_MORE or isinstance(result, (ClientHello, Unparseable))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_a_real_hello_with_one_byte_changed_never_raises(position, value):
    hello = bytearray(CASES[0][0])
    hello[position % len(hello)] = value
    result = parse(bytes(hello))
    assert result is NEED_MORE or isinstance(result, (ClientHello, Unparseable))


def test_lacks_is_true_only_for_a_whole_hello_without_the_token():
    acme = corpus.client_hello("a.test", alpn=["acme-tls/1"])
    plain = corpus.client_hello("a.test", alpn=["h2", "http/1.1"])
    assert lacks(plain, b"acme-tls/1")
    assert not lacks(acme, b"acme-tls/1")
    for end in range(len(plain)):  # a prefix: parse to know
        assert not lacks(plain[:end], b"acme-tls/1")
    assert not lacks(split_records(plain, 100), b"acme-tls/1")  # several records: parse to know
    assert not lacks(b"GET / HTTP/1.1\r\n\r\n", b"acme-tls/1")
