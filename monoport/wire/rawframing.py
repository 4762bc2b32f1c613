"""Newline framing of Engine.IO packets for raw TCP clients; pure, no I/O.

Wire format (DESIGN.md, "Raw TCP transport"): one Engine.IO v4 packet per
line, UTF-8, ended by LF (CRLF accepted, so ``telnet`` and ``openssl
s_client`` users are served too). Binary packets travel as ``b<base64>``,
the form Engine.IO's polling transport uses, so no byte of a line can be a
frame delimiter.

Invariants:

- :meth:`LineDecoder.next_packet` returns whole packets in arrival order, or
  :data:`NEED_MORE`; it never returns a partial line.
- The decoder holds at most ``limit`` + 2 bytes of an unfinished line: a
  longer line is the client's fault (:class:`ProtocolViolation`) before it
  can cost more memory.
- Every packet returned passes :func:`eiopackets.packet_error`; anything
  else (bad UTF-8, an unknown packet type, bad base64) is a
  ProtocolViolation. Blank lines are skipped: a person typing into netcat
  presses Enter twice sometimes, and an empty line carries no packet.
"""

from __future__ import annotations

import base64
from typing import Final, Union

from ..errors import ProtocolViolation
from .eiopackets import packet_error
from .needmore import NEED_MORE, NeedMore

#: Room left for the line ending (CRLF) on top of the packet limit.
EOL_ALLOWANCE: Final = 2


class LineDecoder:
    """Bytes in, Engine.IO packets (as text) out.

    Args:
        limit: the longest packet accepted, in bytes (python-engineio's
            ``max_http_buffer_size``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        #: where the search for LF resumes (bytes before it hold none)
        self._scanned = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received but not returned yet (an unfinished line, or more lines)."""
        return len(self._buf)

    def next_packet(self) -> Union[str, NeedMore]:
        """The next complete packet, or NEED_MORE.

        Raises:
            ProtocolViolation: an over-long line, invalid UTF-8, or a line
                that is not an Engine.IO packet.
        """
        while True:
            end = self._buf.find(b"\n", self._scanned)
            if end < 0:
                if len(self._buf) > self.limit + EOL_ALLOWANCE:
                    raise ProtocolViolation(f"line longer than {self.limit} bytes")
                self._scanned = len(self._buf)
                return NEED_MORE
            raw = bytes(self._buf[:end])
            del self._buf[: end + 1]
            self._scanned = 0
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if len(raw) > self.limit:
                raise ProtocolViolation(f"line longer than {self.limit} bytes")
            if not raw:
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation("line is not valid UTF-8") from None
            error = packet_error(text)
            if error:
                raise ProtocolViolation(f"not an Engine.IO packet: {error}")
            return text


def encode_packet(packet: Union[str, bytes]) -> bytes:
    """One outgoing Engine.IO packet as a line.

    Args:
        packet: what python-engineio hands a WebSocket: text for a text
            packet, bytes for a binary message.
    Raises:
        ValueError: a text packet containing CR or LF, which the framing
            cannot carry (python-socketio's JSON never contains one).
    """
    if isinstance(packet, (bytes, bytearray, memoryview)):
        return b"b" + base64.b64encode(bytes(packet)) + b"\n"
    if "\n" in packet or "\r" in packet:
        raise ValueError("text packet contains a line break")
    return packet.encode("utf-8") + b"\n"


__all__ = ["LineDecoder", "encode_packet", "NEED_MORE"]
