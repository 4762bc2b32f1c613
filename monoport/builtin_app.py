"""The page served when no --app is given and the demo app is not importable."""

from __future__ import annotations

import socketio

from . import __version__

sio = socketio.Server(async_mode="gevent")


@sio.on("echo")
def echo(sid: str, data: object) -> object:
    return data


PAGE = f"""<!doctype html><meta charset=utf-8><title>monoport</title>
<h1>monoport {__version__}</h1>
<p>monoport is running. Serve your own app with <code>--app module:attr</code>.</p>
""".encode()


def app(environ: dict, start_response) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(PAGE)))])
    return [PAGE]
