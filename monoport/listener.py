"""Thin listeners: gevent's accept loop and back-off, one Connection per socket.

Accept-error policy is gevent's (StreamServer backs off from ``min_delay``
to ``max_delay`` on EMFILE and friends and logs); everything after accept
is the dispatcher's, which catches every client-caused error itself.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from gevent.server import StreamServer

from .connection import Connection

log = logging.getLogger("monoport")

#: Listen backlog: large enough for connection bursts (HAProxy's default maxconn order).
BACKLOG = 2048


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """Create a listening TCP socket (IPv4 or IPv6 by the host's form)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Listener(StreamServer):
    """The public port (or a peer/Flash port): every accepted socket goes to ``serve``."""

    #: back-off bounds for accept() errors such as EMFILE, in seconds
    min_delay = 0.01
    max_delay = 1.0

    def __init__(self, sock: socket.socket, runtime: Any, role: str = "public") -> None:
        super().__init__(sock, spawn=runtime.pool)
        self.runtime = runtime
        #: "public", "peer" or "flash"
        self.role = role
        self.peer_listener = role == "peer"

    def handle(self, sock: Any, address: Any) -> None:  # noqa: D401 (gevent's hook)
        try:
            local = sock.getsockname()
            if sock.family != socket.AF_UNIX:
                # pywsgi sends a response head and its body in two writes:
                # with Nagle on, the body waits for the client's delayed ACK
                # (40 ms on Linux) on every keep-alive request.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            return
        conn = Connection(sock, address, local, self)
        self.runtime.serve_connection(conn)
