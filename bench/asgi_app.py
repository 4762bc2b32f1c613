"""The async twin of :mod:`bench.app`, served by uvicorn: Starlette + python-socketio's AsyncServer.

The same routes and payloads: ``/`` answers the same short text, ``echo``
acknowledges its argument, ``bcast`` emits its argument to everyone, with
the same long ping timers.
"""

import socketio
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", ping_interval=60, ping_timeout=60)


async def index(request):
    return PlainTextResponse("hello from the bench app\n", media_type="text/html")


@sio.on("echo")
async def echo(sid, data):
    return data


@sio.on("bcast")
async def bcast(sid, data):
    await sio.emit("news", data)
    return "ok"


web = Starlette(routes=[Route("/", index)])
app = socketio.ASGIApp(sio, other_asgi_app=web)
