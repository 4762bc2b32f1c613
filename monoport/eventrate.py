"""``--max-events-per-second``: a flooding Socket.IO client slows only itself.

Theory of operation:

* Every EVENT a client sends (over WebSocket, polling or the raw transport:
  they all reach python-engineio's "message" handler) takes a token from two
  buckets: its session's, and its client's. The client is the app's
  ``environ['monoport.identity']`` when its connect handler set one (a user
  id: users behind one NAT are told apart, and one user's many tabs share a
  budget), else ``REMOTE_ADDR``, which is the real client after trusted
  PROXY and X-Forwarded-For handling.
* Each bucket holds N tokens and refills at N per second: bursts of N pass,
  a sustained rate above N does not.
* An event with no token is dropped before python-socketio decodes it, the
  session gets one ``monoport:rate_limited`` event a second at most (with the
  limit, so a client can back off), and the drop is counted as the error
  ``event_rate_limited`` (stats page, metrics). Other packets (connect,
  disconnect, acks, binary attachments) are never limited.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Final

log = logging.getLogger("monoport")

#: What a limited session is told (an event on the namespace it sent to).
LIMITED_EVENT: Final = "monoport:rate_limited"
#: At most one notice (and one log line) per session per this many seconds.
NOTICE_INTERVAL: Final = 1.0
#: Client buckets kept at most; full (idle) ones are dropped first when there are more.
MAX_CLIENTS: Final = 100_000


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved (pure; the clock is given)."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def available(self, now: float) -> float:
        return min(self.burst, self.tokens + (now - self.stamp) * self.rate)

    def take(self, now: float) -> None:
        """Spend one token (the caller checked :meth:`available`)."""
        self.tokens = self.available(now) - 1
        self.stamp = now

    def full(self, now: float) -> bool:
        return self.available(now) >= self.burst


def event_namespace(data: Any) -> str | None:
    """The namespace of an encoded Socket.IO EVENT or BINARY_EVENT packet, None for any other packet (pure)."""
    if not isinstance(data, str) or data[:1] not in ("2", "5"):
        return None
    rest = data[1:]
    if rest[:1] != "/":
        if data[0] == "5":  # '5<n>-...': attachments count first
            _, dash, rest = rest.partition("-")
            if not dash or rest[:1] != "/":
                return "/"
        else:
            return "/"
    return rest.partition(",")[0] or "/"


class EventLimiter:
    """The buckets of every session and client of one Socket.IO server."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.sessions: dict[str, TokenBucket] = {}
        self.clients: dict[str, TokenBucket] = {}
        self.noticed: dict[str, float] = {}
        #: events dropped, ever
        self.dropped = 0

    def allow(self, session: str, client: str) -> bool:
        """Take a token for one event of ``session`` from ``client``; False to drop it."""
        now = self.clock()
        bucket = self.sessions.get(session)
        if bucket is None:
            bucket = self.sessions[session] = TokenBucket(self.rate, self.rate, now)
        per_client = self.clients.get(client)
        if per_client is None:
            if len(self.clients) >= MAX_CLIENTS:
                self._prune(now)
            per_client = self.clients[client] = TokenBucket(self.rate, self.rate, now)
        if bucket.available(now) < 1 or per_client.available(now) < 1:  # both must have a token
            self.dropped += 1
            return False
        bucket.take(now)
        per_client.take(now)
        return True

    def should_notice(self, session: str) -> bool:
        now = self.clock()
        if now - self.noticed.get(session, float("-inf")) < NOTICE_INTERVAL:
            return False
        self.noticed[session] = now
        return True

    def forget(self, session: str) -> None:
        self.sessions.pop(session, None)
        self.noticed.pop(session, None)

    def _prune(self, now: float) -> None:
        for key in [key for key, bucket in self.clients.items() if bucket.full(now)]:
            del self.clients[key]
        while len(self.clients) >= MAX_CLIENTS:  # all busy: drop the oldest entries
            del self.clients[next(iter(self.clients))]


def install(sio: Any, rate: float, on_drop: Callable[[], None] | None = None) -> EventLimiter:
    """Put the limiter in front of ``sio``'s Engine.IO "message" and "disconnect" handlers."""
    from socketio import packet

    limiter = EventLimiter(rate)
    eio = sio.eio
    message = eio.handlers["message"]
    disconnect = eio.handlers.get("disconnect")

    def limited_message(eio_sid: str, data: Any) -> Any:
        namespace = event_namespace(data)
        if namespace is None:
            return message(eio_sid, data)
        environ = sio.environ.get(eio_sid) or {}
        client = str(environ.get("monoport.identity") or environ.get("REMOTE_ADDR") or eio_sid)
        if limiter.allow(eio_sid, client):
            return message(eio_sid, data)
        if on_drop is not None:
            on_drop()
        if limiter.should_notice(eio_sid):
            log.info("Socket.IO session %s (client %s) over --max-events-per-second %g: events dropped",
                     eio_sid, client, rate)
            notice = sio.packet_class(packet.EVENT, namespace=namespace,
                                      data=[LIMITED_EVENT, {"limit": rate, "per": "second"}])
            sio.start_background_task(eio.send, eio_sid, notice.encode())
        return None

    def forget_on_disconnect(eio_sid: str, *args: Any) -> Any:
        limiter.forget(eio_sid)
        return disconnect(eio_sid, *args) if disconnect is not None else None

    eio.handlers["message"] = limited_message
    eio.handlers["disconnect"] = forget_on_disconnect
    return limiter
