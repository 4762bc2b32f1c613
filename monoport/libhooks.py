"""Every private hook monoport has into the libraries it runs on, in one list, checked at start.

A hook is a name a library does not promise to keep: a private attribute,
an undocumented method monoport overrides or wraps, an instance attribute it
sets. Each module that uses hooks keeps them in one marked section (a
"Hooks" docstring section, or a class that overrides the library's methods);
this list names every one, with the versions it was checked against. The
libraries with hooks have an upper bound in ``requirements.txt`` (a hook
could break silently in the next release), and :func:`require` refuses to
start, naming what moved, when one is gone from the installed version.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Final

from .errors import ConfigError


@dataclass(frozen=True)
class Hook:
    """One private name of a library, where monoport uses it, and why."""

    #: the distribution, as in requirements.txt
    library: str
    #: ``module:Class.attribute`` (a class attribute, checked at start) or a description of an
    #: instance attribute (``module:Class().attribute``: checked by the tests that build one)
    target: str
    #: the monoport module whose marked section uses it
    used_by: str
    why: str

    @property
    def checkable(self) -> bool:
        return "()" not in self.target


#: The versions every hook of a library was checked against: the oldest the
#: requirements allow, and the newest run with the test suite.
CHECKED: Final[dict[str, tuple[str, str]]] = {
    "gevent": ("24.2", "26.9.0"),
    "gevent-websocket": ("0.10.1", "0.10.1"),
    "python-engineio": ("4.9", "4.15.1"),
    "python-socketio": ("5.11", "5.18.1"),
}

HOOKS: Final[tuple[Hook, ...]] = (
    # gevent: the accept loop (listener.py)
    Hook("gevent", "gevent.baseserver:BaseServer._start_accepting_if_started", "listener",
         "re-arm accepting after an EMFILE back-off, without gevent's traceback per failure"),
    Hook("gevent", "gevent.baseserver:BaseServer._spawn", "listener",
         "spawn each connection's greenlet with one interpreter frame less (do_handle)"),
    Hook("gevent", "gevent.baseserver:BaseServer()._handle", "listener", "the same (set by BaseServer.__init__)"),
    # gevent.pywsgi: the HTTP handler (wsgi.py)
    Hook("gevent", "gevent.pywsgi:WSGIHandler.__init__", "wsgi",
         "the rfile= argument: pywsgi reads the head and body through monoport's Stream"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler.MessageClass", "wsgi",
         "the headers monoport parsed already, instead of a second parse"),
    Hook("gevent", "gevent.pywsgi:OldMessage", "wsgi", "the message class filled from that parse (._headers)"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler.read_request", "wsgi", "the request line's length"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler._handle_client_error", "wsgi", "400 and one line, not a traceback"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler.handle_error", "wsgi", "the same, for stalls and TLS EOFs"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler().close_connection", "wsgi",
         "set to close after a response (drain, a stopping forwarder)"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler._headers", "pywsgi_lean",
         "the HTTP_* environ entries made from monoport's parse, not from a re-formatted head"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler._write_with_headers", "pywsgi_lean",
         "a small response goes out as one write with its head (pywsgi writes them apart)"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler._sendall", "pywsgi_lean", "the same"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler._write", "pywsgi_lean", "the same, for a large first body piece"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler.finalize_headers", "pywsgi_lean", "the Date header made once a second"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler().provided_date", "pywsgi_lean", "the same (set when the app gave none)"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler().headers_sent", "pywsgi_lean", "the same"),
    Hook("gevent", "gevent.pywsgi:WSGIHandler.run_application", "wsgi",
         "a request that asks for no upgrade skips gevent-websocket's upgrade checks"),
    Hook("gevent", "gevent.socket:socket._wait", "pywsgi_lean",
         "the wait for the next keep-alive request goes through the socket's own watcher"),
    Hook("gevent", "gevent.ssl:SSLSocket._wait", "pywsgi_lean", "the same, over TLS"),
    Hook("gevent", "gevent.socket:socket()._read_event", "pywsgi_lean", "the watcher that wait uses"),
    Hook("gevent", "http.client:_MAXHEADERS", "wsgi",
         "raised while pywsgi parses a head with exactly --max-headers headers (Python's, not gevent's)"),
    # gevent-websocket (websocket.py)
    Hook("gevent-websocket", "geventwebsocket.websocket:WebSocket.read_frame", "websocket",
         "the message size limit, checked per frame (the __class__ of each WebSocket is swapped)"),
    Hook("gevent-websocket", "geventwebsocket.websocket:WebSocket.raw_read", "websocket", "the same"),
    # python-engineio (eioconform.py, router.py, balancer.py)
    Hook("python-engineio", "engineio.socket:Socket._websocket_handler", "eioconform",
         "packets checked before python-engineio decodes them; no noop after an upgrade"),
    Hook("python-engineio", "engineio.socket:Socket.schedule_ping", "eioconform", "pings on the configured interval"),
    Hook("python-engineio", "engineio.socket:Socket().queue", "eioconform",
         "a noop that ends a waiting long-poll (also balancer: a stopping forwarder's polls)"),
    Hook("python-engineio", "engineio.server:Server._handle_connect", "eioconform",
         "stores the new session in Server.sockets before its open packet is sent"),
    Hook("python-engineio", "engineio.base_server:BaseServer().sockets", "eioconform",
         "kept a SessionTable when python-engineio assigns it (__init__, disconnect())"),
    Hook("python-engineio", "engineio.base_server:BaseServer._cors_allowed_origins", "router",
         "the origins a WebSocket upgrade is judged by, before the 101 (optional: skipped when absent)"),
    Hook("python-engineio", "engineio.base_server:BaseServer._ok", "router", "answers b'OK' (the protocol says 'ok')"),
    # python-socketio (recovery.py, cluster.py, sioguard.py)
    Hook("python-socketio", "socketio.server:Server._handle_connect", "recovery",
         "reads and strips pid/offset, takes the kept session"),
    Hook("python-socketio", "socketio.server:Server._handle_disconnect", "recovery",
         "keeps the session when the transport was lost"),
    Hook("python-socketio", "socketio.server:Server._send_packet", "recovery", "adds pid to the CONNECT reply"),
    Hook("python-socketio", "socketio.server:Server._handle_eio_disconnect", "recovery",
         "tells an ended Engine.IO session from a namespace DISCONNECT"),
    Hook("python-socketio", "socketio.pubsub_manager:PubSubManager._publish", "recovery_redis",
         "the messages of --recovery travel on a Redis Stream"),
    Hook("python-socketio", "socketio.pubsub_manager:PubSubManager._listen", "recovery_redis", "the same"),
    Hook("python-socketio", "socketio.pubsub_manager:PubSubManager._handle_emit", "recovery_redis", "the same"),
    Hook("python-socketio", "socketio.pubsub_manager:PubSubManager._thread", "recovery_redis", "the same"),
    Hook("python-socketio", "socketio.server:Server().manager_initialized", "cluster",
         "the Redis manager set before the first client, as client_manager= would"),
)


def _resolve(target: str) -> bool:
    module_name, _, path = target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError:
        return False
    for part in path.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def missing() -> list[Hook]:
    """The checkable hooks the installed libraries do not have."""
    return [hook for hook in HOOKS if hook.checkable and not _resolve(hook.target)]


def installed(library: str) -> str:
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return "not installed"


def require() -> None:
    """Refuse to start when a hook is gone (optional ones excepted): name it and the version checked."""
    gone = [hook for hook in missing() if "optional" not in hook.why]
    if gone:
        names = "; ".join(f"{hook.target} ({hook.library} {installed(hook.library)}, checked with "
                          f"{CHECKED[hook.library][1]}; used by monoport.{hook.used_by})" for hook in gone)
        raise ConfigError("libraries", f"a private name monoport relies on is gone: {names}")
