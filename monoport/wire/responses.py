"""Whole HTTP responses written before (or instead of) the application; pure.

Used where monoport answers by itself: a refused or malformed request head,
a stalled body, the admin pages, a full cluster. Each response closes the
connection, so the bytes after it never need parsing.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Iterable


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


__all__ = ["reason_phrase", "simple_response"]
