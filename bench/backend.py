"""One gevent app process, as the classic deployments run it.

``python -m bench.backend [--nodelay] PORT [CERT KEY]``: gevent.pywsgi's
WSGIServer with gevent-websocket's handler serving :mod:`bench.app`, clear
text behind a proxy, or TLS itself when given a certificate ("bare": no
detection at all). ``--nodelay`` turns Nagle off on accepted sockets as
monoport does ("bare-nodelay"): pywsgi writes a response head and body in
two sends, so without it every keep-alive response waits for a delayed ACK,
and only this variant is the floor of monoport's own overhead.
"""

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402
import sys  # noqa: E402

from gevent import pywsgi  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

from bench.app import wsgi  # noqa: E402


class NoDelayServer(pywsgi.WSGIServer):
    def handle(self, sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle(sock, address)


def main(argv: list[str]) -> None:
    nodelay = "--nodelay" in argv
    argv = [a for a in argv if a != "--nodelay"]
    port = int(argv[0])
    tls = {"certfile": argv[1], "keyfile": argv[2]} if len(argv) > 2 else {}
    cls = NoDelayServer if nodelay else pywsgi.WSGIServer
    server = cls(("127.0.0.1", port), wsgi, handler_class=WebSocketHandler, log=None, backlog=2048, **tls)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
