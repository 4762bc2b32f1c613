"""The sniffer classifies real first bytes, fed whole, byte by byte and in random chunks."""

from __future__ import annotations

import random
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monoport.wire.sniff import _BY_FIRST_BYTE, _SIGNATURES, MAX_SIGNATURE, NEED_MORE, Kind, _match, classify
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



@given(st.binary(min_size=1, max_size=30))
def test_a_signature_that_begins_with_another_byte_can_neither_match_nor_leave_it_undecided(prefix):
    # why classify() may try only the signatures indexed under the prefix's first byte
    for _, signature in _SIGNATURES:
        if signature[0] != prefix[0]:
            assert _match(prefix, signature) is False


def test_the_first_byte_index_holds_every_signature_once_in_order():
    for first, entries in _BY_FIRST_BYTE.items():
        assert list(entries) == [entry for entry in _SIGNATURES if entry[1][0] == first]
    assert sum(len(entries) for entries in _BY_FIRST_BYTE.values()) == len(_SIGNATURES)
    assert 0x16 not in _BY_FIRST_BYTE  # a TLS ClientHello goes straight to the TLS test
