"""The runtime's life: start, readiness, signals, reload, and the drain that ends it.

A stop is gunicorn's: SIGTERM (or SIGINT) drains gracefully (health says
503 at once; listeners close after ``--drain-delay``; idle keep-alive
connections get a short grace; Socket.IO sessions end as lost transports,
so their clients reconnect elsewhere; the rest get ``--graceful-timeout``),
a second TERM or a QUIT stops quickly. SIGHUP reloads certificates, SIGUSR1
reopens the access log.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from typing import TYPE_CHECKING, Callable

import gevent

from . import __version__, cluster, eioconform, load
from .connection import Connection
from .limits import raise_fd_limit
from .termination import Termination
from .websocket import LIBRARY as WEBSOCKET_LIBRARY
from .wsgi import DRAIN_IDLE_GRACE

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("monoport")

#: Seconds health waits for sibling workers' first answer before saying ready without them.
SIBLING_WAIT = 10.0


def redact(url: str) -> str:
    """A Redis URL without its password, for the log."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest


class Lifecycle:
    """Starts a built, bound runtime and stops it; the only writer of its :class:`ServerState`."""

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt
        self.state = rt.state
        #: is_ready said yes once: a sibling being restarted later does not make us unready
        self.was_ready = False

    def start(self) -> None:
        raise_fd_limit()
        if self.rt.config.max_lag:  # sampled often enough for admission to react within a second
            gevent.spawn(self.rt.stats.measure_lag, gevent.sleep, load.SAMPLE_INTERVAL,
                         on_sample=self.rt.balancer.lag_sample)
        else:
            gevent.spawn(self.rt.stats.measure_lag, gevent.sleep)
        for listener in self.rt.listeners:
            listener.start()
        self.rt.accepting = True
        scheme = "https" if self.rt.certs else "http"
        for listener in self.rt.listeners:
            log.info("listening on %s (%s)", listener._where(), listener.role if listener.role != "public" else scheme)
        sio_mode = self.rt.sio.async_mode if self.rt.sio is not None else "none"
        log.info(
            "monoport %s instance %s: cluster %r%s, app %s, Socket.IO async_mode=%s under %s, websocket=%s, "
            "raw=%s, tls=%s",
            __version__, self.rt.config.instance_id, self.rt.config.cluster_name,
            "" if self.rt.config.cluster else " (from the app; --cluster names it)", self.rt.loaded.description, sio_mode,
            ",".join(self.rt.config.sio_path), WEBSOCKET_LIBRARY, self.rt.config.raw,
            "off" if self.rt.certs is None else ",".join(self.rt.certs.names) or "on",
        )
        if self.rt.sio is not None:
            origins = self.rt.sio.eio.cors_allowed_origins
            log.info("Socket.IO: max payload %s bytes, CORS %s, %s", self.rt.sio.eio.max_http_buffer_size,
                     "same origin only" if origins is None else origins, eioconform.describe_pings(self.rt.sio.eio))
        if self.rt.dev_ca:
            log.info("development CA: %s (trust it to browse https://localhost without warnings)", self.rt.dev_ca)
        self.start_cluster()
        if self.rt.acme is not None:
            gevent.spawn(self.rt.acme.run)

    def start_cluster(self) -> None:
        """Redis messages and discovery, then the peer health poller."""
        config = self.rt.config
        discover = None
        name = config.cluster_name
        if config.redis:
            if self.rt.recovery is not None:
                self.rt.recovery.start()  # its manager carries messages through a Redis Stream
            elif self.rt.sio is not None:
                cluster.attach_redis_manager(self.rt.sio, config.redis, name)
            self.rt.announcer = cluster.Announcer(config.redis, config.instance_id, self.rt.peer_address,
                                               config.max_conns, name)
            discover = self._discover
            carrier = "a stream (--recovery)" if self.rt.recovery is not None else f"channel {cluster.channel(name)}"
            log.info("redis: Socket.IO messages on %s and peer discovery under %s* through %s",
                     carrier, cluster.key_prefix(name), redact(config.redis))
        if config.redis or config.peer or config.sibling:
            self.rt.balancer.peers.start(discover)

    def is_ready(self) -> bool:
        """Health's readiness: listeners accept, Redis answered, sibling workers answered (or waited for)."""
        if self.was_ready:
            return True
        if not self.rt.accepting or (self.rt.announcer is not None and not self.rt.announcer.reached):
            return False
        waiting = [peer for peer in self.rt.balancer.peers.peers.values()
                   if peer.sibling and not peer.up and not peer.passes and not peer.is_self]
        if waiting and time.time() - self.rt.started_at < SIBLING_WAIT:
            return False
        if waiting:
            log.warning("ready without sibling worker(s) %s, silent for %.0fs",
                        ", ".join(peer.name for peer in waiting), SIBLING_WAIT)
        self.was_ready = True
        return True

    def _discover(self) -> None:
        found = self.rt.announcer.announce_and_discover()
        if found is None:
            return
        for peer_id, address in found:
            self.rt.balancer.peers.add(address, peer_id=peer_id)
        if self.rt.announcer.settled():
            self.rt.balancer.peers.forget_missing(address for _, address in found)

    def install_signals(self) -> None:
        gevent.signal_handler(signal.SIGTERM, self.request_stop, True)
        gevent.signal_handler(signal.SIGINT, self.request_stop, True)
        gevent.signal_handler(signal.SIGQUIT, self.request_stop, False)
        gevent.signal_handler(signal.SIGHUP, self.rt.reload)
        gevent.signal_handler(signal.SIGUSR1, self.rt.reopen_logs)

    def request_stop(self, graceful: bool = True) -> None:
        if self.state.draining and graceful:
            graceful = False  # a second TERM/INT: stop now
        gevent.spawn(self.shutdown, graceful)

    def shutdown(self, graceful: bool = True) -> None:
        if self.rt.stopped.is_set():
            return
        if not graceful:
            self.rt.stop_now.set()  # ends a --drain-delay wait
        if not self.state.draining:
            # From here health answers 503, responses say "Connection: close",
            # and peers read "draining" and stop sending new work.
            self.state.draining = True
            if self.rt.announcer is not None:
                self.rt.announcer.withdraw()
            delay = self.rt.config.drain_delay
            if graceful and delay:
                log.info("graceful shutdown: health answers 503; still accepting for %.1fs (--drain-delay)", delay)
                if self.rt.stop_now.wait(delay):
                    return  # the quick stop that ended the wait does the rest
        graceful = graceful and not self.rt.stop_now.is_set()
        timeout = self.rt.config.graceful_timeout if graceful else 0.5
        first = not self.state.closing
        self.state.closing = True
        if first:
            log.info("%s shutdown: draining (up to %.1fs)", "graceful" if graceful else "quick", timeout)
            # The peer listener stays open while draining (peers' health polls).
            for listener in self.rt.listeners:
                if listener.role != "peer":
                    listener.drain_and_close()
        if first and graceful:
            # An idle keep-alive client may be sending its next request right
            # now: closing at once would lose it. Its answer says
            # "Connection: close"; a connection still idle after the grace ends.
            gevent.spawn_later(min(DRAIN_IDLE_GRACE, timeout), self.close_idle)
        else:
            self.close_idle()
        if self.rt.sio is not None and first:
            self._disconnect_sio()
        if graceful:
            self.rt.pool.join(timeout=timeout)
        if self.rt.stopped.is_set():
            return  # a quick stop finished meanwhile
        self.rt.balancer.peers.stop()
        for listener in self.rt.listeners:
            listener.close()
        left = list(self.rt.stats.open)
        if left:
            names = sorted(f"{conn.describe()} ({self._state_of(conn)})" for conn in left)
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            log.info("closing %d connection(s) still open: %s%s", len(names), ", ".join(names[:10]), more)
            for conn in left:
                conn.end_unless_ended(Termination.DRAINING, "draining (cut at the end of the graceful timeout)")
        if len(self.rt.pool):
            self.rt.pool.kill(block=True, timeout=1)
        log.info("stopped")
        self.rt.stopped.set()

    @staticmethod
    def _state_of(conn: Connection) -> str:
        """What an open connection is doing, for the line that names those a stop cuts."""
        if conn.served_by is not None:
            return f"forwarded to {conn.served_by}"
        if conn.polling_sid:
            return "long-poll"
        return f"{conn.requests} request(s) served; {conn.detail}"

    def close_idle(self, which: Callable[[Connection], bool] = lambda conn: True,
                   note: tuple[Termination, str] = (Termination.DRAINING, "draining")) -> None:
        """Wake the connections waiting for their next keep-alive request: they close, ending as ``note`` says."""
        for conn in [conn for conn in self.state.idle if which(conn)]:
            conn.drain_note = note
            try:
                # the socket the handler waits on: for TLS that is the SSL socket,
                # whose waiters a shutdown of the raw socket would not wake
                conn.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def _disconnect_sio(self) -> None:
        """End every Engine.IO session as a lost transport, so its client reconnects.

        The app's disconnect handlers run. No Engine.IO close packet is sent:
        python-socketio's client takes one as "the server disconnected me"
        and never reconnects, which would strand it after a rolling restart.
        WebSockets get a close frame and pending long-polls an empty answer,
        and the client's next request finds its session gone (400): both
        clients, JavaScript and Python, then reconnect, to another instance.
        ``eio.disconnect()`` is not used: it waits until each polling client
        fetched its close packet, and one that never polls again would hold
        the exit for the whole graceful timeout.
        """
        eio = self.rt.sio.eio
        for session in list(eio.sockets.values()):
            try:
                # "transport close", as for a lost transport: --recovery keeps the session
                session.close(wait=False, abort=True, reason=eio.reason.TRANSPORT_CLOSE)
            except Exception:  # pragma: no cover - a bug in an app's disconnect handler
                log.exception("disconnecting a Socket.IO client failed")
        eio.sockets.clear()

    def run(self) -> int:
        self.start()
        self.install_signals()
        self.rt.stopped.wait()
        return 0
