"""Recovery's session logic: which session a CONNECT takes back, which ending keeps one, the counters.

Called by the python-socketio hooks :mod:`monoport.recovery` installs and by
the manager mixin (:mod:`monoport.recovery_manager`); the protocol is told in
:mod:`monoport.recovery`'s theory of operation.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from socketio import packet as sio_packet

from .recovery_manager import Pending, RecoveringMixin, Refused, Session

log = logging.getLogger("monoport.recovery")

#: python-engineio's reasons for an end the client did not ask for (drain
#: closes sessions as "transport close" too): only these keep a session.
RECOVERABLE_REASONS = frozenset({"transport close", "transport error", "ping timeout"})
#: bytes of randomness in a pid (128 bits: never guessable)
PID_BYTES = 16


def new_pid() -> str:
    return secrets.token_urlsafe(PID_BYTES)


@dataclass
class Counters:
    """What the stats page and metrics show."""

    recovered: int = 0
    failed: int = 0
    replayed: int = 0
    kept: int = 0
    failures: dict[str, int] = field(default_factory=dict)


class Recovery:
    """The sessions of one ``socketio.Server``: which are live, kept, taken back; and the counters."""

    def __init__(self, sio: Any, manager: RecoveringMixin, store: Any) -> None:
        self.sio = sio
        self.manager = manager
        self.store = store
        self.counters = Counters()
        #: (eio_sid, namespace) -> the CONNECT being handled
        self.pending: dict[tuple[str, str], Pending] = {}
        #: (sid, namespace) -> (session, token) of connected sockets
        self.live: dict[tuple[str, str], tuple[Session, str]] = {}
        #: pid -> (sid, namespace) of connected sockets
        self.live_pids: dict[str, tuple[str, str]] = {}
        #: the sid ``pre_connect`` is about to hand out (see generate_id)
        self.next_sid: str | None = None
        #: eio sid -> reason, while python-socketio ends every namespace of a closed Engine.IO session
        self.transport_ending: dict[str, str | None] = {}

    # -- a CONNECT ---------------------------------------------------------------------
    def begin(self, eio_sid: str, namespace: str, auth: Any) -> tuple[Pending, Any]:
        """Take the kept session a CONNECT asks for, if it may have it; the auth the app sees."""
        if not (isinstance(auth, dict) and "pid" in auth):
            return Pending(new_pid()), auth
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
            return Pending(new_pid()), auth
        return Pending(session.pid, session, offset), auth

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

    def resume(self, manager: RecoveringMixin, eio_sid: str, sid: str, pending: Pending) -> None:
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

    def abandoned(self, eio_sid: str, namespace: str, pending: Pending) -> None:
        """The client left while its CONNECT was handled: a session it was resuming is kept again."""
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is not None and (sid, namespace) not in self.live:
            self.manager.basic_disconnect(sid, namespace)
        if pending.session is not None:
            self.store.keep(pending.session, self._token(eio_sid))
        log.debug("session %s closed while connecting to %s%s", eio_sid, namespace,
                  "; its recovered session is kept again" if pending.session else "")

    def connected(self, eio_sid: str, sid: str | None, namespace: str, pending: Pending) -> None:
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
