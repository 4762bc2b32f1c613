"""Hypothesis fuzzing of the pure parsers: garbage never breaks them.

sniff.classify, proxyproto.parse, httphead.parse_head, eiopackets and the
raw transport's line framing (rawframing).

Properties, for every input (random bytes, and real first bytes from
tests/corpus.py mutated by flipping, cutting, inserting and splicing):
- only :class:`ProtocolViolation` is ever raised (a client's garbage is a
  protocol error, never a crash);
- nothing past the input is used: a result claims at most ``len(buf)``
  bytes, and what follows the claimed bytes does not change the result;
- once a parser has decided on a prefix, more bytes do not change its mind
  (the listener decides on whatever prefix has arrived so far).
"""

from __future__ import annotations

import base64
import ssl

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from monoport.wire import eiopackets, proxyproto
from monoport.errors import ProtocolViolation
from monoport.wire.httphead import MAX_HEAD, parse_head
from monoport.wire.rawframing import EOL_ALLOWANCE, LineDecoder, encode_packet
from monoport.wire.sniff import MAX_SIGNATURE, NEED_MORE, Kind, classify
from tests import corpus

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEEDS = (
    [corpus.client_hello(), corpus.client_hello(None), corpus.client_hello(max_version=ssl.TLSVersion.TLSv1_2)]
    + corpus.HTTP_REQUESTS
    + [corpus.FLASH, corpus.PROXY_V1, corpus.PROXY_V2, b"PROXY UNKNOWN\r\n", b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n",
       proxyproto.build_v2(("2001:db8::7", 1), ("::1", 443), tls_version="TLSv1.3", authority="a.test",
                           forwarded_by="ab12")]
    + corpus.RAW
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real first-bytes sample, damaged a few times in a few ways."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "splice"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "splice":
            data[at:] = draw(st.sampled_from(SEEDS))
    return bytes(data)


INPUTS = st.one_of(st.binary(max_size=300), mutated())
SUFFIX = st.binary(max_size=64)


# -- sniff.classify ---------------------------------------------------------
@FUZZ
@given(INPUTS, SUFFIX)
def test_classify_decides_once_and_for_all(data: bytes, suffix: bytes) -> None:
    result = classify(data)
    assert result is NEED_MORE or isinstance(result, Kind)
    if result is not NEED_MORE:
        assert classify(data + suffix) is result
    if len(data) >= MAX_SIGNATURE:
        assert result is not NEED_MORE
    for end in range(len(data) + 1):  # every prefix as the stream may deliver it
        early = classify(data[:end])
        if early is not NEED_MORE:
            assert early is result
            break


# -- proxyproto.parse ---------------------------------------------------------
def _parse_proxy(data: bytes):
    try:
        return proxyproto.parse(data)
    except ProtocolViolation:
        return ProtocolViolation


@FUZZ
@given(INPUTS, SUFFIX)
@example(b"", b"")
@example(corpus.PROXY_V2, b"GET / HTTP/1.1\r\n")
def test_proxy_parse_consumes_only_its_header(data: bytes, suffix: bytes) -> None:
    result = _parse_proxy(data)
    if result is NEED_MORE or result is ProtocolViolation:
        return
    header, consumed = result
    assert 0 < consumed <= len(data)
    # the bytes after the header are not the parser's: any others, same answer
    assert _parse_proxy(data[:consumed] + suffix) == (header, consumed)


@FUZZ
@given(INPUTS, SUFFIX)
def test_proxy_parse_on_a_prefix_agrees_once_decided(data: bytes, suffix: bytes) -> None:
    for end in range(len(data) + 1):
        early = _parse_proxy(data[:end])
        if early is NEED_MORE:
            continue
        if early is ProtocolViolation:
            assert _parse_proxy(data + suffix) is ProtocolViolation
        else:
            assert _parse_proxy(data + suffix) == early
        return


@FUZZ
@given(st.binary(max_size=40), st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=6),
       st.sampled_from([0x11, 0x21, 0x00, 0x31, 0x12]), st.sampled_from([0x21, 0x20, 0x22, 0x11]))
def test_proxy_v2_with_arbitrary_tlvs_and_families(addresses: bytes, tlvs, fam: int, ver_cmd: int) -> None:
    body = addresses + b"".join(proxyproto._tlv(kind, value) for kind, value in tlvs)
    header = proxyproto.PROXY_V2_SIGNATURE + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body
    result = _parse_proxy(header + b"rest")
    if result is not ProtocolViolation:
        assert result[1] == len(header)


# -- httphead.parse_head ----------------------------------------------------------
def _parse_head(data: bytes):
    try:
        return parse_head(data)
    except ProtocolViolation as exc:
        assert exc.status in (400, 431)
        return ProtocolViolation


HEADS = st.one_of(
    INPUTS,
    st.builds(lambda line, headers: line + b"".join(headers) + b"\r\n",
              st.sampled_from(corpus.HTTP_REQUESTS).map(lambda r: r.split(b"\r\n")[0] + b"\r\n"),
              st.lists(st.binary(max_size=30).map(lambda v: v + b"\r\n"), max_size=8)),
)


@FUZZ
@given(HEADS, SUFFIX)
def test_parse_head_claims_only_its_head(data: bytes, suffix: bytes) -> None:
    result = _parse_head(data)
    if result is NEED_MORE or result is ProtocolViolation:
        return
    assert 0 < result.length <= min(len(data), MAX_HEAD)
    assert _parse_head(data[: result.length] + suffix) == result


@FUZZ
@given(HEADS, SUFFIX)
def test_parse_head_on_a_prefix_agrees_once_decided(data: bytes, suffix: bytes) -> None:
    cuts = sorted({0, len(data), *range(0, len(data), max(1, len(data) // 16))})
    for end in cuts:
        early = _parse_head(data[:end])
        if early is NEED_MORE:
            continue
        assert _parse_head(data + suffix) == early
        return


def test_parse_head_at_the_size_bound_is_431_however_it_is_cut() -> None:
    big = b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n"
    for end in (MAX_HEAD - 1, MAX_HEAD, MAX_HEAD + 3, len(big)):
        result = _parse_head(big[:end])
        assert result is ProtocolViolation or (result is NEED_MORE and end < MAX_HEAD)


# -- eiopackets -------------------------------------------------------------------------
@FUZZ
@given(st.text(max_size=200))
def test_packet_error_answers_for_any_text(text: str) -> None:
    error = eiopackets.packet_error(text)
    assert error is None or isinstance(error, str)
    if error is None:
        assert text[0] in eiopackets.PACKET_TYPES or text[0] == "b"


@FUZZ
@given(st.one_of(st.binary(max_size=300),
                 st.lists(st.text(max_size=20), max_size=20).map(lambda p: "\x1e".join(p).encode("utf-8", "surrogatepass"))))
def test_payload_error_answers_for_any_bytes(body: bytes) -> None:
    error = eiopackets.payload_error(body)
    assert error is None or isinstance(error, str)


# -- rawframing (the raw TCP transport's line framing) ---------------------------------------
LIMIT = 64


def _decode_all(chunks: list[bytes]) -> tuple[list[str], bool, int]:
    """(packets, violated, largest pending after NEED_MORE) feeding ``chunks`` one by one."""
    decoder = LineDecoder(LIMIT)
    packets: list[str] = []
    most = 0
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            while (packet := decoder.next_packet()) is not NEED_MORE:
                packets.append(packet)
            most = max(most, decoder.pending)
    except ProtocolViolation:
        return packets, True, most
    return packets, False, most


LINES = st.lists(st.one_of(
    st.sampled_from(["40", "2", "3", "6", '42["echo","hi"]', "1", "bAAEC", "", "4" + "x" * 70, "b!!", "9x"]),
    st.text(max_size=20).filter(lambda t: "\n" not in t and "\r" not in t),
), max_size=12).map(lambda lines: "".join(line + ("\r\n" if len(line) % 2 else "\n") for line in lines).encode(
    "utf-8", "surrogatepass"))


@FUZZ
@given(st.one_of(LINES, st.binary(max_size=300)), st.lists(st.integers(1, 40), max_size=30))
def test_raw_framing_is_the_same_however_the_bytes_are_cut(data: bytes, cuts: list[int]) -> None:
    whole = _decode_all([data])
    chunks, at = [], 0
    for size in cuts:
        chunks.append(data[at : at + size])
        at += size
    chunks.append(data[at:])
    cut = _decode_all(chunks)
    assert cut[:2] == whole[:2]
    for packet in whole[0]:
        assert eiopackets.packet_error(packet) is None
        assert ("\n" + packet + "\n").encode() in b"\n" + data.replace(b"\r\n", b"\n")
    if not cut[1]:  # an unfinished line never costs more than the limit (plus one chunk in flight)
        assert cut[2] <= LIMIT + EOL_ALLOWANCE


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=50),
                          st.sampled_from(["40", "2", "3", '42["a",1]', "4é€😀", "6"])), max_size=10))
def test_raw_framing_round_trips_what_the_server_sends(packets: list) -> None:
    decoder = LineDecoder(1000)
    decoder.feed(b"".join(encode_packet(p) for p in packets))
    got = []
    while (packet := decoder.next_packet()) is not NEED_MORE:
        got.append(packet)
    want = ["b" + base64.b64encode(p).decode() if isinstance(p, bytes) else p for p in packets]
    assert got == want
