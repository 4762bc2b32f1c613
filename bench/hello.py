"""Bare callables for the keep-alive split: no framework, the bench app's payload.

``wsgi`` is served by monoport (and pywsgi), ``asgi`` by uvicorn, beside the
Flask and Starlette apps of :mod:`bench.app` and :mod:`bench.asgi_app`, so
that the CPU per keep-alive request splits into TLS (TLS minus clear text),
the server (a bare callable in clear text: parsing, the server's own
bookkeeping, the WSGI/ASGI call) and the framework (the app minus the bare
callable).
"""

BODY = b"hello from the bench app\n"
HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(BODY)))]


def wsgi(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(k.lower().encode(), v.encode()) for k, v in HEADERS]})
    await send({"type": "http.response.body", "body": BODY})
