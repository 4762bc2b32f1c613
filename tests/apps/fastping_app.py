"""echo_app with fast Engine.IO pings (every 1 s, 2 s to answer): liveness tests run in seconds."""

from tests.apps import echo_app

sio = echo_app.sio
sio.eio.ping_interval = 1
sio.eio.ping_timeout = 2
app = echo_app.app
