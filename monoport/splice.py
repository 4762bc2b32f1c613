"""Copy bytes both ways between a client and a backend: the forwarder.

Theory of operation
-------------------
:func:`dial` opens the backend connection (a gevent socket with
``TCP_NODELAY`` and ``SO_KEEPALIVE``; refusal or timeout is
:class:`~monoport.errors.PeerUnavailable`, so callers can try elsewhere
while no client byte has been sent). :func:`splice` then owns both sockets
until the conversation is over:

1. ``client_prefix`` (bytes the sniffer or a TLS read already took from the
   client; empty on clear sockets, where the sniffer only peeked) is sent to
   the backend before anything else, so no byte is lost or reordered.
2. Two greenlets pump one direction each. A direction ends at EOF from its
   source; the EOF is passed on as ``shutdown(SHUT_WR)`` on the other socket
   (a half-close: the other direction keeps flowing, as TCP allows).
   ``splice`` returns when both directions have ended (or, with
   ``backend_eof_ends``, when the backend's has: HTTP forwarding).
3. A reset, broken pipe or TLS error in either direction, or no byte in
   either direction for ``idle_timeout`` seconds, ends both at once (the
   other greenlet is killed): there is nobody left to talk to.

Zero copy: when both ends are plain sockets and ``os.splice`` exists
(Linux), bytes move socket -> pipe -> socket inside the kernel. Sockets are
non-blocking under gevent, so ``EAGAIN`` means "wait for readiness on the
hub", never "block the process". A TLS socket (its bytes must be decrypted
in user space), a socket-like object without a file descriptor, or a kernel
that refuses the first splice falls back to ``recv``/``sendall``.

Error policy: the peers' faults (reset, broken pipe, timeout, TLS alerts)
are the ``closed_by`` value of the result, never an exception; closing the
two sockets is the caller's job.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Final

import gevent
from gevent import socket as gsocket

from .errors import PeerUnavailable
from .termination import Termination

#: Bytes one recv() or splice() moves at most.
CHUNK: Final = 65536
#: Pipe buffer asked for on the zero-copy path (the kernel may give less):
#: bigger pipes mean fewer syscalls per megabyte on fast links.
PIPE_SIZE: Final = 1 << 20
#: ``os.splice`` exists (Linux 2.6.17+, Python 3.10+); tests may turn it off.
HAVE_SPLICE: bool = hasattr(os, "splice")
_SPLICE_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
#: errno values of a first splice() that mean "not for these descriptors".
_UNSPLICEABLE: Final = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})

CLIENT: Final = "client"
BACKEND: Final = "backend"
TIMEOUT: Final = "timeout"
ERROR: Final = "error"


@dataclass(frozen=True)
class SpliceResult:
    """What one spliced conversation moved and who ended it.

    ``bytes_up`` counts client -> backend bytes (``client_prefix`` included),
    ``bytes_down`` backend -> client. ``closed_by`` is ``"client"`` or
    ``"backend"`` (whose EOF came first), ``"timeout"`` (idle) or
    ``"error"`` (a reset, broken pipe or TLS error on either side);
    ``broken_by`` then says whose socket failed, ``"client"`` or ``"backend"``.
    """

    bytes_up: int
    bytes_down: int
    closed_by: str
    broken_by: str | None = None


def dial(address: tuple[str, int], timeout: float) -> Any:
    """Connect to a TCP backend.

    Args:
        address: ``(host, port)``.
        timeout: seconds for the connection to be established.
    Returns:
        a connected gevent socket with TCP_NODELAY and SO_KEEPALIVE, in
        blocking mode (no timeout).
    Raises:
        PeerUnavailable: refused, unreachable, unresolvable or timed out.
    """
    host, port = address
    try:
        sock = gsocket.create_connection((host, port), timeout=timeout)
    except (socket.timeout, TimeoutError):
        raise PeerUnavailable(f"{host}:{port}: connect timed out after {timeout:g}s") from None
    except OSError as exc:
        raise PeerUnavailable(f"{host}:{port}: {exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.settimeout(None)
    return sock


class _Idle(Exception):
    """Neither direction moved a byte for ``idle_timeout`` seconds."""


class _Broken(Exception):
    """A socket of one side failed (reset, broken pipe, TLS error)."""

    def __init__(self, side: str) -> None:
        super().__init__(side)
        self.side = side


class _Session:
    """State both directions share: counters, last activity, the ending."""

    def __init__(self, idle_timeout: float | None) -> None:
        self.idle_timeout = idle_timeout
        self.last = time.monotonic()
        self.closed_by: str | None = None
        self.broken_by: str | None = None
        self.moved = {CLIENT: 0, BACKEND: 0}
        self.pumps: list[gevent.Greenlet] = []

    def progress(self, source: str, n: int) -> None:
        self.moved[source] += n
        self.last = time.monotonic()

    def remaining(self) -> float | None:
        """Seconds until the idle deadline (None: no deadline); raises _Idle past it."""
        if self.idle_timeout is None:
            return None
        left = self.last + self.idle_timeout - time.monotonic()
        if left <= 0:
            raise _Idle()
        return left

    def eof(self, source: str) -> None:
        if self.closed_by is None:
            self.closed_by = source

    def abort(self, reason: str, side: str | None = None) -> None:
        """End both directions now (error or idle); ``side``: whose socket failed."""
        if self.closed_by is None or reason == TIMEOUT:
            self.closed_by = reason  # a reset after a clean EOF is that EOF's echo
            self.broken_by = side
        current = gevent.getcurrent()
        for pump in self.pumps:
            if pump is not current:
                pump.kill(block=False)


def splice(client: Any, backend: Any, *, client_prefix: bytes = b"",
           idle_timeout: float | None = None, backend_eof_ends: bool = False) -> SpliceResult:
    """Copy bytes both ways until both directions are done.

    Args:
        client: the client's socket (plain or TLS, gevent-compatible).
        backend: the backend socket, usually from :func:`dial`.
        client_prefix: bytes already read from the client, sent first.
        idle_timeout: end everything after this many seconds without a byte
            in either direction (None: never).
        backend_eof_ends: the backend's EOF ends the conversation once passed
            on, without waiting for the client's (HTTP has no half-close: an
            idle keep-alive client would otherwise hold the splice open).
    Returns:
        a :class:`SpliceResult`; peers' resets and broken pipes end up in
        ``closed_by``, they are never raised.
    """
    session = _Session(idle_timeout)
    if client_prefix:
        try:
            backend.sendall(client_prefix)
        except OSError:
            return SpliceResult(0, 0, ERROR)
        session.progress(CLIENT, len(client_prefix))
    zero_copy = HAVE_SPLICE and _plain(client) and _plain(backend)
    if not zero_copy:
        for sock in (client, backend):
            sock.settimeout(idle_timeout)
    session.pumps = [
        gevent.spawn(_pump, client, backend, CLIENT, session, zero_copy),
        gevent.spawn(_pump, backend, client, BACKEND, session, zero_copy),
    ]
    try:
        if backend_eof_ends:
            session.pumps[1].join()
        else:
            gevent.joinall(session.pumps)
    finally:
        for pump in session.pumps:
            pump.kill()
    return SpliceResult(session.moved[CLIENT], session.moved[BACKEND], session.closed_by or ERROR,
                        session.broken_by)


def _plain(sock: Any) -> bool:
    """A kernel socket whose bytes are the payload (not TLS records)."""
    if hasattr(sock, "_sslobj") or not hasattr(sock, "fileno"):
        return False
    try:
        return sock.fileno() >= 0
    except OSError:
        return False


def _pump(src: Any, dst: Any, source: str, session: _Session, zero_copy: bool) -> None:
    """Move ``src``'s bytes to ``dst`` until EOF, then half-close ``dst``."""
    try:
        if zero_copy:
            zero_copy = _copy_splice(src, dst, source, session)
            if not zero_copy:  # the kernel refused: the portable path, with its timeouts
                src.settimeout(session.idle_timeout)
                dst.settimeout(session.idle_timeout)
        if not zero_copy:
            _copy_recv(src, dst, source, session)
    except _Idle:
        session.abort(TIMEOUT)
        return
    except _Broken as broken:  # reset, broken pipe, TLS alert: that side broke it
        session.abort(ERROR, broken.side)
        return
    except OSError:  # no pipe (out of descriptors), a socket already closed
        session.abort(ERROR)
        return
    session.eof(source)
    try:
        _shut_write(dst)
    except OSError:
        pass  # the other side is gone already; its own pump reports that


def _other(side: str) -> str:
    return BACKEND if side == CLIENT else CLIENT


def _copy_recv(src: Any, dst: Any, source: str, session: _Session) -> None:
    """The portable path: recv into user space, sendall out (TLS, other OSes)."""
    while True:
        try:
            data = src.recv(CHUNK)
        except (socket.timeout, TimeoutError):
            session.remaining()  # raises _Idle unless the other direction moved
            continue
        except OSError:
            raise _Broken(source) from None
        if not data:
            return
        try:
            dst.sendall(data)
        except (socket.timeout, TimeoutError):
            raise _Idle() from None
        except OSError:
            raise _Broken(_other(source)) from None
        session.progress(source, len(data))


def _copy_splice(src: Any, dst: Any, source: str, session: _Session) -> bool:
    """The zero-copy path: src -> pipe -> dst in the kernel.

    Returns:
        True when ``src`` reached EOF; False when the kernel refused the very
        first splice (nothing was moved) and the caller should fall back.
    """
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except (OSError, AttributeError):
            pass  # a smaller pipe only costs more syscalls
        src_fd, dst_fd = src.fileno(), dst.fileno()
        first = True
        while True:
            try:
                n = _retry(lambda: os.splice(src_fd, write_fd, PIPE_SIZE, flags=_SPLICE_FLAGS),
                           gsocket.wait_read, src_fd, session)
            except OSError as exc:
                if first and exc.errno in _UNSPLICEABLE:
                    return False
                raise _Broken(source) from None
            first = False
            if n == 0:
                return True
            pending = n
            while pending:
                try:
                    pending -= _retry(lambda: os.splice(read_fd, dst_fd, pending, flags=_SPLICE_FLAGS),
                                      gsocket.wait_write, dst_fd, session)
                except OSError:
                    raise _Broken(_other(source)) from None
            session.progress(source, n)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def _retry(call: Callable[[], int], wait: Callable[..., None], fd: int, session: _Session) -> int:
    """Run a non-blocking ``call``, waiting on the hub for ``fd`` while it says EAGAIN."""
    while True:
        try:
            return call()
        except BlockingIOError:
            pass
        try:
            wait(fd, timeout=session.remaining())
        except (socket.timeout, TimeoutError):
            session.remaining()  # raises _Idle unless the other direction moved


def _shut_write(sock: Any) -> None:
    """Half-close: FIN to the peer, reading goes on.

    ``SSLSocket.shutdown`` drops the TLS state (later reads would return raw
    records), so the socket-level method is called directly: the TLS peer
    sees EOF without close_notify, like a plain TCP half-close.
    """
    for base in (gsocket.socket, socket.socket):
        if isinstance(sock, base):
            base.shutdown(sock, socket.SHUT_WR)
            return
    sock.shutdown(socket.SHUT_WR)


def termination_of(result: SpliceResult) -> Termination:
    """The termination reason of a spliced conversation.

    A backend (a peer, a ``--raw`` server) that breaks mid-stream is
    ``peer_down``, not the client's doing.
    """
    if result.closed_by == ERROR:
        return Termination.PEER_DOWN if result.broken_by == BACKEND else Termination.CLIENT_ABORTED
    ends = {CLIENT: Termination.CLIENT_CLOSED, BACKEND: Termination.SERVER_CLOSED, TIMEOUT: Termination.CLIENT_TIMEOUT}
    return ends.get(result.closed_by, Termination.OTHER)


def describe_end(result: SpliceResult) -> str:
    """``closed by <who>``, naming the side whose socket failed on an error."""
    if result.closed_by == ERROR and result.broken_by:
        return f"broken by the {result.broken_by} (reset or TLS error)"
    return f"closed by {result.closed_by}"


__all__ = ["dial", "splice", "SpliceResult", "CHUNK", "PIPE_SIZE", "termination_of", "describe_end"]
