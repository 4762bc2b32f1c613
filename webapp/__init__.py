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
    message in this process (in every instance sharing Redis, with Redis):
    clients order and de-duplicate by it. ``ts`` is milliseconds since the
    Unix epoch (UTC).
``members {room, members: [nick…]}``
    To everyone in the room, whenever someone joins or leaves (each
    nickname once, sorted case-insensitively).
``typing {room, nick, typing}``
    To the others in the room.
``error {code, message}``
    ``code`` is one of ``bad_nick``, ``bad_room``, ``bad_message``,
    ``too_long``, ``not_joined``, ``rate_limited``, ``too_many_rooms``,
    ``unavailable`` (Redis, when used, did not answer).
    The connection stays open. A flooding client gets at most one
    ``rate_limited`` error event per second (every refused request is still
    acked).

Limits: nicknames 1–24 letters, digits, spaces, ``.``, ``_``, ``-``; room
names 1–32 of ``a-z0-9_-`` (lowercased); bursts of 8 messages/joins, then 2
per second; a Socket.IO packet over 64 KB closes the connection. Two clients
(tabs) with one nickname in a room are listed as one member.

Without Redis, rooms, members and history are per process. With
``REDIS_URL`` set (monoport's ``--redis`` reads it too), history, message ids
and member lists live in Redis (:mod:`webapp.shared`) and every instance
shows the same chat; ``CHAT_MEMBER_TTL`` (seconds, default 30) is how long
the members of an instance that died without a goodbye stay listed. The
``rooms`` list stays per process. A Redis error refuses the request with
``unavailable``.

With monoport's ``--recovery``, a client whose transport was lost gets its
socket back and the messages it missed are replayed before ``connect``; the
page shows them in place (ids order them) and says the connection recovered.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Callable

import redis
import socketio
from flask import Flask, Response, abort, jsonify, request, send_from_directory

from .chat import Chat, Rejected, Room
from .shared import MEMBER_TTL, RedisShare, prefix_for

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
#: history, ids and members shared between instances, when there is a Redis
shared: RedisShare | None = (RedisShare(os.environ["REDIS_URL"], float(os.environ.get("CHAT_MEMBER_TTL") or MEMBER_TTL))
                             if os.environ.get("REDIS_URL") else None)


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
            except redis.RedisError as exc:
                log.warning("chat: Redis error on %s: %s", name, exc)
                return refuse(sid, Rejected("unavailable", "the chat's storage is unavailable; try again"))

        sio.on(name, handler)
        return handler

    return register


def members_of(room: Room) -> list[str]:
    return shared.members(room.name) if shared else room.member_list()


def send_members(room: Room | str) -> None:
    """Tell ``room`` who is in it (every instance's members, when shared through Redis)."""
    if shared:
        name = room if isinstance(room, str) else room.name
        members = shared.members(name)
    else:
        assert isinstance(room, Room)  # names alone come only from the Redis refresher
        name, members = room.name, room.member_list()
    sio.emit("members", {"room": name, "members": members}, room=name)


def left_room(sid: str, room: Room, nick: str | None) -> None:
    """``sid`` (as ``nick``) left ``room``: take it off the shared list, tell the room."""
    if shared and nick is not None:
        shared.leave(room.name, sid, nick)
    send_members(room)


def keep_members_fresh() -> None:
    """Rewrite this instance's member entries in Redis every third of their lifetime, and tell
    the rooms that lost the stale entries of an instance that died."""
    assert shared is not None
    while True:
        sio.sleep(shared.ttl / 3)
        entries = [(c.room, c.sid, c.nick) for c in list(state.clients.values()) if c.room and c.nick]
        try:
            for name in shared.refresh(entries):
                send_members(name)
        except redis.RedisError as exc:
            log.warning("chat: cannot refresh the members in Redis: %s", exc)


_refresher: list = []


@sio.event
def connect(sid: str, environ: dict, auth: Any = None) -> None:
    if shared and not _refresher:
        shared.prefix = prefix_for(environ.get("monoport.cluster"))
        _refresher.append(sio.start_background_task(keep_members_fresh))
    state.connect(sid)
    if environ.get("monoport.recovered"):
        rejoin(sid)


def rejoin(sid: str) -> None:
    """A recovered socket (monoport's --recovery) is back in its Socket.IO rooms, with the session
    its join saved: put it back in the chat too, as the member it was, so it can talk at once
    (a client that sees ``socket.recovered`` does not join again)."""
    saved = sio.get_session(sid)
    if not saved.get("room"):
        return  # it was in no room
    try:
        room, _ = state.join(sid, saved.get("room"), saved.get("nick"))
        if shared:
            shared.enter(room.name, sid, saved["nick"])
        send_members(room)
    except (Rejected, redis.RedisError) as exc:  # it joins again on its own
        log.info("chat: recovered client %s not put back in its room: %s", sid, exc)


@sio.event
def disconnect(sid: str, *reason: Any) -> None:
    client = state.clients.get(sid)
    nick = client.nick if client else None
    left = state.disconnect(sid)
    if left is not None:
        try:
            left_room(sid, left, nick)
        except redis.RedisError as exc:  # its entry goes stale and vanishes on its own
            log.warning("chat: Redis error on disconnect: %s", exc)


@event("join")
def on_join(sid: str, data: Any) -> dict[str, Any]:
    data = data if isinstance(data, dict) else {}
    client = state.client(sid)
    before = client.nick
    room, left = state.join(sid, data.get("room"), data.get("nick"))
    if left is not None:
        if left is not room:
            sio.leave_room(sid, left.name)
        if shared and before is not None:
            shared.leave(left.name, sid, before)
        if left is not room:
            send_members(left)
    if shared:
        shared.enter(room.name, sid, client.nick)
    sio.enter_room(sid, room.name)
    sio.save_session(sid, {"room": room.name, "nick": client.nick})  # kept by --recovery (see rejoin)
    send_members(room)
    history = shared.history(room.name) if shared else list(room.history)
    return {"ok": True, "room": room.name, "nick": client.nick, "history": history,
            "members": members_of(room)}


@event("message")
def on_message(sid: str, data: Any) -> dict[str, Any]:
    room, msg = state.message(sid, data)
    if shared:
        msg["id"] = shared.next_id()  # one order for every instance
        shared.record(room.name, msg)
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
    nick = state.client(sid).nick
    left = state.leave(sid)
    if left is not None:
        sio.save_session(sid, {})
        sio.leave_room(sid, left.name)
        left_room(sid, left, nick)
    return {"ok": True}


@event("rooms")
def on_rooms(sid: str, data: Any) -> dict[str, Any]:
    return {"ok": True, "rooms": state.room_list()[:ROOMS_LISTED]}
