"""Validate Engine.IO v4 packets before python-engineio sees them; pure.

python-engineio answers a malformed polling POST with a logged traceback and
200; monoport checks the payload first and answers 400 with one log line.
The raw TCP transport uses the same check on each line.
"""

from __future__ import annotations

import binascii
from typing import Final, Iterable, Mapping

#: Engine.IO v4 packet types: open, close, ping, pong, message, upgrade, noop.
PACKET_TYPES: Final = frozenset("0123456")
#: Separator of packets in a polling payload (ASCII record separator).
RECORD_SEPARATOR: Final = "\x1e"


def packet_error(text: str) -> str | None:
    """Why ``text`` is not a valid Engine.IO v4 packet, or None if it is."""
    if not text:
        return "empty packet"
    if text[0] == "b":
        try:
            binascii.a2b_base64(text[1:].encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError):
            return "binary packet is not valid base64"
        return None
    if text[0] not in PACKET_TYPES:
        return f"unknown packet type {text[0]!r}"
    return None


def payload_error(body: bytes, max_packets: int = 16) -> str | None:
    """Why a polling POST body is not a valid Engine.IO v4 payload, or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "payload is not UTF-8"
    packets = text.split(RECORD_SEPARATOR)
    if len(packets) > max_packets:
        return f"more than {max_packets} packets in one payload"
    for packet in packets:
        error = packet_error(packet)
        if error:
            return error
    return None


#: Engine.IO errors as the reference server (Node's engine.io) answers them: HTTP 400 with
#: ``{"code": N, "message": ...}``, which clients written against it read.
UNKNOWN_TRANSPORT: Final = (0, "Transport unknown")
BAD_HANDSHAKE_METHOD: Final = (2, "Bad handshake method")
BAD_REQUEST: Final = (3, "Bad request")
UNSUPPORTED_PROTOCOL_VERSION: Final = (5, "Unsupported protocol version")
#: Methods a client may use on the Engine.IO path (OPTIONS: browsers' CORS preflight).
METHODS: Final = frozenset(("GET", "POST", "OPTIONS"))


def request_error(method: str, query: Mapping[str, list[str]], transports: Iterable[str],
                  upgrade: bool = False) -> tuple[int, str] | None:
    """Why an HTTP request to the Engine.IO path breaks the protocol, as (code, message), or None.

    Args:
        method: the HTTP method.
        query: the parsed query string (``urllib.parse.parse_qs``).
        transports: the transports the server offers.
        upgrade: the request asks for a WebSocket upgrade.
    """
    transport = (query.get("transport") or [""])[0]
    if transport not in transports or (upgrade and transport != "websocket"):
        return UNKNOWN_TRANSPORT
    has_sid = bool(query.get("sid"))
    if method not in METHODS or (method == "POST" and not has_sid):
        return BAD_REQUEST if has_sid else BAD_HANDSHAKE_METHOD
    if upgrade and not has_sid and query.get("EIO") != ["4"]:
        return UNSUPPORTED_PROTOCOL_VERSION
    return None
