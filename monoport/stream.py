"""A socket plus the bytes already read from it: the replay buffer.

Bytes read while sniffing (inside TLS, where nothing can be peeked) or while
reading a request head are pushed back here and handed, in order, to
whichever stage takes the connection next: pywsgi reads its request line,
headers and body through this object (it is the handler's ``rfile``),
gevent-websocket reads its frames through it, the raw transport its lines.
``read``/``readline`` block like ``io.BufferedReader``'s: until the size is
met, a newline arrives, or EOF.
"""

from __future__ import annotations

import socket
from typing import Any

#: How much one recv() asks for.
RECV_SIZE = 65536


class Stream:
    def __init__(self, sock: Any, buffered: bytes = b"") -> None:
        self.sock = sock
        self.buf = bytearray(buffered)
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
        self.buf += data
        return True

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the buffer."""
        self.buf[:0] = data

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    # -- the file-like API pywsgi and gevent-websocket use -----------------
    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self.fill():
                pass
            return self.take(len(self.buf))
        while len(self.buf) < size and self.fill():
            pass
        return self.take(size)

    def read1(self, size: int = -1) -> bytes:
        if not self.buf:
            self.fill()
        return self.take(len(self.buf) if size < 0 else size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = None if size is None or size < 0 else size
        start = 0
        while True:
            end = self.buf.find(b"\n", start)
            if end >= 0:
                n = end + 1
                return self.take(n if limit is None else min(n, limit))
            if limit is not None and len(self.buf) >= limit:
                return self.take(limit)
            start = len(self.buf)
            if not self.fill():
                return self.take(len(self.buf))

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
