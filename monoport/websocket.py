"""The one place that knows which WebSocket library serves the upgrade.

gevent-websocket (the design's choice) has had no release since 2017; keeping
it behind this module means python-engineio's other driver could replace it
by changing only this file. The raw TCP transport does not use it at all.

gevent-websocket reads a frame's whole payload into memory before anyone
can look at its size (a header may announce 2**63 bytes), and joins
fragments without bound; python-engineio only checks ``max_http_buffer_size``
on the finished message. :func:`limit_messages` makes the size check happen
at the frame header instead, before a byte of the payload is buffered.
"""

from __future__ import annotations

from typing import Any

from geventwebsocket.exceptions import ProtocolError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, WebSocket

#: pywsgi handler class that upgrades WebSocket requests and sets
#: ``environ['wsgi.websocket']`` as python-engineio's gevent driver expects.
HandlerBase = WebSocketHandler
LIBRARY = "gevent-websocket"


class MessageTooLarge(ProtocolError):
    """A WebSocket message announced more bytes than the payload limit."""


class _LimitedWebSocket(WebSocket):
    """gevent-websocket's WebSocket, refusing oversized messages at the frame header.

    No slots of its own, so an existing WebSocket can be switched to it; the
    limit and the running message size live on the handler.
    """

    __slots__ = ()

    def read_frame(self) -> tuple[Any, bytes]:
        header = Header.decode_header(self.stream)
        if header.flags:
            raise ProtocolError("reserved bits set")
        handler = self.handler
        if header.opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
            handler.ws_message_size = 0
        if header.opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY, self.OPCODE_CONTINUATION):
            handler.ws_message_size += header.length
            if handler.ws_message_size > handler.ws_max_message:
                message = f"WebSocket message larger than {handler.ws_max_message} bytes"
                handler.log_error("%s", message)  # pywsgi's hook: monoport's handler keeps it as the outcome
                raise MessageTooLarge(message)
        if not header.length:
            return header, b""
        payload = self.raw_read(header.length)
        if len(payload) != header.length:
            raise ProtocolError("unexpected EOF reading a frame payload")
        if header.mask:
            payload = header.unmask_payload(payload)
        return header, payload


def limit_messages(websocket: WebSocket, handler: Any, max_bytes: int) -> None:
    """Make ``websocket`` refuse messages over ``max_bytes`` (closed with code 1002)."""
    handler.ws_max_message = max_bytes
    handler.ws_message_size = 0
    websocket.__class__ = _LimitedWebSocket
