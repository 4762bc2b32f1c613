"""The root WSGI app: admin pages, Socket.IO paths, then the user's app."""

from __future__ import annotations

import io
import logging
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

from .eiopackets import payload_error

log = logging.getLogger("monoport")

Wsgi = Callable[[dict, Callable], Iterable[bytes]]


class Router:
    def __init__(self, app: Wsgi, sio: Any, sio_paths: Iterable[str], flask_app: Any = None,
                 admin: Wsgi | None = None, admin_prefix: str = "/monoport") -> None:
        self.app = app
        self.sio = sio
        self.sio_paths = tuple(sio_paths) if sio is not None else ()
        self.flask_app = flask_app
        self.admin = admin
        self.admin_prefix = admin_prefix.rstrip("/") + "/"
        #: requests inside the app right now (not Socket.IO, whose long-polls wait idle): a load measure
        self.in_app = 0

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if self.admin is not None and path.startswith(self.admin_prefix):
            return self.admin(environ, start_response)
        if self.is_sio_path(path):
            return self._socketio(environ, start_response)
        self.in_app += 1
        try:
            return self.app(environ, start_response)
        finally:
            self.in_app -= 1

    def is_sio_path(self, path: str) -> bool:
        return any(path.startswith(prefix) or path == prefix[:-1] for prefix in self.sio_paths)

    def refuse_upgrade(self, environ: dict) -> str | None:
        """Why a WebSocket upgrade to a Socket.IO path must be refused before it is made, or None.

        gevent-websocket answers 101 before the app runs, so python-engineio's
        origin check would come too late to say 400; the same check (its own
        rules, the app's ``cors_allowed_origins``) is made here first.
        """
        if self.sio is None or not self.is_sio_path(environ.get("PATH_INFO", "")):
            return None
        eio = self.sio.eio
        origin = environ.get("HTTP_ORIGIN")
        allowed_of = getattr(eio, "_cors_allowed_origins", None)
        if not origin or eio.cors_allowed_origins == [] or allowed_of is None:
            return None
        allowed = allowed_of(environ)
        if allowed is not None and origin not in allowed:
            return f"{origin} is not an accepted origin"
        return None

    def _socketio(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        transport = (query.get("transport") or [""])[0]
        if transport == "polling":
            environ["monoport.transport"] = "polling"
            conn = environ.get("monoport.connection")
            if conn is not None and conn.kind in ("http", "https"):
                conn.kind = "polling-tls" if conn.secure else "polling"
        elif transport == "websocket" and environ.get("monoport.transport") != "raw":
            environ["monoport.transport"] = "websocket"
        if self.flask_app is not None:
            environ["flask.app"] = self.flask_app
        method = environ.get("REQUEST_METHOD")
        if method == "POST" and transport == "polling":
            rejected = self._check_payload(environ, start_response)
            if rejected is not None:
                return rejected
        conn = environ.get("monoport.connection")
        if method != "GET" or transport != "polling" or conn is None:
            return self.sio.handle_request(environ, start_response)
        # a long-poll in progress: which session it waits on (the balancer may end it early)
        conn.polling_sid = (query.get("sid") or [None])[0]
        try:
            return self.sio.handle_request(environ, start_response)
        finally:
            conn.polling_sid = None

    def _check_payload(self, environ: dict, start_response: Callable) -> Iterable[bytes] | None:
        limit = self.sio.eio.max_http_buffer_size
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > limit:
            return self._bad(environ, start_response, "polling payload too large or without length", 413)
        body = environ["wsgi.input"].read(length) if length else b""
        error = payload_error(body)
        if error:
            return self._bad(environ, start_response, error, 400)
        environ["wsgi.input"] = io.BytesIO(body)
        return None

    def _bad(self, environ: dict, start_response: Callable, why: str, status: int) -> Iterable[bytes]:
        conn = environ.get("monoport.connection")
        who = environ.get("REMOTE_ADDR", "-")
        log.warning("bad Engine.IO polling request from %s: %s", who, why)
        if conn is not None:
            conn.outcome = f"protocol error (engine.io: {why})"
        body = f"Bad Engine.IO payload: {why}\n".encode()
        reason = {400: "Bad Request", 413: "Payload Too Large"}[status]
        start_response(f"{status} {reason}", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
