"""Find and check an HTTP/1.x request head; pure, no I/O.

monoport reads each request head itself before gevent.pywsgi parses it, for
three reasons pywsgi cannot serve: a deadline on the whole head (slowloris),
limits that answer 431 (size and header count), and a look at the ``sid``
query parameter so the balancer can route a Socket.IO request to the
instance that owns its session. The head is then replayed to pywsgi intact.
"""

from __future__ import annotations

import functools
import re
from types import MappingProxyType
from typing import Final, Mapping, NamedTuple
from urllib.parse import parse_qs

from ..errors import ProtocolViolation
from .needmore import NEED_MORE, NeedMore

#: Largest request head accepted (request line + headers), as nginx's
#: large_client_header_buffers order of magnitude; larger gets 431.
MAX_HEAD: Final = 16 * 1024
#: Most header lines accepted; more gets 431 (the same bound http.client has).
MAX_HEADERS: Final = 100

_END = re.compile(rb"\r?\n\r?\n")
_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/(\d)\.(\d)\r?$")


class RequestHead(NamedTuple):
    """One parsed request head, immutable.

    A NamedTuple, not a frozen dataclass: one is made per request, and a
    frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__`` (2.2 µs against 0.5).
    """

    method: str
    target: str
    version: tuple[int, int]
    #: header names lower-cased, in order, repeated names kept
    headers: tuple[tuple[str, str], ...]
    #: length of the head in bytes, terminator included
    length: int

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def query(self, name: str) -> str | None:
        """First value of query parameter ``name`` of the request target."""
        _, _, query = self.target.partition("?")
        values = parse_query(query).get(name)
        return values[0] if values else None

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@functools.lru_cache(maxsize=64)
def parse_query(query: str) -> Mapping[str, list[str]]:
    """``urllib.parse.parse_qs(query)``, read-only, made once for the few queries seen last.

    One Engine.IO request has its query read by the balancer (``sid``, then
    ``transport``) and by the router; each parse_qs of it took ~4 µs. The
    result is shared between them: nobody may change it (the mapping
    refuses; its lists are not to be touched either).
    """
    return MappingProxyType(parse_qs(query))


def _find_end(buf: bytes | bytearray) -> tuple[int, int]:
    """Where the first blank line (``_END``) starts and ends in ``buf``; (-1, -1) if none yet.

    A plain search for CRLF CRLF first (a fifth of the regex's time); it is
    the first terminator unless a bare-LF blank line (``\\n\\n``, ``\\n\\r\\n``)
    starts before it, in which case the regex decides.
    """
    i = buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
    if i >= 0 and buf.find(b"\n\n", 0, i) < 0 and buf.find(b"\n\r\n", 0, i + 3) < 0:
        return i, i + 4
    match = _END.search(buf, 0, MAX_HEAD + 4)
    return (match.start(), match.end()) if match else (-1, -1)


def parse_head(buf: bytes | bytearray) -> RequestHead | NeedMore:
    """Parse the request head at the start of ``buf``.

    Returns:
        a :class:`RequestHead`, or :data:`NEED_MORE` if the head is not complete.
    Raises:
        ProtocolViolation: with ``status`` 431 when the head is too large or has
            too many headers, 400 when it is malformed.
    """
    start, end = _find_end(buf)
    if end < 0:
        if len(buf) >= MAX_HEAD:
            raise ProtocolViolation("request head larger than 16 KB", status=431)
        return NEED_MORE
    if end > MAX_HEAD:
        raise ProtocolViolation("request head larger than 16 KB", status=431)
    lines = bytes(buf[:start]).split(b"\n")
    request_line = _REQUEST_LINE.match(lines[0])
    if request_line is None:
        raise ProtocolViolation("malformed request line")
    if len(lines) - 1 > MAX_HEADERS:
        raise ProtocolViolation(f"more than {MAX_HEADERS} headers", status=431)
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        line = raw.rstrip(b"\r").decode("latin-1")
        if line[:1] in (" ", "\t") and headers:  # obsolete line folding
            key, value = headers[-1]
            headers[-1] = (key, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolViolation("malformed header line")
        headers.append((name.lower(), value.strip()))
    method, target, major, minor = request_line.groups()
    return RequestHead(
        method=method.decode("ascii"),
        target=target.decode("latin-1"),
        version=(int(major), int(minor)),
        headers=tuple(headers),
        length=end,
    )
