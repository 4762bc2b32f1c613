"""Thin listeners: gevent's accept loop and back-off, one Connection per socket.

Accept-error policy (like trio's): running out of a resource (EMFILE,
ENFILE, ENOBUFS, ENOMEM) is not a bug and not fatal: the listener stops
accepting, backs off from ``min_delay`` to ``max_delay`` and tries again,
and says so in one warning line per second at most, without a traceback
(gevent's own back-off prints a full traceback for every failed accept,
hundreds a second). Pending clients wait in the kernel's backlog and are
served as soon as descriptors free up. Any other accept error is gevent's
business. Everything after accept is :mod:`monoport.path`'s, which catches
every client-caused error itself.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from typing import Any, Callable

from gevent.pool import Pool
from gevent.server import StreamServer

from .connection import Connection

log = logging.getLogger("monoport")

#: accept() errors that mean "out of a resource for now": back off and retry
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: at most one "accept failed" log line per this many seconds
ACCEPT_LOG_INTERVAL = 1.0

#: Linux >= 5.14: when a listener of a SO_REUSEPORT group closes, move its queued
#: connections to another listener of the group instead of resetting them.
MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"

#: Listen backlog: large enough for connection bursts (HAProxy's default maxconn order).
BACKLOG = 2048


def migrate_on_close() -> bool | None:
    """Whether the kernel migrates a closing reuse-port listener's queue (None: cannot tell)."""
    try:
        with open(MIGRATE_SYSCTL) as f:
            return f.read().strip() != "0"
    except OSError:
        return None


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


def inherited_socket(fd: int) -> socket.socket:
    """A listening TCP socket passed down by the --workers master (raises OSError if it is not one)."""
    sock = socket.socket(fileno=fd)
    try:
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise OSError(f"file descriptor {fd} is not a listening TCP socket")
    except OSError:
        sock.detach()
        raise
    sock.setblocking(False)
    return sock


class Listener(StreamServer):
    """The public port (or a peer/Flash port): every accepted socket goes to ``serve``."""

    #: back-off bounds for accept() errors such as EMFILE, in seconds
    min_delay = 0.01
    max_delay = 1.0

    def __init__(self, sock: socket.socket, serve: Callable[[Connection], None], pool: Pool,
                 role: str = "public") -> None:
        super().__init__(sock, spawn=pool)
        #: the life of one connection (:func:`monoport.path.serve_connection`, bound to its services)
        self.serve = serve
        #: "public", "peer" or "flash"
        self.role = role
        self.peer_listener = role == "peer"
        #: accept() failures for lack of resources since accepting last worked
        self.accept_failures = 0
        self._accept_delay = self.min_delay
        self._accept_logged = float("-inf")

    def do_read(self) -> Any:
        try:
            result = super().do_read()
        except OSError as exc:
            if exc.errno not in RESOURCE_ERRNOS:
                raise
            self._back_off(exc)
            return None
        if result and self.accept_failures:
            log.warning("accept on %s resumed after %d failure(s)", self._where(), self.accept_failures)
            self.accept_failures = 0
        if result:
            self._accept_delay = self.min_delay
        return result

    def _back_off(self, exc: OSError) -> None:
        """Stop accepting for a while (gevent's timer re-arms the watcher); log once a second."""
        self.accept_failures += 1
        now = time.monotonic()
        if now - self._accept_logged >= ACCEPT_LOG_INTERVAL:
            self._accept_logged = now
            log.warning("accept on %s failed: %s (%s); %d failure(s), retrying every %.2fs at most",
                        self._where(), exc.strerror, errno.errorcode.get(exc.errno or 0, exc.errno),
                        self.accept_failures, self.max_delay)
        self.stop_accepting()
        self._timer = self.loop.timer(self._accept_delay)
        # gevent's private re-arm (BaseServer), which its stubs do not declare
        self._timer.start(self._start_accepting_if_started)  # type: ignore[attr-defined, call-arg]
        self._accept_delay = min(self.max_delay, self._accept_delay * 2)

    def drain_and_close(self) -> int:
        """Stop accepting, take every connection the kernel already queued, then close.

        Closing a listening socket resets the connections waiting in its accept
        queue. Taking them first leaves only the microseconds between the last
        accept() and close() (and with ``--reuse-port`` plus the
        ``net.ipv4.tcp_migrate_req`` sysctl, Linux moves even those to another
        process on the port). Returns how many were taken.
        """
        if self.closed:
            return 0
        self.stop_accepting()
        taken = 0
        while True:
            try:
                args = StreamServer.do_read(self)
            except OSError:
                break
            if not args:
                break
            taken += 1
            self._spawn(self._handle, *args)  # type: ignore[attr-defined]  # BaseServer's own, undeclared in its stubs
        self.close()
        return taken

    def _where(self) -> str:
        address = self.address
        return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)

    def do_handle(self, sock: Any, address: Any) -> None:
        """gevent's, without its helper's ``handle(*args)``: one C-level interpreter frame less.

        A connection's greenlet keeps a copy of its C stack while it waits
        (greenlet saves it on every switch), for as long as a WebSocket lives.
        """
        # bound now, as gevent's own do_handle binds it: close() drops ``_handle``, and a greenlet
        # spawned for a connection accepted just before a stop still runs after it
        handle = self._handle  # type: ignore[attr-defined]  # gevent's private, set by BaseServer
        spawn = self._spawn  # type: ignore[attr-defined]  # gevent's private, set by BaseServer
        try:
            if spawn is None:
                self._handle_and_close(handle, sock, address)
            else:
                spawn(self._handle_and_close, handle, sock, address)
        except BaseException:
            self.do_close(sock, address)
            raise

    def _handle_and_close(self, handle: Any, sock: Any, address: Any) -> None:
        try:
            handle(sock, address)
        finally:
            self.do_close(sock, address)

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
        self.serve(Connection(sock, address, local, self))
