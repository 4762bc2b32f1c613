"""The demo app: a real-time chat, the default app of ``python -m monoport``.

``app`` is the Flask app (the page, its static files, the socket.io-client
bundle from ``node_modules``, ``/api/info``); ``sio`` is a plain
python-socketio ``Server(async_mode='gevent')`` that monoport finds as the
module's ``sio`` and serves under ``/socket.io/``. The rules (validation,
rate limits, history) live in :mod:`webapp.chat`, with no I/O.

Socket.IO protocol (default namespace ``/``; browsers and raw TCP clients
speak the same events). Every payload is a JSON object.

Client → server (each may ask for an ack; the ack is the reply shown):

``join {room, nick}``
    Enter ``room`` (created on first join; a client is in one room at a
    time, joining another leaves the first) as ``nick``.
    → ``{ok: true, room, nick, history: [message…], members: [nick…]}``;
    ``history`` is the room's last 100 messages, oldest first.
``message {text}``  (a bare string is accepted too)
    Say ``text`` (at most 4096 UTF-8 bytes) in the current room.
    → ``{ok: true, id}``
``typing {typing: true|false}``  (no payload means true)
    Tell the room you are (or stopped) typing. No ack; at most one per second
    is passed on.
``leave``
    Leave the current room. → ``{ok: true}``
``rooms``
    → ``{ok: true, rooms: [{name, members}…]}`` (most recently used first, 50 at most).

Any refused request is acked ``{ok: false, code, message}`` and also gets an
``error`` event (so clients that never ask for acks learn of it too).

Server → client:

``message {id, room, nick, text, ts}``
    To everyone in the room, the sender included. ``id`` grows by one per
    message in this process; ``ts`` is milliseconds since the Unix epoch (UTC).
``members {room, members: [nick…]}``
    To everyone in the room, whenever someone joins or leaves.
``typing {room, nick, typing}``
    To the others in the room.
``error {code, message}``
    ``code`` is one of ``bad_nick``, ``bad_room``, ``bad_message``,
    ``too_long``, ``not_joined``, ``rate_limited``, ``too_many_rooms``.
    The connection stays open. A flooding client gets at most one
    ``rate_limited`` error event per second (every refused request is still
    acked).

Limits: nicknames 1–24 letters, digits, spaces, ``.``, ``_``, ``-``; room
names 1–32 of ``a-z0-9_-`` (lowercased); bursts of 8 messages/joins, then 2
per second; a Socket.IO packet over 64 KB closes the connection. Rooms,
members and history are per process (not shared between instances).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable

import socketio
from flask import Flask, Response, abort, jsonify, request, send_from_directory

from .chat import Chat, Rejected, Room

log = logging.getLogger("webapp")

HERE = Path(__file__).resolve().parent
#: where `npm ci` (make node) puts the official browser client
CLIENT_DIST = HERE / "node_modules" / "socket.io-client" / "dist"
#: a Socket.IO packet bigger than this closes the connection: 16 messages of
#: 4 KB fit in one polling payload, a megabyte of junk does not
MAX_PACKET = 64 * 1024
#: rooms listed by the `rooms` event
ROOMS_LISTED = 50

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

app = Flask(__name__, static_folder="static", static_url_path="/static")
sio = socketio.Server(async_mode="gevent", max_http_buffer_size=MAX_PACKET)
state = Chat()


# -- HTTP ---------------------------------------------------------------------
@app.after_request
def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


@app.route("/")
def index() -> Response:
    response = send_from_directory(app.static_folder, "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@app.route("/favicon.ico")
def favicon() -> Response:
    """No icon, said without an error: browsers ask for it and log a 404 in the console."""
    return Response(status=204, headers={"Cache-Control": "max-age=86400"})


@app.route("/vendor/<path:name>")
def vendor(name: str) -> Response:
    """socket.io-client's dist files, straight from node_modules (never copied into the repo)."""
    if not name.startswith("socket.io."):
        abort(404)
    if not CLIENT_DIST.is_dir():
        return Response("socket.io-client is not installed: run `make node` (npm ci in webapp/)\n",
                        status=503, mimetype="text/plain")
    return send_from_directory(CLIENT_DIST, name, max_age=3600)


@app.route("/api/info")
def info() -> Response:
    """How this request reached the app: the scheme the app believes and who ended TLS."""
    env = request.environ
    tls = env.get("monoport.tls")
    return jsonify(
        scheme=env.get("wsgi.url_scheme"),
        tls=tls,
        tls_by="monoport" if tls else ("proxy" if env.get("wsgi.url_scheme") == "https" else None),
        remote_addr=env.get("REMOTE_ADDR"),
        instance=env.get("monoport.instance_id"),
        server=env.get("SERVER_SOFTWARE"),
    )


# -- Socket.IO ----------------------------------------------------------------
def refuse(sid: str, error: Rejected) -> dict[str, Any]:
    if state.should_report(sid, error):
        sio.emit("error", error.payload(), to=sid)
        if error.code == "rate_limited":  # at most one line per second per flooding client
            client = state.clients.get(sid)
            log.info("chat: client %s (%s) is rate limited", sid, client.nick if client else "-")
    return {"ok": False, **error.payload()}


def event(name: str) -> Callable:
    """Register ``fn(sid, data)`` for ``name``: any number of arguments from the
    client is accepted (the first is ``data``), and a :class:`Rejected` becomes
    a refusal, so no client input can raise out of a handler."""

    def register(fn: Callable[[str, Any], Any]) -> Callable:
        @functools.wraps(fn)
        def handler(sid: str, *args: Any) -> Any:
            try:
                return fn(sid, args[0] if args else None)
            except Rejected as exc:
                return refuse(sid, exc)

        sio.on(name, handler)
        return handler

    return register


def send_members(room: Room) -> None:
    sio.emit("members", {"room": room.name, "members": room.member_list()}, room=room.name)


@sio.event
def connect(sid: str, environ: dict, auth: Any = None) -> None:
    state.connect(sid)


@sio.event
def disconnect(sid: str, *reason: Any) -> None:
    left = state.disconnect(sid)
    if left is not None:
        send_members(left)


@event("join")
def on_join(sid: str, data: Any) -> dict[str, Any]:
    data = data if isinstance(data, dict) else {}
    room, left = state.join(sid, data.get("room"), data.get("nick"))
    if left is not None and left is not room:
        sio.leave_room(sid, left.name)
        send_members(left)
    sio.enter_room(sid, room.name)
    send_members(room)
    client = state.client(sid)
    return {"ok": True, "room": room.name, "nick": client.nick, "history": list(room.history),
            "members": room.member_list()}


@event("message")
def on_message(sid: str, data: Any) -> dict[str, Any]:
    room, msg = state.message(sid, data)
    sio.emit("message", msg, room=room.name)
    return {"ok": True, "id": msg["id"]}


@event("typing")
def on_typing(sid: str, data: Any) -> None:
    notice = state.typing(sid, data)
    if notice is not None:
        room, payload = notice
        sio.emit("typing", payload, room=room.name, skip_sid=sid)


@event("leave")
def on_leave(sid: str, data: Any) -> dict[str, Any]:
    left = state.leave(sid)
    if left is not None:
        sio.leave_room(sid, left.name)
        send_members(left)
    return {"ok": True}


@event("rooms")
def on_rooms(sid: str, data: Any) -> dict[str, Any]:
    return {"ok": True, "rooms": state.room_list()[:ROOMS_LISTED]}
