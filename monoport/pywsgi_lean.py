"""pywsgi's per-request work that monoport's own head parse makes redundant, done once or not at all.

pywsgi is kept (its users trust it), but on a keep-alive request it parses the
head a second time, looks headers up through the email package, formats them
back into lines to build the environ, formats the Date per response, and
writes a response's head and body apart (over TLS, two records, and gevent
asks the kernel for the send buffer size on each write). :class:`LeanHandler`
overrides those steps with ones that give pywsgi the same results; the names
it overrides are pywsgi's private ones, listed in :mod:`monoport.libhooks`.
"""

from __future__ import annotations

import time
from typing import Any

from gevent import pywsgi

from .websocket import HandlerBase
from .wire.responses import http_date

#: A response whose first body piece is at most this many bytes goes out in one
#: write with its head: pywsgi writes them apart, which over TLS is two records,
#: and each write is a send() and a getsockopt() (about 9 µs each here). Larger
#: bodies keep their own write (no copy).
ONE_WRITE_MAX = 16 * 1024

class ParsedHeaders(pywsgi.OldMessage):
    """A request's headers as :func:`~monoport.wire.httphead.parse_head` read them.

    pywsgi asks for four or five headers on every request through
    ``email.message.Message.get``, which lower-cases every stored name and
    passes each value through the email policy; here the names are already
    lower-case and the values plain text, so a lookup is one comparison per
    header. Everything else (``del``, ``in``, ``get_all``) is email's own.
    """

    def get(self, name: str, failobj: Any = None) -> Any:
        name = name.lower()
        for key, value in self._headers:  # type: ignore[attr-defined]
            if key == name:
                return value
        return failobj


def wait_readable(sock: Any) -> None:
    """Wait, through the event loop, until ``sock`` (a gevent socket or SSLSocket) has something to read.

    Used for the wait between two keep-alive requests instead of a recv()
    tried at once. That recv() usually fails (the client is still reading the
    response just sent: EAGAIN three times in four under wrk -c50, about 5 µs
    each here), and when it
    does succeed the connection goes on without letting any other greenlet
    run: under load a fast client is served request after request while the
    others wait, which is the keep-alive latency tail. Through the loop, every
    ready connection gets its turn in the order the kernel reported them.

    Raises:
        socket.timeout: nothing came within the socket's timeout.
    """
    pending = getattr(sock, "pending", None)
    if pending is not None and pending():
        return  # TLS: bytes already decrypted in OpenSSL's buffer; the fd may never signal them
    sock._wait(sock._read_event)  # gevent's own wait for its recv(): the socket's watcher and timeout

class LeanHandler(HandlerBase):
    """gevent-websocket's handler (over pywsgi's) with the lean steps; monoport's Handler builds on it."""

    __slots__ = ()

    def _headers(self) -> Any:
        """The ``HTTP_*`` environ entries; pywsgi's own when it parsed the head itself.

        pywsgi formats every header back into a ``"Name: value\\r\\n"`` line
        and splits it again; the pairs parse_head made give the same entries
        (names with ``_`` dropped, Content-Type and -Length not as HTTP_*).
        """
        message = self.headers
        if type(message) is not ParsedHeaders:
            yield from super()._headers()
            return
        for key, value in message._headers:  # type: ignore[attr-defined]
            if "_" in key:
                continue
            key = key.replace("-", "_").upper()
            if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
                yield "HTTP_" + key, value.strip()

    def finalize_headers(self) -> None:
        if self.provided_date is None:  # type: ignore[has-type]  # pywsgi's, untyped
            # pywsgi formats the date on every response; it changes once a second
            self.response_headers.append((b"Date", http_date(time.time())))
            self.provided_date = "Date"  # type: ignore[misc]  # pywsgi's, in the instance dict: the app gave none
        super().finalize_headers()

    def _write_with_headers(self, data: Any) -> None:
        """pywsgi's, with a small first body piece in the same write as the head (see ONE_WRITE_MAX)."""
        self.headers_sent = True  # type: ignore[misc]  # pywsgi's, in the instance dict its classes keep
        self.finalize_headers()
        towrite = bytearray(b"HTTP/1.1 ")
        towrite += self.status
        towrite += b"\r\n"
        for header, value in self.response_headers:
            towrite += header
            towrite += b": "
            towrite += value
            towrite += b"\r\n"
        towrite += b"\r\n"
        if not data or len(data) > ONE_WRITE_MAX:
            self._sendall(towrite)
            self._write(data)
            return
        if self.response_use_chunked:
            towrite += b"%x\r\n" % len(data)
            towrite += data
            towrite += b"\r\n"
        else:
            towrite += data
        self._sendall(towrite)
