"""The life of one connection, in one place: accept, sniff, stage, one ending.

    listener -> serve_connection -> (peer admission) -> sniff -> stage ... -> cleanup

Sniffing decides what the first bytes are, in this order (DESIGN.md, "The
path of one connection"): PROXY (trusted senders only) -> TLS -> Flash ->
HTTP -> raw. A stage either peels a layer (PROXY, TLS) and the bytes after it
are sniffed again, or serves the connection to its end. On the clear socket
the sniffer only peeks; inside TLS the bytes read stay in the connection's
:class:`~monoport.stream.Stream` for the stage (see there).

Every way out goes through the one ``finally`` of :func:`serve_connection`:
the limits and the balancer release the connection, the stats count its
:class:`~monoport.termination.Termination`, its one log line and its
access-log record are written, and its sockets close. Error policy: a
client's fault (reset, broken pipe, timeout, garbage, failed handshake) is
that line and the end of that connection only; a bug in monoport ends it as
``other`` and propagates to gevent's handler, which logs the traceback. The
listener never stops for either.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Final

from . import stages
from .connection import Connection
from .errors import ProtocolViolation
from .ops import accesslog
from .services import Services
from .stream import ClientGone, Silent
from .termination import Termination
from .wire.sniff import classify

#: At most PROXY, then TLS, then the payload protocol.
MAX_LAYERS: Final = 3


def serve_connection(conn: Connection, svc: Services) -> None:
    """Serve one accepted connection from its first byte to its close, and record how it ended, once."""
    svc.stats.connection_opened(conn)
    try:
        try:
            role = conn.listener.role
            if role == "flash":
                stages.flash_only(conn, svc)
            elif role != "peer" or stages.admit_peer_listener(conn, svc):
                sniff_and_serve(conn, svc)
        except ClientGone:
            conn.end(Termination.CLIENT_CLOSED, "client closed before sending anything")
        except ProtocolViolation as exc:
            conn.end(Termination.PROTOCOL_ERROR, f"protocol error ({exc})", logging.WARNING)
        except (socket.timeout, TimeoutError, Silent):  # Silent: a PROXY header cut short by its deadline
            conn.end(Termination.CLIENT_TIMEOUT, f"client timeout ({conn.kind})")
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            conn.end(Termination.CLIENT_ABORTED, f"connection error ({type(exc).__name__}: {exc})")
        except Exception as exc:  # a bug of monoport's: gevent prints its traceback
            conn.end(Termination.OTHER, f"internal error ({type(exc).__name__})", logging.ERROR)
            raise
    finally:
        svc.per_client.release(conn)
        svc.balancer.release(conn)
        svc.stats.connection_closed(conn)
        conn.log_line()
        if svc.access is not None and not conn.quiet:
            svc.access.write(accesslog.connection_record(conn))
        conn.close()


def sniff_and_serve(conn: Connection, svc: Services) -> None:
    """Sniff, run the stage for what was found, again after each peeled layer."""
    deadline = conn.started + svc.config.sniff_timeout
    for _ in range(MAX_LAYERS):
        try:
            kind = conn.stream.sniff_until(classify, deadline, stages.SNIFF_BYTES)
        except Silent:
            stages.silent(conn, svc)
            return
        if kind is not stages.Kind.PROXY and not svc.per_client.admit(conn):  # the client is known now
            conn.over_ip_limit = True
        if not stages.STAGES[kind](conn, svc):
            return
        deadline = time.monotonic() + svc.config.sniff_timeout
    raise ProtocolViolation("too many nested protocol layers")
