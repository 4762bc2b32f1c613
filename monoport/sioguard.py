"""A client's malformed Socket.IO packet is one log line, not python-socketio's traceback.

python-socketio decodes each Engine.IO message inside python-engineio's
"message" handler; a packet that does not decode ("42{not json"), or whose
event has no name ("42{}", "42[]"), raises there, and python-engineio logs
the exception with a full traceback, over WebSocket, polling and the raw
transport alike. :func:`guard` wraps that handler: when it raises and the
packet itself is at fault, the session is closed with one warning line.
When the packet is well-formed the exception is re-raised, so a bug in an
app's connect handler keeps its traceback. Nothing is checked on the happy
path: the packet is decoded a second time only after a failure.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from socketio import packet

log = logging.getLogger("monoport")


def packet_fault(sio: Any, data: Any) -> str | None:
    """Why ``data`` is a Socket.IO packet no client should send, or None if it is well-formed."""
    if not isinstance(data, str):
        return None  # a binary attachment: any bytes are valid
    try:
        pkt = sio.packet_class(encoded_packet=data)
    except Exception as exc:  # noqa: BLE001 - python-socketio raises several kinds
        return f"undecodable packet ({type(exc).__name__})"
    kind = pkt.packet_type
    if kind in (packet.EVENT, packet.BINARY_EVENT):
        if not (isinstance(pkt.data, list) and pkt.data and isinstance(pkt.data[0], str)):
            return "event without a name"
    elif kind in (packet.ACK, packet.BINARY_ACK):
        if not isinstance(pkt.data, list):
            return "ack without arguments"
    elif kind == packet.CONNECT:
        if pkt.data is not None and not isinstance(pkt.data, dict):
            return "connect with non-object auth"
    elif kind != packet.DISCONNECT:
        return f"packet type {kind!r} a client may not send"
    return None


def guard(sio: Any) -> None:
    """Wrap the Engine.IO "message" handler of ``sio`` (see the module docstring)."""
    eio = sio.eio
    original: Callable[..., Any] | None = eio.handlers.get("message")
    if original is None:
        return

    def message(eio_sid: str, data: Any) -> Any:
        try:
            return original(eio_sid, data)
        except Exception:
            fault = packet_fault(sio, data)
            if fault is None:
                raise
        log.warning("bad Socket.IO packet from session %s: %s; session closed", eio_sid, fault)
        sio.start_background_task(eio.disconnect, eio_sid)
        return None

    eio.handlers["message"] = message


def quiet_unknown_sessions(sio: Any) -> None:
    """python-engineio's "Invalid session" (logged at ERROR) becomes a debug line of monoport's.

    A session id nobody knows is the client's business (its server restarted,
    or the session expired): the client gets python-engineio's 400 as before
    and opens a new session; an operator's log is not the place for it.
    """
    sio.eio.logger.addFilter(_demote_invalid_session)  # added once per logger, however many servers


def _demote_invalid_session(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if message.startswith("Invalid session "):
        log.debug("engine.io: %s", message.partition(" (further")[0])
        return False
    return True
