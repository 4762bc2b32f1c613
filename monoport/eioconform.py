"""Engine.IO v4 sessions as the protocol documents them, on top of python-engineio.

Theory of operation
-------------------
python-engineio does all of the Engine.IO work; this module corrects the
few places where what it does differs from the protocol (socketio/
engine.io-protocol, whose test suite the Node server passes). It changes
the classes of the app's objects, not python-engineio's code:

1. :func:`install` switches the app's ``engineio.Server`` to a subclass
   (``__class__`` assignment: the app built the object, monoport cannot pass
   a class to its constructor) whose ``sockets`` table is a
   :class:`SessionTable`. python-engineio stores every new session there
   before it queues the open packet, and the table switches that session to
   a :class:`ConformingSocket` subclass of its class on the way in.
2. :class:`ConformingSocket` overrides what a session does:

   - the open packet says ``pingInterval`` in milliseconds, fractions of a
     second included (python-engineio truncates to whole seconds first);
   - a ping not answered within ``ping_timeout`` closes the session at that
     moment (python-engineio's sweeper notices up to ``ping_timeout`` late);
   - a close packet sent by POST answers the waiting GET with a noop;
   - a second GET while one is waiting closes the session: the waiting one
     gets the close packet, the second a 400;
   - on a WebSocket, a text message that is not an Engine.IO packet closes
     the session with one log line (python-engineio raises out of its reader,
     a traceback), and no noop is ever sent: noop only ends a long-poll, and
     the one python-engineio queues for the poll during an upgrade would
     otherwise reach the WebSocket after ``5`` when that poll came late.

The HTTP-level rules (transport, method, ``ok``, malformed POST) are the
router's (:mod:`monoport.router`); the Socket.IO one (unknown namespace) is
the guard's (:mod:`monoport.sioguard`).

Hooks into python-engineio and python-socketio
----------------------------------------------
Checked against python-engineio 4.15.1 and python-socketio 5.18.1. Private
or undocumented names monoport's protocol corrections rely on (this module,
:mod:`monoport.router`, :mod:`monoport.sioguard`); ``requirements.txt``
bounds python-engineio below the next minor version, and
``tests/test_eio_conformance.py::test_the_python_engineio_hooks_are_where_monoport_expects_them``
fails when one of them moves:

- ``Server.sockets`` (dict sid -> Socket), assigned in ``BaseServer.__init__``
  and ``Server.disconnect()``; ``Server._handle_connect`` stores the new
  Socket there before ``Socket.send(open packet)``.
- ``Server.ping_interval_grace_period`` (added to the advertised interval).
- ``Socket._websocket_handler(ws)`` (the WebSocket session loop; ``ws`` has
  ``wait()``, ``send()``, ``close()``), ``Socket.queue``, ``Socket.last_ping``
  (set before the ping is sent, None once a pong came), ``Socket.upgrading``,
  ``Socket.upgraded``, ``Socket.closing``, ``Socket.closed``; public methods
  overridden: ``send``, ``receive``, ``handle_get_request``; ``close`` is called.
- ``Server.transports`` (the router's transport check), ``Server._ok``
  answering ``b"OK"`` (the router rewrites it to ``ok``).
- python-socketio: ``Server.handlers``, ``Server.namespace_handlers``,
  ``Server.namespaces`` and ``Server.packet_class`` (the unknown-namespace
  test of :func:`monoport.sioguard.refuse_unknown_namespace`, the same as
  ``Server._handle_connect`` makes).
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

import engineio
from engineio import base_server, exceptions, packet
from engineio import socket as eio_socket

from .wire.eiopackets import packet_error
from .termination import Termination

log = logging.getLogger("monoport")

#: python-engineio's own defaults (from its signature): an app whose values differ set its own.
_DEFAULTS = inspect.signature(base_server.BaseServer.__init__).parameters
DEFAULT_PING_INTERVAL: float = _DEFAULTS["ping_interval"].default
DEFAULT_PING_TIMEOUT: float = _DEFAULTS["ping_timeout"].default

#: A noop packet as it travels on a WebSocket.
NOOP_TEXT = str(packet.NOOP)


def _close(session: Any, reason: str, abort: bool) -> None:
    """``session.close()`` without waiting, giving the app the disconnect ``reason`` (a name of
    python-engineio's ``Server.reason``, which exists since 4.11) when the version has it."""
    reasons = getattr(session.server, "reason", None)
    if reasons is None:
        session.close(wait=False, abort=abort)
    else:
        session.close(wait=False, abort=abort, reason=getattr(reasons, reason))


class ConformingSocket(eio_socket.Socket):
    """A python-engineio session with the corrections listed in the module docstring."""

    #: GET long-polls of this session being answered right now
    _polls_waiting = 0

    # -- the open packet ------------------------------------------------------
    def send(self, pkt: packet.Packet) -> None:
        if pkt.packet_type == packet.OPEN and isinstance(pkt.data, dict):
            server = self.server
            interval = server.ping_interval + getattr(server, "ping_interval_grace_period", 0)
            pkt.data["pingInterval"] = round(interval * 1000)
            pkt.data["pingTimeout"] = round(server.ping_timeout * 1000)
        super().send(pkt)
        if pkt.packet_type == packet.PING and self.last_ping and not self.closed:
            self.server.start_background_task(self._close_unless_pong, self.last_ping)

    # -- heartbeat ------------------------------------------------------------
    def _close_unless_pong(self, pinged_at: float) -> None:
        """Close the session ``ping_timeout`` after the ping sent at ``pinged_at``, unless a pong came."""
        self.server.sleep(self.server.ping_timeout)
        if self.last_ping == pinged_at and not self.closing and not self.closed:
            log.info("Engine.IO session %s: no pong within %gs, closed", self.sid, self.server.ping_timeout)
            _close(self, "PING_TIMEOUT", abort=False)

    # -- long-polling ---------------------------------------------------------
    def receive(self, pkt: packet.Packet) -> None:
        if pkt.packet_type == packet.CLOSE and not self.upgraded:
            # the GET waiting for packets ends with a noop (protocol: "close"), not an empty body
            self.queue.put(packet.Packet(packet.NOOP))
        super().receive(pkt)

    def handle_get_request(self, environ: dict, start_response: Any) -> Any:
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket" or self.upgrading or self.upgraded:
            return super().handle_get_request(environ, start_response)
        if self._polls_waiting:
            # One GET at a time (protocol): the waiting one gets the close packet,
            # this one a 400 (python-engineio's handle_request answers the error).
            log.info("Engine.IO session %s: a second GET while one waits, closed", self.sid)
            _close(self, "TRANSPORT_ERROR", abort=False)
            raise exceptions.EngineIOError("duplicate GET long-poll")
        self._polls_waiting += 1
        try:
            return super().handle_get_request(environ, start_response)
        finally:
            self._polls_waiting -= 1

    # -- WebSocket --------------------------------------------------------------
    def _websocket_handler(self, ws: Any) -> Any:
        return super()._websocket_handler(_CheckedWebSocket(ws, self))


class _CheckedWebSocket:
    """python-engineio's WebSocket object, minus noops out and malformed packets in."""

    def __init__(self, ws: Any, session: ConformingSocket) -> None:
        self._ws = ws
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    def send(self, message: Any) -> Any:
        if message == NOOP_TEXT:
            return None  # only a long-poll needs ending; a WebSocket client gets the app's next packet
        return self._ws.send(message)

    def wait(self) -> Any:
        data = self._ws.wait()
        if isinstance(data, str):
            error = packet_error(data)
            if error:
                self._refuse(error)
                return None  # python-engineio ends the session as if the client had closed
        return data

    def _refuse(self, error: str) -> None:
        environ = getattr(self._ws, "environ", None) or {}
        who = environ.get("REMOTE_ADDR", "-")
        log.warning("bad Engine.IO WebSocket packet from %s (session %s): %s; session closed",
                    who, self._session.sid, error)
        conn = environ.get("monoport.connection")
        if conn is not None:
            conn.end(Termination.PROTOCOL_ERROR, f"protocol error (engine.io: {error})")


@functools.lru_cache(maxsize=None)
def conforming_class(cls: type) -> type:
    """``cls`` (python-engineio's Socket or a subclass of it) with monoport's corrections."""
    if issubclass(cls, ConformingSocket):
        return cls
    if cls is eio_socket.Socket:
        return ConformingSocket
    return type(f"Conforming{cls.__name__}", (ConformingSocket, cls), {})


class SessionTable(dict):
    """``Server.sockets``: a session stored here becomes a :class:`ConformingSocket`."""

    def __setitem__(self, sid: str, session: Any) -> None:
        if isinstance(session, eio_socket.Socket) and not isinstance(session, ConformingSocket):
            current: type = type(session)  # (mypy takes type[Any] for unhashable)
            session.__class__ = conforming_class(current)
        super().__setitem__(sid, session)


class _ConformingServer:
    """Mixin for the app's ``engineio.Server``: keeps ``sockets`` a :class:`SessionTable`.

    ``sockets`` stays a plain instance attribute: python-engineio reads it
    several times a request (a property was a Python call each time); only
    an assignment to it, rare (``__init__``, ``disconnect()``), comes here.
    """

    #: (the instance attribute python-engineio sets; declared for the type checker)
    sockets: SessionTable

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "sockets" and not isinstance(value, SessionTable):
            table = SessionTable()
            for sid, session in value.items():
                table[sid] = session
            value = table
        super().__setattr__(name, value)

    def close_session(self, sid: str) -> None:
        """End session ``sid`` at once (a transport error): its later requests get 400."""
        session = self.sockets.pop(sid, None)
        if session is not None and not session.closed:
            _close(session, "TRANSPORT_ERROR", abort=True)


def install(sio: Any, ping_interval: float | None = None, ping_timeout: float | None = None) -> None:
    """Make the Engine.IO server of ``sio`` conform, and apply --ping-interval/--ping-timeout.

    A ping setting the app made itself (one that differs from python-engineio's
    default) wins over the flag; a line in the log says so.
    """
    eio = sio.eio
    cls = type(eio)
    if not isinstance(eio, engineio.Server):
        log.warning("Engine.IO protocol corrections off: the app's Engine.IO server is a %s, "
                    "not an engineio.Server", cls.__name__)
    elif not issubclass(cls, _ConformingServer):
        sessions = eio.__dict__.pop("sockets", {})
        eio.__class__ = type(f"Conforming{cls.__name__}", (_ConformingServer, cls), {})
        eio.sockets = sessions
    if ping_interval is not None:
        if eio.ping_interval == DEFAULT_PING_INTERVAL and not getattr(eio, "ping_interval_grace_period", 0):
            eio.ping_interval = ping_interval
        else:
            log.info("--ping-interval %g ignored: the app sets its own (%gs)", ping_interval, eio.ping_interval)
    if ping_timeout is not None:
        if eio.ping_timeout == DEFAULT_PING_TIMEOUT:
            eio.ping_timeout = ping_timeout
        else:
            log.info("--ping-timeout %g ignored: the app sets its own (%gs)", ping_timeout, eio.ping_timeout)


def describe_pings(eio: Any) -> str:
    """The ping settings in force, for the start line and ``--check``."""
    return f"ping interval {eio.ping_interval:g}s, timeout {eio.ping_timeout:g}s"
