"""A socket plus the bytes already read from it: the one owner of the replay buffer.

No byte may be lost between sniffing and the stage that takes a connection,
and this class is where that rule lives: only its methods touch the buffer.

- On a clear socket the sniffer only *peeks* (:meth:`Stream.peek_until`):
  the kernel keeps every byte for whoever reads next (the TLS handshake
  reads the ClientHello itself). :meth:`Stream.consume` takes exactly the
  bytes a stage used up (a PROXY header, the Flash request).
- Inside TLS nothing can be peeked: :meth:`Stream.read_until` reads into the
  buffer until a parser decides, and the bytes stay there for the next
  reader. The HTTP head is read the same way, on either socket.
- Whoever takes the connection then reads through this object (pywsgi's
  ``rfile``, gevent-websocket's frames, the raw transport's lines), or takes
  what is buffered with :meth:`Stream.take_all` before reading the socket
  itself (a splice, a forward to a peer).

``read``/``readline`` block like ``io.BufferedReader``'s: until the size is
met, a newline arrives, or EOF.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, TypeVar

import gevent

from .wire.needmore import NeedMore

#: How much one recv() asks for.
RECV_SIZE = 65536
#: Back-off while peeking at a prefix that is still ambiguous: the bytes are
#: in the kernel already, so there is nothing to block on; poll gently.
PEEK_POLL_MIN = 0.001
PEEK_POLL_MAX = 0.05

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed before the parser decided (``partial``: after sending some bytes)."""

    def __init__(self, partial: bool = False) -> None:
        super().__init__("client closed" + (" mid-message" if partial else ""))
        self.partial = partial


class Silent(Exception):
    """The deadline passed before the parser decided (``args[0]``: the bytes seen)."""


class Stream:
    __slots__ = ("sock", "peekable", "_buf", "eof", "closed", "on_timeout", "stalled", "bytes_in")

    def __init__(self, sock: Any, peekable: Any = None) -> None:
        self.sock = sock
        #: the clear socket under ``sock``, whose bytes can be peeked at (None inside TLS)
        self.peekable = peekable
        self._buf = bytearray()
        self.eof = False
        self.closed = False
        #: while set, a receive timeout raises this instead (see :meth:`fill`)
        self.on_timeout: type[BaseException] | None = None
        #: the stall already raised; raised again at once by later reads
        self.stalled: BaseException | None = None
        #: bytes received from the socket through this stream
        self.bytes_in = 0

    # -- filling ---------------------------------------------------------
    def fill(self) -> bool:
        """Receive once; False at EOF.

        Raises:
            socket.timeout, OSError: from the socket; or ``on_timeout()`` instead
                of a timeout while it is set (a request body that stopped moving:
                an exception an application's ``except Exception`` does not
                swallow, so that it is not reported as the app's own error).
        """
        if self.stalled is not None:
            raise self.stalled
        if self.eof:
            return False
        try:
            data = self.sock.recv(RECV_SIZE)
        except (socket.timeout, TimeoutError):
            if self.on_timeout is None:
                raise
            self.stalled = self.on_timeout()
            raise self.stalled from None
        if not data:
            self.eof = True
            return False
        self.bytes_in += len(data)
        self._buf += data
        return True

    # -- until a parser decides ------------------------------------------------
    def read_until(self, parse: Callable[[bytearray], T | NeedMore], deadline: float) -> T:
        """Read into the buffer until ``parse(buffered)`` is not NEED_MORE; the bytes stay buffered.

        Raises:
            Silent: ``deadline`` (a ``time.monotonic()`` value) passed first.
            ClientGone: EOF first (``partial`` when some bytes had come).
            OSError: the connection broke.
        """
        buf = self._buf
        while True:
            if buf:
                result = parse(buf)
                if not isinstance(result, NeedMore):
                    return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Silent(bytes(buf))
            self.sock.settimeout(remaining)
            try:
                if not self.fill():
                    raise ClientGone(partial=bool(buf))
            except (socket.timeout, TimeoutError):
                raise Silent(bytes(buf)) from None

    def peek_until(self, parse: Callable[[bytes], T | NeedMore], deadline: float, size: int) -> T:
        """Peek at the clear socket (up to ``size`` bytes) until ``parse`` is not NEED_MORE.

        Nothing is consumed: the kernel keeps the bytes for whoever reads next.

        Raises:
            Silent: the deadline passed first (the prefix seen is in ``args[0]``).
            ClientGone: the client closed.
        """
        sock = self.peekable
        delay = PEEK_POLL_MIN
        last = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Silent(last)
            sock.settimeout(remaining)
            try:
                data = sock.recv(size, socket.MSG_PEEK)
            except (socket.timeout, TimeoutError):
                raise Silent(last) from None
            if not data:
                raise ClientGone()
            result = parse(data)
            if not isinstance(result, NeedMore):
                return result
            if data == last:
                gevent.sleep(min(delay, remaining))
                delay = min(delay * 2, PEEK_POLL_MAX)
            else:
                delay = PEEK_POLL_MIN
            last = data

    def peek_available(self, size: int) -> bytes:
        """What the clear socket holds right now, peeked without waiting (b"" inside TLS)."""
        sock = self.peekable
        if sock is None:
            return b""
        sock.settimeout(0)
        try:
            return sock.recv(size, socket.MSG_PEEK)
        except (BlockingIOError, socket.timeout, TimeoutError, OSError):
            return b""
        finally:
            sock.settimeout(None)

    def sniff_until(self, parse: Callable[[bytes], T | NeedMore], deadline: float, size: int) -> T:
        """Decide on the first bytes: peeked on a clear socket, read and kept inside TLS."""
        if self.peekable is not None:
            return self.peek_until(parse, deadline, size)
        return self.read_until(lambda buf: parse(bytes(buf[:size])), deadline)

    def consume(self, n: int) -> bytes:
        """Take exactly ``n`` bytes a stage used up (a PROXY header, the Flash request).

        Inside TLS they are in the buffer already; on a clear socket they were
        only peeked at, and are received now from the socket they were peeked on.
        """
        data = self.take(n)
        chunks = [data]
        n -= len(data)
        sock = self.peekable if self.peekable is not None else self.sock
        while n:
            more = sock.recv(n)
            if not more:
                raise ClientGone(partial=True)
            chunks.append(more)
            n -= len(more)
        return b"".join(chunks)

    # -- the buffer ------------------------------------------------------------------
    def buffered(self) -> bytes:
        """A copy of the bytes read and not yet taken (a forward replays them)."""
        return bytes(self._buf)

    def take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def take_all(self) -> bytes:
        """Every byte buffered: for a stage that reads the socket itself from here on."""
        return self.take(len(self._buf))

    def drop_line_rest(self, n: int) -> bool:
        """Drop the next ``n`` buffered bytes if they are all there and end a line (a header block
        already parsed); False, and nothing dropped, otherwise."""
        buf = self._buf
        if 0 < n <= len(buf) and buf[n - 1] == 0x0A:
            del buf[:n]
            return True
        return False

    def has_buffered(self) -> bool:
        return bool(self._buf)

    # -- the file-like API pywsgi and gevent-websocket use -----------------
    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self.fill():
                pass
            return self.take_all()
        while len(self._buf) < size and self.fill():
            pass
        return self.take(size)

    def read1(self, size: int = -1) -> bytes:
        if not self._buf:
            self.fill()
        return self.take(len(self._buf) if size < 0 else size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = None if size is None or size < 0 else size
        start = 0
        buf = self._buf
        while True:
            end = buf.find(b"\n", start)
            if end >= 0:
                n = end + 1
                return self.take(n if limit is None else min(n, limit))
            if limit is not None and len(buf) >= limit:
                return self.take(limit)
            start = len(buf)
            if not self.fill():
                return self.take_all()

    def readinto(self, b: Any) -> int:
        data = self.read1(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.closed = True

    def readable(self) -> bool:
        return True


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (socket.timeout, TimeoutError))
