"""Connection state recovery across instances and restarts: a Redis Stream and session keys.

Theory of operation
1. Every message python-socketio's pub/sub manager would PUBLISH (emits,
   remote room changes, disconnects) is XADDed to one stream,
   ``<prefix>sio:stream``, trimmed by Redis itself (``MAXLEN ~``). Entry ids
   are the offsets: one total order for every instance.
2. Each instance reads the stream (XREAD BLOCK) from the last id it read and
   delivers every emit, its own included, in stream order, with the entry id
   as the offset. An emit is never delivered locally before it is in the
   stream, so every client sees one order. When Redis restarts or the
   connection drops, the reader resumes from the last id it read: nothing
   added meanwhile is lost (pub/sub would lose it).
3. A connected socket's session is written through to
   ``<prefix>sio:session:<pid>`` (a hash: owner token and JSON value) when it
   connects and when its rooms change, and rewritten every
   :data:`REFRESH_INTERVAL` with an expiry a little over the duration: a
   SIGKILLed instance's clients still find their session. A lost transport
   rewrites it with the duration as expiry; a deliberate disconnect deletes
   it. Writes carry the writing connection's token and a Lua check, so an
   old connection never overwrites the session a newer one took over.
4. An offset is good while its own entry is still in the stream (trimming
   removes the oldest first, so everything after it is there too), or when it
   is the newest id. An offset from before a Redis restart (without
   persistence) names a lost entry: a fresh session, since packets may be lost.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any, Final

import redis
import socketio

from .recovery_manager import RecoveringMixin, Refused, Session

log = logging.getLogger("monoport.recovery")

#: entries the stream keeps, about (XADD MAXLEN ~): at 200 msg/s, over 8 minutes
STREAM_MAXLEN: Final = 100_000
#: entries read per XREAD / XRANGE call
READ_COUNT: Final = 500
#: how long one XREAD blocks, in milliseconds (the reader notices a stop this often)
READ_BLOCK_MS: Final = 1000
#: seconds an emit keeps retrying its XADD while Redis is away before it is dropped (one error line)
PUBLISH_PATIENCE: Final = 10.0
#: seconds between rewrites of the sessions of connected sockets (cap): one pipelined write per
#: interval for all of them; short, since a Redis restarted without persistence lost them
REFRESH_INTERVAL: Final = 2.0
#: Redis socket timeouts in seconds; above READ_BLOCK_MS so a blocking read is not cut
REDIS_OPTIONS: Final = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}
#: how many of the newest entries a retried XADD looks through for its first attempt
LANDED_WINDOW: Final = 1000
#: how many XRANGE rounds a recovery may take to catch up with the local reader
CATCH_UP_ROUNDS: Final = 50

REDIS_ERRORS = (redis.RedisError, OSError)

WRITE = """
local t = redis.call('HGET', KEYS[1], 't')
if t and t ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 't', ARGV[1], 'v', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
FORGET = """
if redis.call('HGET', KEYS[1], 't') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


def parse_id(text: Any) -> tuple[int, int]:
    """A stream entry id ``<ms>-<seq>`` as a comparable pair; ValueError otherwise."""
    if isinstance(text, bytes):
        text = text.decode()
    ms, sep, seq = str(text).partition("-")
    if not (sep and ms.isdigit() and seq.isdigit() and len(text) <= 41):
        raise ValueError(f"not a stream id: {text!r}")
    return int(ms), int(seq)


def format_id(pair: tuple[int, int]) -> str:
    return f"{pair[0]}-{pair[1]}"


def emit_args(message: dict) -> list:
    """The event name and arguments of a pub/sub emit message (binary ones put back together)."""
    data: Any = message.get("data")
    if message.get("binary"):
        import base64

        from socketio.packet import Packet

        attachments = [base64.b64decode(a) for a in data[1:]]
        data = Packet.reconstruct_binary(data[0], attachments)
    return [message.get("event")] + (list(data) if isinstance(data, list) else [data])


class StreamManager(socketio.RedisManager, RecoveringMixin):
    """python-socketio's Redis manager with a stream in place of its pub/sub channel (see module docstring)."""

    #: python-socketio's RedisManager sets it: the Redis connection is believed up
    connected: bool

    def __init__(self, url: str, prefix: str, store: "RedisStore") -> None:
        super().__init__(url, channel=prefix + "sio", logger=logging.getLogger("monoport.redis"),
                         redis_options=dict(REDIS_OPTIONS))
        self.stream = prefix + "sio:stream"
        self.store = store
        #: the id of the last entry delivered locally
        self.last_id = (0, 0)
        #: the offset of the emit being delivered (set around PubSubManager._handle_emit)
        self._offset: str | None = None

    def initialize(self) -> None:
        try:
            newest = self.store.client.xrevrange(self.stream, count=1)
            self.last_id = parse_id(newest[0][0]) if newest else (0, 0)
        except REDIS_ERRORS as exc:
            # Everything from now on, when Redis is back.
            self.last_id = (int(time.time() * 1000), 0)
            log.warning("redis: cannot read the message stream yet (%s); reading from now on", exc)
        self.store.start(self.server)
        super().initialize()

    # -- writing -----------------------------------------------------------------------
    def _publish(self, data: dict) -> Any:
        deadline = time.monotonic() + PUBLISH_PATIENCE
        failing = False
        fields = {"m": self.json.dumps(data), "u": secrets.token_hex(8)}
        while True:
            try:
                if not self.connected:
                    self._redis_connect()
                # After a failure the last XADD may have landed with its reply lost: adding
                # it again would deliver it twice.
                entry = self._landed(fields["u"]) if failing else None
                entry = entry or self.redis.xadd(self.stream, fields, maxlen=STREAM_MAXLEN, approximate=True)
                if failing:
                    log.info("redis: message stream writable again")
                return entry
            except REDIS_ERRORS as exc:
                self.connected = False
                if time.monotonic() > deadline:
                    log.error("redis: %s message dropped, Redis unreachable for %.0fs (%s)",
                              data.get("method"), PUBLISH_PATIENCE, exc)
                    return None
                if not failing:
                    log.warning("redis: cannot add to the message stream (%s); retrying", exc)
                failing = True
                self.server.sleep(0.2)

    def _landed(self, unique: str) -> Any:
        """The id of the recent entry carrying ``unique``, or None."""
        for entry_id, fields in self.redis.xrevrange(self.stream, count=LANDED_WINDOW):
            if fields.get(b"u") == unique.encode():
                return entry_id
        return None

    # -- reading -----------------------------------------------------------------------
    def _listen(self):
        failing, delay = False, 0.2
        while True:
            try:
                if not self.connected:
                    self._redis_connect()
                reply = self.redis.xread({self.stream: format_id(self.last_id)}, count=READ_COUNT,
                                         block=READ_BLOCK_MS)
            except REDIS_ERRORS as exc:
                self.connected = False
                if not failing:
                    log.warning("redis: reading the message stream failed (%s); resuming after %s when back",
                                exc, format_id(self.last_id))
                failing = True
                self.server.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if failing:
                log.info("redis: message stream resumed after %s", format_id(self.last_id))
                failing, delay = False, 0.2
                # Redis may have restarted without our session keys: write them again now.
                self.server.start_background_task(self.store.refresh)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    message = self._decode(entry_id, fields)
                    # No greenlet switch between this and the delivery of the
                    # message: ``last_id`` is what a recovery may replay up to.
                    self.last_id = parse_id(entry_id)
                    if message is not None:
                        yield message

    def _decode(self, entry_id: Any, fields: dict) -> dict | None:
        try:
            message = json.loads(fields[b"m"])
        except (KeyError, ValueError, TypeError):
            return None  # not ours
        if message.get("method") == "emit" and message.get("callback") is None:
            message["offset"] = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            if message.get("host_id") == self.host_id:
                message["host_id"] = None  # our own emit: delivered from the stream, like everyone's
        return message

    def _handle_emit(self, message: dict) -> None:
        if message.get("callback") is None and "offset" not in message:
            return  # PubSubManager.emit's local delivery: it comes back from the stream, with its offset
        self._offset = message.get("offset")
        try:
            super()._handle_emit(message)
        finally:
            self._offset = None

    def _next_offset(self, namespace, room, skip_sid, args):
        return self._offset

    # -- recovery ----------------------------------------------------------------------
    def position(self) -> str:
        return format_id(self.last_id)

    def check_offset(self, offset: str) -> None:
        """Refuse an offset unless every entry after it is still in the stream.

        Trimming removes the oldest entries, so that holds when the offset's own entry is
        still there, or when it is the newest id (nothing after it), or for ``0-0`` (a
        client that connected to an empty stream) while nothing was ever trimmed. An
        offset from before a Redis restart names an entry that is gone: refused, since
        what followed it may be lost.
        """
        try:
            wanted = parse_id(offset)
        except ValueError:
            raise Refused("malformed offset") from None
        try:
            try:
                info = self.store.client.xinfo_stream(self.stream)
            except redis.ResponseError:
                info = {}  # no stream (yet, or Redis restarted empty)
            newest = parse_id(info.get("last-generated-id", "0-0"))
            if wanted == newest:
                return
            if wanted > newest:
                raise Refused("offset unknown to the stream (from before a Redis restart?)")
            if wanted == (0, 0):
                if int(info.get("entries-added", 0)) != int(info.get("length", 0)):
                    raise Refused("offset trimmed away")
                return
            if not self.store.client.xrange(self.stream, min=offset, max=offset, count=1):
                raise Refused("offset trimmed away")
        except REDIS_ERRORS as exc:
            raise Refused(f"redis unavailable ({exc})") from None

    def missed(self, session: Session, offset: str) -> list[tuple[str, list]]:
        start = parse_id(offset)
        found: list[tuple[tuple[int, int], list]] = []
        for _ in range(CATCH_UP_ROUNDS):
            entries: list[Any] = self.store.client.xrange(self.stream, min="(" + format_id(start), max="+",
                                                          count=READ_COUNT) or []  # (never None: no pipeline)
            for entry_id, fields in entries:
                message = self._decode(entry_id, fields)
                if (message and message.get("method") == "emit" and "offset" in message
                        and session.wants(message.get("namespace") or "/", message.get("room"),
                                          message.get("skip_sid"))):
                    found.append((parse_id(entry_id), emit_args(message)))
            if entries:
                start = parse_id(entries[-1][0])
            if len(entries) < READ_COUNT and self.last_id <= start:
                break  # everything the reader delivered is covered
        upto = self.last_id  # later entries reach the socket live, once it is in its rooms
        return [(format_id(i), args) for i, args in found if i <= upto]


class RedisStore:
    """Sessions as Redis keys with an expiry (see the module docstring)."""

    def __init__(self, url: str, prefix: str, duration: float, instance_id: str) -> None:
        self.client = redis.Redis.from_url(url, **REDIS_OPTIONS)
        self.prefix = prefix + "sio:session:"
        self.duration = duration
        self.instance_id = instance_id
        self.refresh_interval = min(REFRESH_INTERVAL, max(0.5, duration / 3))
        self.kept_ms = max(1, int(duration * 1000))
        self.live_ms = int((duration + 2 * self.refresh_interval) * 1000)
        self._write = self.client.register_script(WRITE)
        self._forget = self.client.register_script(FORGET)
        #: pid -> (session, token) of this instance's connected sockets
        self.connected: dict[str, tuple[Session, str]] = {}
        self.failing = False

    def start(self, server: Any) -> None:
        server.start_background_task(self._refresh_forever, server)

    def _refresh_forever(self, server: Any) -> None:
        while True:
            server.sleep(self.refresh_interval)
            self.refresh()

    def refresh(self) -> None:
        """Rewrite the sessions of this instance's connected sockets (expiry pushed back, or lost keys back)."""
        if self.connected:
            self._run(lambda: self._write_many(list(self.connected.values())), "refreshing sessions")

    def _write_many(self, entries: list[tuple[Session, str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for session, token in entries:
            self._write(keys=[self.prefix + session.pid], args=[token, self._value(session, True), self.live_ms],
                        client=pipe)
        pipe.execute()

    def _run(self, action, what: str) -> Any:
        try:
            result = action()
        except REDIS_ERRORS as exc:
            if not self.failing:
                log.warning("redis: %s failed (%s); recovery may give fresh sessions until it is back", what, exc)
            self.failing = True
            return None
        if self.failing:
            log.info("redis: session store reachable again")
        self.failing = False
        return result

    def _value(self, session: Session, live: bool) -> str:
        value = {"sid": session.sid, "ns": session.namespace, "rooms": session.rooms, "start": session.start,
                 "owner": self.instance_id, "live": live, "data": session.data}
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            log.debug("session %s: its data is not JSON, kept without it", session.sid)
            value["data"] = None
            return json.dumps(value)

    def live(self, session: Session, token: str) -> None:
        self.connected[session.pid] = (session, token)
        self._run(lambda: self._write(keys=[self.prefix + session.pid],
                                      args=[token, self._value(session, True), self.live_ms]), "writing a session")

    def keep(self, session: Session, token: str) -> None:
        self.connected.pop(session.pid, None)
        self._run(lambda: self._write(keys=[self.prefix + session.pid],
                                      args=[token, self._value(session, False), self.kept_ms]), "keeping a session")

    def forget(self, session: Session, token: str) -> None:
        self.connected.pop(session.pid, None)
        self._run(lambda: self._forget(keys=[self.prefix + session.pid], args=[token]), "deleting a session")

    def take(self, pid: str, namespace: str, token: str) -> Session:
        if len(pid) > 64:
            raise Refused("pid too long")
        key = self.prefix + pid
        try:
            raw = self.client.hget(key, "v")
        except REDIS_ERRORS as exc:
            raise Refused(f"redis unavailable ({exc})") from None
        if raw is None:
            raise Refused("unknown or expired pid")
        try:
            value = json.loads(raw)
            session = Session(pid, value["sid"], value["ns"], list(value["rooms"]), value.get("data"),
                              value.get("start") or "0-0")
        except (ValueError, KeyError, TypeError):
            raise Refused("unreadable session") from None
        if session.namespace != namespace:
            raise Refused(f"pid of another namespace ({session.namespace})")
        try:
            self.client.hset(key, "t", token)  # taken over: the old connection's writes no longer land
        except REDIS_ERRORS as exc:
            raise Refused(f"redis unavailable ({exc})") from None
        return session
