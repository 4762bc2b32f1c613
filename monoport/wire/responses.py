"""Whole HTTP responses written before (or instead of) the application; pure.

Used where monoport answers by itself: a refused or malformed request head,
a stalled body, the admin pages, a full cluster. Each response closes the
connection, so the bytes after it never need parsing.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Iterable

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: (whole second, its Date value): the last one made
_last_date: tuple[int, bytes] = (-1, b"")


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (``http.HTTPStatus``), "Error" for an unknown code."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def simple_response(status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    lines = [f"HTTP/1.1 {status} {reason_phrase(status)}", "Connection: close",
             f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: text/plain; charset=utf-8")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http_date(timestamp: float) -> bytes:
    """The HTTP ``Date`` value (RFC 9110 IMF-fixdate) of a Unix time, as bytes.

    Made once per second and reused: a server answering thousands of
    requests a second would otherwise format the same text for each.
    """
    global _last_date
    second = int(timestamp)
    if _last_date[0] != second:
        year, month, day, hh, mm, ss, wd, _, _ = time.gmtime(second)
        text = f"{_DAYS[wd]}, {day:02d} {_MONTHS[month]} {year:04d} {hh:02d}:{mm:02d}:{ss:02d} GMT"
        _last_date = (second, text.encode("ascii"))
    return _last_date[1]


__all__ = ["http_date", "reason_phrase", "simple_response"]
