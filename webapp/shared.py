"""Rooms' history and members shared by every instance through Redis.

Without Redis the chat keeps them in the process (:mod:`webapp.chat`), and
two instances behind one port show two different chats. With ``REDIS_URL``
set (the variable monoport's ``--redis`` reads too), every instance reads and
writes the same keys, and monoport's Redis manager already carries the
Socket.IO events between instances, so a room is one room wherever its
members are connected.

Keys, under :attr:`RedisShare.prefix` (``monoport:<cluster>:chat:`` when the
WSGI environ tells the cluster name as ``monoport.cluster``; monoport does not
pass it today, so the default is the app's own ``chat:``):

- ``ids``: a counter (INCR): message ids, one order for every instance, so a
  page that sorts and de-duplicates by id shows every message once, in place;
- ``history:<room>``: a list of JSON messages, the last :data:`HISTORY`
  (RPUSH then LTRIM), forgotten :data:`HISTORY_TTL` seconds after the last one;
- ``members:<room>``: a sorted set of ``<sid>\\t<nick>`` scored by the time
  (ms) after which the entry is stale. Each instance rewrites its own
  clients' entries every ``ttl / 3`` seconds (:meth:`RedisShare.refresh`),
  so the members of an instance killed without a goodbye vanish ``ttl``
  seconds later, and a nickname is listed once however many tabs use it.

A Redis error reaches the caller as :class:`redis.RedisError`; the handlers
turn it into a refusal (``unavailable``), never a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from .chat import HISTORY, member_names

#: a room's history is forgotten this long (s) after its last message
HISTORY_TTL = 7 * 24 * 3600
#: a member entry not refreshed for this long (s) is stale (its instance died)
MEMBER_TTL = 30.0
#: the key prefix when monoport does not tell the cluster name
DEFAULT_PREFIX = "chat:"


def prefix_for(cluster: Any) -> str:
    """``monoport:<cluster>:chat:`` for a cluster name, else :data:`DEFAULT_PREFIX`."""
    return f"monoport:{cluster}:chat:" if isinstance(cluster, str) and cluster else DEFAULT_PREFIX


class RedisShare:
    """History, message ids and members of every room, in Redis (see the module docstring)."""

    def __init__(self, url: str, ttl: float = MEMBER_TTL, prefix: str = DEFAULT_PREFIX,
                 wall: Callable[[], float] = time.time) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                          decode_responses=True)
        self.ttl = ttl
        self.prefix = prefix
        self.wall = wall

    def _key(self, kind: str, room: str = "") -> str:
        return f"{self.prefix}{kind}{':' + room if room else ''}"

    def _stale_after(self) -> int:
        return int((self.wall() + self.ttl) * 1000)

    # -- messages --------------------------------------------------------------
    def next_id(self) -> int:
        return int(self.redis.incr(self._key("ids")))

    def record(self, room: str, msg: dict[str, Any]) -> None:
        key = self._key("history", room)
        with self.redis.pipeline() as pipe:
            pipe.rpush(key, json.dumps(msg, separators=(",", ":"), ensure_ascii=False))
            pipe.ltrim(key, -HISTORY, -1)
            pipe.expire(key, HISTORY_TTL)
            pipe.execute()

    def history(self, room: str) -> list[dict[str, Any]]:
        """The room's last :data:`HISTORY` messages, oldest first."""
        return [json.loads(item) for item in self.redis.lrange(self._key("history", room), -HISTORY, -1)]

    # -- members ---------------------------------------------------------------
    def enter(self, room: str, sid: str, nick: str) -> None:
        key = self._key("members", room)
        with self.redis.pipeline() as pipe:
            pipe.zadd(key, {f"{sid}\t{nick}": self._stale_after()})
            pipe.expire(key, int(self.ttl) + 1)
            pipe.execute()

    def leave(self, room: str, sid: str, nick: str) -> None:
        self.redis.zrem(self._key("members", room), f"{sid}\t{nick}")

    def members(self, room: str) -> list[str]:
        """The room's nicknames, each once, stale entries dropped first."""
        key = self._key("members", room)
        with self.redis.pipeline() as pipe:
            pipe.zremrangebyscore(key, "-inf", int(self.wall() * 1000))
            pipe.zrange(key, 0, -1)
            _, entries = pipe.execute()
        return member_names(entry.partition("\t")[2] for entry in entries)

    def refresh(self, entries: Iterable[tuple[str, str, str]]) -> list[str]:
        """Keep this instance's ``(room, sid, nick)`` entries fresh and drop stale ones of their rooms.

        Returns:
            the rooms that lost stale members (someone should tell them).
        """
        rooms: dict[str, dict[str, int]] = {}
        stale_after = self._stale_after()
        for room, sid, nick in entries:
            rooms.setdefault(room, {})[f"{sid}\t{nick}"] = stale_after
        if not rooms:
            return []
        now_ms = int(self.wall() * 1000)
        with self.redis.pipeline() as pipe:
            for room, mapping in rooms.items():
                key = self._key("members", room)
                pipe.zremrangebyscore(key, "-inf", now_ms)
                pipe.zadd(key, mapping)
                pipe.expire(key, int(self.ttl) + 1)
            results = pipe.execute()
        return [room for room, removed in zip(rooms, results[0::3]) if removed]
