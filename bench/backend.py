"""One gevent app process, as the classic deployments run it.

``python -m bench.backend [--nodelay] [--app MODULE:ATTR] PORT [CERT KEY]``:
gevent.pywsgi's WSGIServer with gevent-websocket's handler serving
:mod:`bench.app` (or the WSGI callable named by ``--app``), clear text behind
a proxy, or TLS itself when given a certificate ("bare": no detection at all).

TLS is one ``ssl.SSLContext`` built at start and handed to the server as
``ssl_context``, as its users write it: given ``certfile``/``keyfile``
instead, gevent builds a new context and loads the key for every connection.
``--nodelay`` turns Nagle off on accepted sockets, as gunicorn does on its
listeners and monoport does: pywsgi writes a response head and body in two
sends, so without it every keep-alive response waits for a delayed ACK. The
backends behind HAProxy and nginx always run with it (their users run
gunicorn); ``bare`` keeps gevent's default (Nagle on) to show what it costs.
"""

from gevent import monkey

monkey.patch_all()

import importlib  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402

from gevent import pywsgi  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402


class NoDelayServer(pywsgi.WSGIServer):
    def handle(self, sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle(sock, address)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The one server context every gevent target shares between its connections."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def load(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def main(argv: list[str]) -> None:
    nodelay = "--nodelay" in argv
    argv = [a for a in argv if a != "--nodelay"]
    app = "bench.app:wsgi"
    if "--app" in argv:
        i = argv.index("--app")
        app = argv[i + 1]
        del argv[i:i + 2]
    port = int(argv[0])
    tls = {"ssl_context": server_context(argv[1], argv[2])} if len(argv) > 2 else {}
    cls = NoDelayServer if nodelay else pywsgi.WSGIServer
    server = cls(("127.0.0.1", port), load(app), handler_class=WebSocketHandler, log=None, backlog=2048, **tls)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
