"""The peer table: the other instances, whether they are healthy, how full, who takes what.

Theory of operation:

* A peer is another instance's *peer listener* (``--peer-bind``). Peers come
  from ``--peer HOST:PORT`` (static) and from Redis announcements
  (discovered; see :mod:`monoport.cluster`). The same ``--peer`` list can be
  given to every machine: an address that turns out to be this instance
  (its health answer carries our own id) is ignored.
* Health is polled every second over the peer listener itself
  (:mod:`monoport.peer_health`, the I/O); this table only records each
  answer (:meth:`PeerTable.record`) and decides from what it recorded.
* A peer starts down. :data:`RISE` passes in a row mark it up, :data:`FALL`
  failures in a row down; a refused forward marks it down at once
  (:meth:`PeerTable.mark_down`). Only up, non-draining peers with free
  capacity receive spill-over, the least loaded first (lag, then requests
  in its app, then free capacity; see :mod:`monoport.load`); affinity
  forwards go to any up peer.
* Free capacity is ``max_conns - conns`` from the last health answer, minus
  the connections forwarded since then, so a burst spreads over peers
  instead of piling onto the one that looked emptiest a second ago.
* A peer proves it belongs: its health answer names its cluster
  (``--cluster``). One that names another cluster, or none, is a
  *stranger*: never up, never sent a client's bytes, and logged once.
* Siblings (``--sibling``, the other workers of one master) are known by id
  and address before they answer: their listening sockets belong to the
  master, so a session of a sibling is forwarded to it from the first
  request, whatever its health (a sibling being restarted takes the
  connection from the listen backlog once it is up).
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Final, Iterable

from .config_values import HostPort
from .connection import format_address
from .load import least_loaded_key
from .peer_health import HealthPoller

log = logging.getLogger("monoport")

#: Consecutive passes that mark a peer up, and failures that mark it down.
RISE: Final = 2
FALL: Final = 2
#: How many ids of peers that stopped announcing are remembered (their forwarded connections close).
GONE_REMEMBERED: Final = 64
#: How many strangers (instances of other clusters) are remembered, to warn once about each.
STRANGERS_REMEMBERED: Final = 256


class Strangers:
    """Instances of other clusters seen knocking: one warning line each, not one per connection."""

    def __init__(self, stats: Any = None) -> None:
        self.seen: deque[tuple[str, ...]] = deque(maxlen=STRANGERS_REMEMBERED)
        #: counts each refusal as the error ``cluster_stranger`` (stats page, metrics)
        self.stats = stats

    def warn(self, key: tuple[str, ...], message: str, *args: Any) -> None:
        if self.stats is not None:
            self.stats.error("cluster_stranger")
        if key in self.seen:
            return
        self.seen.append(key)
        log.warning(message, *args)


@dataclass
class Peer:
    """One other instance, as this instance sees it."""

    address: HostPort
    #: from --peer (kept when down) or discovered through Redis (dropped when gone)
    static: bool = False
    id: str | None = None
    up: bool = False
    passes: int = 0
    failures: int = 0
    conns: int = 0
    max_conns: int = 0
    draining: bool = False
    #: this address is our own peer listener (a shared --peer list)
    is_self: bool = False
    #: a worker of the same master (--sibling): forwarded to before it answers
    sibling: bool = False
    #: its health answer names another cluster (or none): never used
    stranger: bool = False
    #: its health answer said it is not ready yet (starting): no spill-over to it
    ready: bool = True
    #: its event loop's lag (seconds), whether it is over its --max-lag, and requests in its app
    lag: float = 0.0
    lagging: bool = False
    in_app: int = 0
    last_error: str | None = None
    last_check: float = 0.0
    #: connections forwarded to it, ever
    forwarded: int = 0
    #: connections forwarded since its last health answer (capacity estimate)
    recent: int = 0
    ips: set[str] = field(default_factory=set)

    @property
    def free(self) -> int:
        return self.max_conns - self.conns - self.recent

    @property
    def name(self) -> str:
        return f"{self.id or '?'}@{format_address(self.address)}"

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id, "address": format_address(self.address), "up": self.up, "draining": self.draining,
            "conns": self.conns, "max_conns": self.max_conns, "free": max(self.free, 0),
            "forwarded": self.forwarded, "static": self.static, "last_error": self.last_error,
            "ready": self.ready, "sibling": self.sibling, "stranger": self.stranger,
            "lag": self.lag, "lagging": self.lagging, "in_app": self.in_app,
        }


class PeerTable:
    """Every known peer and what this instance concluded from their health answers."""

    def __init__(self, my_id: str, health_path: str,
                 dial: Callable[[HostPort, float], socket.socket], stats: Any = None,
                 cluster: str = "") -> None:
        self.my_id = my_id
        #: this instance's cluster: peers must name the same one
        self.cluster = cluster
        self.strangers = Strangers(stats)
        #: the runtime's Stats: told every peer's state for the stats page
        self.stats = stats
        #: called once when a peer starts draining (the balancer ends what ties it to us)
        self.on_draining: Callable[[Peer], None] | None = None
        #: ids of discovered peers that stopped announcing themselves, newest last
        self.gone: deque[str] = deque(maxlen=GONE_REMEMBERED)
        self.peers: dict[HostPort, Peer] = {}
        #: polls each peer's health over ``dial`` and hands every answer to :meth:`checked`
        self.poller: HealthPoller[Peer] = HealthPoller(health_path, dial, self.checked)

    # -- membership ----------------------------------------------------------
    def add(self, address: HostPort, *, peer_id: str | None = None, static: bool = False,
            sibling: bool = False) -> Peer:
        peer = self.peers.get(address)
        if peer is None:
            peer = self.peers[address] = Peer(address, static=static or sibling, id=peer_id, sibling=sibling)
            peer.ips = _resolve(address[0])
            how = "sibling worker" if sibling else "--peer" if static else "discovered"
            log.info("peer %s added (%s)", peer.name, how)
            if peer_id is not None and peer_id in self.gone:
                self.gone.remove(peer_id)  # the same id started again
        elif peer_id and peer.id != peer_id:
            peer.id = peer_id
        return peer

    def forget_missing(self, announced: Iterable[HostPort]) -> None:
        """Drop discovered peers that stopped announcing themselves."""
        keep = set(announced)
        for address, peer in list(self.peers.items()):
            if not peer.static and address not in keep:
                del self.peers[address]
                if self.stats is not None:
                    self.stats.remove_peer(peer.id or peer.name)
                log.info("peer %s removed (no longer announced)", peer.name)
                if peer.id:
                    # it withdrew to stop, or died: what it forwarded here must not wait for it
                    self.gone.append(peer.id)
                    if not peer.draining and self.on_draining is not None:
                        peer.draining = True
                        self.on_draining(peer)

    def by_id(self, peer_id: str) -> Peer | None:
        for peer in self.peers.values():
            if peer.id == peer_id and peer.up and not peer.is_self:
                return peer
        return None

    def owner(self, peer_id: str) -> Peer | None:
        """Where a session of instance ``peer_id`` is forwarded: an up peer, one that has answered its
        first health poll as one of this cluster (not yet up: that takes :data:`RISE`), or a sibling in
        any state."""
        for peer in self.peers.values():
            if (peer.id == peer_id and not peer.is_self and not peer.stranger
                    and (peer.up or peer.passes or peer.sibling)):
                return peer
        return None

    def pending(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is known here but not yet confirmed by a health answer (worth waiting for)."""
        return any(peer.id == peer_id and not peer.is_self and not peer.stranger and not peer.passes
                   and not peer.failures for peer in self.peers.values())

    def candidates(self, lagging: bool = True) -> list[Peer]:
        """Peers that may take spill-over, least loaded first (lagging ones last, or left out)."""
        usable = [p for p in self.peers.values()
                  if p.up and p.ready and not p.draining and not p.is_self and p.free > 0
                  and (lagging or not p.lagging)]
        return sorted(usable, key=lambda p: (p.lagging, least_loaded_key(p.lag, p.in_app, p.free)))

    def source_allowed(self, host: str) -> bool:
        return any(host in peer.ips for peer in self.peers.values())

    def snapshot(self) -> list[dict[str, Any]]:
        return [p.snapshot() for p in self.peers.values() if not p.is_self]

    # -- health ------------------------------------------------------------------
    def mark_down(self, peer: Peer, why: str) -> None:
        """A forward failed: stop using this peer until it passes again."""
        peer.passes = 0
        peer.failures = FALL
        peer.last_error = why
        if peer.up:
            peer.up = False
            log.warning("peer %s down (%s)", peer.name, why)

    def mark_full(self, peer: Peer) -> None:
        peer.conns = max(peer.conns, peer.max_conns)

    def record(self, peer: Peer, info: dict[str, Any] | None, error: str | None) -> None:
        peer.last_check = time.time()
        if info is not None and info.get("id") == self.my_id:
            if not peer.is_self:
                log.info("peer address %s is this instance; ignored", format_address(peer.address))
            peer.is_self = True
            return
        if info is not None and info.get("cluster") != self.cluster:
            self._stranger(peer, info)
            return
        if info is not None:
            peer.stranger = False
            peer.id = info["id"]
            peer.ready = info.get("ready") is not False
            peer.lag = float(info.get("lag") or 0.0)
            peer.lagging = bool(info.get("lagging"))
            peer.in_app = int(info.get("in_app") or 0)
            peer.conns = int(info.get("conns") or 0)
            peer.max_conns = int(info.get("max_conns") or 0)
            was_draining, peer.draining = peer.draining, bool(info.get("draining"))
            if peer.draining and not was_draining and self.on_draining is not None:
                self.on_draining(peer)
            peer.recent = 0
            peer.failures = 0
            peer.passes += 1
            peer.last_error = None
            if not peer.up and peer.passes >= RISE:
                peer.up = True
                log.info("peer %s up (conns %d/%d)", peer.name, peer.conns, peer.max_conns)
        else:
            peer.passes = 0
            peer.failures += 1
            peer.last_error = error
            if peer.up and peer.failures >= FALL:
                peer.up = False
                log.warning("peer %s down (%s)", peer.name, error)

    def _stranger(self, peer: Peer, info: dict[str, Any]) -> None:
        """A health answer from another cluster's instance: never forward a client's bytes to it."""
        theirs = info.get("cluster")
        peer.stranger = True
        peer.last_error = f"cluster {theirs!r}, not {self.cluster!r}"
        peer.passes = 0
        if peer.up:
            peer.up = False
        self.strangers.warn(("health", format_address(peer.address), str(info.get("id")), str(theirs)),
                            "peer %s is instance %s of cluster %r, not of this cluster %r: never forwarded to "
                            "(another deployment on the same Redis or --peer list?)",
                            format_address(peer.address), info.get("id"), theirs, self.cluster)

    def checked(self, peer: Peer, info: dict[str, Any] | None, error: str | None) -> None:
        """A health poll of ``peer`` ended (``info``: its answer, else ``error``): record it, tell the stats."""
        self.record(peer, info, error)
        if self.stats is not None:
            self.stats.remove_peer(peer.name.replace(f"{peer.id}@", "?@", 1))  # its entry before its id was known
            if peer.is_self:
                self.stats.remove_peer(peer.name)
            else:
                self.stats.set_peer(peer.id or peer.name, **peer.snapshot())

    # -- polling (the I/O is monoport.peer_health's) ----------------------------------
    def start(self, before_each: Callable[[], None] | None = None) -> None:
        """Poll every peer but this instance, every POLL_INTERVAL, until :meth:`stop`."""
        self.poller.start(lambda: [p for p in self.peers.values() if not p.is_self], before_each)

    def stop(self) -> None:
        self.poller.stop()


def _resolve(host: str) -> set[str]:
    """Every address ``host`` names, for the peer listener's source check."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return {host}
    return {str(info[4][0]) for info in infos} | {host}  # (str already: int only for AF_PACKET-like families)
