"""A Flask app with a plain python-socketio server, for end-to-end tests."""

import json

import socketio
from flask import Flask, jsonify, request

sio = socketio.Server(async_mode="gevent")
app = Flask(__name__)


@app.route("/")
def index():
    return "hello from flask"


@app.route("/environ")
def environ():
    env = request.environ
    keys = ("wsgi.url_scheme", "REMOTE_ADDR", "REMOTE_PORT", "SERVER_PORT", "monoport.instance_id",
            "monoport.transport", "monoport.tls", "monoport.forwarded_by", "monoport.cluster", "HTTP_X_FORWARDED_FOR",
            "HTTP_X_FORWARDED_PROTO")
    return jsonify({k: env.get(k) for k in keys})


@app.route("/headers", methods=["GET", "POST"])
def headers():
    """The request's headers as the WSGI server put them in the environ."""
    env = request.environ
    return jsonify({k: v for k, v in env.items() if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")})


@app.route("/echo", methods=["POST"])
def echo_body():
    return request.get_data()


@app.route("/big")
def big():
    n = int(request.args.get("n", "1000000"))
    return b"x" * n


@app.route("/stream")
def stream():
    """``parts`` pieces of ``n`` bytes from a generator: no Content-Length, so HTTP/1.1 gets chunks."""
    n, parts = int(request.args.get("n", "10")), int(request.args.get("parts", "3"))
    return app.response_class((b"y" * n for _ in range(parts)), mimetype="application/octet-stream")


@sio.event
def connect(sid, environ, auth=None):
    if isinstance(auth, dict) and auth.get("user"):
        environ["monoport.identity"] = auth["user"]  # rate limits count per user, not per address
    if environ.get("monoport.recovered"):
        return  # --recovery gave the socket its session back
    sio.save_session(sid, {"transport": environ.get("monoport.transport"),
                           "scheme": environ.get("wsgi.url_scheme"),
                           "instance": environ.get("monoport.instance_id"),
                           "remote": environ.get("REMOTE_ADDR")})


@sio.on("echo")
def echo(sid, data):
    return data


@sio.on("whoami")
def whoami(sid):
    return sio.get_session(sid)


@sio.on("shout")
def shout(sid, data):
    sio.emit("shouted", data, to=sid)
    return "ok"


@sio.on("note")
def note(sid, text):
    """Remember ``text`` in the session (recovery tests: the session comes back)."""
    sio.get_session(sid)["note"] = text
    return "noted"


@sio.on("kick")
def kick(sid):
    sio.disconnect(sid)


@sio.on("join")
def join(sid, room):
    sio.enter_room(sid, room)
    return "joined"


@sio.on("to_room")
def to_room(sid, room, data):
    sio.emit("room_message", data, room=room)
    return "sent"


@app.route("/slow")
def slow():
    import time

    time.sleep(float(request.args.get("s", "1")))
    return "slow done"


#: messages of each session in the order their handlers started (= arrival order:
#: gevent starts spawned handlers first-in first-out, and append does not yield)
COLLECTED: dict[str, list] = {}


@sio.on("collect")
def collect(sid, index, data):
    COLLECTED.setdefault(sid, []).append((index, data))


@sio.on("replay")
def replay(sid):
    """Send every collected message back; answer the indices in the order they arrived."""
    messages = COLLECTED.pop(sid, [])
    for index, message in messages:
        sio.emit("replayed", (index, message), to=sid)
    return [index for index, _ in messages]


#: room -> state of the numbered stream a start_stream call began there
STREAMS: dict[str, dict] = {}


@sio.on("start_stream")
def start_stream(sid, room, interval):
    """Emit "room_message" 0, 1, 2 ... to ``room`` every ``interval`` seconds until stop_stream.

    One greenlet emits them all, so they enter the message bus in order.
    """
    import time

    state = STREAMS[room] = {"sent": 0, "stop": False}

    def run():
        began = time.monotonic()
        while not state["stop"]:
            sio.emit("room_message", state["sent"], room=room)
            state["sent"] += 1
            sio.sleep(max(0.0, began + state["sent"] * interval - time.monotonic()))

    sio.start_background_task(run)
    return "started"


@sio.on("stop_stream")
def stop_stream(sid, room):
    """Stop the stream of ``room``; answer how many numbers it emitted."""
    state = STREAMS.pop(room)
    state["stop"] = True
    return state["sent"]


@app.route("/burn")
def burn():
    """Hold the event loop (a CPU-heavy handler): ``ms`` milliseconds of busy work."""
    import time

    until = time.perf_counter() + float(request.args.get("ms", "100")) / 1000
    while time.perf_counter() < until:
        pass
    return "burnt"


#: events counted per session, for the rate-limit tests
TICKS: dict[str, int] = {}


@sio.on("tick")
def tick(sid, n=None):
    TICKS[sid] = TICKS.get(sid, 0) + 1


@sio.on("ticks")
def ticks(sid):
    return TICKS.get(sid, 0)
