"""PROXY protocol v1/v2 headers: parse and build; pure, no I/O.

Invariants: :func:`parse` never consumes a byte past the header it returns,
and never raises anything but :class:`~monoport.errors.ProtocolViolation`.
The v2 header monoport writes when it forwards a connection carries the
client's address, whether the client used TLS (PP2_TYPE_SSL with its
version and the SNI as PP2_TYPE_AUTHORITY), and in custom TLVs the
forwarding instance's id (so the peer's WSGI environ matches the contract)
and its cluster (so a peer listener refuses instances of another deployment).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Final

from ..errors import ProtocolViolation
from .needmore import NEED_MORE, NeedMore
from .sniff import PROXY_V1_SIGNATURE, PROXY_V2_SIGNATURE

#: v1 headers are at most 107 bytes including CRLF (the spec's own bound).
V1_MAX: Final = 107
#: A v2 header we accept is at most this long; real ones are < 300 bytes.
V2_MAX: Final = 16 + 2048

PP2_TYPE_AUTHORITY: Final = 0x02
PP2_TYPE_SSL: Final = 0x20
PP2_SUBTYPE_SSL_VERSION: Final = 0x21
PP2_CLIENT_SSL: Final = 0x01
#: Custom TLV (0xE0-0xEF are for private use): id of the forwarding instance.
PP2_TYPE_MONOPORT_FORWARDED_BY: Final = 0xE0
#: Custom TLV: the forwarding instance's cluster (a peer listener refuses strangers).
PP2_TYPE_MONOPORT_CLUSTER: Final = 0xE1

Address = tuple[str, int]


@dataclass(frozen=True)
class ProxyHeader:
    """What a PROXY header says about the connection it precedes."""

    version: int
    #: False for v1 UNKNOWN and v2 LOCAL: keep the socket's own addresses.
    proxied: bool
    source: Address | None = None
    destination: Address | None = None
    tls: bool = False
    tls_version: str | None = None
    authority: str | None = None
    forwarded_by: str | None = None
    cluster: str | None = None
    tlvs: dict[int, bytes] = field(default_factory=dict)


def parse(buf: bytes) -> tuple[ProxyHeader, int] | NeedMore:
    """Parse a PROXY header at the start of ``buf``.

    Returns:
        ``(header, consumed)`` or :data:`NEED_MORE`.
    Raises:
        ProtocolViolation: ``buf`` starts with something that is not a valid header.
    """
    if buf[:12] == PROXY_V2_SIGNATURE[: len(buf[:12])] and buf[:1] == b"\r":
        if len(buf) < 12:
            return NEED_MORE
        return _parse_v2(buf)
    if buf[:6] == PROXY_V1_SIGNATURE[: len(buf[:6])]:
        if len(buf) < 6:
            return NEED_MORE
        return _parse_v1(buf)
    raise ProtocolViolation("not a PROXY protocol header")


def _parse_v1(buf: bytes) -> tuple[ProxyHeader, int] | NeedMore:
    end = buf.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buf) >= V1_MAX:
            raise ProtocolViolation("PROXY v1 header longer than 107 bytes")
        return NEED_MORE
    try:
        line = buf[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolViolation("PROXY v1 header is not ASCII") from None
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(version=1, proxied=False), end + 2
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProtocolViolation("malformed PROXY v1 header")
    _, proto, src, dst, sport, dport = parts
    try:
        want = ipaddress.IPv4Address if proto == "TCP4" else ipaddress.IPv6Address
        source = (str(want(src)), _port(sport))
        destination = (str(want(dst)), _port(dport))
    except ValueError:
        raise ProtocolViolation("bad address in PROXY v1 header") from None
    return ProxyHeader(version=1, proxied=True, source=source, destination=destination), end + 2


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise ValueError(text)
    return int(text)


def _parse_v2(buf: bytes) -> tuple[ProxyHeader, int] | NeedMore:
    if buf[:12] != PROXY_V2_SIGNATURE:
        raise ProtocolViolation("bad PROXY v2 signature")
    if len(buf) < 16:
        return NEED_MORE
    ver_cmd, fam, length = struct.unpack("!BBH", buf[12:16])
    if ver_cmd >> 4 != 2 or (ver_cmd & 0x0F) > 1:
        raise ProtocolViolation("bad PROXY v2 version/command")
    if 16 + length > V2_MAX:
        raise ProtocolViolation("PROXY v2 header too long")
    if len(buf) < 16 + length:
        return NEED_MORE
    body = buf[16 : 16 + length]
    consumed = 16 + length
    if ver_cmd & 0x0F == 0:  # LOCAL: health checks from the proxy itself
        return ProxyHeader(version=2, proxied=False), consumed
    family = fam >> 4
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    if family == 1:
        if len(body) < 12:
            raise ProtocolViolation("short PROXY v2 IPv4 address block")
        src, dst = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        sport, dport = struct.unpack("!HH", body[8:12])
        rest = body[12:]
    elif family == 2:
        if len(body) < 36:
            raise ProtocolViolation("short PROXY v2 IPv6 address block")
        src, dst = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        sport, dport = struct.unpack("!HH", body[32:36])
        rest = body[36:]
    elif family == 0:
        return ProxyHeader(version=2, proxied=False, tlvs=_tlvs(body)), consumed
    else:
        raise ProtocolViolation("unsupported PROXY v2 address family")
    tlvs = _tlvs(rest)
    tls, tls_version = False, None
    if PP2_TYPE_SSL in tlvs:
        ssl_tlv = tlvs[PP2_TYPE_SSL]
        if len(ssl_tlv) < 5:
            raise ProtocolViolation("short PROXY v2 SSL TLV")
        tls = bool(ssl_tlv[0] & PP2_CLIENT_SSL)
        sub = _tlvs(ssl_tlv[5:])
        if PP2_SUBTYPE_SSL_VERSION in sub:
            tls_version = sub[PP2_SUBTYPE_SSL_VERSION].decode("ascii", "replace")
    return (
        ProxyHeader(
            version=2,
            proxied=True,
            source=(str(src), sport),
            destination=(str(dst), dport),
            tls=tls,
            tls_version=tls_version,
            authority=_text(tlvs.get(PP2_TYPE_AUTHORITY)),
            forwarded_by=_text(tlvs.get(PP2_TYPE_MONOPORT_FORWARDED_BY)),
            cluster=_text(tlvs.get(PP2_TYPE_MONOPORT_CLUSTER)),
            tlvs=tlvs,
        ),
        consumed,
    )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _tlvs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        if len(data) - i < 3:
            raise ProtocolViolation("truncated PROXY v2 TLV")
        kind, size = data[i], struct.unpack("!H", data[i + 1 : i + 3])[0]
        if i + 3 + size > len(data):
            raise ProtocolViolation("truncated PROXY v2 TLV")
        out[kind] = data[i + 3 : i + 3 + size]
        i += 3 + size
    return out


def build_v2(
    source: Address,
    destination: Address,
    *,
    tls_version: str | None = None,
    authority: str | None = None,
    forwarded_by: str | None = None,
    cluster: str | None = None,
) -> bytes:
    """Build a PROXY v2 header (command PROXY, TCP over IPv4 or IPv6)."""
    src = ipaddress.ip_address(source[0].split("%")[0])
    dst = ipaddress.ip_address(destination[0].split("%")[0])
    if src.version != dst.version:  # mixed families: map IPv4 into IPv6
        src = ipaddress.IPv6Address(f"::ffff:{src}") if src.version == 4 else src
        dst = ipaddress.IPv6Address(f"::ffff:{dst}") if dst.version == 4 else dst
    fam = 0x11 if src.version == 4 else 0x21
    addrs = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    tlvs = b""
    if tls_version is not None:
        sub = _tlv(PP2_SUBTYPE_SSL_VERSION, tls_version.encode("ascii"))
        tlvs += _tlv(PP2_TYPE_SSL, bytes([PP2_CLIENT_SSL]) + b"\x00\x00\x00\x00" + sub)
    if authority:
        tlvs += _tlv(PP2_TYPE_AUTHORITY, authority.encode("utf-8"))
    if forwarded_by:
        tlvs += _tlv(PP2_TYPE_MONOPORT_FORWARDED_BY, forwarded_by.encode("ascii"))
    if cluster:
        tlvs += _tlv(PP2_TYPE_MONOPORT_CLUSTER, cluster.encode("utf-8"))
    body = addrs + tlvs
    return PROXY_V2_SIGNATURE + struct.pack("!BBH", 0x21, fam, len(body)) + body


def build_v2_local() -> bytes:
    """A PROXY v2 LOCAL header: "this connection is the sender's own" (health checks)."""
    return PROXY_V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, 0)


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value
