"""The Engine.IO echo server the Engine.IO protocol test suite expects (its README), for scripts/protocol-suites.sh."""
import socketio
from flask import Flask

sio = socketio.Server(async_mode="gevent", ping_interval=0.3, ping_timeout=0.2, cors_allowed_origins="*")
app = Flask(__name__)


def echo(eio_sid, data):
    sio.eio.send(eio_sid, data)


sio.eio.on("message", echo)
