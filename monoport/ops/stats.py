"""Runtime state in one object: what the admin pages, metrics and health show.

Theory of operation: every component reports what happens as it happens --
the runtime opens and closes connections, a :class:`~monoport.connection.Connection`
reports each change of its kind, the TLS stage each handshake, the WSGI
handler each request, the balancer (scale-out) its peers and forwards. Stats
only counts; it never blocks, never does I/O, and is touched from one OS
thread (the gevent hub), so plain ints and Counters need no locks.

:meth:`Stats.snapshot` is the one read path: a plain dict of plain values
(JSON-ready). The HTML page, ``stats.json`` and the Prometheus collector are
read-only views of it, so they can never disagree.

API for other modules:
- ``connection_opened(conn)`` / ``connection_closed(conn)`` (idempotent)
- ``kind_changed(conn, old, new)`` (called by ``Connection.kind``)
- ``handshake(conn, seconds, failure)``; ``request(kind, tls, status, seconds)``
- ``forwarded_out(conn, peer_id)`` / ``forwarded_in(conn, from_id)``
- ``set_peer(peer_id, **info)`` / ``remove_peer(peer_id)``; ``peers`` is a dict
  of plain dicts (``up`` or ``healthy``, ``conns``, ``max_conns``, ``address`` ...)
- ``error(reason)`` for errors that do not end a connection
- ``sources``: a dict of name -> callable returning extra plain data
  (e.g. the balancer's queue length), merged into the snapshot under ``extra``
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections import Counter
from typing import Any, Callable, Iterable

from ..connection import format_address
from ..termination import TERMINATION_REASONS

#: Histogram bucket bounds in seconds (Prometheus' defaults, plus 30 s for
#: slow long-polling requests and 60 s for the longest ones).
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Kinds a connection has while monoport is still finding out what it speaks;
#: every change away from one of them (to proxy, tls, http, raw ...) is one
#: decision of the sniffer, counted as a sniff outcome.
SNIFFING = frozenset({"unknown", "proxy", "tls"})
#: How many open connections the snapshot describes one by one (a snapshot
#: blocks the hub while it is taken: it must stay cheap with 10k connections).
MAX_CLIENTS_LISTED = 200
#: How often the event-loop lag probe runs, and how long it sleeps, in seconds.
LAG_INTERVAL = 1.0
LAG_SLEEP = 0.05


def peer_up(info: dict[str, Any]) -> bool:
    """A peer entry is healthy when its ``up`` (or ``healthy``) field says so."""
    return bool(info.get("up", info.get("healthy")))


class Histogram:
    """Cumulative-bucket histogram (Prometheus shape) with plain-data export."""

    def __init__(self, bounds: Iterable[float] = BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            running += n
            cumulative.append(["+Inf" if bound == float("inf") else bound, running])
        return {"buckets": cumulative, "sum": round(self.sum, 6), "count": self.count}


class Stats:
    """Counters, live connections, peers: the runtime state of one instance."""

    def __init__(self, instance_id: str, version: str, max_conns: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.instance_id = instance_id
        self.version = version
        self.max_conns = max_conns
        self.clock = clock
        self.started = clock()
        self.draining: Callable[[], bool] = lambda: False
        #: listeners, Redis and sibling workers in place (health answers 503 until then)
        self.ready: Callable[[], bool] = lambda: True
        #: --cluster, named in the health answer so peers can tell strangers
        self.cluster = ""
        #: --max-lag's verdict (monoport.load), and the requests inside the app now: peers pick by them
        self.lagging: Callable[[], bool] = lambda: False
        self.in_app: Callable[[], int] = lambda: 0
        self.open: set[Any] = set()
        #: open connections spliced to a peer (they count at the peer)
        self.out: set[Any] = set()
        self.live: Counter[str] = Counter()
        self.opened_total = 0
        #: closed connections by (final kind, tls, termination reason)
        self.closed: Counter[tuple[str, bool, str]] = Counter()
        self.sniffed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.handshakes: Counter[str] = Counter()  # "ok" or a failure reason
        self.tls_versions: Counter[str] = Counter()
        self.handshake_seconds = Histogram()
        #: HTTP requests by (transport, tls, status class)
        self.requests: Counter[tuple[str, bool, str]] = Counter()
        self.request_seconds = Histogram()
        self.connection_seconds = Histogram()
        self.bytes_in_closed = 0
        self.bytes_out_closed = 0
        self.forwarded: Counter[str] = Counter()  # "in" / "out" totals
        #: peer id -> plain dict (address, healthy, conns, max_conns, ...), set by the balancer
        self.peers: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, Callable[[], Any]] = {}
        #: the balancer's own count (served here, admin and sniffing connections
        #: excluded), which is what --max-conns limits; None: count ``open``
        self.serving: Callable[[], int] | None = None
        self.sio: Any = None
        self.lag_last = 0.0
        self.lag_max = 0.0

    # -- connections ---------------------------------------------------------------
    def connection_opened(self, conn: Any) -> None:
        conn.stats = self
        self.open.add(conn)
        self.live[conn.kind] += 1
        self.opened_total += 1

    def kind_changed(self, conn: Any, old: str, new: str) -> None:
        if conn in self.open:
            self.live[old] -= 1
            self.live[new] += 1
        if old in SNIFFING:
            self.sniffed[new] += 1

    def connection_closed(self, conn: Any) -> None:
        """Count a finished connection (a second call for the same one is ignored)."""
        if conn not in self.open:
            return
        self.open.discard(conn)
        self.out.discard(conn)
        self.live[conn.kind] -= 1
        termination = str(conn.termination)
        if conn.kind in SNIFFING and termination == "client_closed":
            self.sniffed["closed"] += 1
        self.closed[(conn.kind, bool(conn.secure), termination)] += 1
        if termination in ("protocol_error", "tls_failed", "peer_down", "server_full", "other"):
            self.errors[termination] += 1
        self.bytes_in_closed += conn.bytes_in
        self.bytes_out_closed += conn.bytes_out
        self.connection_seconds.observe(time.monotonic() - conn.started)

    @property
    def conns(self) -> int:
        """Client connections this instance serves itself (forwarded-out ones count at the peer)."""
        if self.serving is not None:
            return self.serving()
        return len(self.open) - len(self.out)

    # -- events ------------------------------------------------------------------------
    def handshake(self, conn: Any, seconds: float, failure: str | None) -> None:
        self.handshake_seconds.observe(seconds)
        self.handshakes[failure or "ok"] += 1
        if failure is None and conn.tls:
            self.tls_versions[conn.tls.get("version") or "?"] += 1

    def request(self, transport: str, tls: bool, status: int | str, seconds: float) -> None:
        code = str(status)
        status_class = f"{code[0]}xx" if code[:1].isdigit() else "other"
        self.requests[(transport, tls, status_class)] += 1
        if code != "101":  # an upgraded request lasts as long as its WebSocket: not a request time
            self.request_seconds.observe(seconds)

    def error(self, reason: str) -> None:
        self.errors[reason] += 1

    def forwarded_out(self, conn: Any, peer_id: str) -> None:
        """The balancer sent ``conn`` to ``peer_id``: it no longer counts here."""
        conn.served_by = peer_id
        self.forwarded["out"] += 1
        if conn in self.open:
            self.out.add(conn)

    def forwarded_in(self, conn: Any, from_id: str | None) -> None:
        conn.forwarded_by = from_id
        self.forwarded["in"] += 1

    def set_peer(self, peer_id: str, **info: Any) -> None:
        self.peers.setdefault(peer_id, {}).update(info)

    def remove_peer(self, peer_id: str) -> None:
        self.peers.pop(peer_id, None)

    # -- event-loop lag --------------------------------------------------------------
    def measure_lag(self, sleep: Callable[[float], Any], interval: float = LAG_INTERVAL,
                    probe: float = LAG_SLEEP, on_sample: Callable[[float], Any] | None = None) -> None:
        """Run forever (in its own greenlet): how late does a short sleep wake up?"""
        while True:
            sleep(interval)
            begun = time.monotonic()
            sleep(probe)
            self.lag_last = max(0.0, time.monotonic() - begun - probe)
            self.lag_max = max(self.lag_max, self.lag_last)
            if on_sample is not None:
                on_sample(self.lag_last)

    # -- the one read path -------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"id": self.instance_id, "cluster": self.cluster, "conns": self.conns, "max_conns": self.max_conns,
                "draining": bool(self.draining()), "ready": bool(self.ready()), "lag": round(self.lag_last, 4),
                "lagging": bool(self.lagging()), "in_app": self.in_app(), "version": self.version}

    def snapshot(self) -> dict[str, Any]:
        """Everything, as plain JSON-ready data (the admin pages' only source)."""
        now = self.clock()
        live_bytes_in = sum(c.bytes_in for c in self.open)
        live_bytes_out = sum(c.bytes_out for c in self.open)
        # the longest-lived first (the WebSockets an operator looks for), a bounded few
        oldest = heapq.nsmallest(MAX_CLIENTS_LISTED, self.open, key=lambda c: c.started)
        live_clients = [self._describe(c) for c in oldest]
        closed = [{"kind": k, "tls": t, "termination": r, "count": n} for (k, t, r), n in sorted(self.closed.items())]
        terminations: Counter[str] = Counter()
        for (_, _, reason), n in self.closed.items():
            terminations[reason] += n
        return {
            **self.health(),
            "started": self.started,
            "uptime": round(now - self.started, 3),
            "connections": {
                "live": self.conns,
                "open": len(self.open),
                "by_kind": {k: n for k, n in sorted(self.live.items()) if n},
                "forwarded_in_live": sum(1 for c in self.open if c.forwarded_by),
                "forwarded_out_live": len(self.out),
                "opened_total": self.opened_total,
                "closed": closed,
                "terminations": {r: terminations.get(r, 0) for r in TERMINATION_REASONS},
                "forwarded_total": {"in": self.forwarded["in"], "out": self.forwarded["out"]},
                "seconds": self.connection_seconds.snapshot(),
                "clients": live_clients,
            },
            "bytes": {"in": self.bytes_in_closed + live_bytes_in, "out": self.bytes_out_closed + live_bytes_out},
            "sniff": dict(sorted(self.sniffed.items())),
            "tls": {
                "handshakes": dict(sorted(self.handshakes.items())),
                "versions": dict(sorted(self.tls_versions.items())),
                "seconds": self.handshake_seconds.snapshot(),
            },
            "http": {
                "requests": [{"transport": k, "tls": t, "status": s, "count": n}
                             for (k, t, s), n in sorted(self.requests.items())],
                "seconds": self.request_seconds.snapshot(),
            },
            "errors": dict(sorted(self.errors.items())),
            "socketio": self._socketio(),
            "peers": {name: dict(info) for name, info in sorted(self.peers.items())},
            "event_loop": {"lag": round(self.lag_last, 6), "lag_max": round(self.lag_max, 6)},
            "extra": {name: source() for name, source in self.sources.items()},
        }

    def _describe(self, conn: Any) -> dict[str, Any]:
        tls = conn.tls or {}
        return {
            "client": format_address(conn.client), "kind": conn.kind, "tls": tls.get("version"),
            "sni": tls.get("sni"), "age": round(time.monotonic() - conn.started, 1),
            "requests": conn.requests, "bytes_in": conn.bytes_in, "bytes_out": conn.bytes_out,
            "served_by": conn.served_by or "local", "forwarded_by": conn.forwarded_by,
        }

    def _socketio(self) -> dict[str, Any]:
        sio = self.sio
        if sio is None:
            return {"sessions": 0, "rooms": 0, "namespaces": {}}
        # python-engineio drops closed sessions from ``sockets`` lazily (on the next
        # lookup or its periodic sweep): a closed one is not a session any more.
        sessions = sum(1 for s in list(getattr(sio.eio, "sockets", {}).values()) if not getattr(s, "closed", False))
        namespaces: dict[str, dict[str, int]] = {}
        rooms_total = 0
        for namespace, rooms in list(getattr(sio.manager, "rooms", {}).items()):
            members = rooms.get(None, {})
            # Every client sits in the room None and in a room named by its own sid:
            # neither is a room an app made.
            named = [r for r in rooms if r is not None and r not in members]
            namespaces[namespace] = {"clients": len(members), "rooms": len(named)}
            rooms_total += len(named)
        return {"sessions": sessions, "rooms": rooms_total, "namespaces": namespaces}
