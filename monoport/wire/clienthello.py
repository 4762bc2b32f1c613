"""Read the SNI and ALPN offer out of a TLS ClientHello; pure, no I/O.

Theory of operation: Python's ssl module picks the ALPN protocol in C after
``sni_callback`` has run, so a server cannot choose a certificate from the
client's ALPN offer inside the handshake. TLS-ALPN-01 (RFC 8737) needs just
that: a ClientHello offering exactly ``acme-tls/1`` gets the challenge
certificate. So the listener peeks at the raw bytes (nothing is consumed) and
asks :func:`parse` what the client offers before it wraps the socket.

Three outcomes, like :func:`monoport.wire.sniff.classify`:

- a :class:`ClientHello` (server name, ALPN list) once the whole handshake
  message is there, even when it spans several TLS records or TCP segments;
- :data:`NEED_MORE` while the bytes so far are a proper prefix of one;
- an :class:`Unparseable` (with the reason) for anything else: not a
  handshake record, not a ClientHello, a length that overruns its container,
  or a message larger than :data:`MAX_HELLO` (a caller never waits for more).

Invariant: :func:`parse` never raises on any input; every length field is
checked against the bytes that hold it before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Union

from .needmore import NEED_MORE, NeedMore

#: Largest ClientHello handshake message accepted, in bytes. Browsers send
#: 0.5-2 KB (a post-quantum key share is ~1.2 KB of it); 16 KiB is one full
#: TLS record, room for padding and big key shares without letting a client
#: make the listener hold an unbounded prefix.
MAX_HELLO: Final = 16384
#: Most TLS records one ClientHello may be split over. Clients send one
#: record (two when the message passes 16 KiB); a hello cut into hundreds of
#: tiny records is an attack on the bound below, not a client.
MAX_RECORDS: Final = 32
#: The most bytes :func:`parse` ever needs: the message with its 4-byte
#: header plus one 5-byte header per record. A caller that has peeked this
#: many bytes always gets an answer, never NEED_MORE.
MAX_PREFIX: Final = 4 + MAX_HELLO + 5 * MAX_RECORDS

_HANDSHAKE: Final = 0x16
_CLIENT_HELLO: Final = 0x01
_EXT_SERVER_NAME: Final = 0x0000
_EXT_ALPN: Final = 0x0010
_HOST_NAME: Final = 0x00


@dataclass(frozen=True)
class ClientHello:
    """What a client asks for before the handshake starts."""

    #: the host_name of the server_name extension, lower-cased, or None
    server_name: str | None
    #: the ALPN protocols offered, in the client's order (empty: no ALPN extension)
    alpn: tuple[str, ...]


@dataclass(frozen=True)
class Unparseable:
    """The bytes are not a ClientHello this parser accepts; ``reason`` says why."""

    reason: str


Result = Union[ClientHello, NeedMore, Unparseable]


class _Malformed(Exception):
    pass


def _handshake_bytes(data: bytes) -> bytes | NeedMore | Unparseable:
    """Join the fragments of consecutive handshake records until the message is whole."""
    body = bytearray()
    pos = 0
    for _ in range(MAX_RECORDS):
        if len(data) - pos < 5:
            return NEED_MORE
        if data[pos] != _HANDSHAKE or data[pos + 1] != 0x03:
            return Unparseable("not a TLS handshake record")
        length = int.from_bytes(data[pos + 3:pos + 5], "big")
        if length == 0 or length > 2 ** 14:
            return Unparseable(f"TLS record length {length}")
        fragment = data[pos + 5:pos + 5 + length]
        body += fragment
        if len(body) >= 4:
            if body[0] != _CLIENT_HELLO:
                return Unparseable(f"handshake message type {body[0]}, not ClientHello")
            size = int.from_bytes(body[1:4], "big")
            if size > MAX_HELLO:
                return Unparseable(f"ClientHello of {size} bytes (more than {MAX_HELLO})")
            if len(body) >= 4 + size:
                return bytes(body[4:4 + size])
        if len(fragment) < length:
            return NEED_MORE
        pos += 5 + length
    return Unparseable(f"ClientHello split over more than {MAX_RECORDS} records")


class _Reader:
    """Length-checked reads over one buffer (raises _Malformed past its end)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise _Malformed("a length overruns its container")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, size: int) -> "_Reader":
        return _Reader(self.take(self.number(size)))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _server_name(ext: _Reader) -> str | None:
    names = ext.vector(2)
    while names.left:
        kind = names.number(1)
        name = names.vector(2).data
        if kind == _HOST_NAME:
            try:
                return name.decode("ascii").lower().rstrip(".")
            except UnicodeDecodeError:
                raise _Malformed("a server name that is not ASCII") from None
    return None


def _alpn(ext: _Reader) -> tuple[str, ...]:
    protocols = ext.vector(2)
    offered = []
    while protocols.left:
        name = protocols.vector(1).data
        if not name:
            raise _Malformed("an empty ALPN protocol name")
        offered.append(name.decode("latin-1"))
    return tuple(offered)


def _hello(message: bytes) -> ClientHello:
    r = _Reader(message)
    r.take(2 + 32)  # legacy_version, random
    r.vector(1)  # legacy_session_id
    r.vector(2)  # cipher_suites
    r.vector(1)  # legacy_compression_methods
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    if r.left:
        # Walked by offsets, not readers: a hello has ~15-20 extensions and
        # only two matter, so skipping the others costs one slice each.
        data = r.vector(2).data
        pos, end = 0, len(data)
        while pos < end:
            if end - pos < 4:
                raise _Malformed("a length overruns its container")
            kind = int.from_bytes(data[pos:pos + 2], "big")
            stop = pos + 4 + int.from_bytes(data[pos + 2:pos + 4], "big")
            if stop > end:
                raise _Malformed("a length overruns its container")
            if kind == _EXT_SERVER_NAME:
                server_name = _server_name(_Reader(data[pos + 4:stop]))
            elif kind == _EXT_ALPN:
                alpn = _alpn(_Reader(data[pos + 4:stop]))
            pos = stop
    if r.left:
        raise _Malformed("bytes after the extensions")
    return ClientHello(server_name, alpn)


def lacks(data: bytes, token: bytes) -> bool:
    """True when ``data`` holds a whole ClientHello in its first record and ``token`` is nowhere in it.

    A cheap test (one substring search, no parsing) that lets a caller who
    only cares about one ALPN protocol skip :func:`parse` for every other
    client. False means "parse to know", never "it is there".
    """
    if len(data) < 9 or data[0] != _HANDSHAKE:
        return False
    record_end = 5 + int.from_bytes(data[3:5], "big")
    hello_end = 9 + int.from_bytes(data[6:9], "big")
    return hello_end <= record_end <= len(data) and token not in data[:hello_end]


def parse(data: bytes) -> Result:
    """Parse the ClientHello at the start of ``data`` (bytes as peeked; may be a prefix).

    Args:
        data: the first bytes of a connection, from its first TLS record on.
    Returns:
        a :class:`ClientHello`, :data:`NEED_MORE`, or :class:`Unparseable`.
    """
    try:
        message = _handshake_bytes(data)
        if not isinstance(message, bytes):
            return message
        return _hello(message)
    except _Malformed as exc:
        return Unparseable(str(exc))
