"""Peer health polling, the I/O half of the peer table: one GET <admin>/health per peer per second.

Health is polled every :data:`POLL_INTERVAL` over the peer listener itself,
with a PROXY v2 LOCAL header in front of ``GET <admin>/health``. Polling the
path that forwards take proves the forwarding path works, and needs no
certificate trust as the public port (possibly TLS) would. What an answer
means is :mod:`monoport.peers`' business: each one is handed to it as it ends.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any, Callable, Final, Generic, Iterable, Protocol, TypeVar

import gevent

from .config_values import HostPort
from .errors import PeerUnavailable
from .wire import proxyproto

log = logging.getLogger("monoport")

#: Seconds between two health polls of one peer (DESIGN: every second).
POLL_INTERVAL: Final = 1.0
#: Deadline of one health poll, connect to last byte, in seconds.
POLL_TIMEOUT: Final = 1.5
#: A health answer is a few hundred bytes; read at most this much.
HEALTH_MAX_BYTES: Final = 65536


def parse_health(response: bytes) -> dict[str, Any]:
    """The JSON of a health answer: ``200``, or ``503`` from a draining or starting instance (pure).

    Raises:
        ValueError: not a 200 or 503 with a JSON object carrying ``id``.
    """
    head, sep, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status_line) < 2 or status_line[1] not in (b"200", b"503"):
        raise ValueError(f"health answered {head[:40]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        raise ValueError("chunked health answer")
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ValueError("health answer without an id")
    if status_line[1] == b"503" and data.get("draining") is not True and data.get("ready") is not False:
        raise ValueError("health answered 503 without draining or starting")
    return data


class Polled(Protocol):
    """What the poller needs of a peer: where its peer listener is."""

    address: HostPort


P = TypeVar("P", bound=Polled)


class HealthPoller(Generic[P]):
    """Polls peers' health over ``dial`` and hands each ending to ``on_answer(peer, info, error)``."""

    def __init__(self, health_path: str, dial: Callable[[HostPort, float], socket.socket],
                 on_answer: Callable[[P, dict[str, Any] | None, str | None], None]) -> None:
        self.health_path = health_path
        self.dial = dial
        self.on_answer = on_answer
        self._poller: gevent.Greenlet | None = None

    def check(self, peer: P) -> None:
        try:
            info = self.fetch_health(peer.address)
        except (OSError, ValueError, PeerUnavailable) as exc:
            self.on_answer(peer, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        else:
            self.on_answer(peer, info, None)

    def fetch_health(self, address: HostPort) -> dict[str, Any]:
        deadline = time.monotonic() + POLL_TIMEOUT
        sock = self.dial(address, POLL_TIMEOUT)
        try:
            request = (f"GET {self.health_path} HTTP/1.1\r\nHost: monoport-peer\r\n"
                       "Connection: close\r\nUser-Agent: monoport-health\r\n\r\n").encode()
            sock.sendall(proxyproto.build_v2_local() + request)
            chunks, size = [], 0
            while size < HEALTH_MAX_BYTES:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                size += len(data)
            return parse_health(b"".join(chunks))
        finally:
            sock.close()

    def poll_once(self, peers: Iterable[P]) -> None:
        jobs = [gevent.spawn(self.check, peer) for peer in peers]
        gevent.joinall(jobs, timeout=POLL_TIMEOUT + 1)
        for job in jobs:
            job.kill(block=False)

    def start(self, targets: Callable[[], list[P]], before_each: Callable[[], None] | None = None) -> None:
        """Poll ``targets()`` every POLL_INTERVAL, in one greenlet, until :meth:`stop`."""
        def loop() -> None:
            while True:
                started = time.monotonic()
                try:
                    if before_each is not None:
                        before_each()
                    self.poll_once(targets())
                except Exception:  # a bug of ours: say so, and keep the peers current
                    log.exception("peer poll failed; polling again in %.0fs", POLL_INTERVAL)
                gevent.sleep(max(POLL_INTERVAL - (time.monotonic() - started), 0.05))

        self._poller = gevent.spawn(loop)

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.kill(block=False)
