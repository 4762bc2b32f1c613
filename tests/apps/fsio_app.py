"""An app written for Flask-SocketIO, unchanged: monoport must find and serve it."""

from flask import Flask, request
from flask_socketio import SocketIO, emit, join_room

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")


@app.route("/")
def index():
    return "flask-socketio app"


@socketio.on("echo")
def echo(data):
    emit("echoed", {"data": data, "sid": request.sid})
    return "ack:" + str(data)


@socketio.on("join")
def join(room):
    join_room(room)
    return "joined"


@socketio.on("to_room")
def to_room(room, data):
    emit("room_message", data, to=room)
    return "sent"
