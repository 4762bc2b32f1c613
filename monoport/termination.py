"""How a connection ended: the stable vocabulary of the access log and the metrics.

In the spirit of HAProxy's termination flags, every connection ends with
exactly one :class:`Termination`, chosen by the code that knows why (a stage,
the HTTP handler, the balancer), next to a free-form detail for people.
"""

from __future__ import annotations

from enum import StrEnum


class Termination(StrEnum):
    """Why a connection ended. The values are what logs and metrics show."""

    #: closed because monoport (or the peer that forwarded it) is shutting down
    DRAINING = "draining"
    #: the client ended the connection (FIN)
    CLIENT_CLOSED = "client_closed"
    #: reset, broken pipe, or a TLS error mid-stream
    CLIENT_ABORTED = "client_aborted"
    #: the client was too slow (head, body, idle, or it stopped reading)
    CLIENT_TIMEOUT = "client_timeout"
    #: a silent client, and nothing to give it
    SNIFF_TIMEOUT = "sniff_timeout"
    #: the TLS handshake did not complete
    TLS_FAILED = "tls_failed"
    #: bytes that break the protocol spoken (or nothing this port speaks)
    PROTOCOL_ERROR = "protocol_error"
    #: the peer (or raw backend) a connection went to failed
    PEER_DOWN = "peer_down"
    #: no capacity anywhere (503)
    SERVER_FULL = "server_full"
    #: this client has --max-conns-per-ip connections already
    CLIENT_LIMIT = "client_limit"
    #: monoport (or the app) ended it normally
    SERVER_CLOSED = "server_closed"
    #: none of the above (a bug in monoport, logged with its traceback)
    OTHER = "other"


#: Every termination reason, in documentation order (metrics list them all, with zero values).
TERMINATION_REASONS: tuple[str, ...] = tuple(reason.value for reason in Termination)
