"""Turn a Config into live objects, wire them together, and hand them to the lifecycle.

Built once in :meth:`Runtime.build`: certificates (generated dev ones with
``--tls auto``, ordered ones with ``--acme``), the Flash policy, the app and
its Socket.IO server (see :mod:`monoport.siosetup`), the router, the
balancer, the :class:`~monoport.services.Services` every connection's
stages use, and the listeners. Each accepted socket goes to
:func:`monoport.path.serve_connection`; :mod:`monoport.lifecycle` starts
and stops the whole.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Mapping

from gevent.event import Event
from gevent.pool import Pool

from . import __version__, appload, cluster, flash, libhooks, path, rawstage, recovery, siosetup
from .balancer import Balancer
from .config import Config, tls_mode
from .connection import Connection
from .errors import ConfigError
from .lifecycle import Lifecycle
from .limits import PerClientLimit
from .listener import Listener, bind_socket, inherited_socket, migrate_on_close
from .ops import accesslog, devcerts
from .ops.admin import Admin
from .ops.stats import Stats
from .router import Router
from .services import ServerState, Services
from .tls import Certificates, Pair
from .wire.trust import Networks
from .wsgi import Handler, make_wsgi_server

log = logging.getLogger("monoport")

#: python-engineio's default max_http_buffer_size, for WebSockets when there is no Socket.IO server
DEFAULT_MAX_PAYLOAD = 1_000_000


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



class Runtime:
    """The live objects of one process, built from one Config."""

    # Set by build(), after __init__ (declared here for the type checker; no default):
    flash_policy: bytes | None
    loaded: appload.Loaded
    #: the app's Socket.IO server (python-socketio, untyped), or None
    sio: Any
    admin: Admin
    router: Router
    balancer: Balancer
    services: Services

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = os.environ if environ is None else environ
        self.trusted = Networks(config.trusted_proxy)
        self.state = ServerState()
        #: a quick stop was asked for (QUIT, or a second TERM/INT)
        self.stop_now = Event()
        self.pool = Pool()
        self.listeners: list[Listener] = []
        self.stopped = Event()
        self.started_at = time.time()
        self._certs: Certificates | None = None
        #: --acme: the certificate manager and the pending challenges it answers through
        self.acme: Any = None
        self.challenges: Any = None
        self.dev_ca: str | None = None
        self.stats = Stats(config.instance_id, __version__, getattr(config, "max_conns", None))
        self.lifecycle = Lifecycle(self)
        self.stats.draining = lambda: self.state.draining
        self.stats.cluster = config.cluster_name
        self.stats.ready = self.lifecycle.is_ready
        #: the listeners accept (set by the lifecycle's start)
        self.accepting = False
        self.access: accesslog.AccessLog | None = None
        self.per_client = PerClientLimit(config.max_conns_per_ip)
        self.announcer: Any = None
        #: the peer listener's address as announced to other instances
        self.peer_address: tuple[str, int] | None = None
        #: Socket.IO connection state recovery (--recovery), or None
        self.recovery: recovery.Recovery | None = None

    @property
    def certs(self) -> Certificates | None:
        return self._certs

    @certs.setter
    def certs(self, certs: Certificates | None) -> None:
        """New certificates (a reload) are what the next handshake uses."""
        self._certs = certs
        if hasattr(self, "services"):
            self.services.certs = certs

    # -- building ----------------------------------------------------------------
    @classmethod
    def build(cls, config: Config, environ: Mapping[str, str] | None = None) -> "Runtime":
        libhooks.require()
        rt = cls(config, environ)
        rt.certs = rt.load_certificates()
        rt.flash_policy = None if config.no_flash else flash.load_policy(config.flash_policy, config.ports)
        log.info("importing the app (%s)", config.app or f"default: {appload.DEFAULT_APP}")
        loaded = appload.load(config.app, config.sio)
        rt.loaded = loaded
        rt.sio = loaded.sio
        if rt.sio is not None:
            rt.recovery = siosetup.prepare(rt.sio, config, rt.stats)
        rt.stats.sio = rt.sio
        rt.access = rt.open_access_log()
        rt.admin = Admin(rt.stats, config.admin_prefix, config.stats_auth)
        rt.router = Router(loaded.wsgi, rt.sio, config.sio_path, flask_app=loaded.flask_app,
                           admin=rt.admin, admin_prefix=config.admin_prefix, challenges=rt.challenges)
        rt.balancer = Balancer(config, rt.stats, rt.state, rt.lifecycle.close_idle, rt.started_at, rt.sio)
        rt.stats.serving = lambda: rt.balancer.conns
        rt.stats.lagging = lambda: rt.balancer.lagging
        rt.stats.in_app = lambda: rt.router.in_app
        rt.stats.sources["balancer"] = rt.balancer.snapshot
        max_message = rt.sio.eio.max_http_buffer_size if rt.sio is not None else (
            config.max_payload or DEFAULT_MAX_PAYLOAD)
        wsgi_server = make_wsgi_server(rt.router.__call__, config.ports[0])
        rt.services = Services(
            config=config, stats=rt.stats, state=rt.state, trusted=rt.trusted, per_client=rt.per_client,
            balancer=rt.balancer, flash_policy=rt.flash_policy, certs=rt.certs, challenges=rt.challenges,
            serve_http=lambda conn: None, serve_raw=rawstage.build(config, rt.balancer, rt.sio, rt.router, max_message),
            router=rt.router, on_request=rt.on_request, max_message=max_message, access=rt.access,
        )
        handler_class = type("RuntimeHandler", (Handler,), {"services": rt.services})
        rt.services.serve_http = lambda conn: handler_class(conn, wsgi_server).handle()
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
            self.listeners.append(Listener(sock, self.serve_connection, self.pool, role))
            if role == "public" and config.reuse_port and migrate_on_close() is False:
                log.warning("--reuse-port on %s:%d: net.ipv4.tcp_migrate_req is 0, so a connection still in "
                            "this process's accept queue when it stops is reset; set it to 1 for restarts "
                            "that lose nothing", host, sock.getsockname()[1])
            if role == "peer":
                self.peer_address = config.peer_advertise or advertised(sock.getsockname()[:2])

    # -- per connection --------------------------------------------------------------
    def serve_connection(self, conn: Connection) -> None:
        """The listeners' handler: one connection's whole life (:mod:`monoport.path`)."""
        path.serve_connection(conn, self.services)

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

    # -- lifecycle ---------------------------------------------------------------------
    def run(self) -> int:
        return self.lifecycle.run()
