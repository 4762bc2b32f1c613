"""Connection state recovery on one instance: packets and kept sessions in this process.

The store behind ``--recovery`` without Redis (see ``monoport.recovery`` for the protocol):
every ack-less emit gets the next offset and is kept, with where it went, for the recovery
duration (and at most :data:`MAX_MEMORY_PACKETS`); a session lost with its transport is kept
as long. Everything is lost with the process: across instances and restarts, use ``--redis``.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from .recovery_manager import RecoveringMixin, Refused, Session

#: packets the in-memory store keeps at most, whatever the duration (memory bound)
MAX_MEMORY_PACKETS = 100_000


@dataclass
class _Stored:
    """One emit as it went out: where to, and its arguments (the event name first)."""

    seq: int
    at: float
    namespace: str
    room: Any
    skip_sid: Any
    args: list


class MemoryStore:
    """Packets and kept sessions of one process, bounded by the duration.

    Offsets are ``<epoch>-<seq>``: the epoch (random per process) makes an
    offset from another process or instance unknown here rather than wrong.
    """

    def __init__(self, duration: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.duration = duration
        self.clock = clock
        self.epoch = secrets.token_hex(4)
        self.seq = itertools.count(1)
        self.last = 0
        #: seq of the newest packet dropped: offsets below it are trimmed
        self.floor = 0
        self.packets: deque[_Stored] = deque()
        self.sessions: dict[str, tuple[Session, float]] = {}

    def offset(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def position(self) -> str:
        return self.offset(self.last)

    def append(self, namespace: str, room: Any, skip_sid: Any, args: list) -> str:
        self.last = next(self.seq)
        now = self.clock()
        self.packets.append(_Stored(self.last, now, namespace, room, skip_sid, args))
        self._prune(now)
        return self.offset(self.last)

    def _prune(self, now: float) -> None:
        oldest = now - self.duration
        while self.packets and (self.packets[0].at < oldest or len(self.packets) > MAX_MEMORY_PACKETS):
            self.floor = self.packets.popleft().seq
        if len(self.sessions) and next(iter(self.sessions.values()))[1] < now:
            self.sessions = {pid: kept for pid, kept in self.sessions.items() if kept[1] >= now}

    # -- sessions --------------------------------------------------------------------
    def keep(self, session: Session, owner_token: str) -> None:
        self.sessions[session.pid] = (session, self.clock() + self.duration)

    def live(self, session: Session, owner_token: str) -> None:
        """Sessions of connected sockets live in python-socketio itself; nothing to write."""

    def forget(self, session: Session, owner_token: str) -> None:
        self.sessions.pop(session.pid, None)

    def take(self, pid: str, namespace: str, owner_token: str) -> Session:
        kept = self.sessions.pop(pid, None)
        if kept is None:
            raise Refused("unknown, expired or already taken pid")
        session, expires = kept
        if expires < self.clock():
            raise Refused("expired pid")
        if session.namespace != namespace:
            raise Refused(f"pid of another namespace ({session.namespace})")
        return session

    def check_offset(self, offset: str) -> None:
        self._seq_of(offset)

    def _seq_of(self, offset: str) -> int:
        epoch, _, number = offset.partition("-")
        if epoch != self.epoch or not number.isdigit():
            raise Refused("malformed or foreign offset")
        seq = int(number)
        if seq > self.last:
            raise Refused("offset from the future")
        if seq < self.floor:
            raise Refused("offset trimmed away")
        return seq

    def missed(self, session: Session, offset: str) -> list[tuple[str, list]]:
        """The packets after ``offset`` that ``session`` would have received, as (offset, args)."""
        seq = self._seq_of(offset)
        return [(self.offset(p.seq), p.args) for p in self.packets
                if p.seq > seq and session.wants(p.namespace, p.room, p.skip_sid)]


class MemoryManager(RecoveringMixin):
    """One process: packets and kept sessions in a :class:`MemoryStore`."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__()
        self.store = store

    def _next_offset(self, namespace, room, skip_sid, args):
        return self.store.append(namespace, room, skip_sid, args)

    def missed(self, session, offset):
        return self.store.missed(session, offset)

    def check_offset(self, offset):
        self.store.check_offset(offset)

    def position(self):
        return self.store.position()
