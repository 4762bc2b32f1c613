"""Where a connection is served: here, at its session's owner, or at a peer with room.

Theory of operation (DESIGN.md, "Instances, peers and sessions"):

Decided per HTTP request once its head is read (``wsgi.Handler`` calls
:meth:`Balancer.before_request`), and once per raw TCP client at sniff time
(:meth:`Balancer.admit_raw`, steps 2-4 only):

1. affinity: a ``sid`` on a Socket.IO path owned by another *up* instance
   (or a sibling worker, up or not yet: see :mod:`monoport.peers`) is
   forwarded there. The owner is everything before the first dot of the
   session id, so no table, cookie or source hash is involved. An owner that
   is unknown, down, or refuses is not retried elsewhere: no other instance
   has the session; it is served here and Engine.IO answers "unknown
   session", after which the client opens a new one. An owner known but
   not yet confirmed by a health answer (or not yet discovered, in this
   instance's first seconds) is waited for, up to :data:`OWNER_WAIT`.
2. capacity: a connection this instance already counts (keep-alive) is
   served; else it is served if fewer than ``--max-conns`` are counted.
   A connection is counted from the moment it is served here until it
   closes; forwarded-out connections count at the peer.
3. spill-over: the up, non-draining peer with the most free capacity. A
   connection forwarded *in* never spills again (no ping-pong): over the
   limit it gets a 503 marked ``X-Monoport-Full``, and the forwarder tries
   its next peer.
4. queue: wait up to ``--queue-timeout`` for 2. or 3. to become possible,
   then 503 with ``Retry-After`` (raw sio clients: an Engine.IO close line).

Load (``--max-lag``, :mod:`monoport.load`): between 1. and 2., while this
instance is lagging, a new connection, or a new Socket.IO session on a kept
connection, goes to the least-loaded peer that is not lagging; with none, it
waits up to ``--queue-timeout`` for one (or for this instance to recover),
then is served here. Sessions owned here and forwarded-in connections stay.

Forwarding itself (the PROXY v2 header, the replay, retrying the next peer
until one answers, the splice) is :mod:`monoport.forwarding`'s.

Keep-alive: when a later request on a connection served here belongs to
another owner, the rest of the connection is forwarded from that request on
(the previous response is complete, HTTP/1.1 being sequential). This keeps
the client's socket and costs no reconnect, where answering
``Connection: close`` would make every polling client that alternates
between instances pay a new TCP (and TLS) handshake per request.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Callable, Final

import gevent
from engineio import packet as eio_packet

from .config import Config
from .connection import Connection
from .forwarding import FULL_HEADER, Forwarder
from .load import Hysteresis
from .ops.stats import Stats
from .peers import Peer, PeerTable
from .services import ServerState
from .splice import dial
from .termination import Termination
from .wire.responses import simple_response
from .wsgi import DRAIN_IDLE_GRACE

log = logging.getLogger("monoport")

#: Poll interval of the queue while waiting for a free slot, in seconds.
QUEUE_POLL: Final = 0.05
#: Longest wait of a request for a session of an instance not yet confirmed (discovery and a
#: first health poll take a second or two).
OWNER_WAIT: Final = 3.0
#: For this long after start, a session id naming an instance not yet discovered is waited for too.
OWNER_STARTUP_WINDOW: Final = 5.0
#: What a raw Socket.IO client gets when no instance has room: Engine.IO close.
RAW_CLOSE_LINE: Final = b"1\n"


class Balancer:
    """Counts this instance's connections and places the others."""

    def __init__(self, config: Config, stats: Stats, state: ServerState,
                 close_idle: Callable[[Callable[[Connection], bool], tuple[Termination, str]], None],
                 started_at: float, sio: Any = None) -> None:
        self.config = config
        self.stats = stats
        self.state = state
        #: wakes the idle keep-alive connections that match (lifecycle's)
        self.close_idle = close_idle
        self.started_at = started_at
        #: the app's Socket.IO server, or None
        self.sio = sio
        self.my_id: str = config.instance_id
        self.max_conns: int = config.max_conns
        self.admin_prefix = getattr(config, "admin_prefix", "/monoport").rstrip("/") + "/"
        self.local: set[Connection] = set()
        self.cluster: str = config.cluster_name
        self.peers = PeerTable(self.my_id, self.admin_prefix + "health", dial, stats, self.cluster)
        self.peers.on_draining = self.peer_draining
        for address in config.peer:
            self.peers.add(address, static=True)
        for sibling_id, address in config.sibling:
            self.peers.add(address, peer_id=sibling_id, sibling=True)
        self.forwarded_out = 0
        self.forwarded_in = 0
        self.refused_full = 0
        self.queued = 0
        #: --max-lag: the hysteresis over the hub's lag samples (None: admission by count only)
        self.load: Hysteresis | None = Hysteresis(config.max_lag) if config.max_lag else None
        #: new work sent to a peer (or held in the queue) because this instance was lagging
        self.spilled_lag = 0
        self.queued_lag = 0
        self.forwarder = Forwarder(self.my_id, self.cluster, self.peers, self._taken)
        self.forward = self.forwarder.forward

    # -- counting ----------------------------------------------------------------------
    @property
    def conns(self) -> int:
        return len(self.local)

    def try_claim(self, conn: Connection) -> bool:
        if conn in self.local:
            return True
        if len(self.local) < self.max_conns:
            self.local.add(conn)
            if conn.forwarded_by is not None:
                self.forwarded_in += 1
                self.stats.forwarded_in(conn, conn.forwarded_by)
            return True
        return False

    def release(self, conn: Connection) -> None:
        self.local.discard(conn)

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.my_id, "conns": self.conns, "max_conns": self.max_conns,
                "forwarded_out": self.forwarded_out, "forwarded_in": self.forwarded_in,
                "refused_full": self.refused_full, "queued": self.queued, "lagging": self.lagging,
                "spilled_lag": self.spilled_lag, "queued_lag": self.queued_lag, "peers": self.peers.snapshot()}

    # -- load ------------------------------------------------------------------------------
    @property
    def lagging(self) -> bool:
        return self.load is not None and self.load.on

    def lag_sample(self, lag: float) -> None:
        """One sample of the hub's lag (Stats.measure_lag): update the verdict, say when it changes."""
        if self.load is None:
            return
        was = self.load.on
        if self.load.observe(lag) != was:
            if was:
                log.info("load: lag back under %.0f ms; new work is served here again", self.load.low * 1000)
            else:
                log.warning("load: event loop lagging (%.0f ms, over --max-lag %.0f ms for %d samples); "
                            "new connections and Socket.IO sessions go to peers that are not",
                            lag * 1000, self.load.high * 1000, self.load.rise)

    # -- decisions -----------------------------------------------------------------------
    def _on_sio_path(self, head: Any) -> bool:
        path = head.path
        return any(path.startswith(p) or path == p[:-1] for p in self.config.sio_path)

    def session_owner(self, head: Any) -> str | None:
        if not self._on_sio_path(head):
            return None
        sid = head.query("sid")
        if not sid or "." not in sid:
            return None
        return sid.partition(".")[0]

    def _is_new_session(self, head: Any) -> bool:
        """An Engine.IO handshake: a Socket.IO path without a ``sid``."""
        return self._on_sio_path(head) and not head.query("sid")

    def _await_owner(self, owner: str) -> Peer | None:
        """Hold a request for a session of an instance not confirmed yet, until it is (bounded).

        Instances that start together (a rolling deploy, a reuse-port pair)
        meet through Redis and a first health poll, a second or two; a
        session made on one meanwhile may be polled through the other. The
        request waits for that instead of getting python-engineio's 400 (which
        makes the client drop its session): when the owner is known but not
        yet answered, or while this instance is still young enough that its
        discovery may not have found it.
        """
        if owner in self.peers.gone:
            return None
        young = time.time() - self.started_at < OWNER_STARTUP_WINDOW
        if not (young or self.peers.pending(owner)):
            return None
        deadline = time.monotonic() + OWNER_WAIT
        while time.monotonic() < deadline:
            gevent.sleep(QUEUE_POLL)
            peer = self.peers.owner(owner)
            if peer is not None:
                return peer
            if not (young or self.peers.pending(owner)):
                return None
        return None

    def peer_draining(self, peer: Peer) -> None:
        """A peer began to stop: end what ties its forwarded connections to us.

        It cannot end the splices itself. Responses on them now say
        "Connection: close" (:meth:`forwarder_draining`); a long-poll waiting
        here gets an Engine.IO noop at once instead of after pingInterval;
        idle ones get the keep-alive drain grace, then close. A WebSocket
        through it is closed: its client reconnects, directly this time.
        """
        through = [conn for conn in self.local if conn.forwarded_by == peer.id]
        log.info("peer %s draining: ending the %d connection(s) it forwarded here", peer.name, len(through))
        for conn in through:
            if conn.kind in ("ws", "wss"):
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            elif conn.polling_sid:
                self._end_poll(conn.polling_sid)
        gevent.spawn_later(DRAIN_IDLE_GRACE, self.close_idle, lambda conn: conn.forwarded_by == peer.id,
                           (Termination.SERVER_CLOSED, f"server closed: {peer.name}, which forwarded it, is stopping"))

    def _end_poll(self, sid: str) -> None:
        """Make a long-poll of session ``sid`` answer now (a noop, as python-engineio does for upgrades)."""
        session = self.sio.eio.sockets.get(sid) if self.sio is not None else None
        if session is not None and not session.closed and not session.upgraded:
            session.queue.put(eio_packet.Packet(eio_packet.NOOP))

    def forwarder_draining(self, conn: Connection) -> bool:
        """Whether the peer that forwarded ``conn`` here is stopping (it cannot end the splice itself)."""
        if conn.forwarded_by is None:
            return False
        if conn.forwarded_by in self.peers.gone:
            return True
        peer = self.peers.by_id(conn.forwarded_by)
        return peer is not None and peer.draining

    def before_request(self, handler: Any, head: Any) -> bool:
        """The wsgi hook: True to serve this request here, False when handled elsewhere."""
        conn: Connection = handler.conn
        if head.path.startswith(self.admin_prefix):
            # Admin pages answer even when full. A client's admin connection
            # counts if there is room; peers' health polls (every second) never do.
            conn.quiet = self._from_peer(conn)
            if not conn.quiet:
                self.try_claim(conn)
            return True
        if self.state.draining and self._is_new_session(head):
            # a session opened here now would be cut in a moment: let the client go elsewhere
            conn.sock.sendall(simple_response(503, b"This instance is stopping; connect again.\n",
                                              [("Retry-After", "1")]))
            conn.end(Termination.DRAINING, "draining: new Socket.IO session refused -> 503")
            return False
        owner = self.session_owner(head)
        if (owner == self.my_id and head.method == "GET" and head.query("transport") == "polling"
                and self.forwarder_draining(conn)):
            # a long-poll through a stopping peer would hold its splice for up to pingInterval
            self._end_poll(head.query("sid"))
        if owner is not None and owner != self.my_id:
            peer = self.peers.owner(owner) or self._await_owner(owner)
            if peer is not None and self.forward(conn, [peer], affinity=True):
                return False
        if self.state.draining and conn not in self.local and self._from_peer(conn):
            self._refuse_full(conn)  # draining: new work goes to the other instances
            return False
        if (self.lagging and owner != self.my_id and not self._from_peer(conn)
                and (conn not in self.local or self._is_new_session(head)) and self._spill_for_load(conn)):
            return False
        if self.try_claim(conn):
            return True
        if self._from_peer(conn):
            self._refuse_full(conn)
            return False
        if self._spill_or_queue(conn):
            return conn in self.local
        conn.sock.sendall(simple_response(503, b"All instances are busy; retry shortly.\n",
                                          [("Retry-After", "1")]))
        conn.end(Termination.SERVER_FULL,
                 f"server full: no capacity here or at any peer after {self.config.queue_timeout:g}s -> 503")
        return False

    def admit_raw(self, conn: Connection) -> bool:
        """Raw TCP at sniff time (steps 2-4): True to serve it here."""
        if self.lagging and not self._from_peer(conn) and self._spill_for_load(conn):
            return False
        if self.try_claim(conn):
            return True
        if self._from_peer(conn):
            self.refused_full += 1
            conn.end(Termination.SERVER_FULL, "server full: forwarded-in raw client refused")
            return False
        if self._spill_or_queue(conn):
            return conn in self.local
        if self.config.raw == "sio":
            conn.sock.sendall(RAW_CLOSE_LINE)
        conn.end(Termination.SERVER_FULL, "server full: no capacity here or at any peer, raw client closed")
        return False

    def _from_peer(self, conn: Connection) -> bool:
        return conn.listener.role == "peer"

    def _spill_or_queue(self, conn: Connection) -> bool:
        """Steps 3 and 4; True when the connection was claimed here or forwarded."""
        if self.forward(conn, self.peers.candidates()):
            return True
        deadline = time.monotonic() + self.config.queue_timeout
        self.queued += 1
        while time.monotonic() < deadline and not self.state.draining:
            gevent.sleep(QUEUE_POLL)
            if self.try_claim(conn) or self.forward(conn, self.peers.candidates()):
                return True
        return False

    def _spill_for_load(self, conn: Connection) -> bool:
        """Lagging: new work to the least-loaded peer that is not; True once forwarded.

        When every peer lags too (or none has room), the connection waits as
        a full instance's would, up to ``--queue-timeout``, for this instance
        or a peer to recover; then it is served here anyway, since a 503
        helps nobody when the whole cluster is equally slow.
        """
        if self.forward(conn, self.peers.candidates(lagging=False)):
            self.spilled_lag += 1
            return True
        deadline = time.monotonic() + self.config.queue_timeout
        self.queued_lag += 1
        while time.monotonic() < deadline and self.lagging and not self.state.draining:
            gevent.sleep(QUEUE_POLL)
            if self.forward(conn, self.peers.candidates(lagging=False)):
                self.spilled_lag += 1
                return True
        return False

    def _refuse_full(self, conn: Connection) -> None:
        self.refused_full += 1
        conn.sock.sendall(simple_response(503, b"This instance is full.\n",
                                          [(FULL_HEADER, self.my_id), ("Retry-After", "1")]))
        why = "draining" if self.state.draining else f"{self.conns}/{self.max_conns}"
        conn.end(Termination.SERVER_FULL, f"server full ({why}): forwarded-in request refused -> 503")

    def _taken(self, conn: Connection, peer: Peer) -> None:
        """A peer took ``conn``: it counts there now."""
        self.release(conn)
        peer.forwarded += 1
        peer.recent += 1
        self.forwarded_out += 1
        self.stats.forwarded_out(conn, peer.id or peer.name)
