"""The server the Socket.IO protocol test suite expects (its README), on python-socketio (scripts/protocol-suites.sh)."""
import socketio
from flask import Flask

sio = socketio.Server(async_mode="gevent", ping_interval=0.3, ping_timeout=0.2, cors_allowed_origins="*",
                      always_connect=True)
app = Flask(__name__)


def emit_later(*args, **kwargs):
    # the suite's client registers its next listener a tick after each message: two
    # frames in one TCP segment would lose the second, so the auth event goes apart
    def later():
        sio.sleep(0.05)
        sio.emit(*args, **kwargs)
    sio.start_background_task(later)


@sio.on("connect")
def connect(sid, environ, auth):
    emit_later("auth", auth or {}, to=sid)


@sio.on("connect", namespace="/custom")
def connect_custom(sid, environ, auth):
    emit_later("auth", auth or {}, to=sid, namespace="/custom")


@sio.on("message")
def message(sid, *args):
    sio.emit("message-back", args if len(args) != 1 else args[0], to=sid)


@sio.on("message-with-ack")
def message_with_ack(sid, *args):
    return args
