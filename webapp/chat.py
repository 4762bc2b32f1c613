"""The chat's state and rules, with no I/O: rooms, members, history, validation, rate limits.

:class:`Chat` is what the Socket.IO handlers in :mod:`webapp` consult and
change. It never emits anything itself: each method returns what should be
sent to whom, so the rules can be tested without sockets and the same rules
apply to browsers and raw TCP clients alike.

Invariants:
- a client is in at most one room; ``members`` and ``Client.room`` agree;
- a nickname is listed once per room however many clients (tabs) use it;
- a room's history holds at most :data:`HISTORY` messages, oldest first;
- at most :data:`MAX_ROOMS` rooms exist; when a new one is needed, the
  least recently used *empty* room (and its history) is forgotten.
"""

from __future__ import annotations

import itertools
import re
import time
import unicodedata
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

#: messages kept per room and sent to whoever joins
HISTORY = 100
#: rooms kept in memory (empty ones are evicted first, least recently used)
MAX_ROOMS = 1000
#: a message's text, in UTF-8 bytes
MAX_MESSAGE_BYTES = 4096
#: nicknames: 1-24 characters, letters/digits/marks of any script plus space . _ -
NICK_MAX = 24
#: room names: 1-32 characters of a-z 0-9 _ - (case-insensitive: lowercased)
ROOM_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
#: message rate: a burst of RATE_BURST, then RATE_PER_SECOND sustained (joins count too)
RATE_BURST = 8
RATE_PER_SECOND = 2.0
#: a flooding client gets at most one `error` event per this many seconds
ERROR_EVERY = 1.0
#: one typing notice per client per this many seconds reaches the room
TYPING_EVERY = 1.0


def member_names(nicks: Any) -> list[str]:
    """Distinct nicknames, sorted case-insensitively (the order every member list is shown in)."""
    return sorted(set(nicks), key=lambda n: (n.casefold(), n))


class Rejected(Exception):
    """A client's request broke a rule; ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


def valid_nick(value: Any) -> str:
    """The nickname, trimmed; :class:`Rejected` ``bad_nick`` otherwise."""
    if not isinstance(value, str):
        raise Rejected("bad_nick", "nickname must be a string")
    nick = unicodedata.normalize("NFC", value.strip())
    if not 1 <= len(nick) <= NICK_MAX:
        raise Rejected("bad_nick", f"nickname must be 1-{NICK_MAX} characters")
    for ch in nick:
        if not (ch.isalnum() or ch in " ._-" or unicodedata.category(ch).startswith("M")):
            raise Rejected("bad_nick", "nickname may hold letters, digits, spaces and . _ - only")
    return nick


def valid_room(value: Any) -> str:
    """The room name, lowercased; :class:`Rejected` ``bad_room`` otherwise."""
    if not isinstance(value, str):
        raise Rejected("bad_room", "room must be a string")
    room = value.strip().lower()
    if not ROOM_RE.fullmatch(room):
        raise Rejected("bad_room", "room names are 1-32 characters of a-z, 0-9, _ and -, starting with a letter or digit")
    return room


def valid_text(value: Any) -> str:
    """The message text; :class:`Rejected` ``bad_message`` or ``too_long`` otherwise."""
    if isinstance(value, dict):
        value = value.get("text")
    if not isinstance(value, str) or not value.strip():
        raise Rejected("bad_message", "a message is a non-empty string")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise Rejected("too_long", f"a message is at most {MAX_MESSAGE_BYTES} bytes")
    return value


class TokenBucket:
    """``burst`` actions at once, refilled at ``rate`` per second."""

    def __init__(self, burst: float, rate: float, clock: Callable[[], float]) -> None:
        self.burst = burst
        self.rate = rate
        self.clock = clock
        self.tokens = burst
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Client:
    sid: str
    bucket: TokenBucket
    nick: str | None = None
    room: str | None = None
    last_error: float = float("-inf")
    last_typing: float = float("-inf")
    typing: bool = False


@dataclass
class Room:
    name: str
    members: dict[str, str] = field(default_factory=dict)  # sid -> nick, in join order
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY))

    def member_list(self) -> list[str]:
        """The nicknames present, each once: two tabs of one person are one member."""
        return member_names(self.members.values())


class Chat:
    """All rooms and clients of one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.wall = wall
        self.clients: dict[str, Client] = {}
        self.rooms: OrderedDict[str, Room] = OrderedDict()
        self._ids = itertools.count(1)

    # -- clients -------------------------------------------------------------
    def connect(self, sid: str) -> None:
        self.clients[sid] = Client(sid, TokenBucket(RATE_BURST, RATE_PER_SECOND, self.clock))

    def disconnect(self, sid: str) -> Room | None:
        """Forget the client; returns the room it left (whose members changed)."""
        client = self.clients.pop(sid, None)
        return self._leave(client) if client else None

    def client(self, sid: str) -> Client:
        try:
            return self.clients[sid]
        except KeyError:
            raise Rejected("not_connected", "unknown client") from None

    def throttle(self, sid: str) -> None:
        """Spend one token of the client's rate budget; :class:`Rejected` ``rate_limited`` when empty."""
        client = self.client(sid)
        if not client.bucket.take():
            raise Rejected("rate_limited", f"slow down: at most {RATE_PER_SECOND:g} messages per second "
                           f"(bursts of {RATE_BURST})")

    def should_report(self, sid: str, error: Rejected) -> bool:
        """Whether this rejection is worth an `error` event (flood errors are rate-limited too)."""
        client = self.clients.get(sid)
        if client is None:
            return False
        if error.code != "rate_limited":
            return True
        now = self.clock()
        if now - client.last_error < ERROR_EVERY:
            return False
        client.last_error = now
        return True

    # -- rooms ---------------------------------------------------------------
    def join(self, sid: str, room_name: Any, nick: Any) -> tuple[Room, Room | None]:
        """Put the client in a room (leaving its previous one).

        Returns:
            (the room joined, the room left or None).
        Raises:
            Rejected: bad nickname or room name, or too many requests.
        """
        client = self.client(sid)
        nick = valid_nick(nick)
        name = valid_room(room_name)
        self.throttle(sid)
        room = self._room(name)  # first: a refusal (too many rooms) must leave the client where it was
        left = self._leave(client) if client.room is not None and (client.room != name or client.nick != nick) else None
        room.members[sid] = nick
        client.nick, client.room = nick, name
        return room, left

    def leave(self, sid: str) -> Room | None:
        return self._leave(self.client(sid))

    def _leave(self, client: Client) -> Room | None:
        room = self.rooms.get(client.room) if client.room else None
        client.room = None
        if room is not None:
            room.members.pop(client.sid, None)
        return room

    def _room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            if len(self.rooms) >= MAX_ROOMS:
                empty = next((r for r in self.rooms.values() if not r.members), None)
                if empty is None:
                    raise Rejected("too_many_rooms", f"the server keeps at most {MAX_ROOMS} rooms")
                del self.rooms[empty.name]
            room = self.rooms[name] = Room(name)
        self.rooms.move_to_end(name)
        return room

    def room_list(self) -> list[dict[str, Any]]:
        return [{"name": r.name, "members": len(set(r.members.values()))} for r in reversed(self.rooms.values())]

    # -- messages ------------------------------------------------------------
    def message(self, sid: str, data: Any) -> tuple[Room, dict[str, Any]]:
        """Validate and record a message; returns its room and the message to broadcast."""
        client = self.client(sid)
        if client.room is None:
            raise Rejected("not_joined", "join a room first")
        text = valid_text(data)
        self.throttle(sid)
        room = self._room(client.room)
        msg = {"id": next(self._ids), "room": room.name, "nick": client.nick, "text": text,
               "ts": int(self.wall() * 1000)}
        room.history.append(msg)
        client.typing = False  # receivers clear the notice when the message arrives
        return room, msg

    def typing(self, sid: str, data: Any) -> tuple[Room, dict[str, Any]] | None:
        """A typing notice to pass on to the room, or None (not joined, or too soon after the last)."""
        client = self.clients.get(sid)
        if client is None or client.room is None:
            return None
        active = not (isinstance(data, dict) and data.get("typing") is False)
        now = self.clock()
        if active and now - client.last_typing < TYPING_EVERY:
            return None
        if not active and not client.typing:
            return None  # a stop is passed on once per start, so stops cannot flood either
        client.typing = active
        if active:
            client.last_typing = now
        return self.rooms[client.room], {"room": client.room, "nick": client.nick, "typing": active}
