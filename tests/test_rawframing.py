"""The raw transport's line framing, pure: whole, byte by byte, random chunks."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monoport.errors import ProtocolViolation
from monoport.wire.rawframing import NEED_MORE, LineDecoder, encode_packet

LIMIT = 100
BLOB = bytes(range(256))

#: (wire bytes, packets) of a realistic session, mixing LF and CRLF
SESSION = (
    b"40\n"
    b'420["join",{"room":"lobby","nick":"dev"}]\r\n'
    b"3\n"
    b'42["message","h\xc3\xa9llo \xe2\x82\xac"]\n'
    b"\r\n"  # a blank line (Enter pressed twice) is skipped
    b"b" + base64.b64encode(b"\x00\xff binary") + b"\n"
    b"41\r\n"
)
PACKETS = [
    "40",
    '420["join",{"room":"lobby","nick":"dev"}]',
    "3",
    '42["message","héllo €"]',
    "b" + base64.b64encode(b"\x00\xff binary").decode(),
    "41",
]


def drain(decoder: LineDecoder) -> list[str]:
    out = []
    while (packet := decoder.next_packet()) is not NEED_MORE:
        out.append(packet)
    return out


def decode_in_chunks(data: bytes, sizes: list[int], limit: int = LIMIT) -> list[str]:
    decoder = LineDecoder(limit)
    out: list[str] = []
    pos = 0
    for size in sizes:
        decoder.feed(data[pos : pos + size])
        pos += size
        out += drain(decoder)
    decoder.feed(data[pos:])
    return out + drain(decoder)


def test_whole_session_at_once():
    assert decode_in_chunks(SESSION, []) == PACKETS


def test_byte_by_byte():
    assert decode_in_chunks(SESSION, [1] * len(SESSION)) == PACKETS


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=60))
def test_random_chunks(sizes):
    assert decode_in_chunks(SESSION, sizes) == PACKETS


def test_partial_line_waits_for_its_end():
    decoder = LineDecoder(LIMIT)
    decoder.feed(b"42[\"a\"")
    assert decoder.next_packet() is NEED_MORE
    decoder.feed(b"]\r")
    assert decoder.next_packet() is NEED_MORE
    decoder.feed(b"\n4")
    assert decoder.next_packet() == '42["a"]'
    assert decoder.next_packet() is NEED_MORE
    assert decoder.pending == 1


def test_line_of_exactly_the_limit_passes_with_either_ending():
    packet = "4" + "x" * (LIMIT - 1)
    for ending in (b"\n", b"\r\n"):
        decoder = LineDecoder(LIMIT)
        decoder.feed(packet.encode() + ending)
        assert decoder.next_packet() == packet


def test_over_long_line_with_its_end_is_refused():
    decoder = LineDecoder(LIMIT)
    decoder.feed(b"4" + b"x" * LIMIT + b"\n")
    with pytest.raises(ProtocolViolation, match="longer than 100"):
        decoder.next_packet()


def test_over_long_line_is_refused_before_its_end_arrives():
    decoder = LineDecoder(LIMIT)
    decoder.feed(b"4" + b"x" * (LIMIT + 1))  # could still end in CRLF
    assert decoder.next_packet() is NEED_MORE
    decoder.feed(b"x" * 1000)  # no line end in sight: the buffer stops here
    with pytest.raises(ProtocolViolation, match="longer than 100"):
        decoder.next_packet()


def test_multibyte_limit_counts_bytes():
    decoder = LineDecoder(10)
    decoder.feed("4€€€€".encode() + b"\n")  # 5 characters, 13 bytes
    with pytest.raises(ProtocolViolation):
        decoder.next_packet()


@pytest.mark.parametrize("line,why", [
    (b"4\xff\xfe\n", "UTF-8"),
    (b"42[\"\xc3\"]\n", "UTF-8"),  # a truncated two-byte sequence
    (b"hello\n", "unknown packet type 'h'"),
    (b"7\n", "unknown packet type '7'"),
    (b"b***\n", "base64"),
    (b"GET / HTTP/1.1\r\n", "unknown packet type 'G'"),
])
def test_malformed_lines_are_protocol_violations(line, why):
    decoder = LineDecoder(LIMIT)
    decoder.feed(b"2\n" + line)
    assert decoder.next_packet() == "2"  # what came before is still delivered
    with pytest.raises(ProtocolViolation, match=why):
        decoder.next_packet()


def test_encode_text_and_binary_round_trip():
    assert encode_packet('42["hi"]') == b'42["hi"]\n'
    assert encode_packet("4é") == "4é\n".encode()
    line = encode_packet(BLOB)
    assert line.startswith(b"b") and line.endswith(b"\n") and b"\n" not in line[:-1]
    decoder = LineDecoder(1000)
    decoder.feed(line)
    text = decoder.next_packet()
    assert base64.b64decode(text[1:]) == BLOB


def test_encode_refuses_a_line_break_in_text():
    with pytest.raises(ValueError):
        encode_packet('42["a"]\n2')
