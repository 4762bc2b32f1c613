"""What the recovery stores share: the Session, Refused, and the python-socketio manager mixin.

The in-memory (:mod:`monoport.recovery_memory`) and Redis
(:mod:`monoport.recovery_redis`) managers subclass :class:`RecoveringMixin`
and speak in :class:`Session` and :class:`Refused`; kept apart from
:mod:`monoport.recovery`, which chooses between them, so that neither store
imports the module that imports it (see the theory of operation there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import socketio


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


def args_of(data: Any) -> list:
    """An emit's ``data`` as python-socketio spreads it into arguments."""
    if isinstance(data, tuple):
        return list(data)
    return [] if data is None else [data]


class Refused(Exception):
    """Why a recovery attempt gives a fresh session instead (one debug line)."""


@dataclass
class Pending:
    """A CONNECT being handled: the pid it will be answered with, the session it resumes."""

    pid: str
    session: Session | None = None
    offset: str = ""
    replayed: int = 0


class SessionHooks(Protocol):
    """What the mixin calls back in the session logic (:class:`monoport.recovery_sessions.Recovery`)."""

    pending: dict[tuple[str, str], Pending]
    next_sid: str | None

    def resume(self, manager: RecoveringMixin, eio_sid: str, sid: str, pending: Pending) -> None: ...

    def ended(self, sid: str | None, namespace: str, reason: str | None) -> None: ...

    def rooms_changed(self, sid: str, namespace: str) -> None: ...


class RecoveringMixin(socketio.Manager):
    """The in-process delivery of a python-socketio manager, with offsets and resumed sockets.

    Placed right above ``socketio.Manager`` in a manager's MRO, so that a
    pub/sub manager's ``super().emit`` (its local delivery) comes through here.
    """

    recovery: SessionHooks

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
