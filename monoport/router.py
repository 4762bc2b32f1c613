"""The root WSGI app: admin pages, Socket.IO paths, then the user's app.

On the Socket.IO paths the router enforces the HTTP side of the Engine.IO v4
protocol before python-engineio sees a request (see the README, "Protocol
conformance"): a missing or unknown ``transport`` and a method other than
GET/POST (OPTIONS stays, for CORS preflights) get 400 with the reference
server's JSON body and create no session; a malformed POST payload gets 400
and closes its session; a POST taken is answered ``ok``.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any, Callable, Iterable

from .acme_challenge import HTTP_PREFIX
from .wire.eiopackets import payload_error, request_error
from .termination import Termination
from .wire.httphead import parse_query

log = logging.getLogger("monoport")

Wsgi = Callable[[dict, Callable], Iterable[bytes]]


class Router:
    def __init__(self, app: Wsgi, sio: Any, sio_paths: Iterable[str], flask_app: Any = None,
                 admin: Wsgi | None = None, admin_prefix: str = "/monoport", challenges: Any = None) -> None:
        self.app = app
        self.sio = sio
        self.sio_paths = tuple(sio_paths) if sio is not None else ()
        # is_sio_path runs twice a request: one C-level startswith over all prefixes, one set lookup
        self._sio_exact = frozenset(prefix[:-1] for prefix in self.sio_paths)
        self.flask_app = flask_app
        self.admin = admin
        self.admin_prefix = admin_prefix.rstrip("/") + "/"
        #: --acme: pending HTTP-01 tokens (monoport.acme_challenge.Challenges), answered before the app
        self.challenges = challenges
        #: requests inside the app right now (not Socket.IO, whose long-polls wait idle): a load measure
        self.in_app = 0

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if self.admin is not None and path.startswith(self.admin_prefix):
            return self.admin(environ, start_response)
        if self.is_sio_path(path):
            return self._socketio(environ, start_response)
        if self.challenges is not None and path.startswith(HTTP_PREFIX):
            answer = self.challenges.http_answer(path)
            if answer is not None:
                conn = environ.get("monoport.connection")
                if conn is not None:
                    conn.kind = "acme-http-01"
                start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                          ("Content-Length", str(len(answer)))])
                return [answer]
        self.in_app += 1
        try:
            return self.app(environ, start_response)
        finally:
            self.in_app -= 1

    def is_sio_path(self, path: str) -> bool:
        return path.startswith(self.sio_paths) or path in self._sio_exact

    def refuse_upgrade(self, environ: dict) -> str | None:
        """Why a WebSocket upgrade to a Socket.IO path must be refused before it is made, or None.

        gevent-websocket answers 101 before the app runs, so python-engineio's
        origin check would come too late to say 400; the same check (its own
        rules, the app's ``cors_allowed_origins``) is made here first.
        """
        if self.sio is None or not self.is_sio_path(environ.get("PATH_INFO", "")):
            return None
        eio = self.sio.eio
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            error = request_error(environ.get("REQUEST_METHOD", ""), parse_query(environ.get("QUERY_STRING", "")),
                                  eio.transports, upgrade=True)
            if error is not None:  # python-engineio would make a session behind a 101 and drop it
                return f"Engine.IO: {error[1]}"
        origin = environ.get("HTTP_ORIGIN")
        allowed_of = getattr(eio, "_cors_allowed_origins", None)
        if not origin or eio.cors_allowed_origins == [] or allowed_of is None:
            return None
        allowed = allowed_of(environ)
        if allowed is not None and origin not in allowed:
            return f"{origin} is not an accepted origin"
        return None

    def _socketio(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        query = parse_query(environ.get("QUERY_STRING", ""))
        transport = (query.get("transport") or [""])[0]
        sids = query.get("sid")
        sid = sids[0] if sids else None
        if transport == "polling":
            environ["monoport.transport"] = "polling"
            conn = environ.get("monoport.connection")
            if conn is not None and conn.kind in ("http", "https"):
                conn.kind = "polling-tls" if conn.secure else "polling"
        elif transport == "websocket" and environ.get("monoport.transport") != "raw":
            environ["monoport.transport"] = "websocket"
        if self.flask_app is not None:
            environ["flask.app"] = self.flask_app
        method = environ.get("REQUEST_METHOD", "")
        error = request_error(method, query, self.sio.eio.transports)
        del query  # this frame lasts as long as a WebSocket does: keep no parse it no longer needs
        if error is not None:
            return self._refuse(environ, start_response, *error)
        if method == "POST" and transport == "polling":
            rejected = self._check_payload(environ, start_response, sid)
            if rejected is not None:
                return rejected
            return self._ok_lowercase(environ, start_response)
        conn = environ.get("monoport.connection")
        if method != "GET" or transport != "polling" or conn is None:
            return self.sio.handle_request(environ, start_response)
        # a long-poll in progress: which session it waits on (the balancer may end it early)
        conn.polling_sid = sid
        try:
            return self.sio.handle_request(environ, start_response)
        finally:
            conn.polling_sid = None

    def _ok_lowercase(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """python-engineio answers a POST it took with ``OK``; the protocol says ``ok``."""
        body = self.sio.handle_request(environ, start_response)
        return [b"ok"] if body == [b"OK"] else body

    def _refuse(self, environ: dict, start_response: Callable, code: int, message: str) -> Iterable[bytes]:
        """400 with the reference server's JSON body; no session is made."""
        conn = environ.get("monoport.connection")
        why = f"{message} ({environ.get('REQUEST_METHOD')} ?{environ.get('QUERY_STRING', '')[:100]})"
        log.warning("bad Engine.IO request from %s: %s", environ.get("REMOTE_ADDR", "-"), why)
        if conn is not None:
            conn.end(Termination.PROTOCOL_ERROR, f"protocol error (engine.io: {message})")
        body = json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()
        start_response("400 Bad Request", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _check_payload(self, environ: dict, start_response: Callable, sid: str | None) -> Iterable[bytes] | None:
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
            if sid is not None:  # the protocol: a malformed payload ends the session
                close = getattr(self.sio.eio, "close_session", None)
                if close is not None:
                    close(sid)
            return self._bad(environ, start_response, error, 400)
        environ["wsgi.input"] = io.BytesIO(body)
        return None

    def _bad(self, environ: dict, start_response: Callable, why: str, status: int) -> Iterable[bytes]:
        conn = environ.get("monoport.connection")
        who = environ.get("REMOTE_ADDR", "-")
        log.warning("bad Engine.IO polling request from %s: %s", who, why)
        if conn is not None:
            conn.end(Termination.PROTOCOL_ERROR, f"protocol error (engine.io: {why})")
        body = f"Bad Engine.IO payload: {why}\n".encode()
        reason = {400: "Bad Request", 413: "Payload Too Large"}[status]
        start_response(f"{status} {reason}", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
