"""The sniffer classifies real first bytes, fed whole, byte by byte and in random chunks."""

from __future__ import annotations

import random
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monoport.wire.sniff import _SIGNATURES, MAX_SIGNATURE, NEED_MORE, Kind, _match, _tls, classify
from tests import corpus

CASES = (
    [(corpus.client_hello(), Kind.TLS), (corpus.client_hello(None), Kind.TLS),
     (corpus.client_hello(max_version=ssl.TLSVersion.TLSv1_2), Kind.TLS)]
    + [(r, Kind.HTTP) for r in corpus.HTTP_REQUESTS]
    + [(corpus.FLASH, Kind.FLASH), (corpus.PROXY_V1, Kind.PROXY), (corpus.PROXY_V2, Kind.PROXY)]
    + [(r, Kind.RAW) for r in corpus.RAW]
)


def feed(data: bytes, cuts: list[int]):
    """Classify growing prefixes as a stream would deliver them; return the first decision."""
    seen = b""
    for end in cuts + [len(data)]:
        seen = data[:end]
        result = classify(seen)
        if result is not NEED_MORE:
            return result, len(seen)
    return NEED_MORE, len(seen)


@pytest.mark.parametrize("data,kind", CASES, ids=lambda v: repr(v)[:30])
def test_whole_prefix_is_classified(data, kind):
    assert classify(data) is kind


@pytest.mark.parametrize("data,kind", CASES, ids=lambda v: repr(v)[:30])
def test_byte_by_byte_reaches_the_same_kind_within_the_signature_bound(data, kind):
    result, used = feed(data, list(range(1, len(data))))
    assert result is kind
    assert used <= MAX_SIGNATURE


@pytest.mark.parametrize("data,kind", CASES, ids=lambda v: repr(v)[:30])
def test_random_chunks_reach_the_same_kind(data, kind):
    rng = random.Random(len(data))
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 5))))
        assert feed(data, cuts)[0] is kind


def test_empty_prefix_needs_more():
    assert classify(b"") is NEED_MORE


@pytest.mark.parametrize("prefix", [b"G", b"GE", b"GET", b"P", b"PR", b"PROXY", b"\r\n", b"<pol", b"\x16", b"\x16\x03"])
def test_ambiguous_prefixes_need_more(prefix):
    assert classify(prefix) is NEED_MORE


def test_lowercase_method_is_raw_not_http():
    assert classify(b"get / HTTP/1.1\r\n") is Kind.RAW


def test_tls_record_with_unknown_version_is_raw():
    assert classify(b"\x16\x09\x00") is Kind.RAW


def _classify_trying_every_signature(prefix: bytes):
    """The plain reading of the rule: every signature in order, then TLS (the reference for the indexed one)."""
    if not prefix:
        return NEED_MORE
    undecided = False
    for kind, signature in _SIGNATURES:
        found = _match(prefix, signature)
        if found is NEED_MORE:
            undecided = True
        elif found:
            return kind
    tls = _tls(prefix)
    if tls is Kind.TLS:
        return tls
    return NEED_MORE if undecided or tls is NEED_MORE else Kind.RAW


@given(st.one_of(
    st.binary(max_size=30),
    st.sampled_from([b"GET ", b"POST ", b"PROXY ", b"PUT ", b"PATCH ", b"\r\n\r\n\x00\r\nQUIT\n", b"<policy-file-request/>\x00",
                     b"\x16\x03\x01", b"\x16\x03\x05", b"\x16\x02"]).flatmap(
        lambda sig: st.tuples(st.integers(1, len(sig)), st.binary(max_size=5)).map(lambda t: sig[:t[0]] + t[1])),
))
def test_classify_looks_only_at_signatures_that_share_the_first_byte_and_agrees_with_trying_all(prefix):
    assert classify(prefix) == _classify_trying_every_signature(prefix)
