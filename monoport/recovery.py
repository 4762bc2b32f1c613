"""Socket.IO connection state recovery, as the official JS client (4.6+) speaks it.

Theory of operation
1. With ``--recovery SECONDS`` the CONNECT reply carries a private ``pid``
   (random, 128 bits) beside the ``sid``. Every EVENT sent to clients that
   waits for no ack gets an *offset* as its last argument; the client keeps
   the last one it saw (any trailing string, ``socket._lastOffset``).
2. When a client's transport is lost (transport close or error, ping
   timeout, a draining server), its session -- sid, rooms, the python-socketio
   session dict (``socket.data`` in Node) -- is kept for SECONDS. A deliberate
   disconnect by either side keeps nothing.
3. The client's next CONNECT carries ``{pid, offset}`` in its auth. If the
   session is there, for the same namespace, and the offset is still known,
   the socket gets its old sid, rooms and data; the packets it missed are sent
   *before* the CONNECT reply (the client buffers them and emits them before
   ``connect``), and the reply carries the same pid, so ``socket.recovered``
   is true. Anything else is a fresh session and one debug line.
4. Where the packets live is the manager's business: ``MemoryManager``
   keeps them in this process (``monoport.recovery_memory``), the Redis one in a
   Redis Stream shared by every instance (``monoport.recovery_redis``). Both
   are python-socketio managers with ``RecoveringMixin`` in the place of
   the plain in-process emit, so app code (``sio.emit``, Flask-SocketIO's
   ``emit``) goes through them unchanged.
5. No packet is lost or sent twice around a recovery: the missed packets are
   read up to the position the manager has delivered locally, then, with no
   greenlet switch in between, the socket enters its rooms; everything after
   that position reaches it live.

Where it lives: this module installs the hooks below and chooses the store
(:func:`install`); :mod:`monoport.recovery_sessions` decides what a CONNECT
takes back and what an ending keeps; :mod:`monoport.recovery_manager` holds
what both stores share (the manager mixin, ``Session``, ``Refused``).

PRIVATE HOOKS of python-socketio used here (checked against python-socketio
5.18.1 / python-engineio 4.15.1; :func:`check_hooks` refuses to start when
one is missing):
- ``Server._handle_connect(eio_sid, namespace, data)``: wrapped, to read and
  strip ``pid``/``offset`` from the auth and take the kept session.
- ``Server._handle_disconnect(eio_sid, namespace, reason)``: wrapped, to keep
  the session when the reason is a lost transport.
- the Engine.IO "disconnect" handler python-socketio registers
  (``eio.handlers["disconnect"]``, i.e. ``Server._handle_eio_disconnect``):
  wrapped, to tell an ended Engine.IO session (a close packet included, as
  Node's engine.io does) from a namespace DISCONNECT packet.
- ``Server._send_packet(eio_sid, pkt)``: wrapped, to add ``pid`` to the
  CONNECT reply.
- ``BaseManager.pre_connect`` calling ``server.eio.generate_id()`` for the
  new sid: the recovered sid is handed out through ``generate_id``.
- ``Manager.emit`` (the in-process delivery) overridden in
  :class:`RecoveringMixin`; ``PubSubManager._publish``/``_listen``/
  ``_handle_emit``/``_thread`` for the Redis Stream (recovery_redis).
- ``Server.manager`` / ``manager_initialized`` replaced before the first
  client connects (as ``client_manager=`` would).
"""

from __future__ import annotations

from typing import Any

import socketio
from socketio import packet as sio_packet

from .errors import ConfigError
from .recovery_manager import RecoveringMixin
from .recovery_sessions import Recovery

TRANSPORT_CLOSE = "transport close"
CLIENT_DISCONNECT = "client disconnect"

#: the private attributes :func:`check_hooks` looks for (see the module docstring)
SERVER_HOOKS = ("_handle_connect", "_handle_disconnect", "_send_packet", "manager", "manager_initialized")
PUBSUB_HOOKS = ("_publish", "_listen", "_handle_emit", "_thread")


def attach(recovery: Recovery) -> None:
    """Wrap the private hooks of ``recovery.sio`` (see the module docstring) so they call ``recovery``."""
    sio = recovery.sio
    check_hooks(sio)
    recovery.manager.recovery = recovery
    recovery.manager.set_server(sio)
    sio.manager = recovery.manager
    sio.manager_initialized = False  # python-socketio initializes it on the first connect
    handle_connect, handle_disconnect, send_packet = sio._handle_connect, sio._handle_disconnect, sio._send_packet
    generate_id = sio.eio.generate_id

    def _generate_id() -> str:
        if recovery.next_sid is not None:
            return recovery.next_sid
        return generate_id()

    def _handle_connect(eio_sid, namespace, data):
        ns = namespace or "/"
        pending, data = recovery.begin(eio_sid, ns, data)
        recovery.pending[(eio_sid, ns)] = pending
        try:
            return handle_connect(eio_sid, namespace, data)
        except KeyError:
            # python-socketio reads environ[eio_sid]; a restore waits on Redis,
            # and the client may have gone meanwhile.
            if eio_sid in sio.environ:
                raise
            recovery.abandoned(eio_sid, ns, pending)
            return None
        finally:
            recovery.pending.pop((eio_sid, ns), None)

    def _handle_disconnect(eio_sid, namespace, reason=None):
        ns = namespace or "/"
        if eio_sid in recovery.transport_ending:
            # The Engine.IO session ended under a namespace the client never
            # left: python-engineio says "client disconnect" for a close
            # packet, Node's engine.io "transport close" (recoverable).
            reason = recovery.transport_ending[eio_sid]
        recovery.ended(recovery.manager.sid_from_eio_sid(eio_sid, ns), ns, reason)
        return handle_disconnect(eio_sid, namespace, reason)

    def _send_packet(eio_sid, pkt):
        if pkt.packet_type == sio_packet.CONNECT and isinstance(pkt.data, dict):
            pending = recovery.pending.get((eio_sid, pkt.namespace or "/"))
            if pending is not None:
                pkt.data["pid"] = pending.pid
                sent = send_packet(eio_sid, pkt)
                recovery.connected(eio_sid, pkt.data.get("sid"), pkt.namespace or "/", pending)
                return sent
        return send_packet(eio_sid, pkt)

    sio.eio.generate_id = _generate_id
    sio._handle_connect = _handle_connect
    sio._handle_disconnect = _handle_disconnect
    sio._send_packet = _send_packet
    eio_disconnect = sio.eio.handlers["disconnect"]

    def _eio_disconnect(eio_sid, reason=None, *args):
        recovery.transport_ending[eio_sid] = TRANSPORT_CLOSE if reason == CLIENT_DISCONNECT else reason
        try:
            return eio_disconnect(eio_sid, reason, *args)
        finally:
            recovery.transport_ending.pop(eio_sid, None)

    sio.eio.handlers["disconnect"] = _eio_disconnect


def check_hooks(sio: Any) -> None:
    """Refuse to start if python-socketio lost a private hook this module relies on."""
    missing = [name for name in SERVER_HOOKS if not hasattr(sio, name)]
    if not hasattr(sio.eio, "generate_id") or not hasattr(socketio.Manager, "pre_connect"):
        missing.append("eio.generate_id / Manager.pre_connect")
    if "disconnect" not in sio.eio.handlers:
        missing.append('the Engine.IO "disconnect" handler')
    missing += [f"PubSubManager.{name}" for name in PUBSUB_HOOKS if not hasattr(socketio.PubSubManager, name)]
    if missing:
        raise ConfigError("--recovery", f"this python-socketio has no {', '.join(missing)}; "
                          "recovery was checked against python-socketio 5.18")


def install(sio: Any, duration: float, redis_url: str | None = None, key_prefix: str = "monoport:",
            instance_id: str = "") -> Recovery:
    """Give ``sio`` recovery for ``duration`` seconds: in memory, or through Redis when ``redis_url`` is set.

    Raises:
        ConfigError: without Redis, when the app brought a message-queue manager of its own
            (Flask-SocketIO's ``message_queue=``): the in-memory one would silently cut it off.
    """
    if not redis_url and isinstance(sio.manager, socketio.PubSubManager):
        raise ConfigError("--recovery", f"the app's Socket.IO server uses {type(sio.manager).__name__} "
                          "(a message queue); recovery across processes needs --redis")
    if redis_url:
        from .recovery_redis import RedisStore, StreamManager

        store: Any = RedisStore(redis_url, key_prefix, duration, instance_id)
        manager: RecoveringMixin = StreamManager(redis_url, key_prefix, store)
    else:
        from .recovery_memory import MemoryManager, MemoryStore

        store = MemoryStore(duration)
        manager = MemoryManager(store)
    recovery = Recovery(sio, manager, store)
    attach(recovery)
    return recovery


