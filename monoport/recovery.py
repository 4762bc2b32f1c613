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
   are python-socketio managers with :class:`RecoveringMixin` in the place of
   the plain in-process emit, so app code (``sio.emit``, Flask-SocketIO's
   ``emit``) goes through them unchanged.
5. No packet is lost or sent twice around a recovery: the missed packets are
   read up to the position the manager has delivered locally, then, with no
   greenlet switch in between, the socket enters its rooms; everything after
   that position reaches it live.

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

import dataclasses
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import socketio
from socketio import packet as sio_packet

from .errors import ConfigError

log = logging.getLogger("monoport.recovery")

#: python-engineio's reasons for an end the client did not ask for (drain
#: closes sessions as "transport close" too): only these keep a session.
RECOVERABLE_REASONS = frozenset({"transport close", "transport error", "ping timeout"})
TRANSPORT_CLOSE = "transport close"
CLIENT_DISCONNECT = "client disconnect"
#: bytes of randomness in a pid (128 bits: never guessable)
PID_BYTES = 16

#: the private attributes :func:`check_hooks` looks for (see the module docstring)
SERVER_HOOKS = ("_handle_connect", "_handle_disconnect", "_send_packet", "manager", "manager_initialized")
PUBSUB_HOOKS = ("_publish", "_listen", "_handle_emit", "_thread")


@dataclass
class Session:
    """What a recovered socket gets back."""

    pid: str
    sid: str
    namespace: str
    rooms: list[str]
    data: Any = None
    #: the store's position when the session began: where a client that never
    #: received an event (and so sends no offset) resumes from
    start: str = ""

    def wants(self, namespace: str, room: Any, skip_sid: Any) -> bool:
        """Whether a packet sent to ``room`` (None: everyone) in ``namespace`` reached this socket."""
        if namespace != self.namespace:
            return False
        skipped = skip_sid if isinstance(skip_sid, (list, tuple)) else [skip_sid]
        if self.sid in skipped:
            return False
        if room is None:
            return True
        rooms = room if isinstance(room, (list, tuple)) else [room]
        return any(r in self.rooms for r in rooms)


def new_pid() -> str:
    return secrets.token_urlsafe(PID_BYTES)


def args_of(data: Any) -> list:
    """An emit's ``data`` as python-socketio spreads it into arguments."""
    if isinstance(data, tuple):
        return list(data)
    return [] if data is None else [data]


class Refused(Exception):
    """Why a recovery attempt gives a fresh session instead (one debug line)."""


class RecoveringMixin(socketio.Manager):
    """The in-process delivery of a python-socketio manager, with offsets and resumed sockets.

    Placed right above ``socketio.Manager`` in a manager's MRO, so that a
    pub/sub manager's ``super().emit`` (its local delivery) comes through here.
    """

    recovery: "Recovery"

    def _next_offset(self, namespace: str, room: Any, skip_sid: Any, args: list) -> str | None:
        raise NotImplementedError

    def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        room = to or room
        if callback is None:
            args = args_of(data)
            offset = self._next_offset(namespace or "/", room, skip_sid, [event] + args)
            if offset is not None:
                data = tuple(args + [offset])
        return super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs)

    def pre_connect(self, eio_sid, namespace):
        pending = self.recovery.pending.get((eio_sid, namespace))
        if pending is None or pending.session is None:
            return super().pre_connect(eio_sid, namespace)
        self.recovery.next_sid = pending.session.sid
        try:
            sid = super().pre_connect(eio_sid, namespace)
        finally:
            self.recovery.next_sid = None
        if sid is not None:
            self.recovery.resume(self, eio_sid, sid, pending)
        return sid

    def missed(self, session: Session, offset: str) -> list[tuple[str, list]]:
        """Packets ``session`` missed after ``offset``, up to what this manager delivered (no switch after)."""
        raise NotImplementedError

    def check_offset(self, offset: str) -> None:
        raise NotImplementedError

    def position(self) -> str:
        raise NotImplementedError

    def disconnect(self, sid, namespace, **kwargs):
        # A server-side disconnect (sio.disconnect) is deliberate: keep nothing.
        self.recovery.ended(sid, namespace or "/", None)
        return super().disconnect(sid, namespace, **kwargs)

    def enter_room(self, sid, namespace, room, eio_sid=None):
        result = super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        self.recovery.rooms_changed(sid, namespace or "/")
        return result

    def leave_room(self, sid, namespace, room):
        result = super().leave_room(sid, namespace, room)
        self.recovery.rooms_changed(sid, namespace or "/")
        return result


@dataclass
class _Pending:
    """A CONNECT being handled: the pid it will be answered with, the session it resumes."""

    pid: str
    session: Session | None = None
    offset: str = ""
    replayed: int = 0


@dataclass
class Counters:
    """What the stats page and metrics show."""

    recovered: int = 0
    failed: int = 0
    replayed: int = 0
    kept: int = 0
    failures: dict[str, int] = field(default_factory=dict)


class Recovery:
    """The hooks on one ``socketio.Server`` (see the module docstring), and its counters."""

    def __init__(self, sio: Any, manager: RecoveringMixin, store: Any) -> None:
        self.sio = sio
        self.manager = manager
        self.store = store
        self.counters = Counters()
        #: (eio_sid, namespace) -> the CONNECT being handled
        self.pending: dict[tuple[str, str], _Pending] = {}
        #: (sid, namespace) -> (session, token) of connected sockets
        self.live: dict[tuple[str, str], tuple[Session, str]] = {}
        #: pid -> (sid, namespace) of connected sockets
        self.live_pids: dict[str, tuple[str, str]] = {}
        #: the sid ``pre_connect`` is about to hand out (see generate_id)
        self.next_sid: str | None = None
        #: eio sid -> reason, while python-socketio ends every namespace of a closed Engine.IO session
        self.transport_ending: dict[str, str | None] = {}

    # -- installing ------------------------------------------------------------------
    def attach(self) -> None:
        sio = self.sio
        check_hooks(sio)
        self.manager.recovery = self
        self.manager.set_server(sio)
        sio.manager = self.manager
        sio.manager_initialized = False  # python-socketio initializes it on the first connect
        handle_connect, handle_disconnect, send_packet = sio._handle_connect, sio._handle_disconnect, sio._send_packet
        generate_id = sio.eio.generate_id

        def _generate_id() -> str:
            if self.next_sid is not None:
                return self.next_sid
            return generate_id()

        def _handle_connect(eio_sid, namespace, data):
            ns = namespace or "/"
            pending, data = self.begin(eio_sid, ns, data)
            self.pending[(eio_sid, ns)] = pending
            try:
                return handle_connect(eio_sid, namespace, data)
            except KeyError:
                # python-socketio reads environ[eio_sid]; a restore waits on Redis,
                # and the client may have gone meanwhile.
                if eio_sid in sio.environ:
                    raise
                self.abandoned(eio_sid, ns, pending)
                return None
            finally:
                self.pending.pop((eio_sid, ns), None)

        def _handle_disconnect(eio_sid, namespace, reason=None):
            ns = namespace or "/"
            if eio_sid in self.transport_ending:
                # The Engine.IO session ended under a namespace the client never
                # left: python-engineio says "client disconnect" for a close
                # packet, Node's engine.io "transport close" (recoverable).
                reason = self.transport_ending[eio_sid]
            self.ended(self.manager.sid_from_eio_sid(eio_sid, ns), ns, reason)
            return handle_disconnect(eio_sid, namespace, reason)

        def _send_packet(eio_sid, pkt):
            if pkt.packet_type == sio_packet.CONNECT and isinstance(pkt.data, dict):
                pending = self.pending.get((eio_sid, pkt.namespace or "/"))
                if pending is not None:
                    pkt.data["pid"] = pending.pid
                    sent = send_packet(eio_sid, pkt)
                    self.connected(eio_sid, pkt.data.get("sid"), pkt.namespace or "/", pending)
                    return sent
            return send_packet(eio_sid, pkt)

        sio.eio.generate_id = _generate_id
        sio._handle_connect = _handle_connect
        sio._handle_disconnect = _handle_disconnect
        sio._send_packet = _send_packet
        eio_disconnect = sio.eio.handlers["disconnect"]

        def _eio_disconnect(eio_sid, reason=None, *args):
            self.transport_ending[eio_sid] = TRANSPORT_CLOSE if reason == CLIENT_DISCONNECT else reason
            try:
                return eio_disconnect(eio_sid, reason, *args)
            finally:
                self.transport_ending.pop(eio_sid, None)

        sio.eio.handlers["disconnect"] = _eio_disconnect

    # -- a CONNECT ---------------------------------------------------------------------
    def begin(self, eio_sid: str, namespace: str, auth: Any) -> tuple[_Pending, Any]:
        """Take the kept session a CONNECT asks for, if it may have it; the auth the app sees."""
        if not (isinstance(auth, dict) and "pid" in auth):
            return _Pending(new_pid()), auth
        pid, offset = auth.get("pid"), auth.get("offset")
        auth = {k: v for k, v in auth.items() if k not in ("pid", "offset")} or None
        try:
            if not isinstance(pid, str) or not pid:
                raise Refused("pid is not a string")
            if offset is not None and not isinstance(offset, str):
                raise Refused("offset is not a string")
            local = self.live_pids.get(pid)
            if local is not None and local[1] == namespace:
                session = self._supersede(*local)
            else:
                session = self.store.take(pid, namespace, self._token(eio_sid))
            offset = offset or session.start
            self.manager.check_offset(offset)
        except Refused as why:
            self.counters.failed += 1
            reason = str(why).split(" (")[0]  # the part without details: a bounded set, for metrics labels
            self.counters.failures[reason] = self.counters.failures.get(reason, 0) + 1
            log.debug("recovery refused for session %s namespace %s: %s; fresh session", eio_sid, namespace, why)
            return _Pending(new_pid()), auth
        return _Pending(session.pid, session, offset), auth

    def _supersede(self, sid: str, namespace: str) -> Session:
        """The pid's socket is still connected here: a dead transport the server has not noticed yet
        (a long-poll waits for its ping timeout). The pid is secret, so this CONNECT is its client:
        end the old socket (deliberately: nothing kept) and hand its session to the new one."""
        session, _ = self.live[(sid, namespace)]
        taken = dataclasses.replace(session, rooms=self.manager.get_rooms(sid, namespace),
                                    data=self._data_of(sid, namespace))
        log.debug("session %s in %s: its client is back while its old connection looked alive; replacing it",
                  sid, namespace)
        self.sio.disconnect(sid, namespace=namespace, ignore_queue=True)
        self.ended(sid, namespace, None)  # in case the app's manager did not come through ours
        return taken

    @staticmethod
    def _token(eio_sid: str) -> str:
        return eio_sid

    def resume(self, manager: RecoveringMixin, eio_sid: str, sid: str, pending: _Pending) -> None:
        """Send the missed packets, then enter the rooms and restore the data (called in pre_connect)."""
        session = pending.session
        assert session is not None
        missed = manager.missed(session, pending.offset)
        # From here to the last enter_room nothing may switch greenlets.
        for offset, args in missed:
            self.sio._send_packet(eio_sid, self.sio.packet_class(
                sio_packet.EVENT, namespace=session.namespace, data=list(args) + [offset]))
        for room in session.rooms:
            if room != sid:
                manager.basic_enter_room(sid, session.namespace, room, eio_sid=eio_sid)
        pending.replayed = len(missed)
        environ = self.sio.environ.get(eio_sid)
        if environ is not None:
            environ["monoport.recovered"] = True  # the app's connect handler can tell (Node: socket.recovered)
        if isinstance(session.data, dict):
            self.sio.eio.get_session(eio_sid)[session.namespace] = dict(session.data)

    def abandoned(self, eio_sid: str, namespace: str, pending: _Pending) -> None:
        """The client left while its CONNECT was handled: a session it was resuming is kept again."""
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is not None and (sid, namespace) not in self.live:
            self.manager.basic_disconnect(sid, namespace)
        if pending.session is not None:
            self.store.keep(pending.session, self._token(eio_sid))
        log.debug("session %s closed while connecting to %s%s", eio_sid, namespace,
                  "; its recovered session is kept again" if pending.session else "")

    def connected(self, eio_sid: str, sid: str | None, namespace: str, pending: _Pending) -> None:
        """The CONNECT reply went out: the socket is live (and recovered, if it was)."""
        if sid is None:
            return
        if eio_sid not in self.sio.environ:
            self.abandoned(eio_sid, namespace, pending)  # gone during the app's connect handler
            return
        rooms = self.manager.get_rooms(sid, namespace)
        session = Session(pending.pid, sid, namespace, rooms,
                          start=pending.session.start if pending.session else self.manager.position())
        token = self._token(eio_sid)
        self.live[(sid, namespace)] = (session, token)
        self.live_pids[session.pid] = (sid, namespace)
        if pending.session is not None:
            self.counters.recovered += 1
            self.counters.replayed += pending.replayed
            conn = self.sio.environ[eio_sid].get("monoport.connection")
            if conn is not None and conn.kind not in ("polling", "polling-tls"):
                conn.sio_recovered = True  # the access log's conn line says so
            log.debug("session %s recovered in %s: %d packet(s) replayed", sid, namespace, pending.replayed)
        self.store.live(session, token)

    def rooms_changed(self, sid: str, namespace: str) -> None:
        entry = self.live.get((sid, namespace))
        if entry is not None:
            session, token = entry
            session.rooms = self.manager.get_rooms(sid, namespace)
            self.store.live(session, token)

    def ended(self, sid: str | None, namespace: str, reason: str | None) -> None:
        """A socket left ``namespace``: keep its session if its transport was lost, else forget it."""
        if sid is None:
            return
        entry = self.live.pop((sid, namespace), None)
        if entry is None:
            return
        session, token = entry
        self.live_pids.pop(session.pid, None)
        if reason in RECOVERABLE_REASONS:
            session.rooms = self.manager.get_rooms(sid, namespace)
            session.data = self._data_of(sid, namespace)
            self.store.keep(session, token)
            self.counters.kept += 1
            log.debug("session %s in %s kept for recovery (%s)", sid, namespace, reason)
        else:
            self.store.forget(session, token)

    def _data_of(self, sid: str, namespace: str) -> Any:
        try:
            return dict(self.sio.get_session(sid, namespace=namespace))
        except Exception:  # noqa: BLE001 - the Engine.IO session may be gone already
            return None

    def start(self) -> None:
        """Initialize the manager now (the Redis one starts reading its stream) rather than on the first connect."""
        self.manager.initialize()
        self.sio.manager_initialized = True
        stream = getattr(self.manager, "stream", None)
        log.info("recovery: sessions kept %gs after a lost transport; %s", self.store.duration,
                 f"Socket.IO messages through the Redis stream {stream}" if stream else "in memory")

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        return {"recovered": c.recovered, "failed": c.failed, "replayed": c.replayed, "kept": c.kept,
                "live": len(self.live), "failures": dict(c.failures)}


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
    recovery.attach()
    return recovery


