"""Redis between instances: Socket.IO messages, and who the other instances are.

Messages: the app's ``socketio.Server`` gets python-socketio's own
``RedisManager`` in place of its in-process manager (python-socketio's
documented way is the ``client_manager=`` argument; the server calls
``manager.set_server(self)`` and ``initialize()`` lazily on the first
connect, so swapping before any client connects is equivalent). It is
initialized at once so its listener subscribes before the first emit.
That listener already survives Redis closing the connection or restarting:
``RedisManager._redis_listen_with_retries`` reconnects, resubscribes and
logs one error line per attempt, backing off from 1 s to 60 s. What it does
not do is say when it is back: the subclass below logs that line.

Discovery: every :data:`ANNOUNCE_INTERVAL` each instance writes
``monoport:<cluster>:instance:<id>`` = ``{"id", "cluster", "peer",
"max_conns"}`` with a :data:`ANNOUNCE_TTL` expiry and reads the others'
keys; the peer table adds new ones and forgets those whose key expired. A
Redis outage costs one log line when it starts and one when it ends; known
peers stay, polled directly.

Scope: everything monoport keeps in Redis is under ``monoport:<cluster>:``
(:func:`key_prefix`), and the Socket.IO messages travel on the channel
``monoport:<cluster>:socketio``, so two deployments that share a Redis
database (another app, or staging beside production) never meet. Discovery
alone is not trusted: a peer's health answer must name the same cluster.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final

from .config_values import HostPort, parse_hostport
from .connection import format_address
from .errors import ConfigError

log = logging.getLogger("monoport")

#: Seconds between two announcements (and discovery scans).
ANNOUNCE_INTERVAL: Final = 1.0
#: Expiry of an announcement: an instance that stops (or is killed) vanishes
#: from the others' tables this long after its last announcement.
ANNOUNCE_TTL: Final = 5
#: Redis socket timeouts in seconds: a dead Redis must not stall the poller.
REDIS_TIMEOUT: Final = 2.0


def key_prefix(cluster: str) -> str:
    """The prefix of every Redis key (and channel) of ``cluster``."""
    return f"monoport:{cluster}:"


def channel(cluster: str) -> str:
    """The Socket.IO pub/sub channel of ``cluster`` (python-socketio's default is ``socketio``)."""
    return key_prefix(cluster) + "socketio"


def attach_redis_manager(sio: Any, url: str, cluster: str) -> Any:
    """Make ``sio`` send room and broadcast emits through Redis (python-socketio's RedisManager)."""
    import socketio

    class Manager(socketio.RedisManager):
        """python-socketio's manager, saying so when a lost connection is back and what was lost meanwhile."""

        reconnects = 0
        #: messages for the other instances that Redis never took (python-socketio gives up after two tries)
        lost = 0

        def _redis_connect(self) -> None:
            super()._redis_connect()
            if self.reconnects:
                log.info("redis: connected again; pub/sub resubscribed")
            self.reconnects += 1

        def _publish(self, data: Any) -> Any:
            result = super()._publish(data)
            if result is None:  # gave up: this instance's clients had it, the others' never will
                self.lost += 1
                log.warning("redis: unreachable; %s did not reach the other instances (%d lost since start)",
                            describe_message(data), self.lost)
            return result

    manager = Manager(url, channel=channel(cluster), logger=logging.getLogger("monoport.redis"),
                      redis_options={"socket_connect_timeout": REDIS_TIMEOUT, "health_check_interval": 10})
    manager.set_server(sio)
    sio.manager = manager
    sio.manager_initialized = True
    manager.initialize()
    return manager


def describe_message(data: Any) -> str:
    """One pub/sub message of python-socketio's, for the log line that says it was lost."""
    if not isinstance(data, dict):
        return "a message"
    method = data.get("method", "message")
    if method == "emit":
        target = f"room {data['room']!r}" if data.get("room") else "everyone"
        return f"emit {data.get('event')!r} to {target} in {data.get('namespace') or '/'}"
    return f"{method} in {data.get('namespace') or '/'}"


class Announcer:
    """This instance's key in Redis, and everyone else's."""

    def __init__(self, url: str, my_id: str, advertise: HostPort | None, max_conns: int, cluster: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT,
                                           socket_connect_timeout=REDIS_TIMEOUT)
        self.my_id = my_id
        self.advertise = advertise
        self.max_conns = max_conns
        self.cluster = cluster
        self.prefix = instance_prefix(cluster)
        self.healthy = True
        #: Redis answered at least once (health is not ready before)
        self.reached = False
        #: until then, a peer missing from Redis is not forgotten (see :meth:`settled`)
        self.settling_until = 0.0
        self.withdrawn = False

    def key(self, instance_id: str) -> str:
        return self.prefix + instance_id

    def announce_and_discover(self) -> list[tuple[str, HostPort]] | None:
        """Refresh our key; return the others' ``(id, peer address)``, or None if Redis failed."""
        import redis

        try:
            if self.advertise is not None and not self.withdrawn:
                value = json.dumps({"id": self.my_id, "cluster": self.cluster,
                                    "peer": format_address(self.advertise), "max_conns": self.max_conns})
                self.client.set(self.key(self.my_id), value, ex=ANNOUNCE_TTL)
            values = announced(self.client, self.cluster)
        except (redis.RedisError, OSError) as exc:
            if self.healthy:
                log.warning("redis: announcing failed (%s); known peers stay in use", exc)
            self.healthy = False
            return None
        if not self.healthy:
            log.info("redis: reachable again")
            # every announcement may have expired meanwhile: give the others one expiry to announce again
            self.settling_until = time.monotonic() + ANNOUNCE_TTL
        self.healthy = self.reached = True
        found = []
        for raw in values:
            try:
                info = json.loads(raw)
                if info["id"] != self.my_id:
                    found.append((str(info["id"]), parse_hostport(info["peer"])))
            except (TypeError, ValueError, KeyError):
                continue  # an expired key (None) or someone else's junk
        return found

    def settled(self) -> bool:
        """Whether a peer missing from Redis has really stopped announcing.

        After an outage longer than :data:`ANNOUNCE_TTL` every key has expired,
        the live instances' too; forgetting them then would drop their
        addresses from the peer listener's allowed sources, and their health
        polls would be refused until they announce again.
        """
        return time.monotonic() >= self.settling_until

    def withdraw(self) -> None:
        """Stop announcing (draining): peers forget us, while we still discover them."""
        import redis

        self.withdrawn = True
        try:
            self.client.delete(self.key(self.my_id))
        except (redis.RedisError, OSError):
            pass


def instance_prefix(cluster: str) -> str:
    return key_prefix(cluster) + "instance:"


def announced(client: Any, cluster: str) -> list[bytes]:
    """The announcements of ``cluster``'s instances (raw JSON; an expired one is None)."""
    keys = list(client.scan_iter(match=_glob_escape(instance_prefix(cluster)) + "*", count=1000))
    return client.mget(keys) if keys else []


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN MATCH pattern (the default cluster, an app spec, is unchecked)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def check_redis(rt: Any) -> str | None:
    """``--check``: Redis answers, and which instances of this cluster are announced in it."""
    url = rt.config.redis
    if not url:
        return None
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
        client.ping()
        found = announced(client, rt.config.cluster_name)
    except (redis.RedisError, OSError, ValueError) as exc:
        raise ConfigError("--redis", f"cannot reach Redis: {exc}") from None
    ids = []
    for raw in found:
        try:
            info = json.loads(raw)
            ids.append(f"{info['id']}@{info['peer']}")
        except (TypeError, ValueError, KeyError):
            continue
    return f"redis ok ({len(ids)} instance(s) announced{': ' + ' '.join(sorted(ids)) if ids else ''})"

