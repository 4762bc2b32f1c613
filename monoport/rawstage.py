"""What a raw connection (not TLS, HTTP, PROXY or Flash, or silent) gets, by ``--raw`` mode:
``sio`` (Socket.IO over lines, :mod:`monoport.rawtcp`), ``HOST:PORT`` (a splice to that
backend) or ``off`` (closed with one log line)."""

from __future__ import annotations

from typing import Any, Callable

from . import splice
from .balancer import Balancer
from .config import Config
from .config_values import parse_hostport
from .connection import Connection, format_address
from .errors import PeerUnavailable
from .rawtcp import RawSio
from .termination import Termination

#: Seconds to connect to the ``--raw HOST:PORT`` backend before giving up.
RAW_DIAL_TIMEOUT = 5.0

RawStage = Callable[[Connection, bool], None]


def off(conn: Connection, silent: bool) -> None:
    if silent:
        conn.end(Termination.SNIFF_TIMEOUT, "sniff timeout (silent client); raw TCP is off")
    else:
        conn.end(Termination.PROTOCOL_ERROR, "not TLS, HTTP, PROXY or Flash; raw TCP is off")


def forwarder(target: tuple[str, int]) -> RawStage:
    """``--raw HOST:PORT``: splice each connection to the backend, every byte already read first."""
    name = format_address(target)

    def forward(conn: Connection, silent: bool) -> None:
        try:
            backend = splice.dial(target, RAW_DIAL_TIMEOUT)
        except PeerUnavailable as exc:
            conn.end(Termination.PEER_DOWN, f"raw backend unavailable ({exc})")
            return
        try:
            conn.sock.settimeout(None)
            # Clear sockets were only peeked (the kernel still has the bytes);
            # inside TLS the sniffed bytes wait in the stream's buffer.
            prefix = conn.stream.take_all()
            # the unmetered socket, so the zero-copy path stays open; the result counts the bytes
            result = splice.splice(conn.sock.wrapped, backend, client_prefix=prefix)
        finally:
            backend.close()
        conn.bytes_in += result.bytes_up - len(prefix)  # the prefix was counted when it was read
        conn.bytes_out += result.bytes_down
        conn.end(splice.termination_of(result), f"raw forwarded to {name}: {result.bytes_up} bytes up, "
                                                f"{result.bytes_down} down, {splice.describe_end(result)}")

    return forward


def build(config: Config, balancer: Balancer, sio: Any, router: Callable, max_message: int) -> RawStage:
    """The raw stage for ``config.raw``, with its admission.

    Raw Socket.IO clients are balanced like HTTP ones (capacity, spill-over,
    queue); a ``--raw HOST:PORT`` backend carries its own load: counted, never moved.
    """
    mode = config.raw
    if mode == "off":
        return off
    if mode == "sio":
        raw_sio = RawSio(config, sio, router, max_message)

        def admitted_sio(conn: Connection, silent: bool) -> None:
            if balancer.admit_raw(conn):
                raw_sio(conn, silent)

        return admitted_sio
    forward = forwarder(parse_hostport(mode))

    def counted_forward(conn: Connection, silent: bool) -> None:
        balancer.try_claim(conn)
        forward(conn, silent)

    return counted_forward
