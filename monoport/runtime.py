"""Turn a Config into live objects and run them until a signal ends the process.

Built once in :meth:`Runtime.build`: certificates (generated dev ones with
``--tls auto``), the Flash policy, the app and its Socket.IO server (whose
session ids get this instance's id as prefix), the router, the pywsgi
settings object, and the listeners. Runtime state lives here too: the
draining flag, the idle keep-alive connections, the greenlet pool.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import Any, Callable, Mapping

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from . import __version__, appload, cluster, eioconform, eventrate, flash, load, rawtcp, recovery, sioguard, splice
from .balancer import Balancer
from .config import Config, parse_hostport, tls_mode
from .connection import Connection, format_address
from .dispatch import Dispatcher
from .errors import ConfigError, PeerUnavailable
from .limits import PerClientLimit, raise_fd_limit
from .listener import Listener, bind_socket, inherited_socket, migrate_on_close
from .ops import accesslog, devcerts
from .ops.admin import Admin
from .ops.stats import Stats
from .router import Router
from .tls import Certificates, Pair
from .websocket import LIBRARY as WEBSOCKET_LIBRARY
from .wire.trust import Networks
from .wsgi import DRAIN_IDLE_GRACE, Handler, make_wsgi_server

log = logging.getLogger("monoport")

#: python-engineio's default max_http_buffer_size, for WebSockets when there is no Socket.IO server
DEFAULT_MAX_PAYLOAD = 1_000_000

#: What a raw (non-TLS, non-HTTP, non-Flash) connection gets, by --raw mode:
#: "sio" (Socket.IO over lines, rawtcp.py), "forward" (--raw HOST:PORT), "off".
RAW_STAGES: dict[str, Callable[["Runtime", Connection, bool], None]] = {}


def _raw_off(rt: "Runtime", conn: Connection, silent: bool) -> None:
    if silent:
        conn.outcome = "sniff timeout (silent client); raw TCP is off"
    else:
        conn.outcome = "not TLS, HTTP, PROXY or Flash; raw TCP is off"


RAW_STAGES["off"] = _raw_off
RAW_STAGES["sio"] = rawtcp.serve

#: Seconds health waits for sibling workers' first answer before saying ready without them.
SIBLING_WAIT = 10.0

#: Seconds to connect to the ``--raw HOST:PORT`` backend before giving up.
RAW_DIAL_TIMEOUT = 5.0


def _raw_forward(rt: "Runtime", conn: Connection, silent: bool) -> None:
    """``--raw HOST:PORT``: splice the connection, every byte already read first."""
    host, port = parse_hostport(rt.config.raw)
    target = format_address((host, port))
    try:
        backend = splice.dial((host, port), RAW_DIAL_TIMEOUT)
    except PeerUnavailable as exc:
        conn.outcome = f"raw backend unavailable ({exc})"
        return
    try:
        conn.sock.settimeout(None)
        # Clear sockets were only peeked (the kernel still has the bytes);
        # inside TLS the sniffed bytes wait in the stream's buffer.
        prefix = conn.stream.take(len(conn.stream.buf))
        # the unmetered socket, so the zero-copy path stays open; the result counts the bytes
        result = splice.splice(conn.sock.wrapped, backend, client_prefix=prefix)
    finally:
        backend.close()
    conn.bytes_in += result.bytes_up - len(prefix)  # the prefix was counted when it was read
    conn.bytes_out += result.bytes_down
    conn.outcome = (f"raw forwarded to {target}: {result.bytes_up} bytes up, "
                    f"{result.bytes_down} down, {splice.describe_end(result)}")
    conn.termination = splice.termination_of(result)


RAW_STAGES["forward"] = _raw_forward


def embed_instance_id(sio: Any, instance_id: str) -> None:
    """Make Engine.IO session ids ``<instance-id>.<random>`` (self-routing sessions)."""
    eio = sio.eio
    original = type(eio).generate_id

    def generate_id() -> str:
        return f"{instance_id}.{original(eio)}"

    eio.generate_id = generate_id


def apply_sio_limits(sio: Any, config: Config) -> None:
    """--max-payload and --cors-origin, set on the Engine.IO server before it serves anyone.

    Without --cors-origin the app's own ``cors_allowed_origins`` stays (python-engineio's
    default, None, is same-origin only); monoport never widens it on its own.
    """
    eio = sio.eio
    if config.max_payload is not None:
        eio.max_http_buffer_size = config.max_payload
    if config.cors_origin:
        eio.cors_allowed_origins = "*" if "*" in config.cors_origin else list(config.cors_origin)


def advertised(address: tuple[str, int]) -> tuple[str, int]:
    """The address peers should dial for a listener bound to ``address``."""
    host, port = address
    if host in ("0.0.0.0", "::"):
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
        log.warning("--peer-bind listens on all interfaces; announcing %s:%d (set --peer-advertise to choose)",
                    host, port)
    return host, port


def redact(url: str) -> str:
    """A Redis URL without its password, for the log."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest


class Runtime:
    # Set by build(), after __init__ (declared here for the type checker; no default):
    flash_policy: bytes | None
    loaded: appload.Loaded
    #: the app's Socket.IO server (python-socketio, untyped), or None
    sio: Any
    #: --max-events-per-second only
    event_limiter: eventrate.EventLimiter
    admin: Admin
    router: Router
    wsgi_server: WSGIServer
    handler_class: type[Handler]
    dispatcher: Dispatcher
    balancer: Balancer
    before_request: Callable[[Any, Any], bool]
    raw_stage_impl: Callable[["Runtime", Connection, bool], None]

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = os.environ if environ is None else environ
        self.trusted = Networks(config.trusted_proxy)
        #: SIGTERM seen: health says 503, responses close, new sessions go elsewhere
        self.draining = False
        #: the listeners are closed and connections are being drained
        self.closing = False
        #: a quick stop was asked for (QUIT, or a second TERM/INT)
        self.stop_now = Event()
        self.idle: set[Connection] = set()
        self.pool = Pool()
        self.listeners: list[Listener] = []
        self.stopped = Event()
        self.started_at = time.time()
        self.certs: Certificates | None = None
        #: --acme: the certificate manager and the pending challenges it answers through
        self.acme: Any = None
        self.challenges: Any = None
        self.dev_ca: str | None = None
        self.access_log: Callable[[Any], None] | None = None
        self.stats = Stats(config.instance_id, __version__, getattr(config, "max_conns", None))
        self.stats.draining = lambda: self.draining
        self.stats.cluster = config.cluster_name
        self.stats.ready = self.is_ready
        #: the listeners accept (set by start)
        self.accepting = False
        #: is_ready said yes once: a sibling being restarted later does not make us unready
        self.was_ready = False
        self.access: accesslog.AccessLog | None = None
        self.per_client = PerClientLimit(config.max_conns_per_ip)
        self.announcer: Any = None
        #: the peer listener's address as announced to other instances
        self.peer_address: tuple[str, int] | None = None
        #: Socket.IO connection state recovery (--recovery), or None
        self.recovery: recovery.Recovery | None = None

    # -- building ----------------------------------------------------------------
    @classmethod
    def build(cls, config: Config, environ: Mapping[str, str] | None = None) -> "Runtime":
        rt = cls(config, environ)
        rt.certs = rt.load_certificates()
        rt.flash_policy = None if config.no_flash else flash.load_policy(config.flash_policy, config.ports)
        log.info("importing the app (%s)", config.app or f"default: {appload.DEFAULT_APP}")
        loaded = appload.load(config.app, config.sio)
        rt.loaded = loaded
        rt.sio = loaded.sio
        if rt.sio is not None:
            embed_instance_id(rt.sio, config.instance_id)
            apply_sio_limits(rt.sio, config)
            sioguard.guard(rt.sio)
            eioconform.install(rt.sio, config.ping_interval, config.ping_timeout)
            sioguard.quiet_unknown_sessions(rt.sio)
            if config.max_events_per_second:
                rt.event_limiter = eventrate.install(rt.sio, config.max_events_per_second,
                                                     lambda: rt.stats.error("event_rate_limited"))
            if config.recovery:
                rt.recovery = recovery.install(rt.sio, config.recovery, config.redis,
                                               key_prefix=cluster.key_prefix(config.cluster_name),
                                               instance_id=config.instance_id)
                rt.stats.sources["recovery"] = rt.recovery.snapshot
        rt.stats.sio = rt.sio
        rt.access = rt.open_access_log()
        rt.access_log = rt.on_request
        rt.admin = Admin(rt.stats, config.admin_prefix, config.stats_auth)
        rt.router = Router(loaded.wsgi, rt.sio, config.sio_path, flask_app=loaded.flask_app,
                           admin=rt.admin, admin_prefix=config.admin_prefix, challenges=rt.challenges)
        rt.wsgi_server = make_wsgi_server(rt.router.__call__, config.ports[0])
        rt.handler_class = type("RuntimeHandler", (Handler,), {"runtime": rt})
        rt.dispatcher = Dispatcher(rt)
        rt.balancer = Balancer(rt)
        rt.before_request = rt.balancer.before_request
        rt.stats.serving = lambda: rt.balancer.conns
        rt.stats.lagging = lambda: rt.balancer.lagging
        rt.stats.in_app = lambda: rt.router.in_app
        rt.stats.sources["balancer"] = rt.balancer.snapshot
        rt.raw_stage_impl = rt._raw_stage_for(config.raw)
        return rt

    def load_certificates(self) -> Certificates | None:
        mode = tls_mode(self.config, self.environ)
        if mode == "off":
            return None
        pairs = [Pair(c, k) for c, k in zip(self.config.cert, self.config.key)]
        if mode == "dev":
            paths = devcerts.ensure(self.config.certs_dir)
            self.dev_ca = str(paths.ca)
            pairs = [Pair(str(paths.cert), str(paths.key))]
        elif mode == "acme":
            if self.acme is None:
                from .acme_client import Manager  # the acme package loads only when asked for

                shared = None
                if self.config.redis:  # instances on other hosts order once with us and answer our challenges
                    from .acme_redis import RedisShare

                    # the cluster's namespace: the lock, challenges and certificates of this deployment
                    shared = RedisShare(self.config.redis, prefix=cluster.key_prefix(self.config.cluster_name))
                self.acme = Manager(self.config, on_change=lambda: self.reload("acme"), shared=shared)
                self.challenges = self.acme.challenges
                self.stats.sources["acme"] = self.acme.snapshot
            pairs = [Pair(c, k) for c, k in self.acme.pairs()] + pairs
        return Certificates(pairs, strict_sni=self.config.strict_sni)

    def open_access_log(self) -> accesslog.AccessLog | None:
        if not self.config.access_log:
            return None
        try:
            return accesslog.AccessLog(self.config.access_log, self.config.log_format)
        except OSError as exc:
            raise ConfigError("--access-log", f"cannot open {self.config.access_log}: {exc.strerror or exc}") from None

    def reopen_logs(self) -> None:
        """SIGUSR1 (gunicorn's habit): reopen the access log after a rotation."""
        if self.access is None:
            return
        try:
            self.access.reopen()
        except OSError as exc:
            log.error("SIGUSR1: access log not reopened, still writing the old file: %s", exc)
            return
        log.info("SIGUSR1: access log reopened")

    def _raw_stage_for(self, mode: str) -> Callable[["Runtime", Connection, bool], None]:
        if mode in RAW_STAGES:
            return RAW_STAGES[mode]
        if "forward" in RAW_STAGES:
            parse_hostport(mode)
            return RAW_STAGES["forward"]
        raise ConfigError("--raw", f"raw mode {mode!r} is not available in this build")

    def bind(self) -> None:
        """Open every listening socket (raises ConfigError naming the address in use)."""
        config = self.config
        specs = [(host, port, "public") for host, port in config.bind]
        if config.flash_policy_port is not None:
            specs.append((config.bind[0][0], config.flash_policy_port, "flash"))
        peer_bind = config.peer_bind or (("127.0.0.1", 0) if config.redis or config.peer_fd is not None else None)
        if peer_bind is not None:
            specs.append((peer_bind[0], peer_bind[1], "peer"))
        flags = {"flash": "--flash-policy-port", "peer": "--peer-bind", "public": "--bind"}
        for host, port, role in specs:
            try:
                if role == "peer" and config.peer_fd is not None:
                    sock = inherited_socket(config.peer_fd)  # --workers: the master's, stable across restarts
                else:
                    sock = bind_socket(host, port, reuse_port=config.reuse_port and role == "public")
            except OSError as exc:
                for listener in self.listeners:
                    listener.close()
                raise ConfigError(flags[role], f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            self.listeners.append(Listener(sock, self, role))
            if role == "public" and config.reuse_port and migrate_on_close() is False:
                log.warning("--reuse-port on %s:%d: net.ipv4.tcp_migrate_req is 0, so a connection still in "
                            "this process's accept queue when it stops is reset; set it to 1 for restarts "
                            "that lose nothing", host, sock.getsockname()[1])
            if role == "peer":
                self.peer_address = config.peer_advertise or advertised(sock.getsockname()[:2])

    # -- per connection --------------------------------------------------------------
    def serve_connection(self, conn: Connection) -> None:
        self.stats.connection_opened(conn)
        try:
            role = conn.listener.role
            if role == "flash":
                self.dispatcher.serve_flash_only(conn)
            elif role != "peer" or self.balancer.admit_peer_listener(conn):
                self.dispatcher.serve(conn)
        finally:
            self.balancer.release(conn)
            self.stats.connection_closed(conn)
            if self.access is not None and not getattr(conn, "quiet", False):
                self.access.write(accesslog.connection_record(conn))
            conn.close()

    def on_request(self, handler: Any) -> None:
        """One HTTP request is done (pywsgi's log_request): count it and log it."""
        environ = getattr(handler, "environ", None) or {}
        started, finished = getattr(handler, "time_start", 0), getattr(handler, "time_finish", 0)
        seconds = max(0.0, finished - started) if started and finished else 0.0
        transport = environ.get("monoport.transport", "http")
        self.stats.request(transport, handler.conn.secure, accesslog.status_of(handler) or "other", seconds)
        # routine traffic (peers' health polls, every second) is counted, not logged
        if self.access is not None and not getattr(handler.conn, "quiet", False):
            self.access.write(accesslog.request_record(handler))

    def serve_http(self, conn: Connection) -> None:
        handler = self.handler_class(conn, self.wsgi_server)
        handler.handle()

    @property
    def max_message(self) -> int:
        """Largest WebSocket message (and Socket.IO payload) accepted, in bytes."""
        if self.sio is not None:
            return self.sio.eio.max_http_buffer_size
        return self.config.max_payload or DEFAULT_MAX_PAYLOAD

    def raw_stage(self, conn: Connection, silent: bool) -> None:
        if self.config.raw == "sio":
            # Raw Socket.IO clients are balanced like HTTP ones (steps 2-4);
            # a --raw HOST:PORT backend carries its own load: counted, never moved.
            if not self.balancer.admit_raw(conn):
                return
        elif self.config.raw != "off":
            self.balancer.try_claim(conn)
        self.raw_stage_impl(self, conn, silent)

    def on_handshake(self, conn: Connection, seconds: float, failure: str | None) -> None:
        if self.stats is not None:
            self.stats.handshake(conn, seconds, failure)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        raise_fd_limit()
        if self.config.max_lag:  # sampled often enough for admission to react within a second
            gevent.spawn(self.stats.measure_lag, gevent.sleep, load.SAMPLE_INTERVAL,
                         on_sample=self.balancer.lag_sample)
        else:
            gevent.spawn(self.stats.measure_lag, gevent.sleep)
        for listener in self.listeners:
            listener.start()
        self.accepting = True
        scheme = "https" if self.certs else "http"
        for listener in self.listeners:
            log.info("listening on %s (%s)", listener._where(), listener.role if listener.role != "public" else scheme)
        sio_mode = self.sio.async_mode if self.sio is not None else "none"
        log.info(
            "monoport %s instance %s: cluster %r%s, app %s, Socket.IO async_mode=%s under %s, websocket=%s, "
            "raw=%s, tls=%s",
            __version__, self.config.instance_id, self.config.cluster_name,
            "" if self.config.cluster else " (from the app; --cluster names it)", self.loaded.description, sio_mode,
            ",".join(self.config.sio_path), WEBSOCKET_LIBRARY, self.config.raw,
            "off" if self.certs is None else ",".join(self.certs.names) or "on",
        )
        if self.sio is not None:
            origins = self.sio.eio.cors_allowed_origins
            log.info("Socket.IO: max payload %s bytes, CORS %s, %s", self.sio.eio.max_http_buffer_size,
                     "same origin only" if origins is None else origins, eioconform.describe_pings(self.sio.eio))
        if self.dev_ca:
            log.info("development CA: %s (trust it to browse https://localhost without warnings)", self.dev_ca)
        self.start_cluster()
        if self.acme is not None:
            gevent.spawn(self.acme.run)

    def start_cluster(self) -> None:
        """Redis messages and discovery, then the peer health poller."""
        config = self.config
        discover = None
        name = config.cluster_name
        if config.redis:
            if self.recovery is not None:
                self.recovery.start()  # its manager carries messages through a Redis Stream
            elif self.sio is not None:
                cluster.attach_redis_manager(self.sio, config.redis, name)
            self.announcer = cluster.Announcer(config.redis, config.instance_id, self.peer_address,
                                               config.max_conns, name)
            discover = self._discover
            carrier = "a stream (--recovery)" if self.recovery is not None else f"channel {cluster.channel(name)}"
            log.info("redis: Socket.IO messages on %s and peer discovery under %s* through %s",
                     carrier, cluster.key_prefix(name), redact(config.redis))
        if config.redis or config.peer or config.sibling:
            self.balancer.peers.start(discover)

    def is_ready(self) -> bool:
        """Health's readiness: listeners accept, Redis answered, sibling workers answered (or waited for)."""
        if self.was_ready:
            return True
        if not self.accepting or (self.announcer is not None and not self.announcer.reached):
            return False
        waiting = [peer for peer in self.balancer.peers.peers.values()
                   if peer.sibling and not peer.up and not peer.passes and not peer.is_self]
        if waiting and time.time() - self.started_at < SIBLING_WAIT:
            return False
        if waiting:
            log.warning("ready without sibling worker(s) %s, silent for %.0fs",
                        ", ".join(peer.name for peer in waiting), SIBLING_WAIT)
        self.was_ready = True
        return True

    def _discover(self) -> None:
        found = self.announcer.announce_and_discover()
        if found is None:
            return
        for peer_id, address in found:
            self.balancer.peers.add(address, peer_id=peer_id)
        if self.announcer.settled():
            self.balancer.peers.forget_missing(address for _, address in found)

    def install_signals(self) -> None:
        gevent.signal_handler(signal.SIGTERM, self.request_stop, True)
        gevent.signal_handler(signal.SIGINT, self.request_stop, True)
        gevent.signal_handler(signal.SIGQUIT, self.request_stop, False)
        gevent.signal_handler(signal.SIGHUP, self.reload)
        gevent.signal_handler(signal.SIGUSR1, self.reopen_logs)

    def request_stop(self, graceful: bool = True) -> None:
        if self.draining and graceful:
            graceful = False  # a second TERM/INT: stop now
        gevent.spawn(self.shutdown, graceful)

    def reload(self, why: str = "SIGHUP") -> None:
        """SIGHUP (or a new ACME certificate): load certificates again; open connections keep theirs."""
        if self.certs is None:
            log.info("%s: TLS is off, nothing to reload", why)
            return
        try:
            self.certs = self.load_certificates()
        except ConfigError as exc:
            log.error("%s: certificates not reloaded, keeping the old ones: %s", why, exc)
            return
        # (never None here: the TLS mode comes from the config, which a reload does not change)
        log.info("%s: certificates reloaded (%s)", why, ", ".join(self.certs.names) if self.certs else "none")

    def shutdown(self, graceful: bool = True) -> None:
        if self.stopped.is_set():
            return
        if not graceful:
            self.stop_now.set()  # ends a --drain-delay wait
        if not self.draining:
            # From here health answers 503, responses say "Connection: close",
            # and peers read "draining" and stop sending new work.
            self.draining = True
            if self.announcer is not None:
                self.announcer.withdraw()
            delay = self.config.drain_delay
            if graceful and delay:
                log.info("graceful shutdown: health answers 503; still accepting for %.1fs (--drain-delay)", delay)
                if self.stop_now.wait(delay):
                    return  # the quick stop that ended the wait does the rest
        graceful = graceful and not self.stop_now.is_set()
        timeout = self.config.graceful_timeout if graceful else 0.5
        first = not self.closing
        self.closing = True
        if first:
            log.info("%s shutdown: draining (up to %.1fs)", "graceful" if graceful else "quick", timeout)
            # The peer listener stays open while draining (peers' health polls).
            for listener in self.listeners:
                if listener.role != "peer":
                    listener.drain_and_close()
        if first and graceful:
            # An idle keep-alive client may be sending its next request right
            # now: closing at once would lose it. Its answer says
            # "Connection: close"; a connection still idle after the grace ends.
            gevent.spawn_later(min(DRAIN_IDLE_GRACE, timeout), self.close_idle)
        else:
            self.close_idle()
        if self.sio is not None and first:
            self._disconnect_sio()
        if graceful:
            self.pool.join(timeout=timeout)
        if self.stopped.is_set():
            return  # a quick stop finished meanwhile
        self.balancer.peers.stop()
        for listener in self.listeners:
            listener.close()
        left = list(self.stats.open)
        if left:
            names = sorted(f"{conn.describe()} ({self._state_of(conn)})" for conn in left)
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            log.info("closing %d connection(s) still open: %s%s", len(names), ", ".join(names[:10]), more)
            for conn in left:
                if conn.outcome == "closed":
                    conn.outcome = "draining (cut at the end of the graceful timeout)"
        if len(self.pool):
            self.pool.kill(block=True, timeout=1)
        log.info("stopped")
        self.stopped.set()

    @staticmethod
    def _state_of(conn: Connection) -> str:
        """What an open connection is doing, for the line that names those a stop cuts."""
        if conn.served_by is not None:
            return f"forwarded to {conn.served_by}"
        if conn.polling_sid:
            return "long-poll"
        return f"{conn.requests} request(s) served; {conn.outcome}"

    def close_idle(self, which: Callable[[Connection], bool] = lambda conn: True, note: str = "draining") -> None:
        """Wake the connections waiting for their next keep-alive request: they close, ``note`` their outcome."""
        for conn in [conn for conn in self.idle if which(conn)]:
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
        eio = self.sio.eio
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
        self.stopped.wait()
        return 0
