"""The one test app every target serves: Flask + python-socketio on gevent.

Kept tiny on purpose, so the numbers measure what sits in front of it (TLS,
detection, routing, proxying), not the app: ``/`` answers a short text,
``echo`` acknowledges its argument, ``bcast`` emits its argument to everyone.
"""

import socketio
from flask import Flask

#: Long ping timers: thousands of idle clients must not be dropped for a
#: late pong while the machine is saturated by the connect storm itself.
sio = socketio.Server(async_mode="gevent", cors_allowed_origins="*", ping_interval=60, ping_timeout=60)
app = Flask(__name__)


@app.route("/")
def index():
    return "hello from the bench app\n"


@sio.on("echo")
def echo(sid, data):
    return data


@sio.on("bcast")
def bcast(sid, data):
    sio.emit("news", data)
    return "ok"


#: what the separate app processes serve (the classic stack, nginx, bare)
wsgi = socketio.WSGIApp(sio, app)
