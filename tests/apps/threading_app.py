"""A Socket.IO server in the wrong async mode: monoport must refuse it."""

import socketio

sio = socketio.Server(async_mode="threading")
app = socketio.WSGIApp(sio)
