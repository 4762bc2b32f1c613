"""What the stages of a connection are given: typed services, built once by the runtime.

A stage sees these and its :class:`~monoport.connection.Connection`, never
the whole runtime, so what a stage may touch is written in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # types only: the runtime builds these, the stages just use them
    from .balancer import Balancer
    from .config import Config
    from .connection import Connection
    from .limits import PerClientLimit
    from .ops.accesslog import AccessLog
    from .ops.stats import Stats
    from .router import Router
    from .tls import Certificates
    from .wsgi import Handler
    from .wire.trust import Networks


@dataclass(eq=False)
class ServerState:
    """The process's stop state, read by every connection, changed only by :mod:`monoport.lifecycle`."""

    #: SIGTERM seen: health says 503, responses close, new sessions go elsewhere
    draining: bool = False
    #: the listeners are closed and connections are being drained
    closing: bool = False
    #: connections waiting for their next keep-alive request (a drain wakes them)
    idle: set["Connection"] = field(default_factory=set)


@dataclass(eq=False)
class Services:
    """The objects one connection's stages use."""

    config: "Config"
    stats: "Stats"
    state: ServerState
    #: --trusted-proxy networks (PROXY headers and forwarded headers are believed from them)
    trusted: "Networks"
    per_client: "PerClientLimit"
    balancer: "Balancer"
    #: the Flash policy file, or None with --no-flash
    flash_policy: bytes | None
    #: TLS certificates, or None without TLS (replaced on reload: read it per connection)
    certs: "Certificates | None"
    #: --acme: the pending challenges a validator may ask for (acme_challenge.Challenges), or None
    challenges: Any
    #: the HTTP stage: pywsgi's handler over the connection's stream
    serve_http: Callable[["Connection"], None]
    #: the raw stage of --raw (``silent``: nothing was said within the sniff timeout)
    serve_raw: Callable[["Connection", bool], None]
    #: the app, Socket.IO and the admin pages, by path
    router: "Router"
    #: one HTTP request is done: count it, log it
    on_request: Callable[["Handler"], None]
    #: the largest WebSocket message (and Socket.IO payload) accepted, in bytes
    max_message: int
    #: the access log, or None
    access: "AccessLog | None" = None
