"""The access log: one line per HTTP request and one per connection.

``--access-log FILE`` (or ``-`` for stderr), ``--log-format text|json``.
SIGUSR1 reopens the file (logrotate's ``postrotate``, as with gunicorn).

Every line has the same fields, in this order (``-`` when not applicable):

=============  ===============================================================
time           end of the request/connection, UTC, ISO 8601 with milliseconds
event          ``req`` (one HTTP request) or ``conn`` (a connection ended)
client         the real client ``address:port`` (after trusted PROXY/X-Forwarded-For)
kind           what it spoke: http, https, ws, wss, polling, polling-tls, raw,
               raw-tls, flash, flash-tls, acme-tls-alpn, acme-http-01 (a CA's challenge
               check) ... (``unknown``/``tls``: ended while sniffing)
tls            TLS version (TLSv1.3 ...) or ``-``
sni            the server name the client asked for, or ``-``
request        ``"METHOD PATH"`` (req) or ``"-"`` (conn), JSON-quoted
status         HTTP status (req) or ``-``
bytes_in       request body bytes (req) / payload bytes from the client (conn)
bytes_out      response bytes, head included (req) / payload bytes to the client (conn)
duration       seconds, 3 decimals: request handling time / connection lifetime
served         ``local`` or the id of the peer instance it was forwarded to
termination    conn: one of client_closed, client_aborted, client_timeout,
               sniff_timeout, tls_failed, protocol_error, peer_down,
               server_full, client_limit, server_closed, draining, other
               (see :class:`monoport.termination.Termination`); req: ``-``
detail         the free-form outcome text (conn) or ``-``, JSON-quoted; a conn line ends with
               ``; Socket.IO session recovered`` when --recovery gave a client its
               session back over it (WebSocket and raw connections)
=============  ===============================================================

Text example::

    2026-11-27T00:31:02.514Z conn 127.0.0.1:52344 wss TLSv1.3 localhost "-" - 812 2207 12.503 local client_closed "client closed (websocket)"

``--log-format json`` writes the same fields as one JSON object per line.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from typing import Any, TextIO

from ..connection import Connection, format_address

FIELDS = ("time", "event", "client", "kind", "tls", "sni", "request", "status", "bytes_in", "bytes_out",
          "duration", "served", "termination", "detail")
#: the two free-text fields, JSON-quoted in the text format so a line always splits the same way
QUOTED = frozenset({"request", "detail"})
#: longest request target written (the rest is cut): a log line stays a line
MAX_TARGET = 2048


def _timestamp(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _base(conn: Connection, event: str) -> dict[str, Any]:
    tls = conn.tls or {}
    return {
        "time": _timestamp(time.time()), "event": event, "client": format_address(conn.client),
        "kind": conn.kind, "tls": tls.get("version"), "sni": tls.get("sni"),
        "served": conn.served_by or "local",
    }


def request_record(handler: Any) -> dict[str, Any]:
    """The fields of one HTTP request handled by :class:`monoport.wsgi.Handler`."""
    conn: Connection = handler.conn
    environ = getattr(handler, "environ", None) or {}
    record = _base(conn, "req")
    client = environ.get("REMOTE_ADDR")
    if client and client != str(conn.client[0]):  # a trusted X-Forwarded-For named the client
        record["client"] = f"{client}:{environ.get('REMOTE_PORT', 0)}"
    method = getattr(handler, "command", None) or "-"
    target = (getattr(handler, "path", None) or "-")[:MAX_TARGET]
    started, finished = getattr(handler, "time_start", 0), getattr(handler, "time_finish", 0)
    try:
        body_in = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        body_in = 0
    record.update({
        # no method: the head was refused before it parsed (431, 400)
        "request": f"{method} {target}" if method != "-" else None, "status": status_of(handler),
        "bytes_in": body_in, "bytes_out": getattr(handler, "response_length", 0) or 0,
        "duration": round(max(0.0, finished - started), 3) if started and finished else 0.0,
        "termination": None, "detail": None,
    })
    return record


def status_of(handler: Any) -> int | None:
    code = getattr(handler, "code", None)
    if code:
        return abs(int(code))
    status = str(getattr(handler, "status", "") or "")
    return int(status[:3]) if status[:3].isdigit() else None


def connection_record(conn: Connection) -> dict[str, Any]:
    """The fields of one finished connection."""
    record = _base(conn, "conn")
    record.update({
        "request": None, "status": None, "bytes_in": conn.bytes_in, "bytes_out": conn.bytes_out,
        "duration": round(time.monotonic() - conn.started, 3), "termination": str(conn.termination),
        "detail": conn.detail + ("; Socket.IO session recovered" if conn.sio_recovered else ""),
    })
    return record


def format_text(record: dict[str, Any]) -> str:
    parts = []
    for name in FIELDS:
        value = record.get(name)
        if name in QUOTED:
            parts.append(json.dumps(value if value is not None else "-", ensure_ascii=False))
        elif value is None or value == "":
            parts.append("-")
        elif name == "duration":
            parts.append(f"{value:.3f}")
        else:
            parts.append(str(value).replace(" ", "_"))
    return " ".join(parts)


def format_json(record: dict[str, Any]) -> str:
    return json.dumps({name: record.get(name) for name in FIELDS}, ensure_ascii=False, separators=(",", ":"))


class AccessLog:
    """Writes access-log lines to a file (reopened on SIGUSR1) or to stderr."""

    def __init__(self, target: str, fmt: str = "text") -> None:
        self.target = target
        self.format = format_json if fmt == "json" else format_text
        self.file: TextIO = self._open()

    def _open(self) -> TextIO:
        if self.target == "-":
            return sys.stderr
        return open(self.target, "a", buffering=1, encoding="utf-8")

    def reopen(self) -> None:
        """Open the file again by name (after logrotate moved it); keep the old one on failure."""
        if self.target == "-":
            return
        new = self._open()
        old, self.file = self.file, new
        old.close()

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(self.format(record) + "\n")

    def close(self) -> None:
        if self.file is not sys.stderr:
            self.file.close()
